"""Agreement statistics stored per clip and kept current, and the report assembled from them.

Every figure of :func:`curation.review.field_agreement.agreement_report` is a sum over clips: alpha's sufficient
statistics (:func:`curation.review.field_statistics.clip_statistics`), a text field's per-clip similarity, and per
annotator the comparisons with the others and with the gold answer. So each clip's share is computed once from its
current answers and latest review and stored (``clip_agreement``), and only clips whose answers or review changed
are computed again (:mod:`curation.review.derived`). :class:`AgreementState` sums the rows; the bootstrap resamples
them exactly as the report always has, so the figures are those of computing everything from scratch.

Example::

    refresh_agreement(project)          # clips computed again (0: current)
    state = AgreementState(project.rubric)
    for clip_id, row in stored_rows(project):
        state.apply(clip_id, row)
    state.report(n_boot=1000, random_state=0)
"""

from __future__ import annotations

import statistics
from collections import Counter
from itertools import combinations
from typing import Any

import numpy as np
from sqlalchemy import JSON, Integer, String, or_, select
from sqlalchemy.orm import Mapped, mapped_column

from curation.records.store import Base, Project
from curation.review.consensus import field_consensus, values_agree
from curation.review.derived import refresh
from curation.review.field_statistics import (
    LEVELS,
    MIN_ITEMS_FOR_INTERVAL,
    FieldStatistics,
    alphas_with_intervals,
    choice_agreement,
    clip_statistics,
    percentile_interval,
)
from curation.review.text_similarity import exact_match, text_similarity
from curation.rubric import Rubric

# The rows' layout is part of the watermark's name: a cliptune that stores another layout recomputes every row.
WATERMARK = "agreement:2"


class ClipAgreement(Base):
    """One clip's share of the agreement figures: derived state, rebuilt from answers and reviews at any time."""

    __tablename__ = "clip_agreement"
    clip_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    rubric_version: Mapped[str] = mapped_column(String(32))
    annotation_stamp: Mapped[int] = mapped_column(Integer)
    review_stamp: Mapped[int] = mapped_column(Integer)
    row: Mapped[dict[str, Any]] = mapped_column(JSON)


def clip_agreement_row(rubric: Rubric, records: list[Any], adjudication: dict[str, Any] | None, *,
                       normalised_under: str | None = None) -> dict[str, Any]:
    """One clip's share from its current answer records (oldest first) and latest review's fields.

    Compact, since 100,000 of them are read for one report: ``u`` the people (those with a valid answer first, in
    answer order, then those with only a submitted time), ``n`` how many have a valid answer, ``s`` each one's
    seconds (None without), ``p`` per valid answerer [agreeing comparisons with the others, comparisons, agreeing
    with gold, gold comparisons], ``first`` the id of the first valid answer (text fields resample clips in that
    order, as the report always did), and ``f`` {field: [bitmask over ``u`` of who gave a value, *figures]}: alpha
    fields' figures are :func:`clip_statistics` as :meth:`FieldStatistics.vector`, text fields' are [mean pairwise
    similarity, exactly matching pairs, agreeing pairs, pairs] (none with a single value).
    Answers stored under ``normalised_under`` were validated when written and are not validated again.
    """
    answers: dict[str, dict[str, Any]] = {}
    seconds: dict[str, float] = {}
    first = None
    for record in records:
        if record.status != "submitted":
            continue
        if record.seconds_spent is not None:
            seconds[record.user] = record.seconds_spent
        if record.fields is None:
            continue
        if record.rubric_version == normalised_under or not rubric.validate_fields(record.fields):
            answers[record.user] = record.fields
            first = record.id if first is None else first
    users = list(answers) + [user for user in seconds if user not in answers]
    row: dict[str, Any] = {"u": users, "n": len(answers), "s": [seconds.get(user) for user in users], "p": [],
                           "first": first, "f": {}}
    if not answers:
        return row
    for rubric_field in rubric.fields:
        values = {user: fields[rubric_field.name] for user, fields in answers.items()
                  if fields.get(rubric_field.name) is not None}
        if not values:
            continue
        mask = sum(1 << users.index(user) for user in values)
        if rubric_field.type == "text":
            texts = [str(v) for v in values.values()]
            pairs = list(combinations(texts, 2))
            figures = [float(np.mean([text_similarity(a, b) for a, b in pairs])),
                       sum(exact_match(a, b) for a, b in pairs),
                       sum(values_agree(rubric_field, a, b) for a, b in combinations(values.values(), 2)),
                       len(pairs)] if pairs else []
        else:
            figures = FieldStatistics(rubric_field).vector(clip_statistics(rubric_field, values))
        row["f"][rubric_field.name] = [mask, *figures]
    for user, fields in answers.items():
        others = [f for u, f in answers.items() if u != user]
        hits = [values_agree(f, fields.get(f.name), other.get(f.name)) for other in others for f in rubric.fields]
        gold_hits = []
        for rubric_field in rubric.fields:
            # Gold per field: the reviewer's value, else the other annotators' consensus on this field.
            if adjudication is not None:
                gold, found = adjudication.get(rubric_field.name), True
            elif others:
                gold, found, _ = field_consensus(rubric_field, [o.get(rubric_field.name) for o in others], "majority")
            else:
                found = False
            if found:
                gold_hits.append(values_agree(rubric_field, fields.get(rubric_field.name), gold))
        row["p"].append([sum(hits), len(hits), sum(gold_hits), len(gold_hits)])
    return row


def refresh_agreement(project: Project) -> int:
    """Bring the stored per-clip agreement rows up to date; returns how many clips were computed again."""
    rubric, version = project.rubric, project.rubric_version

    def compute(review: tuple | None, records: list[Any]) -> dict[str, Any]:
        return {"row": clip_agreement_row(rubric, records, review[1] if review else None, normalised_under=version)}

    return refresh(project, WATERMARK, ClipAgreement, compute)


def stored_rows(project: Project, since: tuple[int, int] = (0, 0)) -> list[tuple[int, dict[str, Any]]]:
    """(clip id, row) of the stored rows computed from an answer or review newer than ``since`` (all by default)."""
    table = ClipAgreement
    query = select(table.clip_id, table.row).where(table.rubric_version == project.rubric_version)
    if since != (0, 0):
        query = query.where(or_(table.annotation_stamp > since[0], table.review_stamp > since[1]))
    with project.session() as session:
        return list(session.execute(query))


class AgreementState:
    """The report's sums over clips, from stored rows: :meth:`apply` sets a clip's row (again), :meth:`report`
    gives :func:`curation.review.field_agreement.agreement_report`'s answer."""

    def __init__(self, rubric: Rubric) -> None:
        self.rubric = rubric
        self.rows: dict[int, dict[str, Any]] = {}
        self._alpha_names = [f.name for f in rubric.fields if f.type != "text"]
        self._alpha_set = set(self._alpha_names)
        self._alpha: dict[str, FieldStatistics] | None = None  # built at the first report, then updated per clip
        # running sums, so a changed clip costs its own row only: units per field by (people, who answered)
        self._units: dict[str, Counter] = {f.name: Counter() for f in rubric.fields}
        self._sums: dict[str, list[int]] = {}
        self._clips: Counter = Counter()
        self._seconds: dict[str, dict[int, float]] = {}
        self._answered = Counter()  # clips by number of valid answers: 0, 1, 2 or more
        self._invalid = 0  # rows holding a value alpha refuses

    def apply(self, clip_id: int, row: dict[str, Any]) -> None:
        """Set (or replace) the row of one clip."""
        old = self.rows.get(clip_id)
        if old is not None:
            self._count(clip_id, old, -1)
        self.rows[clip_id] = row
        self._count(clip_id, row, +1)
        if self._alpha is not None:
            for name in self._alpha_names:
                if name in row["f"]:
                    self._alpha[name].update_vector(clip_id, row["f"][name][1:])
                else:
                    self._alpha[name].remove(clip_id)

    def _count(self, clip_id: int, row: dict[str, Any], step: int) -> None:
        for name, figures in row["f"].items():
            if figures[0] & (figures[0] - 1):  # two values or more: a unit
                self._units[name][(tuple(row["u"]), figures[0])] += step
        for user, figures in zip(row["u"], row["p"], strict=False):  # the first n people answered validly
            total = self._sums.setdefault(user, [0, 0, 0, 0])
            for i, value in enumerate(figures):
                total[i] += step * value
            self._clips[user] += step
        for user, value in zip(row["u"], row["s"], strict=True):
            if value is not None:
                times = self._seconds.setdefault(user, {})
                if step > 0:
                    times[clip_id] = value
                else:
                    times.pop(clip_id, None)
        self._answered[min(row["n"], 2)] += step
        if any(figures[4] for name, figures in row["f"].items() if name in self._alpha_set):
            self._invalid += step

    def has_invalid_labels(self) -> bool:
        """Whether a stored row holds a value alpha refuses (then the report computes from the answers)."""
        return self._invalid > 0

    def _statistics(self) -> dict[str, FieldStatistics]:
        if self._alpha is None:
            self._alpha = {f.name: FieldStatistics.from_vectors(f, {clip: row["f"][f.name][1:]
                                                                    for clip, row in self.rows.items()
                                                                    if f.name in row["f"]})
                           for f in self.rubric.fields if f.type != "text"}
        return self._alpha

    def _counts(self, name: str) -> dict[str, Any]:
        units = +self._units[name]  # unary plus drops teams counted down to zero
        people = {user for users, mask in units for i, user in enumerate(users) if mask >> i & 1}
        return {"n_items": sum(units.values()), "n_annotators": len(people)}

    def report(self, *, n_boot: int = 1000, random_state: int | None = 0,
               annotator_names: set[str] | None = None) -> dict[str, Any]:
        """The agreement report (see :mod:`curation.review.field_agreement`); ``annotator_names``: people with the
        annotator role, listed even without answers."""
        stats = self._statistics()
        alpha_fields = [f for f in self.rubric.fields if f.type != "text"]
        alphas = dict(zip([f.name for f in alpha_fields],
                          alphas_with_intervals([stats[f.name] for f in alpha_fields], n_boot, random_state),
                          strict=True))
        fields: dict[str, Any] = {}
        for rubric_field in self.rubric.fields:
            name = rubric_field.name
            counts = self._counts(name)
            if rubric_field.type == "text":
                fields[name] = self._text_report(name, counts, n_boot, random_state)
                continue
            rows = stats[name].units()
            pairs, agreeing = rows[:, 1].sum(), rows[:, 2].sum()
            result = counts | {"pairwise_agreement": round(float(agreeing / pairs), 4) if pairs else None,
                               "metric": "krippendorff_alpha", "level": LEVELS[rubric_field.type], "value": None,
                               "ci": [None, None]}
            if counts["n_items"]:
                result.update(value=alphas[name]["value"], ci=alphas[name]["ci"])
                if rubric_field.type == "choice":
                    result.update({key: (round(value, 4) if np.isfinite(value) else None)
                                   for key, value in choice_agreement(stats[name]).items()})
            fields[name] = result
        return {"fields": fields, "annotators": self._people(annotator_names or set()),
                "clips_with_overlap": self._answered[2], "clips_answered": self._answered[1] + self._answered[2]}

    def _text_report(self, name: str, counts: dict[str, Any], n_boot: int, random_state: int | None
                     ) -> dict[str, Any]:
        rubric_field = self.rubric.field_map[name]
        # figures: [mask, similarity, exact, agreeing, pairs]
        units = sorted((row["first"], row["f"][name]) for row in self.rows.values() if len(row["f"].get(name, ())) > 1)
        pairs = sum(figures[4] for _, figures in units)
        result = counts | {"pairwise_agreement": round(sum(f[3] for _, f in units) / pairs, 4)
                           if pairs else None, "metric": "mean_pairwise_similarity", "level": "text",
                           "value": None, "ci": [None, None]}
        if units:
            per_unit = np.array([figures[1] for _, figures in units])
            rng = np.random.default_rng(random_state)
            # a resample of clips is a resample of their per-clip means, in the order the report always drew them
            boots = [float(per_unit[rng.integers(0, len(units), len(units))].mean())
                     for _ in range(n_boot if len(units) >= MIN_ITEMS_FOR_INTERVAL else 0)]
            result.update(value=round(float(per_unit.mean()), 4), ci=percentile_interval(boots),
                          exact_match=round(sum(f[2] for _, f in units) / pairs, 4),
                          threshold=rubric_field.similarity_threshold)
        return result

    def _people(self, annotator_names: set[str]) -> dict[str, dict[str, Any]]:
        clips = +self._clips
        seconds = {user: list(times.values()) for user, times in self._seconds.items() if times}
        people = {}
        for user in sorted(set(clips) | set(seconds)):
            pair_hits, pair_n, gold_hits, gold_n = self._sums.get(user, [0, 0, 0, 0])
            people[user] = {
                "clips": clips.get(user, 0),
                "agreement_with_others": round(pair_hits / pair_n, 4) if pair_n else None,
                "agreement_with_gold": round(gold_hits / gold_n, 4) if gold_n else None,
                "gold_comparisons": gold_n,
                "median_seconds": round(statistics.median(seconds[user]), 1) if seconds.get(user) else None,
            }
        return {name: row for name, row in people.items() if name in annotator_names or row["clips"]}

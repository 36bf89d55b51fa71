"""Agreement per rubric field and per annotator, for a project: what `cliptune agree` prints.

The statistic follows the field's type: Krippendorff's alpha, nominal for choices, ordinal for ordinal fields
(ranks in the rubric's order), interval for integers, numbers and times (times in seconds). Alpha handles any
number of annotators per clip and missing answers, so one figure serves every field. Nominal fields also get
Fleiss' kappa, Gwet's AC1 (which stays meaningful for rare events, where kappa collapses although annotators
agree) and percent agreement. Free-text fields get a similarity agreement: the mean over clips of the mean
pairwise :func:`curation.review.text_similarity.text_similarity` (symmetric chrF on normalised text), with the share of
pairs that match exactly beside it. Confidence intervals: percentile bootstrap over clips (none for fewer than
five clips with two answers or more: resampling two clips says nothing).

Per annotator: the share of (clip, field) comparisons with each other annotator of the same clip that agree by
the field's rule (tolerance, similarity threshold), the share of fields that agree with the clip's gold answer
field by field (reviewer adjudication, else the other annotators' consensus on that field — the annotator's own
answer is left out so it cannot agree with itself), and the median seconds spent per clip.

Example::

    report = agreement_report(project)
    report["fields"]["event"]   # {"metric": "krippendorff_alpha", "level": "nominal", "value": 0.81, "ci": [...], ...}
    report["annotators"]["ana"]  # {"clips": 40, "agreement_with_others": 0.93, "agreement_with_gold": 0.97, ...}
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from itertools import combinations
from typing import Any

import numpy as np

from curation.records.annotations import current_annotations
from curation.records.store import Project, Review, User
from curation.review import agreement
from curation.review.resolve import field_consensus, values_agree
from curation.review.text_similarity import exact_match, text_similarity
from curation.rubric import Rubric, RubricField

# Fewer clips than this with two answers or more: a bootstrap over clips says nothing, so no interval is given.
MIN_ITEMS_FOR_INTERVAL = 5
LEVELS = {"choice": "nominal", "ordinal": "ordinal", "integer": "interval", "number": "interval", "time": "interval"}


def _coded(rubric_field: RubricField, value: Any) -> Any:
    """The value as the statistic sees it: the label for nominal fields, a number otherwise; None if missing."""
    if value is None:
        return None
    if rubric_field.type == "choice":
        return str(value)
    return rubric_field.to_number(value)


def _interval(values: list[float], confidence: float = 0.95) -> list[float | None]:
    finite = np.asarray([v for v in values if v is not None and np.isfinite(v)])
    if len(finite) < 10:
        return [None, None]
    tail = (1 - confidence) / 2 * 100
    return [round(float(np.percentile(finite, tail)), 4), round(float(np.percentile(finite, 100 - tail)), 4)]


def _text_agreement(units: list[list[str]]) -> tuple[np.ndarray, float]:
    """(each clip's mean pairwise similarity, share of exactly matching pairs over all clips)."""
    per_unit, exact = [], []
    for values in units:
        pairs = list(combinations(values, 2))
        per_unit.append(float(np.mean([text_similarity(a, b) for a, b in pairs])))
        exact.extend(exact_match(a, b) for a, b in pairs)
    return np.array(per_unit), float(np.mean(exact))


def field_agreement(
    rubric_field: RubricField,
    answers: dict[int, dict[str, Any]],
    *,
    n_boot: int = 1000,
    random_state: int | None = 0,
) -> dict[str, Any]:
    """Agreement on one field. ``answers`` is {clip id: {annotator: value}}; clips with one answer drop out."""
    units = {clip: by_user for clip, by_user in answers.items() if len(by_user) >= 2}
    annotators = sorted({user for by_user in units.values() for user in by_user})
    pairs = [values_agree(rubric_field, a, b)
             for by_user in units.values() for a, b in combinations(by_user.values(), 2)]
    result: dict[str, Any] = {
        "n_items": len(units),
        "n_annotators": len(annotators),
        # Raw agreement by the field's own rule (tolerance, similarity threshold): comparable across fields.
        "pairwise_agreement": round(float(np.mean(pairs)), 4) if pairs else None,
    }
    if rubric_field.type == "text":
        result.update(metric="mean_pairwise_similarity", level="text", value=None, ci=[None, None])
        if units:
            texts = [[str(v) for v in by_user.values()] for by_user in units.values()]
            per_unit, exact = _text_agreement(texts)
            value = float(per_unit.mean())
            rng = np.random.default_rng(random_state)
            # Similarities are computed once: a resample of clips is a resample of their per-clip means.
            boots = [float(per_unit[rng.integers(0, len(texts), len(texts))].mean())
                     for _ in range(n_boot if len(texts) >= MIN_ITEMS_FOR_INTERVAL else 0)]
            ci = _interval(boots)  # empty (no interval) below MIN_ITEMS_FOR_INTERVAL clips
            result.update(value=round(value, 4), ci=ci, exact_match=round(exact, 4),
                          threshold=rubric_field.similarity_threshold)
        return result
    level = LEVELS[rubric_field.type]
    result.update(metric="krippendorff_alpha", level=level, value=None, ci=[None, None])
    if not units:
        return result
    clip_ids = sorted(units)
    # coders × units, None where an annotator did not answer that clip
    data = [[_coded(rubric_field, units[c].get(user)) for c in clip_ids] for user in annotators]
    coded = np.array(data, dtype=object)  # built once; each resample takes columns of it
    domain = _domain(rubric_field)

    def alpha(columns: np.ndarray) -> float:
        try:
            return float(agreement.krippendorff_alpha(coded[:, columns], level=level, value_domain=domain))
        except ValueError:
            return float("nan")

    everything = np.arange(len(clip_ids))
    value = alpha(everything)
    rng = np.random.default_rng(random_state)
    # Resampling a handful of clips says nothing: no bootstrap (and no interval) below MIN_ITEMS_FOR_INTERVAL.
    rounds = n_boot if len(clip_ids) >= MIN_ITEMS_FOR_INTERVAL else 0
    boots = [alpha(rng.integers(0, len(clip_ids), len(clip_ids))) for _ in range(rounds)]
    result.update(value=_rounded(value),
                  ci=_interval(boots))
    if rubric_field.type == "choice":
        ratings = np.array(data, dtype=object).T  # units × raters
        for name, statistic in (("fleiss_kappa", agreement.fleiss_kappa), ("gwet_ac1", agreement.gwet_ac1),
                                ("percent_agreement", agreement.percent_agreement)):
            try:
                result[name] = _rounded(float(statistic(ratings)))
            except ValueError:
                result[name] = None
    return result


def _domain(rubric_field: RubricField) -> list[Any] | None:
    if rubric_field.type == "ordinal":
        return [float(i) for i in range(len(rubric_field.choices))]
    if rubric_field.type == "choice":
        return list(rubric_field.choices)
    return None


def _rounded(value: float) -> float | None:
    return round(value, 4) if np.isfinite(value) else None


def _submitted(project: Project) -> dict[int, dict[str, dict[str, Any]]]:
    """{clip id: {annotator: fields}} for current submitted answers valid under the current rubric."""
    rubric = project.rubric
    answers: dict[int, dict[str, dict[str, Any]]] = defaultdict(dict)
    for record in current_annotations(project):
        if record.status == "submitted" and record.fields is not None and not rubric.validate_fields(record.fields):
            answers[record.clip_id][record.user] = record.fields
    return answers


def _adjudicated(project: Project) -> dict[int, dict[str, Any]]:
    from sqlalchemy import func, select

    with project.session() as session:
        latest = select(func.max(Review.id)).group_by(Review.clip_id)
        rows = session.execute(select(Review.clip_id, Review.fields).where(Review.id.in_(latest))).all()
    return {clip_id: fields for clip_id, fields in rows}


def annotator_agreement(
    rubric: Rubric,
    answers: dict[int, dict[str, dict[str, Any]]],
    adjudicated: dict[int, dict[str, Any]],
    seconds: dict[str, list[float]],
) -> dict[str, dict[str, Any]]:
    """Per annotator: agreement with the others, with the gold answer (leaving the annotator out), and pace."""
    pair_hits: dict[str, list[float]] = defaultdict(list)
    gold_hits: dict[str, list[float]] = defaultdict(list)
    clips: dict[str, int] = defaultdict(int)
    for clip_id, by_user in answers.items():
        for user, fields in by_user.items():
            clips[user] += 1
            others = {u: f for u, f in by_user.items() if u != user}
            for other in others.values():
                pair_hits[user].extend(
                    float(values_agree(f, fields.get(f.name), other.get(f.name))) for f in rubric.fields
                )
            adjudication = adjudicated.get(clip_id)
            for rubric_field in rubric.fields:
                # Gold per field: the reviewer's value, else the other annotators' consensus on this field.
                if adjudication is not None:
                    gold, found = adjudication.get(rubric_field.name), True
                elif others:
                    values = [other.get(rubric_field.name) for other in others.values()]
                    gold, found, _ = field_consensus(rubric_field, values, "majority")
                else:
                    found = False
                if found:
                    gold_hits[user].append(float(values_agree(rubric_field, fields.get(rubric_field.name), gold)))
    users = sorted(set(clips) | set(seconds))
    return {
        user: {
            "clips": clips.get(user, 0),
            "agreement_with_others": round(float(np.mean(pair_hits[user])), 4) if pair_hits[user] else None,
            "agreement_with_gold": round(float(np.mean(gold_hits[user])), 4) if gold_hits[user] else None,
            "gold_comparisons": len(gold_hits[user]),  # (clip, field) pairs with a gold value to compare
            "median_seconds": round(statistics.median(seconds[user]), 1) if seconds.get(user) else None,
        }
        for user in users
    }


def agreement_report(project: Project, *, n_boot: int = 1000, random_state: int | None = 0) -> dict[str, Any]:
    """Agreement per rubric field and per annotator (see the module docstring for what each figure means)."""
    if n_boot < 0:
        raise ValueError(f"n_boot must be zero or more, got {n_boot}")
    rubric = project.rubric
    answers = _submitted(project)
    fields = {}
    for rubric_field in rubric.fields:
        name = rubric_field.name
        per_clip = {
            clip: {user: f[name] for user, f in by_user.items() if f.get(name) is not None}
            for clip, by_user in answers.items()
        }
        fields[rubric_field.name] = field_agreement(rubric_field, per_clip, n_boot=n_boot, random_state=random_state)
    seconds: dict[str, list[float]] = defaultdict(list)
    for record in current_annotations(project):
        if record.status == "submitted" and record.seconds_spent is not None:
            seconds[record.user].append(record.seconds_spent)
    with project.session() as session:
        from sqlalchemy import select

        annotator_names = set(session.scalars(select(User.name).where(User.role == "annotator")))
    people = annotator_agreement(rubric, answers, _adjudicated(project), seconds)
    return {
        "fields": fields,
        "annotators": {name: row for name, row in people.items() if name in annotator_names or row["clips"]},
        "clips_with_overlap": sum(1 for by_user in answers.values() if len(by_user) >= 2),
        "clips_answered": len(answers),
    }

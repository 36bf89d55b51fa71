"""Agreement per rubric field and per annotator, for a project: what `cliptune agree` prints.

The statistic follows the field's type: Krippendorff's alpha, nominal for choices, ordinal for ordinal fields
(ranks in the rubric's order), interval for integers, numbers and times (times in seconds). Alpha handles any
number of annotators per clip and missing answers, so one figure serves every field. Nominal fields also get
Fleiss' kappa, Gwet's AC1 (which stays meaningful for rare events, where kappa collapses although annotators
agree) and percent agreement. Free-text fields get a similarity agreement: the mean over clips of the mean
pairwise :func:`curation.review.text_similarity.text_similarity` (symmetric chrF on normalised text), with the share of
pairs that match exactly beside it. Confidence intervals: percentile bootstrap over clips (none for fewer than
five clips with two answers or more: resampling two clips says nothing). Alpha and its bootstrap come from
per-clip sufficient statistics (:mod:`curation.review.field_statistics`): the same draws and the same figures as one
alpha per resample, in a few matrix products; the report resamples fields with as many clips together.

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

import json
import statistics
from collections import defaultdict
from itertools import combinations
from typing import Any

import numpy as np

from curation.records.annotations import current_annotations
from curation.records.store import Project, Review, User
from curation.review import agreement
from curation.review.consensus import field_consensus, values_agree
from curation.review.field_statistics import (
    LEVELS,
    MIN_ITEMS_FOR_INTERVAL,
    FieldStatistics,
    alphas_with_intervals,
    choice_agreement,
    coded,
    percentile_interval,
)
from curation.review.text_similarity import exact_match, text_similarity
from curation.rubric import Rubric, RubricField


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
    if rubric_field.type == "text":
        return _text_field_agreement(rubric_field, units, n_boot, random_state)
    stats = FieldStatistics.from_answers(rubric_field, units)
    return _alpha_field_agreement(rubric_field, units, stats, alphas_with_intervals([stats], n_boot, random_state)[0])


def _counts(units: dict[int, dict[str, Any]]) -> dict[str, Any]:
    annotators = {user for by_user in units.values() for user in by_user}
    return {"n_items": len(units), "n_annotators": len(annotators)}


def _text_field_agreement(
    rubric_field: RubricField, units: dict[int, dict[str, Any]], n_boot: int, random_state: int | None
) -> dict[str, Any]:
    pairs = [values_agree(rubric_field, a, b)
             for by_user in units.values() for a, b in combinations(by_user.values(), 2)]
    result = _counts(units) | {
        # Raw agreement by the field's own rule (tolerance, similarity threshold): comparable across fields.
        "pairwise_agreement": round(float(np.mean(pairs)), 4) if pairs else None,
    }
    result.update(metric="mean_pairwise_similarity", level="text", value=None, ci=[None, None])
    if units:
        texts = [[str(v) for v in by_user.values()] for by_user in units.values()]
        per_unit, exact = _text_agreement(texts)
        value = float(per_unit.mean())
        rng = np.random.default_rng(random_state)
        # Similarities are computed once: a resample of clips is a resample of their per-clip means.
        boots = [float(per_unit[rng.integers(0, len(texts), len(texts))].mean())
                 for _ in range(n_boot if len(texts) >= MIN_ITEMS_FOR_INTERVAL else 0)]
        ci = percentile_interval(boots)  # empty (no interval) below MIN_ITEMS_FOR_INTERVAL clips
        result.update(value=round(value, 4), ci=ci, exact_match=round(exact, 4),
                      threshold=rubric_field.similarity_threshold)
    return result


def _alpha_field_agreement(
    rubric_field: RubricField, units: dict[int, dict[str, Any]], stats: FieldStatistics, alpha: dict[str, Any]
) -> dict[str, Any]:
    """The report row of a non-text field from its per-clip statistics and its alpha with interval."""
    rows = stats.units()
    pairs, agreeing = rows[:, 1].sum(), rows[:, 2].sum()
    result = _counts(units) | {"pairwise_agreement": round(float(agreeing / pairs), 4) if pairs else None}
    result.update(metric="krippendorff_alpha", level=LEVELS[rubric_field.type], value=None, ci=[None, None])
    if not units:
        return result
    result.update(value=alpha["value"], ci=alpha["ci"])
    if rubric_field.type == "choice":
        if rows[:, 3].any():  # labels outside the choices: the statistics count them as categories of their own
            figures = _choice_agreement_from_labels(rubric_field, units)
        else:
            figures = choice_agreement(stats)
        result.update({name: _rounded(value) for name, value in figures.items()})
    return result


def _choice_agreement_from_labels(rubric_field: RubricField, units: dict[int, dict[str, Any]]) -> dict[str, float]:
    annotators = sorted({user for by_user in units.values() for user in by_user})
    ratings = np.array([[coded(rubric_field, units[c].get(user)) for user in annotators] for c in sorted(units)],
                       dtype=object)  # units × raters
    figures = {}
    for name, statistic in (("fleiss_kappa", agreement.fleiss_kappa), ("gwet_ac1", agreement.gwet_ac1),
                            ("percent_agreement", agreement.percent_agreement)):
        try:
            figures[name] = float(statistic(ratings))
        except ValueError:
            figures[name] = float("nan")
    return figures


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
    """Agreement per rubric field and per annotator (see the module docstring for what each figure means).

    Summed from the per-clip rows stored in the project (:mod:`curation.review.agreement_store`), which are brought
    up to date first: only clips whose answers or review changed are computed again.
    """
    from sqlalchemy import select

    from curation.review.agreement_store import WATERMARK, AgreementState, refresh_agreement, stored_rows
    from curation.review.derived import DerivedWatermark, store_report, stored_report

    if n_boot < 0:
        raise ValueError(f"n_boot must be zero or more, got {n_boot}")
    refresh_agreement(project)
    with project.session() as session:
        mark = session.get(DerivedWatermark, WATERMARK)
        annotators = sorted(session.scalars(select(User.name).where(User.role == "annotator")))
    # The whole report is kept too: `export` after `agree` (or a second `agree`) reads it instead of resampling.
    key = json.dumps([mark.rubric_version, mark.annotation_id, mark.review_id, n_boot, random_state, annotators])
    kept = stored_report(project, "agreement_report", key)
    if kept is not None:
        return kept
    state = AgreementState(project.rubric)
    for clip_id, row in stored_rows(project):
        state.apply(clip_id, row)
    if state.has_invalid_labels():  # values alpha refuses: the table-based figures, from the answers
        report = agreement_report_from_answers(project, n_boot=n_boot, random_state=random_state)
    else:
        report = state.report(n_boot=n_boot, random_state=random_state, annotator_names=set(annotators))
    store_report(project, "agreement_report", key, report)
    return report


def agreement_report_from_answers(project: Project, *, n_boot: int = 1000, random_state: int | None = 0
                                  ) -> dict[str, Any]:
    """:func:`agreement_report` computed from every current answer, with nothing stored: the reference the stored
    path is tested against, and the path for answers alpha refuses."""
    if n_boot < 0:
        raise ValueError(f"n_boot must be zero or more, got {n_boot}")
    rubric = project.rubric
    answers = _submitted(project)
    fields, alpha_fields = {}, []
    for rubric_field in rubric.fields:
        name = rubric_field.name
        per_clip = {
            clip: {user: f[name] for user, f in by_user.items() if f.get(name) is not None}
            for clip, by_user in answers.items()
        }
        if rubric_field.type == "text":
            fields[name] = field_agreement(rubric_field, per_clip, n_boot=n_boot, random_state=random_state)
        else:
            units = {clip: by_user for clip, by_user in per_clip.items() if len(by_user) >= 2}
            alpha_fields.append((rubric_field, units, FieldStatistics.from_answers(rubric_field, units)))
            fields[name] = {}  # keeps the rubric's field order
    # All alpha fields at once: fields with as many clips share one set of resample weights.
    alphas = alphas_with_intervals([stats for _, _, stats in alpha_fields], n_boot, random_state)
    for (rubric_field, units, stats), alpha in zip(alpha_fields, alphas, strict=True):
        fields[rubric_field.name] = _alpha_field_agreement(rubric_field, units, stats, alpha)
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

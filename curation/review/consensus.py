"""Consensus of one clip's answers: when two answers agree, and what a clip's gold answer or queue entry is.

Pure functions (no store). Two answers agree on a field by that field's rule: choices must be equal; integers,
numbers and times must be within the field's ``tolerance``; free text must reach the field's
``similarity_threshold`` (:func:`curation.review.text_similarity.text_similarity`). A clip's gold answer is, in this
order: the latest reviewer adjudication; the answers of all its annotators when they agree on every field (one
annotator's answer counts as ``single``); the per-field majority when ``policy="majority"``; otherwise the clip
needs review. :mod:`curation.review.resolve` applies this to every clip of a project and keeps the result.

Example::

    resolve_answers(rubric, {"ana": {...}, "ben": {...}}, policy="majority")["fields"]
"""

from __future__ import annotations

import statistics
from itertools import combinations
from typing import Any

from curation.errors import CliptuneError, RubricError
from curation.review.text_similarity import text_similarity
from curation.rubric import Rubric, RubricField

POLICIES = ("unanimous", "majority")


def values_agree(rubric_field: RubricField, a: Any, b: Any) -> bool:
    """Whether two values of one field agree by the field's rule (tolerance, similarity threshold)."""
    if a is None or b is None:
        return a is None and b is None
    if rubric_field.type in ("choice", "ordinal"):
        return a == b
    if rubric_field.type == "text":
        return text_similarity(a, b) >= rubric_field.similarity_threshold
    return abs(rubric_field.to_number(a) - rubric_field.to_number(b)) <= rubric_field.tolerance + 1e-9


def _representative(rubric_field: RubricField, values: list[Any]) -> Any:
    """One value standing for agreeing answers: the mode, the value nearest the median, or the medoid text."""
    if rubric_field.type in ("choice", "ordinal") or any(v is None for v in values):
        return max(values, key=values.count)
    if rubric_field.type == "text":
        return max(values, key=lambda v: sum(text_similarity(v, other) for other in values))
    median = statistics.median(rubric_field.to_number(v) for v in values)
    return min(values, key=lambda v: (abs(rubric_field.to_number(v) - median), rubric_field.to_number(v)))


def field_consensus(rubric_field: RubricField, values: list[Any], policy: str) -> tuple[Any, bool, float]:
    """(consensus value or None, found, share of disagreeing pairs) for one field's answers."""
    pairs = list(combinations(range(len(values)), 2))
    agree = {(i, j): values_agree(rubric_field, values[i], values[j]) for i, j in pairs}
    disagreement = sum(not ok for ok in agree.values()) / len(pairs) if pairs else 0.0
    if all(agree.values()):
        return _representative(rubric_field, values), True, disagreement
    if policy == "majority":
        support = [
            sum(1 for j in range(len(values)) if j == i or agree[(min(i, j), max(i, j))]) for i in range(len(values))
        ]
        best = max(support)
        if best * 2 > len(values):
            winners = [values[i] for i in range(len(values)) if support[i] == best]
            supporters = [
                values[j] for j in range(len(values)) if any(values_agree(rubric_field, w, values[j]) for w in winners)
            ]
            return _representative(rubric_field, supporters), True, disagreement
    return None, False, disagreement


def resolve_answers(rubric: Rubric, answers: dict[str, dict[str, Any]], policy: str = "unanimous") -> dict[str, Any]:
    """Consensus of several annotators' fields for one clip (pure function: no store).

    Returns ``{"fields": consensus or None, "disagreeing": [field names], "disagreement": 0–1, "source"}``.
    """
    if policy not in POLICIES:
        raise CliptuneError(f"policy {policy!r}: choose one of {', '.join(POLICIES)}")
    names = sorted(answers)
    consensus: dict[str, Any] = {}
    disagreeing: list[str] = []
    shares: list[float] = []
    unanimous = True
    for rubric_field in rubric.fields:
        values = [answers[name].get(rubric_field.name) for name in names]
        value, found, share = field_consensus(rubric_field, values, policy)
        shares.append(share)
        if share > 0:
            disagreeing.append(rubric_field.name)
            unanimous = False
        if found:
            consensus[rubric_field.name] = value
    complete = len(consensus) == len(rubric.fields)
    source = "single" if len(names) == 1 else ("unanimous" if unanimous else "majority")
    return {
        "fields": consensus if complete else None,
        "disagreeing": disagreeing,
        "disagreement": sum(shares) / len(shares),
        "source": source if complete else None,
    }


def resolve_clip(rubric: Rubric, policy: str, review: tuple[dict[str, Any], str] | None,
                 records: list[Any], *, normalised_under: str | None = None) -> dict[str, Any]:
    """One clip's resolution from its latest review ``(fields, reviewer)`` and its current answer records.

    Answers whose ``rubric_version`` is ``normalised_under`` are taken as they are: every writer stores answers
    normalised by the rubric of their version, so normalising them again would only cost time.

    Returns a plain row: ``state`` (gold | review | unlabelled), the gold ``fields``/``output_text``/``source``, or the
    queue's ``disagreement``/``reason``/``disagreeing``; ``annotators``, ``rare`` and ``invalid`` (answers, or the
    review, that no longer validate under the current rubric).
    """
    row: dict[str, Any] = {"state": "unlabelled", "fields": None, "output_text": None, "source": None,
                           "annotators": [], "disagreement": None, "rare": False, "disagreeing": [], "reason": None,
                           "invalid": 0}
    if review is not None:
        try:
            fields = rubric.normalise(review[0])
        except RubricError:
            row["invalid"] += 1
        else:
            row.update(state="gold", fields=fields, output_text=rubric.render(fields), source="adjudicated",
                       annotators=[review[1]])
            return row
    answers: dict[str, dict[str, Any]] = {}
    unclear: list[str] = []
    for record in records:
        if record.status == "unclear":
            unclear.append(record.user)
        if record.status != "submitted" or record.fields is None:
            continue
        if normalised_under is not None and record.rubric_version == normalised_under:
            answers[record.user] = record.fields
            continue
        try:
            answers[record.user] = rubric.normalise(record.fields)
        except RubricError:
            row["invalid"] += 1
    if not answers and not unclear:
        return row
    rare_values = {f.name: set(f.rare) for f in rubric.fields if f.rare}
    row["rare"] = any(a.get(name) in values for a in answers.values() for name, values in rare_values.items())
    if unclear:
        row.update(state="review", disagreement=1.0, reason="unclear",
                   annotators=sorted(set(answers) | set(unclear)))
        return row
    outcome = resolve_answers(rubric, answers, policy)
    row["annotators"] = sorted(answers)
    if outcome["fields"] is not None:
        row.update(state="gold", fields=outcome["fields"], output_text=rubric.render(outcome["fields"]),
                   source=outcome["source"])
    else:
        row.update(state="review", disagreement=round(outcome["disagreement"], 6), reason="disagreement",
                   disagreeing=list(outcome["disagreeing"]))
    return row

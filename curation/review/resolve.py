"""Gold answers and the disagreement queue.

Two answers agree on a field by that field's rule: choices must be equal; integers, numbers and times must be
within the field's ``tolerance``; free text must reach the field's ``similarity_threshold``
(:func:`curation.review.text_similarity.text_similarity`). A clip's gold answer is, in this order: the latest reviewer
adjudication; the answers of all its annotators when they agree on every field (one annotator's answer counts as
``single``); the per-field majority when ``policy="majority"``; otherwise the clip needs review. The review queue
puts rare events first, then the clips annotators disagree on most.

Example::

    result = resolve(project, policy="majority")
    result.summary()        # {"gold": 812, "needs_review": 37, "by_source": {...}, ...}
    result.needs_review[0]  # the clip to review first
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

from sqlalchemy import func, select

from curation.errors import CliptuneError, RubricError
from curation.records.annotations import current_annotations
from curation.records.store import Clip, Project, Review, User
from curation.review.text_similarity import text_similarity
from curation.rubric import Rubric, RubricField

POLICIES = ("unanimous", "majority")


@dataclass(frozen=True)
class Gold:
    clip_id: int
    fields: dict[str, Any]
    output_text: str
    source: str  # adjudicated | unanimous | single | majority
    annotators: tuple[str, ...]


@dataclass(frozen=True)
class QueueItem:
    clip_id: int
    disagreement: float  # share of (annotator pair, field) comparisons that disagree, 0–1
    rare: bool  # some annotator saw a rare event
    fields: tuple[str, ...]  # fields in disagreement
    annotators: tuple[str, ...]
    reason: str  # disagreement | unclear


@dataclass
class Resolution:
    policy: str
    gold: dict[int, Gold] = field(default_factory=dict)
    needs_review: list[QueueItem] = field(default_factory=list)
    unlabelled: int = 0
    invalid_answers: int = 0  # answers that no longer validate under the current rubric

    def summary(self) -> dict[str, Any]:
        by_source: dict[str, int] = {}
        for gold in self.gold.values():
            by_source[gold.source] = by_source.get(gold.source, 0) + 1
        return {
            "policy": self.policy,
            "gold": len(self.gold),
            "needs_review": len(self.needs_review),
            "unlabelled": self.unlabelled,
            "invalid_answers": self.invalid_answers,
            "by_source": dict(sorted(by_source.items())),
        }


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


def resolve(project: Project, policy: str = "unanimous") -> Resolution:
    """Gold answers for every labelled clip, and the ordered review queue for the rest."""
    if policy not in POLICIES:
        raise CliptuneError(f"--policy {policy}: choose one of {', '.join(POLICIES)}")
    rubric = project.rubric
    result = Resolution(policy=policy)
    with project.session() as session:
        latest_review = select(func.max(Review.id)).group_by(Review.clip_id)
        reviews = session.execute(
            select(Review, User.name).join(User, User.id == Review.reviewer_id).where(Review.id.in_(latest_review))
        ).all()
        clip_ids = list(session.scalars(select(Clip.id)))
    for review, reviewer in reviews:
        try:
            fields = rubric.normalise(review.fields)
        except RubricError:
            result.invalid_answers += 1
            continue
        result.gold[review.clip_id] = Gold(review.clip_id, fields, rubric.render(fields), "adjudicated", (reviewer,))

    by_clip: dict[int, dict[str, dict[str, Any]]] = {}
    unclear: dict[int, list[str]] = {}
    for record in current_annotations(project):
        if record.clip_id in result.gold:
            continue
        if record.status == "unclear":
            unclear.setdefault(record.clip_id, []).append(record.user)
        if record.status != "submitted" or record.fields is None:
            continue
        try:
            by_clip.setdefault(record.clip_id, {})[record.user] = rubric.normalise(record.fields)
        except RubricError:
            result.invalid_answers += 1

    rare_values = {f.name: set(f.rare) for f in rubric.fields if f.rare}
    for clip_id in clip_ids:
        if clip_id in result.gold:
            continue
        answers = by_clip.get(clip_id, {})
        if not answers and clip_id not in unclear:
            result.unlabelled += 1
            continue
        rare = any(a.get(name) in values for a in answers.values() for name, values in rare_values.items())
        if clip_id in unclear:
            annotators = tuple(sorted(set(answers) | set(unclear[clip_id])))
            result.needs_review.append(QueueItem(clip_id, 1.0, rare, (), annotators, "unclear"))
            continue
        outcome = resolve_answers(rubric, answers, policy)
        if outcome["fields"] is not None:
            result.gold[clip_id] = Gold(clip_id, outcome["fields"], rubric.render(outcome["fields"]),
                                        outcome["source"], tuple(sorted(answers)))
        else:
            result.needs_review.append(
                QueueItem(clip_id, round(outcome["disagreement"], 6), rare, tuple(outcome["disagreeing"]),
                          tuple(sorted(answers)), "disagreement")
            )
    result.needs_review.sort(key=lambda item: (not item.rare, -item.disagreement, item.clip_id))
    return result

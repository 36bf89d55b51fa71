"""Gold answers and the review queue of a project, stored per clip and kept current.

What a clip's gold answer is comes from :mod:`curation.review.consensus` (the latest adjudication, else agreeing
answers, else the per-field majority under ``policy="majority"``, else the clip needs review). Resolving 100,000
clips takes seconds, so each clip's outcome is stored in the project (``clip_resolution``, one row per policy and
clip) with the answer and review ids it was computed from, and a watermark says up to which answer, review and clip
the rows are current. Every read first resolves again only the clips whose answers or review arrived after the
watermark. Answers and reviews are append-only, so ids alone tell what changed.

Several processes may refresh at once (the app, a CLI verb): rows are computed from a consistent snapshot outside
any write lock, written in short batches, and a row is only ever replaced by one computed from newer answers, so a
slow refresher cannot put back an older outcome. The watermark only moves forward, after the rows it covers.

Example::

    result = resolve(project, policy="majority")
    result.summary()              # {"gold": 812, "needs_review": 37, "by_source": {...}, ...}
    review_queue(project, limit=20)[0]   # the clip to review first
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import JSON, Boolean, Float, Integer, String, Text, func, select
from sqlalchemy.orm import Mapped, mapped_column

from curation.errors import CliptuneError
from curation.records.store import Base, Clip, Project
from curation.review.consensus import POLICIES, resolve_clip
from curation.review.derived import refresh


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


class ClipResolution(Base):
    """A clip's stored outcome under one policy: derived state, rebuilt from answers and reviews at any time."""

    __tablename__ = "clip_resolution"
    policy: Mapped[str] = mapped_column(String(16), primary_key=True)
    clip_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    rubric_version: Mapped[str] = mapped_column(String(32))
    annotation_stamp: Mapped[int] = mapped_column(Integer)  # the clip's newest answer id it was computed from
    review_stamp: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16), index=True)  # gold | review | unlabelled
    fields: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    output_text: Mapped[str | None] = mapped_column(Text)
    source: Mapped[str | None] = mapped_column(String(16))
    annotators: Mapped[list[str]] = mapped_column(JSON)
    disagreement: Mapped[float | None] = mapped_column(Float)
    rare: Mapped[bool] = mapped_column(Boolean)
    disagreeing: Mapped[list[str]] = mapped_column(JSON)
    reason: Mapped[str | None] = mapped_column(String(16))
    invalid: Mapped[int] = mapped_column(Integer)


def refresh_resolution(project: Project, policy: str = "unanimous") -> int:
    """Bring the stored resolution up to date; returns how many clips were resolved again (0: it was current)."""
    if policy not in POLICIES:
        raise CliptuneError(f"--policy {policy}: choose one of {', '.join(POLICIES)}")
    rubric, version = project.rubric, project.rubric_version

    def compute(review: tuple | None, records: list[Any]) -> dict[str, Any]:
        row = resolve_clip(rubric, policy, (review[1], review[2]) if review else None, records,
                           normalised_under=version)
        return row | {"policy": policy}

    return refresh(project, f"resolution:{policy}", ClipResolution, compute)


QUEUE_ORDER = (ClipResolution.rare.desc(), ClipResolution.disagreement.desc(), ClipResolution.clip_id)
QUEUE_COLUMNS = (ClipResolution.clip_id, ClipResolution.disagreement, ClipResolution.rare, ClipResolution.disagreeing,
                 ClipResolution.annotators, ClipResolution.reason)


def _queue_item(row: Any) -> QueueItem:
    clip_id, disagreement, rare, disagreeing, annotators, reason = row
    return QueueItem(clip_id, disagreement, bool(rare), tuple(disagreeing), tuple(annotators), reason)


def resolve(project: Project, policy: str = "unanimous") -> Resolution:
    """Gold answers for every labelled clip, and the ordered review queue for the rest (rare events first, then
    the clips annotators disagree on most)."""
    refresh_resolution(project, policy)
    result = Resolution(policy=policy)
    table = ClipResolution
    with project.session() as session:
        n_clips = session.scalar(select(func.count()).select_from(Clip)) or 0
        rows = session.execute(select(table.clip_id, table.state, table.fields, table.output_text, table.source,
                                      table.annotators, table.invalid).where(table.policy == policy)
                               .order_by(table.clip_id)).all()
        queue = session.execute(select(*QUEUE_COLUMNS).where(table.policy == policy, table.state == "review")
                                .order_by(*QUEUE_ORDER)).all()
    for clip_id, state, fields, output_text, source, annotators, invalid in rows:
        result.invalid_answers += invalid
        if state == "gold":
            result.gold[clip_id] = Gold(clip_id, fields, output_text, source, tuple(annotators))
    result.needs_review = [_queue_item(row) for row in queue]
    result.unlabelled = n_clips - len(result.gold) - len(result.needs_review)
    return result


def resolution_summary(project: Project, policy: str = "unanimous") -> dict[str, Any]:
    """:meth:`Resolution.summary` without reading every clip's answer: counts from the stored rows."""
    refresh_resolution(project, policy)
    table = ClipResolution
    with project.session() as session:
        n_clips = session.scalar(select(func.count()).select_from(Clip)) or 0
        counts = dict(session.execute(select(table.state, func.count()).where(table.policy == policy)
                                      .group_by(table.state)).all())
        sources = dict(session.execute(select(table.source, func.count()).where(
            table.policy == policy, table.state == "gold").group_by(table.source)).all())
        invalid = session.scalar(select(func.sum(table.invalid)).where(table.policy == policy)) or 0
    gold, review = counts.get("gold", 0), counts.get("review", 0)
    return {"policy": policy, "gold": gold, "needs_review": review, "unlabelled": n_clips - gold - review,
            "invalid_answers": int(invalid), "by_source": dict(sorted(sources.items()))}


def review_queue(project: Project, policy: str = "unanimous", *, limit: int | None = None,
                 offset: int = 0) -> list[QueueItem]:
    """The review queue in order (rare events first, then the most disputed), ``limit`` items from ``offset``."""
    refresh_resolution(project, policy)
    query = select(*QUEUE_COLUMNS).where(ClipResolution.policy == policy, ClipResolution.state == "review") \
        .order_by(*QUEUE_ORDER).offset(offset)
    if limit is not None:
        query = query.limit(limit)
    with project.session() as session:
        return [_queue_item(row) for row in session.execute(query)]

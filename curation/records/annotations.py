"""Writing and reading annotations and reviews. Append-only: an edit is a new row; the latest is current."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from curation.errors import RubricError, StoreError
from curation.records.store import (
    ANNOTATION_SOURCES,
    ANNOTATION_STATUSES,
    Annotation,
    Clip,
    Project,
    Review,
    User,
)


@dataclass(frozen=True)
class AnnotationRecord:
    id: int
    clip_id: int
    user: str
    fields: dict[str, Any] | None
    output_text: str | None
    status: str
    seconds_spent: float | None
    rubric_version: str
    source: str
    comment: str | None
    created_at: datetime


def add_annotation(
    project: Project,
    clip_id: int,
    user: str,
    *,
    fields: dict[str, Any] | None = None,
    output_text: str | None = None,
    seconds_spent: float | None = None,
    status: str = "submitted",
    source: str = "ui",
    comment: str | None = None,
    external_id: str | None = None,
) -> int:
    """Record one annotation and return its id.

    A submitted annotation needs valid ``fields`` or an ``output_text`` that parses through the rubric; the
    stored fields are normalised and the stored text is the rubric's rendering of them. Skipped and unclear
    annotations may carry no fields, and an unclear one needs a comment saying why.
    """
    if status not in ANNOTATION_STATUSES:
        raise StoreError(f"status {status!r}: choose one of {', '.join(ANNOTATION_STATUSES)}")
    if source not in ANNOTATION_SOURCES:
        raise StoreError(f"source {source!r}: choose one of {', '.join(ANNOTATION_SOURCES)}")
    if seconds_spent is not None and not seconds_spent >= 0:
        raise StoreError(f"seconds_spent must be zero or more, got {seconds_spent}")
    rubric = project.rubric
    if status == "submitted":
        if fields is None and output_text is None:
            raise RubricError("a submitted annotation needs fields or an output text")
        fields = rubric.normalise(fields) if fields is not None else rubric.parse(output_text)
        output_text = rubric.render(fields)
    elif status == "unclear" and not (comment or "").strip():
        raise StoreError("an 'unclear' annotation needs a comment that says what is unclear")
    with project.write() as session:
        user_id = session.scalar(select(User.id).where(User.name == user))
        if user_id is None:
            raise StoreError(f"no user {user!r} in this project; add it with `cliptune users add`")
        if session.get(Clip, clip_id) is None:
            raise StoreError(f"no clip {clip_id} in this project")
        row = Annotation(
            clip_id=clip_id,
            user_id=user_id,
            rubric_version=project.rubric_version,
            fields=fields,
            output_text=output_text,
            seconds_spent=seconds_spent,
            status=status,
            source=source,
            comment=comment,
            external_id=external_id,
        )
        session.add(row)
        session.flush()
        return row.id


def latest_answer_ids() -> Any:
    """A subquery of the current (latest) answer id of every (clip, annotator): for queries that aggregate current
    answers in the database instead of reading them all."""
    return select(func.max(Annotation.id)).group_by(Annotation.clip_id, Annotation.user_id)


def current_annotations(
    project: Project, *, clip_ids: list[int] | None = None, user: str | None = None, history: bool = False
) -> list[AnnotationRecord]:
    """The current annotation per (clip, user) — or every version with ``history=True`` — oldest first."""
    # Plain rows, not ORM objects: at 300,000 answers the ORM's identity map costs more than the query itself.
    table = Annotation.__table__.c
    with project.session() as session:
        query = select(table.id, table.clip_id, User.name, table.fields, table.output_text, table.status,
                       table.seconds_spent, table.rubric_version, table.source, table.comment,
                       table.created_at).join(User, User.id == table.user_id)
        if not history:
            latest = select(func.max(table.id)).group_by(table.clip_id, table.user_id)
            if clip_ids is not None:
                latest = latest.where(table.clip_id.in_(clip_ids))
            query = query.where(table.id.in_(latest))
        if clip_ids is not None:
            query = query.where(table.clip_id.in_(clip_ids))
        if user is not None:
            query = query.where(User.name == user)
        rows = session.execute(query.order_by(table.id)).all()
    return [AnnotationRecord(*row) for row in rows]


def add_review(
    project: Project,
    clip_id: int,
    reviewer: str,
    *,
    reason: str,
    annotation_id: int | None = None,
    fields: dict[str, Any] | None = None,
) -> int:
    """Record a reviewer's gold answer for a clip: an annotation chosen as is, or edited fields. Needs a reason."""
    if not reason or not reason.strip():
        raise StoreError("a review needs a reason: say why this answer is the gold one")
    with project.write() as session:
        reviewer_row = session.scalar(select(User).where(User.name == reviewer))
        if reviewer_row is None:
            raise StoreError(f"no user {reviewer!r} in this project")
        if reviewer_row.role not in ("reviewer", "lead"):
            raise StoreError(f"{reviewer!r} is an {reviewer_row.role}; only reviewers and leads can review")
        if fields is None:
            if annotation_id is None:
                raise StoreError("a review needs the chosen annotation or edited fields")
            chosen = session.get(Annotation, annotation_id)
            if chosen is None or chosen.clip_id != clip_id or chosen.fields is None:
                raise StoreError(f"annotation {annotation_id} is not a submitted answer for clip {clip_id}")
            fields = chosen.fields
        fields = project.rubric.normalise(fields)
        row = Review(
            clip_id=clip_id,
            reviewer_id=reviewer_row.id,
            annotation_id=annotation_id,
            rubric_version=project.rubric_version,
            fields=fields,
            output_text=project.rubric.render(fields),
            reason=reason.strip(),
        )
        session.add(row)
        session.flush()
        return row.id

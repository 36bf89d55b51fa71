"""Derived state stored in the project and kept current: the machinery shared by the stored resolution
(:mod:`curation.review.resolve`) and the stored agreement statistics (:mod:`curation.review.agreement_store`).

Answers and reviews are append-only, so their ids say what changed: a watermark records up to which answer, review
and clip a piece of derived state is current, and a refresh recomputes only the clips with an answer or review
after it. Rows are computed from a consistent snapshot (ids bounded by the watermark read at the start) outside any
write lock, written in short batches, and a row is only ever replaced by one computed from newer answers (its
``annotation_stamp`` / ``review_stamp``), so a slow, older refresher cannot put back an older result. The watermark
only moves forward, after the rows it covers. Derived tables can be dropped at any time: they are rebuilt.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import JSON, Integer, String, Table, and_, func, or_, select
from sqlalchemy.orm import Mapped, mapped_column

from curation.records.store import Annotation, Base, Clip, Project, Review, User, utcnow

# Rows per write transaction: short enough that annotators submitting meanwhile barely wait.
WRITE_BATCH_ROWS = 2000
WRITE_BATCH_SECONDS = 0.25
PAUSE_SECONDS = 0.12
# Clips per IN (...) list when reading the answers of changed clips.
READ_CHUNK = 5000


class DerivedWatermark(Base):
    """Up to which answer, review and clip a piece of derived state is current."""

    __tablename__ = "derived_watermark"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    rubric_version: Mapped[str] = mapped_column(String(32))
    annotation_id: Mapped[int] = mapped_column(Integer)
    review_id: Mapped[int] = mapped_column(Integer)
    clip_id: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[Any] = mapped_column(String(32))


class StoredReport(Base):
    """A whole report kept with the key of what it was computed from (a watermark and the parameters)."""

    __tablename__ = "derived_report"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(200))
    value: Mapped[Any] = mapped_column(JSON)
    updated_at: Mapped[Any] = mapped_column(String(32))


def stored_report(project: Project, name: str, key: str) -> Any | None:
    """The report stored under ``name`` if it was computed for ``key``, else None."""
    ensure_tables(project, StoredReport)
    with project.session() as session:
        row = session.get(StoredReport, name)
        return row.value if row is not None and row.key == key else None


def store_report(project: Project, name: str, key: str, value: Any) -> None:
    ensure_tables(project, StoredReport)
    with project.write() as session:
        session.merge(StoredReport(name=name, key=key, value=value, updated_at=utcnow().isoformat()))


def _insert(project: Project):
    if project.engine.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert


def data_watermark(session: Any) -> tuple[int, int, int]:
    """(newest answer id, newest review id, newest clip id): what derived state is computed from."""
    return (session.scalar(select(func.max(Annotation.id))) or 0, session.scalar(select(func.max(Review.id))) or 0,
            session.scalar(select(func.max(Clip.id))) or 0)


def changed_clips(session: Any, since: tuple[int, int, int], now: tuple[int, int, int]) -> list[int]:
    annotated = select(Annotation.clip_id).where(Annotation.id > since[0], Annotation.id <= now[0])
    reviewed = select(Review.clip_id).where(Review.id > since[1], Review.id <= now[1])
    return sorted(set(session.scalars(annotated)) | set(session.scalars(reviewed)))


def snapshot(session: Any, clip_ids: list[int] | None, now: tuple[int, int, int]) -> tuple[dict, dict]:
    """The latest review and the current answers of ``clip_ids`` (None: every clip) as of the watermark ``now``."""
    from curation.records.annotations import AnnotationRecord

    table = Annotation.__table__.c
    reviews: dict[int, tuple[int, dict[str, Any], str]] = {}
    answers: dict[int, list[AnnotationRecord]] = {}
    chunks = [None] if clip_ids is None else [clip_ids[i:i + READ_CHUNK] for i in range(0, len(clip_ids), READ_CHUNK)]
    for chunk in chunks:
        latest_review = select(func.max(Review.id)).where(Review.id <= now[1]).group_by(Review.clip_id)
        latest = select(func.max(table.id)).where(table.id <= now[0]).group_by(table.clip_id, table.user_id)
        review_query = select(Review.id, Review.clip_id, Review.fields, User.name).join(
            User, User.id == Review.reviewer_id)
        answer_query = select(table.id, table.clip_id, User.name, table.fields, table.output_text, table.status,
                              table.seconds_spent, table.rubric_version, table.source, table.comment,
                              table.created_at).join(User, User.id == table.user_id)
        if chunk is not None:
            latest_review = latest_review.where(Review.clip_id.in_(chunk))
            latest = latest.where(table.clip_id.in_(chunk))
        for review_id, clip_id, fields, reviewer in session.execute(review_query.where(Review.id.in_(latest_review))):
            reviews[clip_id] = (review_id, fields, reviewer)
        for row in session.execute(answer_query.where(table.id.in_(latest)).order_by(table.id)):
            answers.setdefault(row.clip_id, []).append(AnnotationRecord(*row))
    return reviews, answers


def write_rows(project: Project, table: Table, rows: list[dict[str, Any]]) -> None:
    """Upsert ``rows`` into ``table`` (keyed by its primary key) in short transactions, never replacing a row by
    one computed from older answers or reviews."""
    keys = [column.name for column in table.primary_key.columns]
    statement = _insert(project)(table)
    excluded = statement.excluded
    statement = statement.on_conflict_do_update(
        index_elements=keys,
        set_={column.name: excluded[column.name] for column in table.columns if column.name not in keys},
        # never replace an outcome by one computed from older answers (a slower, older refresher)
        where=or_(table.c.rubric_version != excluded.rubric_version,
                  and_(excluded.annotation_stamp >= table.c.annotation_stamp,
                       excluded.review_stamp >= table.c.review_stamp)))
    start = 0
    while start < len(rows):
        tic = time.perf_counter()
        with project.write() as session:
            end = start
            while end < len(rows) and end - start < WRITE_BATCH_ROWS and \
                    time.perf_counter() - tic < WRITE_BATCH_SECONDS:
                batch = rows[end:end + 100]
                session.execute(statement, batch)  # one compiled statement, executemany
                end += len(batch)
        start = end
        if start < len(rows):
            # SQLite's lock is no queue: a writer that takes it straight back starves the app's annotators,
            # whose busy handler sleeps between tries. Leave them a moment as long as the lock was held.
            time.sleep(min(PAUSE_SECONDS, time.perf_counter() - tic))


def advance_watermark(project: Project, name: str, version: str, now: tuple[int, int, int]) -> None:
    with project.write() as session:
        mark = session.get(DerivedWatermark, name)
        if mark is None:
            session.add(DerivedWatermark(name=name, rubric_version=version, annotation_id=now[0], review_id=now[1],
                                         clip_id=now[2], updated_at=utcnow().isoformat()))
        elif mark.rubric_version != version:
            mark.rubric_version, mark.annotation_id, mark.review_id, mark.clip_id = version, *now
            mark.updated_at = utcnow().isoformat()
        elif (mark.annotation_id, mark.review_id, mark.clip_id) != now:
            # Snapshots taken later hold larger ids in every part: the componentwise max is the newest one.
            mark.annotation_id, mark.review_id = max(mark.annotation_id, now[0]), max(mark.review_id, now[1])
            mark.clip_id, mark.updated_at = max(mark.clip_id, now[2]), utcnow().isoformat()



def refresh(project: Project, name: str, model: Any,
            compute: Callable[[tuple[int, dict[str, Any], str] | None, list[Any]], dict[str, Any]]) -> int:
    """Bring the derived rows of ``model`` (one per clip, watermark ``name``) up to date; returns how many clips
    were computed again (0: current). ``compute(review, records)`` gives a clip's row (without its key and stamps)
    from its latest review ``(id, fields, reviewer)`` or None and its current answer records, oldest first."""
    ensure_tables(project, model)
    version = project.rubric_version
    with project.session() as session, session.begin():  # one read transaction: one consistent snapshot
        mark = session.get(DerivedWatermark, name)
        now = data_watermark(session)
        current = mark is not None and mark.rubric_version == version
        # New clips need nothing: a clip without answers has no row, which readers count as such.
        if current and mark.annotation_id >= now[0] and mark.review_id >= now[1]:
            return 0
        clip_ids = changed_clips(session, (mark.annotation_id, mark.review_id, mark.clip_id), now) \
            if current else None
        reviews, answers = snapshot(session, clip_ids, now)
    rows = []
    for clip_id in sorted(set(reviews) | set(answers)) if clip_ids is None else clip_ids:
        review, records = reviews.get(clip_id), answers.get(clip_id, [])
        row = compute(review, records)
        row.update(clip_id=clip_id, rubric_version=version, annotation_stamp=max((r.id for r in records), default=0),
                   review_stamp=review[0] if review else 0)
        rows.append(row)
    write_rows(project, model.__table__, rows)
    advance_watermark(project, name, version, now)
    return len(rows)


def ensure_tables(project: Project, *models: Any) -> None:
    """Create derived-state tables missing from projects made before they existed (idempotent; no lock when
    they are there)."""
    created = project.__dict__.setdefault("_derived_tables", set())
    wanted = [model.__table__ for model in (DerivedWatermark, *models) if model.__tablename__ not in created]
    if not wanted:
        return
    from sqlalchemy import inspect

    missing = [table for table in wanted if not inspect(project.engine).has_table(table.name)]
    if missing:
        with project.engine.begin() as connection:
            for table in missing:
                table.create(connection, checkfirst=True)
                for index in table.indexes:
                    index.create(connection, checkfirst=True)
    created.update(table.name for table in wanted)

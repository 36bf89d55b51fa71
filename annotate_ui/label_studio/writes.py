"""Storing checked Label Studio answers: which versions are new, then bounded write transactions.

The app's annotators write to the same SQLite file while an import runs, and each write transaction holds the
database's one write lock. So the rows go in transactions of whole clips (every task of a clip, hence never
half a task) that close after :data:`BATCH_ROWS` rows or once :data:`BATCH_SECONDS` have passed, whichever
comes first, with a short pause between them so that waiting writers get their turn: nobody waits on the
import for more than about half a second, and a failure leaves each clip's answers either all stored or all
absent (a re-run imports what is missing, nothing twice).

Which rows are new (in Label Studio's order of updates):

- a version already stored (same ``external_id``) is unchanged;
- a Label Studio annotation stays with the person it was first stored under, even if the name its user maps
  to has changed since (new versions of such annotations are counted in ``kept_earlier_name``): one
  annotation never becomes two people's answers;
- a version older than the same person's later answer made outside Label Studio is superseded, not stored;
- a re-save in Label Studio that changed nothing is not a new version.
"""

from __future__ import annotations

import time
from datetime import datetime
from itertools import groupby
from typing import Any

from sqlalchemy import func, insert, or_, select
from sqlalchemy.exc import SQLAlchemyError

from annotate_ui.label_studio.config import LabelStudioError
from curation.errors import StoreError
from curation.records.store import Annotation, Event, Project, User

EXTERNAL_PREFIX = "label_studio:"
BATCH_ROWS = 2000  # rows per write transaction, at most
BATCH_SECONDS = 0.25  # no clip is added to a transaction open this long (one clip's rows take milliseconds)
BATCH_PAUSE_S = 0.12  # pause between transactions (as long as the last one held the lock, at most this)


def store_rows(project: Project, planned: list[dict[str, Any]], report: Any) -> None:
    """Store the new versions among ``planned`` rows; counts go to ``report`` as transactions commit."""
    new = _new_versions(project, planned, report)
    rubric = project.rubric
    for row in new:
        row["output_text"] = rubric.render(row["fields"]) if row["status"] == "submitted" else None
    clips = [list(rows) for _, rows in groupby(sorted(new, key=lambda r: r["clip_id"]), key=lambda r: r["clip_id"])]
    with project.session() as session:
        user_ids = {name: user_id for name, user_id in session.execute(select(User.name, User.id))}
    version = project.rubric_version
    start = 0
    while start < len(clips):
        written: list[dict[str, Any]] = []
        created: list[str] = []
        try:
            with project.write() as session:
                opened = time.perf_counter()
                while start < len(clips) and (not written or (
                    len(written) + len(clips[start]) <= BATCH_ROWS and time.perf_counter() - opened < BATCH_SECONDS
                )):
                    batch = clips[start]
                    created += _ensure_users(session, {r["user"] for r in batch}, user_ids)
                    session.execute(insert(Annotation), [_values(r, user_ids[r["user"]], version) for r in batch])
                    written += batch
                    start += 1
        except (SQLAlchemyError, StoreError) as exc:
            reason = exc if isinstance(exc, StoreError) else (getattr(exc, "orig", None) or exc)
            raise LabelStudioError(
                f"storing the answers failed after {report.imported} were stored ({reason}); run the import "
                "again: what is stored stays, nothing is imported twice") from None
        report.imported += len(written)
        report.skipped += sum(r["status"] == "skipped" for r in written)
        report.users_created += created
        if start < len(clips):
            # SQLite's lock is no queue: a waiting writer retries after growing sleeps, so without a gap the
            # import would take the lock again each time and the app's annotators could wait through many batches.
            time.sleep(min(time.perf_counter() - opened, BATCH_PAUSE_S))


def _values(row: dict[str, Any], user_id: int, version: str) -> dict[str, Any]:
    return {"clip_id": row["clip_id"], "user_id": user_id, "rubric_version": version, "fields": row["fields"],
            "output_text": row["output_text"], "seconds_spent": row["seconds"], "status": row["status"],
            "source": "label_studio", "comment": None, "external_id": row["external_id"]}


def _ensure_users(session: Any, names: set[str], user_ids: dict[str, int]) -> list[str]:
    """Accounts (annotators, no password) for people new to the project, in the rows' transaction."""
    created = []
    for name in sorted(names - set(user_ids)):
        existing = session.scalar(select(User.id).where(User.name == name))  # made meanwhile by another writer
        if existing is None:
            user = User(name=name, role="annotator", password_hash=None)
            session.add(user)
            session.add(Event(action="user_add", detail={"name": name, "role": "annotator"}))
            session.flush()
            existing = user.id
            created.append(name)
        user_ids[name] = existing
    return created


def _new_versions(project: Project, planned: list[dict[str, Any]], report: Any) -> list[dict[str, Any]]:
    known, owners, current = _stored_versions(project)
    answered_elsewhere = _latest_other_answers(project)
    pinned: set[str] = set()
    new = []
    for row in sorted(planned, key=lambda r: (r["updated_at"], r["annotation_id"])):
        lineage = row["external_id"].split("@")[0]
        owner = owners.get(lineage)
        moved = owner is not None and owner != row["user"]
        if moved:
            row["user"] = owner
        if row["external_id"] in known:
            report.unchanged += 1
            continue
        key = (row["clip_id"], row["user"])
        elsewhere = answered_elsewhere.get(key)
        if elsewhere is not None and row["updated_at"] and elsewhere > _naive_utc(row["updated_at"]):
            report.superseded += 1
            continue
        latest = current.get(key)
        # A re-save in Label Studio that changed nothing is not a new version.
        if latest is not None and latest[0].split("@")[0] == lineage and latest[1:] == (row["status"], row["fields"]):
            report.unchanged += 1
            continue
        if moved:
            pinned.add(lineage)
        known.add(row["external_id"])
        owners.setdefault(lineage, row["user"])
        current[key] = (row["external_id"], row["status"], row["fields"])
        new.append(row)
    report.kept_earlier_name = len(pinned)
    return new


def _stored_versions(project: Project) -> tuple[set[str], dict[str, str], dict[tuple[int, str], tuple]]:
    """Label Studio versions stored, who each Label Studio annotation belongs to, the latest row per (clip, user)."""
    with project.session() as session:
        rows = session.execute(
            select(Annotation.external_id, Annotation.clip_id, User.name, Annotation.status, Annotation.fields)
            .join(User, User.id == Annotation.user_id)
            .where(Annotation.external_id.like(f"{EXTERNAL_PREFIX}%"))
            .order_by(Annotation.id)
        ).all()
    known = {ext for ext, *_ in rows}
    owners: dict[str, str] = {}
    for ext, _, name, _, _ in rows:
        owners.setdefault(ext.split("@")[0], name)
    current = {(clip_id, name): (ext, status, fields) for ext, clip_id, name, status, fields in rows}
    return known, owners, current


def _latest_other_answers(project: Project) -> dict[tuple[int, str], datetime]:
    """When each (clip, person) last answered outside Label Studio (naive UTC, as the store keeps times)."""
    with project.session() as session:
        rows = session.execute(
            select(Annotation.clip_id, User.name, func.max(Annotation.created_at))
            .join(User, User.id == Annotation.user_id)
            .where(or_(Annotation.external_id.is_(None), Annotation.external_id.not_like(f"{EXTERNAL_PREFIX}%")))
            .group_by(Annotation.clip_id, User.name)
        ).all()
    return {(clip_id, name): created for clip_id, name, created in rows}


def _naive_utc(timestamp: str) -> datetime:
    """A timestamp as the import writes it (UTC, ending in Z) as the store's naive UTC."""
    return datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%S.%fZ")

"""Import existing labels from JSONL: one annotation per line.

Each line is ``{"clip": <clip id | path relative to the ingest root | sha256>, "annotator": "name",
"fields": {...}}`` or ``"output": "text"`` instead of fields (parsed through the rubric), with optional
``"seconds"`` (0 to one day), ``"status"`` (submitted | skipped | unclear) and ``"comment"``.

Every line is checked before anything is written, and a bad line is reported with its number and reason while
the good ones are imported: a line that is not UTF-8, not JSON, holds ``NaN``/``Infinity`` or a text longer than
:data:`MAX_TEXT_CHARS`, names an unknown clip, or fails the rubric. A UTF-8 byte-order mark and CRLF line ends are
fine. Annotators must already be people of the project (``cliptune users add``); ``create_users=True``
(``--create-users``) makes annotator accounts without a password for unknown names instead.

The good lines are then written in short transactions (at most :data:`BATCH_ROWS` rows or about
:data:`BATCH_SECONDS` each, with a pause between them) so that people labelling meanwhile wait well under a
second for SQLite's write lock. Each batch compares its lines with the current answers read inside its own
transaction: a line equal to the annotator's current answer (status and fields) is counted as unchanged and not
written again. So an import that stops half-way (a crash, a kill, a locked database) keeps the batches already
written, whole, and running it again imports only the rest; the ``import_annotations`` event is written only by an
import that finished.

Example::

    report = import_annotations(project, "labels.jsonl")
    report.imported, report.failed   # 118, [{"line": 7, "error": "clip 'cam9/x.mp4' is not in this project"}]
"""

from __future__ import annotations

import difflib
import math
import os
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.exc import OperationalError

from curation.errors import CliptuneError, RubricError, StoreError
from curation.records.jsonl import cap_message, cut_quoted, decode_line, loads_strict, read_lines, shorten
from curation.records.store import ANNOTATION_STATUSES, Annotation, Clip, Event, Project, User
from curation.records.users import NAME_PATTERN

KNOWN_KEYS = {"clip", "annotator", "fields", "output", "seconds", "status", "comment"}
MAX_TEXT_CHARS = 20_000  # per text value (a text field, 'output', 'comment'): a long consult note is ~5,000
MAX_SECONDS = 86_400.0  # one day per clip: more is a unit mistake (milliseconds?) that would wreck pace figures
BATCH_ROWS = 2_000  # rows written per transaction, at most
BATCH_SECONDS = 0.5  # a write transaction ends after its first chunk past this many seconds
# Between transactions the import pauses as long as the last one held the lock, up to this: SQLite's lock is no
# queue, a waiting writer retries after sleeps that grow to 100 ms, so without a gap the import would win each time.
BATCH_PAUSE_S = 0.12
CHUNK_ROWS = 200  # lines read and written at a time inside a transaction; the time limit is checked after each
KNOWN_NAMES_SHOWN = 20


@dataclass
class ImportReport:
    imported: int = 0
    unchanged: int = 0  # same answer as the annotator's current one: not written again
    failed: list[dict[str, Any]] = field(default_factory=list)
    users_created: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _ClipIndex:
    def __init__(self, project: Project):
        with project.session() as session:
            rows = session.execute(select(Clip.id, Clip.path, Clip.sha256, Clip.source_sha256)).all()
        self.ids = {row.id for row in rows}
        self.by_sha = {row.sha256: row.id for row in rows}
        self.by_path: dict[str, list[int]] = {}
        self.by_source: dict[str, list[int]] = {}
        for row in rows:
            self.by_path.setdefault(row.path, []).append(row.id)
            self.by_source.setdefault(row.source_sha256, []).append(row.id)

    def find(self, key: Any) -> int:
        if isinstance(key, bool) or key is None:
            raise ValueError("'clip' must be a clip id, a path relative to the ingest root, or a sha256")
        # isascii: "²".isdigit() is true; the length keeps int() clear of Python's digit limit.
        if isinstance(key, int) or (isinstance(key, str) and key.isascii() and key.isdigit() and len(key) < 20):
            if int(key) in self.ids:
                return int(key)
            raise ValueError(f"clip {key} is not in this project")
        if not isinstance(key, str):
            raise ValueError(f"'clip' must be an id, a path or a sha256, not {type(key).__name__}")
        if key in self.by_sha:
            return self.by_sha[key]
        matches = self.by_path.get(key.replace("\\", "/").removeprefix("./")) or self.by_source.get(key, [])
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise ValueError(f"clip {shorten(key)} names {len(matches)} clips (segments of one recording); "
                             "use clip ids")
        raise ValueError(f"clip {shorten(key)} is not in this project")


class _Annotators:
    """The project's people by name; unknown names are refused once in full, then by reference to that line."""

    def __init__(self, project: Project, create_users: bool):
        with project.session() as session:
            self.ids: dict[str, int] = {name: id_ for name, id_ in session.execute(select(User.name, User.id))}
        self.create_users = create_users
        self.new: dict[str, None] = {}  # names to create, in order of first use
        self.first_refusal: dict[str, int] = {}

    def check(self, name: str, line: int) -> None:
        if name in self.ids or name in self.new:
            return
        if self.create_users:
            self.new[name] = None
            return
        if name in self.first_refusal:
            raise ValueError(f"annotator {name!r} is not in this project (see line {self.first_refusal[name]})")
        self.first_refusal[name] = line
        known = sorted(self.ids)
        # A suggestion costs a comparison with every name: offer it for the first few unknown names only.
        close = difflib.get_close_matches(name, known, n=1) if len(self.first_refusal) <= 50 else []
        shown = ", ".join(known[:KNOWN_NAMES_SHOWN]) + (f" … and {len(known) - KNOWN_NAMES_SHOWN} more"
                                                        if len(known) > KNOWN_NAMES_SHOWN else "")
        raise ValueError(
            f"annotator {name!r} is not in this project"
            + (f" (did you mean {close[0]!r}?)" if close else "")
            + f"; known: {shown or 'nobody yet'}. Add them with `cliptune users add`, or pass --create-users "
            "(create_users=True) to make annotator accounts without a password"
        )


def _check_text(value: Any, where: str) -> None:
    if isinstance(value, str) and len(value) > MAX_TEXT_CHARS:
        raise ValueError(f"{where} is {len(value):,} characters; at most {MAX_TEXT_CHARS:,} (shorten it)")


def _check_line(raw: bytes, number: int, clips: _ClipIndex, annotators: _Annotators,
                project: Project) -> dict[str, Any]:
    record = loads_strict(decode_line(raw))
    if not isinstance(record, dict):
        raise ValueError("each line must be a JSON object")
    unknown = sorted(set(record) - KNOWN_KEYS)
    if unknown:
        raise ValueError(f"unknown keys [{', '.join(shorten(k) for k in unknown[:10])}]"
                         f"{' …' if len(unknown) > 10 else ''}; allowed: {sorted(KNOWN_KEYS)}")
    if "clip" not in record:
        raise ValueError("missing 'clip'")
    clip_id = clips.find(record["clip"])
    annotator = record.get("annotator")
    if not isinstance(annotator, str) or not NAME_PATTERN.match(annotator):
        raise ValueError("'annotator' must be a name of letters, digits and _ . @ - (at most 100 characters)")
    status = record.get("status", "submitted")
    if status not in ANNOTATION_STATUSES:
        raise ValueError(f"'status' must be one of {', '.join(ANNOTATION_STATUSES)}")
    seconds = record.get("seconds")
    if seconds is not None and (isinstance(seconds, bool) or not isinstance(seconds, int | float)
                                or not 0 <= seconds <= MAX_SECONDS):
        raise ValueError(f"'seconds' must be a number of seconds from 0 to {MAX_SECONDS:,.0f} (one day), "
                         f"got {shorten(seconds)}")
    comment = record.get("comment")
    if comment is not None and not isinstance(comment, str):
        raise ValueError("'comment' must be a string")
    _check_text(comment, "'comment'")
    rubric = project.rubric
    fields = None
    if status == "submitted":
        if ("fields" in record) == ("output" in record):
            raise ValueError("give exactly one of 'fields' or 'output'")
        try:
            if "fields" in record:
                if not isinstance(record["fields"], dict):
                    raise ValueError("'fields' must be an object")
                for name, value in record["fields"].items():
                    _check_text(value, f"field {shorten(name)}")
                fields = rubric.normalise(record["fields"])
            else:
                if not isinstance(record["output"], str):
                    raise ValueError("'output' must be a string")
                _check_text(record["output"], "'output'")
                fields = rubric.parse(record["output"])
        except RubricError as exc:
            raise ValueError(cut_quoted(str(exc))) from None
    if status == "unclear" and not (comment or "").strip():
        raise ValueError("an 'unclear' line needs a 'comment'")
    # Last: an unknown name is refused in full only once, so that line should have no other fault to report.
    annotators.check(annotator, number)
    return {
        "clip_id": clip_id,
        "annotator": annotator,
        "fields": fields,
        "output_text": rubric.render(fields) if fields is not None else None,
        "seconds": float(seconds) if seconds is not None else None,
        "status": status,
        "comment": comment,
    }


def _check_batching(batch_rows: int | None, batch_seconds: float | None) -> None:
    if batch_rows is not None and (isinstance(batch_rows, bool) or not isinstance(batch_rows, int) or batch_rows < 1):
        raise CliptuneError(f"batch_rows must be a whole number of lines, at least 1 (or None: one batch), "
                            f"got {batch_rows!r}")
    if batch_seconds is not None and (isinstance(batch_seconds, bool) or not isinstance(batch_seconds, int | float)
                                      or not 0 < batch_seconds < math.inf):
        raise CliptuneError(f"batch_seconds must be a positive number of seconds (or None: no time limit), "
                            f"got {batch_seconds!r}")


def import_annotations(
    project: Project,
    path: str | os.PathLike,
    *,
    create_users: bool = False,
    batch_rows: int | None = BATCH_ROWS,
    batch_seconds: float | None = BATCH_SECONDS,
) -> ImportReport:
    """Import a JSONL file of annotations; see the module docstring.

    ``create_users`` makes annotator accounts (without a password) for names the project does not know; by
    default such lines fail, since a misspelt name would otherwise become a new person. ``batch_rows`` and
    ``batch_seconds`` bound each write transaction (None for no bound: ``None, None`` is one transaction).
    """
    if not isinstance(create_users, bool):
        raise CliptuneError(f"create_users must be True or False, got {create_users!r}")
    _check_batching(batch_rows, batch_seconds)
    path = Path(path)
    report = ImportReport()
    clips = _ClipIndex(project)
    annotators = _Annotators(project, create_users)
    good: deque[dict[str, Any]] = deque()
    for number, raw in read_lines(path):
        try:
            good.append(_check_line(raw, number, clips, annotators, project))
        except ValueError as exc:
            report.failed.append({"line": number, "error": cap_message(str(exc))})

    batches = 0
    held = 0.0
    try:
        if annotators.new:
            report.users_created = _create_users(project, annotators)
        while good:
            time.sleep(min(held, BATCH_PAUSE_S))
            imported, unchanged, held = _write_batch(project, good, annotators.ids, batch_rows, batch_seconds)
            report.imported += imported  # counted once committed: the report says what is in the store
            report.unchanged += unchanged
            batches += 1
    except (OperationalError, StoreError) as exc:  # e.g. a lock held by another process past the busy timeout
        reason = exc.orig if isinstance(exc, OperationalError) else exc
        raise StoreError(
            f"{path}: the import stopped after {report.imported:,} lines were written ({reason}); run the same "
            "import again to add the rest (lines already written are not repeated)"
        ) from None
    with project.write() as session:
        session.add(Event(action="import_annotations", detail={
            "file": str(path), "imported": report.imported, "unchanged": report.unchanged,
            "failed": len(report.failed), "users_created": report.users_created, "batches": batches}))
    return report


def _create_users(project: Project, annotators: _Annotators) -> list[str]:
    created = []
    with project.write() as session:
        existing = {name: id_ for name, id_ in
                    session.execute(select(User.name, User.id).where(User.name.in_(list(annotators.new))))}
        for name in annotators.new:
            if name in existing:  # added by someone else since the check
                annotators.ids[name] = existing[name]
                continue
            user = User(name=name, role="annotator", password_hash=None)
            session.add(user)
            session.flush()
            annotators.ids[name] = user.id
            created.append(name)
    return created


def _write_batch(project: Project, good: deque[dict[str, Any]], user_ids: dict[str, int],
                 batch_rows: int | None, batch_seconds: float | None) -> tuple[int, int, float]:
    """Write lines from the front of ``good`` in one transaction until a bound is reached.

    Returns (imported, unchanged, seconds the write lock was held).
    """
    imported = unchanged = 0
    rubric_version = project.rubric_version
    with project.write() as session:
        session.connection()  # BEGIN IMMEDIATE: the clock starts once the lock is ours, not while waiting for it
        started = time.perf_counter()
        while good and (batch_rows is None or imported < batch_rows) and (
                batch_seconds is None or time.perf_counter() - started < batch_seconds):
            size = min(CHUNK_ROWS, len(good), batch_rows - imported if batch_rows is not None else CHUNK_ROWS)
            chunk = [good.popleft() for _ in range(size)]
            current = _current_answers(session, {item["clip_id"] for item in chunk})
            rows = []
            for item in chunk:
                key = (item["clip_id"], user_ids[item["annotator"]])
                answer = (item["status"], item["fields"])
                if current.get(key) == answer:
                    unchanged += 1
                    continue
                current[key] = answer  # a later line for the same clip and person compares with this one
                rows.append({"clip_id": key[0], "user_id": key[1], "rubric_version": rubric_version,
                             "fields": item["fields"], "output_text": item["output_text"],
                             "seconds_spent": item["seconds"], "status": item["status"], "source": "import",
                             "comment": item["comment"]})
            if rows:
                session.execute(insert(Annotation), rows)
            imported += len(rows)
    return imported, unchanged, time.perf_counter() - started


def _current_answers(session: Any, clip_ids: set[int]) -> dict[tuple[int, int], tuple[str, Any]]:
    """(clip, user) -> (status, fields) of the current answers for these clips, as this transaction sees them."""
    latest = (select(func.max(Annotation.id)).where(Annotation.clip_id.in_(clip_ids))
              .group_by(Annotation.clip_id, Annotation.user_id))
    rows = session.execute(select(Annotation.clip_id, Annotation.user_id, Annotation.status, Annotation.fields)
                           .where(Annotation.id.in_(latest)))
    return {(row.clip_id, row.user_id): (row.status, row.fields) for row in rows}

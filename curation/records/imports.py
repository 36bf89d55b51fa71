"""Import existing labels from JSONL: one annotation per line.

Each line is ``{"clip": <clip id | path relative to the ingest root | sha256>, "annotator": "name",
"fields": {...}}`` or ``"output": "text"`` instead of fields (parsed through the rubric), with optional
``"seconds"``, ``"status"`` (submitted | skipped | unclear) and ``"comment"``. Every line is checked first; the
good lines are then written in one transaction, so an import never stops half-written. Bad lines are reported
with their line number and reason. Unknown annotators become annotator accounts (without a password).

Example::

    report = import_annotations(project, "labels.jsonl")
    report.imported, report.failed   # 118, [{"line": 7, "error": "clip 'cam9/x.mp4' is not in this project"}]
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from curation.errors import CliptuneError, RubricError
from curation.records.store import ANNOTATION_STATUSES, Annotation, Clip, Event, Project, User
from curation.records.users import NAME_PATTERN

KNOWN_KEYS = {"clip", "annotator", "fields", "output", "seconds", "status", "comment"}


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
        if isinstance(key, int) or (isinstance(key, str) and key.isdigit()):
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
            raise ValueError(f"clip {key!r} names {len(matches)} clips (segments of one recording); use clip ids")
        raise ValueError(f"clip {key!r} is not in this project")


def _check_line(line: str, clips: _ClipIndex, project: Project) -> dict[str, Any]:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(record, dict):
        raise ValueError("each line must be a JSON object")
    unknown = sorted(set(record) - KNOWN_KEYS)
    if unknown:
        raise ValueError(f"unknown keys {unknown}; allowed: {sorted(KNOWN_KEYS)}")
    if "clip" not in record:
        raise ValueError("missing 'clip'")
    clip_id = clips.find(record["clip"])
    annotator = record.get("annotator")
    if not isinstance(annotator, str) or not NAME_PATTERN.match(annotator):
        raise ValueError("'annotator' must be a name of letters, digits and _ . @ -")
    status = record.get("status", "submitted")
    if status not in ANNOTATION_STATUSES:
        raise ValueError(f"'status' must be one of {', '.join(ANNOTATION_STATUSES)}")
    seconds = record.get("seconds")
    if seconds is not None and (isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0):
        raise ValueError("'seconds' must be a number of seconds, zero or more")
    rubric = project.rubric
    fields = None
    if status == "submitted":
        if ("fields" in record) == ("output" in record):
            raise ValueError("give exactly one of 'fields' or 'output'")
        try:
            if "fields" in record:
                if not isinstance(record["fields"], dict):
                    raise ValueError("'fields' must be an object")
                fields = rubric.normalise(record["fields"])
            else:
                if not isinstance(record["output"], str):
                    raise ValueError("'output' must be a string")
                fields = rubric.parse(record["output"])
        except RubricError as exc:
            raise ValueError(str(exc)) from None
    comment = record.get("comment")
    if comment is not None and not isinstance(comment, str):
        raise ValueError("'comment' must be a string")
    if status == "unclear" and not (comment or "").strip():
        raise ValueError("an 'unclear' line needs a 'comment'")
    return {
        "clip_id": clip_id,
        "annotator": annotator,
        "fields": fields,
        "output_text": rubric.render(fields) if fields is not None else None,
        "seconds": float(seconds) if seconds is not None else None,
        "status": status,
        "comment": comment,
    }


def import_annotations(project: Project, path: str | os.PathLike) -> ImportReport:
    """Import a JSONL file of annotations; see the module docstring."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise CliptuneError(f"{path}: no such file") from None
    except UnicodeDecodeError:
        raise CliptuneError(f"{path}: not UTF-8 text; save the file as UTF-8 JSONL") from None
    report = ImportReport()
    clips = _ClipIndex(project)
    good: list[tuple[int, dict[str, Any]]] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            good.append((number, _check_line(line, clips, project)))
        except ValueError as exc:
            report.failed.append({"line": number, "error": str(exc)})

    with project.write() as session:
        users = {name: user_id for user_id, name in session.execute(select(User.id, User.name))}
        latest = select(func.max(Annotation.id)).group_by(Annotation.clip_id, Annotation.user_id)
        current = {
            (row.clip_id, row.user_id): (row.status, row.fields)
            for row in session.scalars(select(Annotation).where(Annotation.id.in_(latest)))
        }
        for _number, item in good:
            user_id = users.get(item["annotator"])
            if user_id is None:
                user = User(name=item["annotator"], role="annotator", password_hash=None)
                session.add(user)
                session.flush()
                user_id = users[item["annotator"]] = user.id
                report.users_created.append(item["annotator"])
            key = (item["clip_id"], user_id)
            if current.get(key) == (item["status"], item["fields"]):
                report.unchanged += 1
                continue
            session.add(
                Annotation(
                    clip_id=item["clip_id"], user_id=user_id, rubric_version=project.rubric_version,
                    fields=item["fields"], output_text=item["output_text"], seconds_spent=item["seconds"],
                    status=item["status"], source="import", comment=item["comment"],
                )
            )
            current[key] = (item["status"], item["fields"])
            report.imported += 1
        session.add(Event(action="import_annotations", detail={"file": str(path), "imported": report.imported,
                                                                "failed": len(report.failed)}))
    return report

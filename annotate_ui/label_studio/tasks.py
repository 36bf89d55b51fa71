"""Label Studio tasks (its JSON export format) -> cliptune annotations. Used by ``pull`` and by offline import.

Each task is ``{"id", "data": {...}, "annotations": [{"id", "completed_by", "result", "lead_time",
"was_cancelled", "updated_at"}, ...]}``. The mapping:

- the clip: ``data.cliptune_sha256`` (tasks pushed by cliptune), else the task id remembered by ``push``,
  else the file name in the video URL (``/data/local-files/?d=proxies/ab12.mp4``, ``.../CAM-1_0003.mp4``)
  matched against the clips' proxies and source files;
- ``completed_by`` (a user object, or a bare id as the Export button writes it) -> a cliptune user: the name
  remembered for that Label Studio user id, else the e-mail (or username), created as an annotator if new;
  ``user_map`` maps an e-mail, username or user id to another name, remembered from then on
  (:mod:`annotate_ui.label_studio.identities`);
- ``result`` -> rubric fields (:func:`annotate_ui.label_studio.config.fields_from_result`); ``lead_time`` ->
  ``seconds_spent``; ``was_cancelled`` -> status ``skipped``;
- an annotation updated in Label Studio -> a new version (annotation rows are append-only). The row's
  ``external_id`` is ``label_studio:<project>:<annotation id>@<updated_at>``, so importing the same data
  twice adds nothing. Rows are written in bounded transactions (:mod:`annotate_ui.label_studio.writes`).

A task that cannot be read (missing keys, an unknown clip) is reported by its id and skipped; an annotation
with a problem (a choice the rubric does not offer, a value of the wrong type, an unknown bare user id) is
reported by task and annotation id with every reason and skipped alone: the other annotators' answers on
that task are imported.

Example::

    report = import_export(project, "export.json")
    report.imported, report.failed
    # 41, [{"task": 17, "annotation": 52, "error": "event: 'FIRE' is not one of ..."}]
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

from sqlalchemy import select

from annotate_ui.label_studio.config import LabelStudioError, fields_from_result
from annotate_ui.label_studio.identities import UserNames
from annotate_ui.label_studio.writes import EXTERNAL_PREFIX, store_rows
from curation.errors import CliptuneError
from curation.records.store import Clip, Project


@dataclass
class LabelStudioImportReport:
    tasks: int = 0  # tasks read
    imported: int = 0  # annotation versions written (submitted and skipped)
    skipped: int = 0  # of those, cancelled in Label Studio, stored with status "skipped"
    unchanged: int = 0  # already in the store: same annotation, same update time
    # older than the same person's later answer made outside Label Studio (the app, an import): not stored, so the
    # later answer stays current
    superseded: int = 0
    # {"task": id, "error": reasons} for a task that cannot be read, {"task", "annotation", "error"} for one answer
    failed: list[dict[str, Any]] = field(default_factory=list)
    users_created: list[str] = field(default_factory=list)
    # remembered Label Studio users now filed under another name: {"user_id", "email", "from", "to"}
    identity_changes: list[dict[str, Any]] = field(default_factory=list)
    # Label Studio annotations with a new version filed under the name they were first stored under, not the
    # name their user maps to now
    kept_earlier_name: int = 0
    users_unmatched: list[str] = field(default_factory=list)  # user map keys that met no Label Studio user

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def import_export(
    project: Project, path: str | os.PathLike, *, user_map: dict[str, str] | None = None
) -> LabelStudioImportReport:
    """Import a Label Studio JSON export file (a list of tasks); see the module docstring."""
    path = Path(path)
    try:
        tasks = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CliptuneError(f"{path}: no such file") from None
    except UnicodeDecodeError:
        raise CliptuneError(f"{path}: not UTF-8 text; export the project from Label Studio as JSON") from None
    except json.JSONDecodeError as exc:
        raise CliptuneError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}); export as JSON") from None
    if not isinstance(tasks, list):
        raise CliptuneError(f"{path}: a Label Studio JSON export is a list of tasks, not a {type(tasks).__name__}"
                            " (JSON-MIN and CSV exports lack who annotated and when: export as JSON)")
    report = import_tasks(project, tasks, user_map=user_map, origin={"file": str(path)})
    project.log("label_studio_import", file=str(path), **_summary(report))
    return report


def import_tasks(
    project: Project,
    tasks: list[Any],
    *,
    task_clips: dict[int, int] | None = None,
    user_map: dict[str, str] | None = None,
    origin: dict[str, Any] | None = None,
) -> LabelStudioImportReport:
    """Import Label Studio tasks (export format). ``task_clips`` maps task ids to clip ids (from ``push``);
    ``user_map`` maps Label Studio ids, e-mails or usernames to cliptune names, remembered for later imports
    (:mod:`annotate_ui.label_studio.identities`); ``origin`` (url, file) is noted with what is remembered."""
    names = UserNames(project, user_map)
    report = LabelStudioImportReport(tasks=len(tasks))
    clips = _ClipIndex(project, task_clips or {})
    rubric = project.rubric
    planned: list[dict[str, Any]] = []
    for index, task in enumerate(tasks):
        task_id = task.get("id") if isinstance(task, dict) else None
        try:
            rows, failures = _check_task(task, clips, rubric, names)
        except LabelStudioError as exc:
            report.failed.append({"task": task_id if task_id is not None else f"#{index}", "error": str(exc)})
            continue
        planned.extend(rows)
        report.failed.extend(failures)
    # Remembered before the rows are written: a name is never re-guessed for rows a later run imports.
    names.remember(**(origin or {}))
    report.identity_changes = names.changes
    report.users_unmatched = names.unmatched
    store_rows(project, planned, report)
    return report


def _summary(report: LabelStudioImportReport) -> dict[str, Any]:
    return {"tasks": report.tasks, "imported": report.imported, "unchanged": report.unchanged,
            "superseded": report.superseded, "failed": len(report.failed), "users_created": report.users_created,
            "identity_changes": report.identity_changes}


class _ClipIndex:
    def __init__(self, project: Project, task_clips: dict[int, int]):
        with project.session() as session:
            rows = session.execute(select(Clip.id, Clip.sha256, Clip.path, Clip.proxy_path)).all()
        self.ids = {row.id for row in rows}
        self.by_sha = {row.sha256: row.id for row in rows}
        self.task_clips = {int(k): v for k, v in task_clips.items() if v in self.ids}
        self.by_name: dict[str, set[int]] = {}
        for row in rows:
            for path in (row.path, row.proxy_path):
                if path:
                    self.by_name.setdefault(PurePosixPath(path.replace("\\", "/")).name, set()).add(row.id)

    def find(self, task_id: int, data: dict[str, Any]) -> int:
        sha = data.get("cliptune_sha256")
        if isinstance(sha, str) and sha in self.by_sha:
            return self.by_sha[sha]
        if sha is not None:
            raise LabelStudioError(f"data.cliptune_sha256 {str(sha)[:16]!r} is not a clip of this project")
        if task_id in self.task_clips:
            return self.task_clips[task_id]
        names = {_file_name(value) for value in data.values() if isinstance(value, str)} - {None}
        matches = set().union(*(self.by_name.get(name, set()) for name in names)) if names else set()
        if len(matches) == 1:
            return matches.pop()
        if len(matches) > 1:
            raise LabelStudioError(f"its video file name matches {len(matches)} clips; push the clips with cliptune")
        raise LabelStudioError("cannot tell which clip it shows: no data.cliptune_sha256 and no video file name "
                               "that matches a clip of this project")


def _file_name(value: str) -> str | None:
    parsed = urlparse(value)
    path = parse_qs(parsed.query).get("d", [parsed.path])[0]
    name = PurePosixPath(unquote(path).replace("\\", "/")).name
    return name if "." in name else None


def _check_task(task: Any, clips: _ClipIndex, rubric: Any, names: UserNames) -> tuple[list[dict], list[dict]]:
    """The task's good annotations as rows, and one failure per bad annotation (the others still import)."""
    if not isinstance(task, dict):
        raise LabelStudioError(f"a task must be a JSON object, not {type(task).__name__}")
    problems = [f"missing {key!r}" for key in ("id", "data", "annotations") if key not in task]
    if problems:
        raise LabelStudioError("; ".join(problems))
    task_id, data, annotations = task["id"], task["data"], task["annotations"]
    if isinstance(task_id, bool) or not isinstance(task_id, int):
        raise LabelStudioError(f"'id' must be an integer, not {task_id!r}")
    if not isinstance(data, dict):
        raise LabelStudioError(f"'data' must be an object, not {type(data).__name__}")
    if not isinstance(annotations, list):
        raise LabelStudioError(f"'annotations' must be a list, not {type(annotations).__name__}")
    clip_id = clips.find(task_id, data)
    rows, failures = [], []
    for index, annotation in enumerate(annotations):
        try:
            rows.append(_check_annotation(annotation, task, clip_id, rubric, names))
        except LabelStudioError as exc:
            label = annotation.get("id", f"#{index}") if isinstance(annotation, dict) else f"#{index}"
            failures.append({"task": task_id, "annotation": label, "error": str(exc)})
    return rows, failures


def _check_annotation(annotation: Any, task: dict, clip_id: int, rubric: Any, names: UserNames) -> dict:
    if not isinstance(annotation, dict):
        raise LabelStudioError(f"an annotation must be a JSON object, not {type(annotation).__name__}")
    problems = [f"missing {key!r}" for key in ("id", "completed_by", "result") if key not in annotation]
    annotation_id = annotation.get("id")
    if "id" in annotation and (isinstance(annotation_id, bool) or not isinstance(annotation_id, int)):
        problems.append(f"'id' must be an integer, not {annotation_id!r}")
    cancelled = annotation.get("was_cancelled", False)
    if not isinstance(cancelled, bool):
        problems.append(f"'was_cancelled' must be true or false, not {cancelled!r}")
    seconds = annotation.get("lead_time")
    if seconds is not None and (isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0):
        problems.append(f"'lead_time' must be a number of seconds, zero or more, not {seconds!r}")
    checks = {"updated_at": lambda: _timestamp(annotation.get("updated_at") or annotation.get("created_at"))}
    if "completed_by" in annotation:
        checks["user"] = lambda: names.resolve(annotation["completed_by"])
    if "result" in annotation and cancelled is False:
        checks["fields"] = lambda: fields_from_result(rubric, annotation["result"])
    values: dict[str, Any] = {"fields": None}
    for key, check in checks.items():  # every problem at once, so one fix-up pass is enough
        try:
            values[key] = check()
        except LabelStudioError as exc:
            problems.append(str(exc))
    if problems:
        raise LabelStudioError("; ".join(problems))
    ls_project = annotation.get("project", task.get("project"))
    ls_project = ls_project if isinstance(ls_project, int) and not isinstance(ls_project, bool) else "?"
    return {
        "clip_id": clip_id,
        "user": values["user"],
        "fields": values["fields"],
        "status": "skipped" if cancelled else "submitted",
        "seconds": float(seconds) if seconds is not None else None,
        "annotation_id": annotation_id,
        "updated_at": values["updated_at"],
        "external_id": f"{EXTERNAL_PREFIX}{ls_project}:{annotation_id}@{values['updated_at']}",
    }


def _timestamp(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise LabelStudioError(f"'updated_at' must be an ISO 8601 date string, not {value!r}")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise LabelStudioError(f"'updated_at' {value!r} is not an ISO 8601 date") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

"""Label Studio tasks (its JSON export format) -> cliptune annotations. Used by ``pull`` and by offline import.

Each task is ``{"id", "data": {...}, "annotations": [{"id", "completed_by", "result", "lead_time",
"was_cancelled", "updated_at"}, ...]}``. The mapping:

- the clip: ``data.cliptune_sha256`` (tasks pushed by cliptune), else the task id remembered by ``push``,
  else the file name in the video URL (``/data/local-files/?d=proxies/ab12.mp4``, ``.../CAM-1_0003.mp4``)
  matched against the clips' proxies and source files;
- ``completed_by`` -> a cliptune user named by the Label Studio e-mail (or username), created as an annotator
  if new; ``user_map`` maps an e-mail, username or user id to an existing name instead;
- ``result`` -> rubric fields (:func:`annotate_ui.label_studio.config.fields_from_result`); ``lead_time`` ->
  ``seconds_spent``; ``was_cancelled`` -> status ``skipped``;
- an annotation updated in Label Studio -> a new version (annotation rows are append-only). The row's
  ``external_id`` is ``label_studio:<project>:<annotation id>@<updated_at>``, so importing the same data
  twice adds nothing.

A task with any problem (missing keys, a choice the rubric does not offer, a value of the wrong type, an
unknown clip) is reported by its id with every reason and skipped as a whole; the other tasks are imported.

Example::

    report = import_export(project, "export.json")
    report.imported, report.failed    # 41, [{"task": 17, "error": "annotation 52: event: 'FIRE' is not one of ..."}]
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

from sqlalchemy import func, or_, select

from annotate_ui.label_studio.config import LabelStudioError, fields_from_result
from curation.errors import CliptuneError
from curation.records.annotations import add_annotation
from curation.records.store import Annotation, Clip, Project, User
from curation.records.users import NAME_PATTERN, get_or_create_user

EXTERNAL_PREFIX = "label_studio:"


@dataclass
class LabelStudioImportReport:
    tasks: int = 0  # tasks read
    imported: int = 0  # annotation versions written (submitted and skipped)
    skipped: int = 0  # of those, cancelled in Label Studio, stored with status "skipped"
    unchanged: int = 0  # already in the store: same annotation, same update time
    # older than the same person's later answer made outside Label Studio (the app, an import): not stored, so the
    # later answer stays current
    superseded: int = 0
    failed: list[dict[str, Any]] = field(default_factory=list)  # {"task": id, "error": reasons}
    users_created: list[str] = field(default_factory=list)

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
    report = import_tasks(project, tasks, user_map=user_map)
    project.log("label_studio_import", file=str(path), **_summary(report))
    return report


def import_tasks(
    project: Project,
    tasks: list[Any],
    *,
    task_clips: dict[int, int] | None = None,
    user_map: dict[str, str] | None = None,
) -> LabelStudioImportReport:
    """Import Label Studio tasks (export format). ``task_clips`` maps task ids to clip ids (from ``push``)."""
    bad_names = sorted(name for name in (user_map or {}).values() if not NAME_PATTERN.match(str(name)))
    if bad_names:
        raise CliptuneError(f"user map: {bad_names} are not valid user names (letters, digits and _ . @ -)")
    report = LabelStudioImportReport(tasks=len(tasks))
    clips = _ClipIndex(project, task_clips or {})
    rubric = project.rubric
    planned: list[dict[str, Any]] = []
    for index, task in enumerate(tasks):
        task_id = task.get("id") if isinstance(task, dict) else None
        try:
            planned.extend(_check_task(task, clips, rubric, user_map or {}))
        except LabelStudioError as exc:
            report.failed.append({"task": task_id if task_id is not None else f"#{index}", "error": str(exc)})
    planned.sort(key=lambda row: (row["updated_at"], row["annotation_id"]))

    known, current = _stored_versions(project)
    answered_elsewhere = _latest_other_answers(project)
    with project.session() as session:
        existing_users = set(session.scalars(select(User.name)))
    for row in planned:
        key = (row["clip_id"], row["user"])
        if (row["external_id"], *key) in known:
            report.unchanged += 1
            continue
        elsewhere = answered_elsewhere.get(key)
        if elsewhere is not None and row["updated_at"] and elsewhere > _naive_utc(row["updated_at"]):
            report.superseded += 1
            continue
        latest = current.get(key)
        # A re-save in Label Studio that changed nothing is not a new version.
        if latest is not None and latest[0].split("@")[0] == row["external_id"].split("@")[0] and latest[1:] == (
            row["status"], row["fields"]
        ):
            report.unchanged += 1
            continue
        if row["user"] not in existing_users:
            get_or_create_user(project, row["user"], "annotator")
            existing_users.add(row["user"])
            report.users_created.append(row["user"])
        add_annotation(project, row["clip_id"], row["user"], fields=row["fields"], seconds_spent=row["seconds"],
                       status=row["status"], source="label_studio", external_id=row["external_id"])
        known.add((row["external_id"], *key))
        current[key] = (row["external_id"], row["status"], row["fields"])
        report.imported += 1
        report.skipped += row["status"] == "skipped"
    return report


def _summary(report: LabelStudioImportReport) -> dict[str, Any]:
    return {"tasks": report.tasks, "imported": report.imported, "unchanged": report.unchanged,
            "superseded": report.superseded, "failed": len(report.failed), "users_created": report.users_created}


def _stored_versions(project: Project) -> tuple[set[tuple[str, int, str]], dict[tuple[int, str], tuple]]:
    """The Label Studio versions already stored, and the latest Label Studio row per (clip, user)."""
    with project.session() as session:
        rows = session.execute(
            select(Annotation.external_id, Annotation.clip_id, User.name, Annotation.status, Annotation.fields)
            .join(User, User.id == Annotation.user_id)
            .where(Annotation.external_id.like(f"{EXTERNAL_PREFIX}%"))
            .order_by(Annotation.id)
        ).all()
    known = {(ext, clip_id, name) for ext, clip_id, name, _, _ in rows}
    current = {(clip_id, name): (ext, status, fields) for ext, clip_id, name, status, fields in rows}
    return known, current


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
    """A timestamp from :func:`_timestamp` (UTC, ending in Z) as the store's naive UTC."""
    return datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%S.%fZ")


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


def _check_task(task: Any, clips: _ClipIndex, rubric: Any, user_map: dict[str, str]) -> list[dict[str, Any]]:
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
    rows = []
    for index, annotation in enumerate(annotations):
        try:
            rows.append(_check_annotation(annotation, task, clip_id, rubric, user_map))
        except LabelStudioError as exc:
            label = annotation.get("id", f"#{index}") if isinstance(annotation, dict) else f"#{index}"
            problems.append(f"annotation {label}: {exc}")
    if problems:
        raise LabelStudioError("; ".join(problems))
    return rows


def _check_annotation(annotation: Any, task: dict, clip_id: int, rubric: Any, user_map: dict[str, str]) -> dict:
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
        checks["user"] = lambda: _user_name(annotation["completed_by"], user_map)
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


def _user_name(completed_by: Any, user_map: dict[str, str]) -> str:
    if isinstance(completed_by, int) and not isinstance(completed_by, bool):
        if str(completed_by) in user_map:
            return user_map[str(completed_by)]
        raise LabelStudioError(f"'completed_by' is the bare user id {completed_by}: export with user details "
                               f"(cliptune labelstudio pull does) or map it, e.g. --user {completed_by}=ana")
    if not isinstance(completed_by, dict):
        raise LabelStudioError(f"'completed_by' must be a user object or id, not {type(completed_by).__name__}")
    keys = [completed_by.get(k) for k in ("email", "username", "id")]
    for key in keys:
        if key not in (None, "") and str(key) in user_map:
            return user_map[str(key)]
    name = next((k for k in keys[:2] if isinstance(k, str) and k), None)
    if name is None:
        raise LabelStudioError("'completed_by' has no email or username; map its id with --user ID=NAME")
    if not NAME_PATTERN.match(name):
        raise LabelStudioError(f"Label Studio user {name!r} is not a valid cliptune user name (letters, digits and "
                               f"_ . @ -): map it with --user {name}=NAME")
    return name

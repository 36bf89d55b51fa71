"""The Label Studio bridge: push a project's clips as tasks, pull the annotations back (label-studio-sdk 2.x).

Teams already labelling in Label Studio keep doing so; cliptune adds what its open edition lacks (agreement,
adjudication, audit, splits, training). The pieces:

- :func:`push` creates (or updates) a Label Studio project whose labelling config is made from the rubric
  (:mod:`annotate_ui.label_studio.config`), and imports one task per clip that points at the clip's
  browser-playable proxy: through Label Studio's local-files serving (start Label Studio with
  ``LOCAL_FILES_SERVING_ENABLED=true LOCAL_FILES_DOCUMENT_ROOT=PROJECT/media``) or under a ``media_url`` you
  serve yourself. The task ↔ clip ids are kept in the project's event log (``label_studio_push`` events), so
  pushing again imports only new clips. Optionally a model's outputs go along as predictions
  (pre-annotations) with their ``model_version``: inside the task import for new tasks, through the bulk
  predictions endpoint for tasks pushed before (no request per prediction).
- :func:`pull` exports the Label Studio project through the API and imports its annotations
  (:func:`annotate_ui.label_studio.tasks.import_tasks`: who, how long, skipped, new versions; idempotent).
  Who is who is remembered per Label Studio user id (:mod:`annotate_ui.label_studio.identities`).
- :func:`annotate_ui.label_studio.tasks.import_export` does the same from an exported JSON file, offline.

The API key is a Label Studio personal access token (Account & Settings), given as ``api_key`` or in
``$LABEL_STUDIO_API_KEY``; it is never stored. The server URL is remembered after the first push.

Example::

    report = push(project, url="http://127.0.0.1:8080", api_key=token)
    report.project_id, report.tasks_added        # 3, 120
    pull(project).imported                       # annotations of every annotator, by name
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import select

from annotate_ui.label_studio.config import (
    FPS_KEY,
    VIDEO_TAG,
    LabelStudioError,
    fields_from_result,
    instructions_html,
    label_config,
    result_from_fields,
)
from annotate_ui.label_studio.predictions import prediction_results, read_predictions
from annotate_ui.label_studio.tasks import LabelStudioImportReport, _summary, import_export, import_tasks
from curation.records.store import Clip, Event, Project

PUSH_EVENT = "label_studio_push"
PREDICTIONS_EVENT = "label_studio_predictions"
IMPORT_BATCH = 500
PREDICTIONS_BATCH = 1000  # predictions per bulk request for tasks pushed before


@dataclass
class PushReport:
    url: str
    project_id: int
    project_created: bool = False
    config_updated: bool = False
    tasks_added: int = 0
    tasks_existing: int = 0  # clips pushed before: not imported again
    no_proxy: list[int] = field(default_factory=list)  # clips without a browser proxy: not pushed
    predictions_added: int = 0
    predictions_existing: int = 0
    predictions_failed: list[dict[str, Any]] = field(default_factory=list)  # {"clip", "error"}
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "project_url": f"{self.url}/projects/{self.project_id}/data"}


def connect(url: str, api_key: str | None = None) -> Any:
    """A label-studio-sdk client for ``url``, with ``api_key`` or ``$LABEL_STUDIO_API_KEY``."""
    from label_studio_sdk import LabelStudio
    from label_studio_sdk.core.api_error import ApiError

    api_key = api_key or os.environ.get("LABEL_STUDIO_API_KEY")
    if not api_key:
        raise LabelStudioError("no Label Studio API key: give --api-key or set $LABEL_STUDIO_API_KEY (a personal "
                               "access token from Label Studio's Account & Settings page)")
    try:
        return LabelStudio(base_url=_clean_url(url), api_key=api_key, timeout=120, max_retries=1)
    except ApiError as exc:
        raise LabelStudioError(f"the Label Studio API key was refused: {_detail(exc)}") from None


def _clean_url(url: str) -> str:
    url = url.strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise LabelStudioError(f"Label Studio URL {url!r} must start with http:// or https://")
    return url


def _detail(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        detail = body.get("validation_errors") or body.get("detail") or body
        return json.dumps(detail, ensure_ascii=False)[:500] if not isinstance(detail, str) else detail
    return str(body or exc)[:500]


@contextmanager
def _api(what: str, url: str) -> Iterator[None]:
    """Turn the SDK's and httpx's errors into one-line LabelStudioErrors that say what to do."""
    import httpx
    from label_studio_sdk.core.api_error import ApiError

    try:
        yield
    except ApiError as exc:
        status = getattr(exc, "status_code", None)
        hint = {401: " — the API key was refused: check --api-key / $LABEL_STUDIO_API_KEY",
                403: " — this Label Studio user may not do that"}.get(status, "")
        raise LabelStudioError(f"Label Studio ({url}): {what} failed ({status}): {_detail(exc)}{hint}") from None
    except httpx.HTTPError as exc:
        raise LabelStudioError(f"cannot reach Label Studio at {url} ({what}): {exc}; is it running?") from None


def linked_project(project: Project, url: str | None = None) -> dict[str, Any] | None:
    """The Label Studio project this project was last pushed to (at ``url``, or anywhere), with its task map.

    Returns ``{"url", "project_id", "tasks": {task_id: clip_id}, "predictions": {model_version: {task ids}}}``.
    """
    url = _clean_url(url) if url else None
    with project.session() as session:
        events = list(session.scalars(
            select(Event).where(Event.action.in_((PUSH_EVENT, PREDICTIONS_EVENT))).order_by(Event.id)
        ))
    pushes = [e.detail for e in events if e.action == PUSH_EVENT and (url is None or e.detail.get("url") == url)]
    if not pushes:
        return None
    link = {"url": pushes[-1]["url"], "project_id": pushes[-1]["project_id"], "tasks": {}, "predictions": {}}
    for event in events:
        detail = event.detail
        if (detail.get("url"), detail.get("project_id")) != (link["url"], link["project_id"]):
            continue
        if event.action == PUSH_EVENT:
            link["tasks"].update({int(task): clip for task, clip in detail.get("tasks", {}).items()})
        else:
            link["predictions"].setdefault(detail["model_version"], set()).update(detail.get("tasks", []))
    return link


def push(
    project: Project,
    *,
    url: str | None = None,
    api_key: str | None = None,
    title: str | None = None,
    media_url: str | None = None,
    document_root: str | os.PathLike | None = None,
    predictions: dict[int, dict[str, Any] | str] | None = None,
    model_version: str | None = None,
) -> PushReport:
    """Create or update the Label Studio project and import a task for every clip not pushed yet.

    ``media_url``: serve the proxies yourself; a task's video is ``media_url + proxy path under media/``.
    Without it, tasks use Label Studio's local-files serving: ``document_root`` is the server's
    ``LOCAL_FILES_DOCUMENT_ROOT`` (default: this project's ``media`` folder), and a local storage on the proxies
    folder is added to the project so that Label Studio may serve them. ``predictions`` maps clip ids to a
    model's fields or output text, pushed as pre-annotations with ``model_version``.
    """
    started = time.perf_counter()
    link = linked_project(project, url)
    if url is None and link is None:
        raise LabelStudioError("give --url: this project has not been pushed to Label Studio yet")
    url = _clean_url(url or link["url"])
    if predictions and not model_version:
        raise LabelStudioError("predictions need a model version (--model-version) so Label Studio can show them")
    client = connect(url, api_key)
    rubric = project.rubric
    config, instructions = label_config(rubric), instructions_html(rubric)
    existing = _get_project(client, url, link["project_id"]) if link is not None else None
    report = PushReport(url=url, project_id=existing.id if existing else 0)
    if existing is None:
        name = title or project.name
        with _api("creating the project", url):
            created = client.projects.create(
                title=name if len(name) >= 3 else f"cliptune {name}", description=rubric.description or rubric.prompt,
                label_config=config, expert_instruction=instructions, show_instruction=True, show_skip_button=True,
            )
        report.project_id, report.project_created, link = created.id, True, None
        # Remembered at once: a push that fails later re-uses this project instead of making another.
        project.log(PUSH_EVENT, url=url, project_id=report.project_id, tasks={})
    elif existing.label_config != config or existing.expert_instruction != instructions or (
        title and existing.title != title
    ):
        changes = {"title": title} if title else {}
        with _api("updating the labelling config (a rubric change that drops fields already answered is refused)",
                  url):
            client.projects.update(existing.id, label_config=config, expert_instruction=instructions, **changes)
        report.config_updated = True

    with project.session() as session:
        clips = list(session.scalars(select(Clip).order_by(Clip.id)))
    task_map = dict(link["tasks"]) if link else {}
    pushed = set(task_map.values())
    report.no_proxy = [c.id for c in clips if not c.proxy_path]
    new = [c for c in clips if c.proxy_path and c.id not in pushed]
    report.tasks_existing = sum(1 for c in clips if c.id in pushed)
    results, report.predictions_failed = prediction_results(project.rubric, predictions or {})
    done = set((link or {}).get("predictions", {}).get(model_version, set()))
    predicted_now: set[int] = set()  # clips whose prediction went along with their new task
    if new:
        videos = _video_urls(project, new, media_url, document_root)
        if media_url is None:
            _ensure_local_storage(client, url, report.project_id, project, new)
        for offset in range(0, len(new), IMPORT_BATCH):
            batch = new[offset : offset + IMPORT_BATCH]
            # A new task carries its prediction in the import itself: no request per prediction.
            tasks = [{"data": {VIDEO_TAG: videos[c.id], FPS_KEY: c.fps, "clip_id": c.id, "cliptune_sha256": c.sha256,
                               "clip_path": c.path},
                      **({"predictions": [{"result": results[c.id], "model_version": model_version}]}
                         if c.id in results else {})} for c in batch]
            with _api("importing tasks", url):
                response = client.projects.import_tasks(report.project_id, request=tasks, return_task_ids=True)
            ids = list(response.task_ids or [])
            if len(ids) != len(batch):
                raise LabelStudioError(f"Label Studio answered with {len(ids)} task ids for {len(batch)} clips, so "
                                       "cliptune cannot tell which task shows which clip: delete this batch's tasks "
                                       f"in Label Studio project {report.project_id}, then push again")
            added = dict(zip(ids, (c.id for c in batch), strict=True))
            task_map.update(added)
            report.tasks_added += len(added)
            predicted = [task for task, clip in added.items() if clip in results]
            predicted_now.update(added[task] for task in predicted)
            report.predictions_added += len(predicted)
            # Logged per batch, tasks and their predictions together: a push that stops half-way never imports
            # the same clip, or the same prediction, twice when re-run.
            _log(project, (PUSH_EVENT, {"url": url, "project_id": report.project_id,
                                        "tasks": {str(k): v for k, v in added.items()}}),
                 *([(PREDICTIONS_EVENT, {"url": url, "project_id": report.project_id,
                                         "model_version": model_version, "tasks": predicted})] if predicted else []))
    if results:
        later = {clip: result for clip, result in results.items() if clip not in predicted_now}
        _push_predictions(client, url, project, report, task_map, later, model_version, done)
        if report.predictions_added and (existing is None or existing.model_version != model_version):
            # Label Studio shows the predictions of the project's current model version only.
            with _api("setting the project's model version", url):
                client.projects.update(report.project_id, model_version=model_version)
    report.seconds = round(time.perf_counter() - started, 3)
    return report


def _get_project(client: Any, url: str, project_id: int) -> Any | None:
    """The Label Studio project, or None if it was deleted there (push then makes a new one)."""
    from label_studio_sdk.core.api_error import ApiError

    with _api("reading the project", url):
        try:
            return client.projects.get(project_id)
        except ApiError as exc:
            if getattr(exc, "status_code", None) == 404:
                return None
            raise


def _video_urls(project: Project, clips: list[Clip], media_url: str | None, document_root: Any) -> dict[int, str]:
    media = project.media_dir.resolve()
    if media_url is not None:
        base = media_url if media_url.endswith("/") else media_url + "/"
        return {c.id: base + quote((project.path / c.proxy_path).resolve().relative_to(media).as_posix())
                for c in clips}
    root = Path(document_root).resolve() if document_root is not None else media
    urls = {}
    for clip in clips:
        proxy = (project.path / clip.proxy_path).resolve()
        try:
            relative = proxy.relative_to(root).as_posix()
        except ValueError:
            raise LabelStudioError(f"clip {clip.id}'s proxy {proxy} is not under the document root {root}: start "
                                   "Label Studio with LOCAL_FILES_DOCUMENT_ROOT set to this project's media folder "
                                   "(or a folder above it, given as --document-root), or use --media-url") from None
        urls[clip.id] = f"/data/local-files/?d={quote(relative)}"
    return urls


def _ensure_local_storage(client: Any, url: str, project_id: int, project: Project, clips: list[Clip]) -> None:
    """Label Studio serves a local file only when a local storage of the project covers its folder."""
    folders = {str((project.path / c.proxy_path).resolve().parent) for c in clips}
    with _api("listing local storages", url):
        storages = client.import_storage.local.list(project=project_id)
    covered = {s.path for s in storages}
    for folder in sorted(folders - covered):
        # No sync: syncing would import every file of the folder as an extra task.
        with _api(f"adding a local storage for {folder} (is LOCAL_FILES_SERVING_ENABLED=true, and the folder under "
                  "LOCAL_FILES_DOCUMENT_ROOT, on the Label Studio machine? otherwise use --media-url)", url):
            client.import_storage.local.create(project=project_id, path=folder, use_blob_urls=True,
                                               title="cliptune proxies")


def _log(project: Project, *events: tuple[str, dict[str, Any]]) -> None:
    """Several events in one transaction: remembered together or not at all."""
    with project.write() as session:
        session.add_all([Event(action=action, detail=detail) for action, detail in events])


def _push_predictions(client: Any, url: str, project: Project, report: PushReport, task_map: dict[int, int],
                      results: dict[int, list], model_version: str, done: set[int]) -> None:
    """Predictions for tasks pushed before: in bulk, :data:`PREDICTIONS_BATCH` per request."""
    task_of = {clip: task for task, clip in task_map.items()}
    todo = []
    for clip_id, result in results.items():
        task = task_of.get(clip_id)
        if task is None:
            report.predictions_failed.append({"clip": clip_id, "error": "not pushed to Label Studio"})
        elif task in done:
            report.predictions_existing += 1
        else:
            todo.append({"task": task, "result": result, "model_version": model_version})
    for offset in range(0, len(todo), PREDICTIONS_BATCH):
        batch = todo[offset : offset + PREDICTIONS_BATCH]
        with _api("adding predictions", url):
            client.projects.import_predictions(report.project_id, request=batch)
        sent = [item["task"] for item in batch]
        project.log(PREDICTIONS_EVENT, url=url, project_id=report.project_id, model_version=model_version, tasks=sent)
        report.predictions_added += len(sent)


def pull(
    project: Project,
    *,
    url: str | None = None,
    api_key: str | None = None,
    project_id: int | None = None,
    user_map: dict[str, str] | None = None,
    timeout_s: float = 300,
) -> LabelStudioImportReport:
    """Import every annotation of the linked Label Studio project (see :mod:`annotate_ui.label_studio.tasks`).

    ``user_map`` (``{"bo@lobby.test": "bo"}``: a Label Studio e-mail, username or user id -> cliptune name) is
    remembered per Label Studio user id: later pulls and export-file imports file that user the same way.
    """
    link = linked_project(project, url)
    if link is None and (url is None or project_id is None):
        raise LabelStudioError("this project has not been pushed to Label Studio: push it first, give --url and "
                               "--project-id, or import an export file with `cliptune labelstudio import-export`")
    url = _clean_url(url or link["url"])
    project_id = project_id or link["project_id"]
    task_clips = link["tasks"] if link and link["project_id"] == project_id else {}
    client = connect(url, api_key)
    tasks = _export(client, url, project_id, timeout_s)
    report = import_tasks(project, tasks, task_clips=task_clips, user_map=user_map,
                          origin={"url": url, "project_id": project_id})
    project.log("label_studio_pull", url=url, project_id=project_id, **_summary(report))
    return report


def _export(client: Any, url: str, project_id: int, timeout_s: float) -> list[Any]:
    """A JSON export snapshot of the project, with who annotated (not just user ids); the snapshot is removed."""
    with _api("exporting the project", url):
        snapshot = client.projects.exports.create(
            project_id, serialization_options={"annotations__completed_by": {"only_id": False}}
        )
        deadline = time.monotonic() + timeout_s
        while snapshot.status not in ("completed", "failed"):  # the open edition finishes at once
            if time.monotonic() > deadline:
                raise LabelStudioError(f"the export of project {project_id} did not finish in {timeout_s:.0f} s")
            time.sleep(1)
            snapshot = client.projects.exports.get(project_id, export_pk=snapshot.id)
        if snapshot.status == "failed":
            raise LabelStudioError(f"Label Studio could not export project {project_id}; see its log")
        data = b"".join(client.projects.exports.download(project_id, export_pk=snapshot.id, export_type="JSON"))
        client.projects.exports.delete(project_id, export_pk=snapshot.id)
    try:
        tasks = json.loads(data)
    except json.JSONDecodeError as exc:
        raise LabelStudioError(f"Label Studio's export is not JSON: {exc.msg}") from None
    if not isinstance(tasks, list):
        raise LabelStudioError("Label Studio's export is not a list of tasks")
    return tasks


__all__ = ["LabelStudioError", "LabelStudioImportReport", "PushReport", "connect", "fields_from_result",
           "import_export", "import_tasks", "instructions_html", "label_config", "linked_project", "pull", "push",
           "read_predictions", "result_from_fields"]

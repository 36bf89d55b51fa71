"""`cliptune ui`, `demo` and `labelstudio …`: the browser app and the Label Studio bridge (see
:mod:`curation.cli.common`). Streamlit and the Label Studio SDK are imported inside the commands.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from curation.cli.common import JsonOption, ProjectArg, err, open_project, out, print_json
from curation.errors import CliptuneError


def ui_command(
    project: ProjectArg,
    port: Annotated[int, typer.Option(help="Port of the app.")] = 8501,
    address: Annotated[str, typer.Option(help="Address to listen on. The default keeps the app on this machine; "
                                              "another address lets others on the network connect.")] = "127.0.0.1",
    idle_hours: Annotated[float, typer.Option(help="Log people out after this many idle hours.")] = 8.0,
    as_json: JsonOption = False,
) -> None:
    """Serve the browser app (log in, label, review, dashboard) until Ctrl+C. No usage statistics are sent."""
    from annotate_ui.server import serve

    if not idle_hours > 0:
        raise CliptuneError(f"--idle-hours must be positive, got {idle_hours}")
    open_project(project)  # a clear one-line error before anything is printed or started
    url = f"http://{address}:{port}"
    if as_json:
        print_json({"url": url, "project": str(project)})
    else:
        out.print(f"cliptune app for {project} on {url} (Ctrl+C stops it)", highlight=False, soft_wrap=True)
    if address not in ("127.0.0.1", "localhost", "::1"):
        err.print(f"warning: listening on {address}: anyone who can reach this machine can open the login page",
                  highlight=False)
    sys.exit(serve(project, port=port, address=address, idle_s=idle_hours * 3600))


def demo_command(
    project: Annotated[Path, typer.Argument(help="Folder for the demo project.")] = Path("projects/demo"),
    sample: Annotated[Path, typer.Option(help="Folder of the synthetic sample (made if missing).")] = Path(
        "data/sample"),
    clips: Annotated[int, typer.Option(help="Clips in the sample, when it is made.")] = 40,
    port: Annotated[int, typer.Option(help="Port of the app.")] = 8501,
    serve_app: Annotated[bool, typer.Option("--serve/--no-serve", help="Start the app afterwards.")] = True,
    as_json: JsonOption = False,
) -> None:
    """Build the demo project (sample clips, people, assignments, simulated answers) and serve the app on it."""
    from curation.demo import DEMO_PASSWORD, DEMO_PEOPLE, build_demo

    result = build_demo(project, sample, n_clips=clips)
    logins = dict(DEMO_PEOPLE)
    url = f"http://127.0.0.1:{port}"
    if as_json:
        print_json({**result, "url": url, "logins": logins})
    else:
        out.print(f"demo project {project}: {result['ingest']['clips']} clips; answers imported: "
                  f"{(result.get('annotations') or {}).get('imported', 'kept from before')}", highlight=False,
                  soft_wrap=True)
        out.print(f"open {url} and log in as one of: "
                  + ", ".join(f"{name} ({role})" for name, role in logins.items())
                  + f" — password {DEMO_PASSWORD}", highlight=False, soft_wrap=True)
    if serve_app:
        from annotate_ui.server import serve

        sys.exit(serve(project, port=port))


labelstudio_app = typer.Typer(help="Label Studio bridge: push clips as tasks, pull annotations back, import "
                                   "an export file.", no_args_is_help=True)
LsUrlOption = Annotated[str | None, typer.Option("--url", help="Label Studio's address, e.g. http://127.0.0.1:8080 "
                                                               "(default: the one pushed to last).")]
LsKeyOption = Annotated[str | None, typer.Option("--api-key", help="Personal access token (default: "
                                                                   "$LABEL_STUDIO_API_KEY). Never stored.")]
LsUserOption = Annotated[list[str] | None, typer.Option("--user", help="Map a Label Studio e-mail, username or user "
                                                                       "id to a cliptune user: EMAIL=NAME (repeat). "
                                                                       "Remembered: later imports file that user the "
                                                                       "same way; give it again to change it.")]


def _ls_user_map(values: list[str] | None) -> dict[str, str]:
    pairs = {}
    for value in values or []:
        key, sep, name = value.partition("=")
        if not sep or not key.strip() or not name.strip():
            raise CliptuneError(f"--user {value!r}: write it as LABEL_STUDIO_EMAIL=CLIPTUNE_NAME")
        pairs[key.strip()] = name.strip()
    return pairs


def _ls_report(result: dict[str, Any], what: str) -> None:
    out.print(f"{what}: {result['imported']} annotation versions imported ({result['skipped']} skipped in Label "
              f"Studio), {result['unchanged']} unchanged, {len(result['failed'])} failed, of {result['tasks']} tasks"
              + (f"; new annotators: {', '.join(result['users_created'])}" if result["users_created"] else ""),
              highlight=False, soft_wrap=True)
    for change in result.get("identity_changes", []):
        out.print(f"  Label Studio user {change['user_id']}" + (f" ({change['email']})" if change["email"] else "")
                  + f" is now filed as {change['to']}, no longer as {change['from']} (remembered for later imports;"
                  f" answers already stored stay under {change['from']})",
                  highlight=False, markup=False, soft_wrap=True)
    if result.get("kept_earlier_name"):
        err.print(f"  {result['kept_earlier_name']} updated Label Studio annotations stay under the name they were "
                  "first stored under, so that no answer is counted twice as two people's", highlight=False,
                  soft_wrap=True)
    if result.get("users_unmatched"):
        err.print(f"  --user {', '.join(result['users_unmatched'])}: no such Label Studio user in this data; nothing "
                  "remembered for it", highlight=False, markup=False, soft_wrap=True)
    if result.get("superseded"):
        err.print(f"  {result['superseded']} Label Studio answers are older than the same person's later answer "
                  "in cliptune and were not imported (the later answer stays current)", highlight=False)
    for failure in result["failed"]:
        where = f"task {failure['task']}" + (f", annotation {failure['annotation']}" if "annotation" in failure else "")
        err.print(f"  {where}: {failure['error']}", highlight=False, markup=False, soft_wrap=True)


@labelstudio_app.command("push")
def labelstudio_push(
    project: ProjectArg,
    url: LsUrlOption = None,
    api_key: LsKeyOption = None,
    title: Annotated[str | None, typer.Option(help="Label Studio project title (default: the project name).")] = None,
    media_url: Annotated[str | None, typer.Option(help="URL under which you serve PROJECT/media yourself (default: "
                                                       "Label Studio's local-files serving).")] = None,
    document_root: Annotated[Path | None, typer.Option(help="Label Studio's LOCAL_FILES_DOCUMENT_ROOT, if not "
                                                            "PROJECT/media.")] = None,
    predictions: Annotated[Path | None, typer.Option(help="JSONL of model answers, {\"clip\": id, \"output\": "
                                                          "text}, pushed as pre-annotations.")] = None,
    model_version: Annotated[str | None, typer.Option(help="Model version of --predictions.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Create or update the Label Studio project (config from the rubric) and add a task per new clip."""
    from annotate_ui.label_studio.bridge import push, read_predictions

    answers = read_predictions(predictions) if predictions is not None else None
    report = push(open_project(project), url=url, api_key=api_key, title=title, media_url=media_url,
                  document_root=document_root, predictions=answers, model_version=model_version).to_dict()
    if as_json:
        print_json(report)
        return
    out.print(f"{'created' if report['project_created'] else 'updated'} Label Studio project {report['project_id']}: "
              f"{report['tasks_added']} tasks added, {report['tasks_existing']} already there"
              + (f", {report['predictions_added']} predictions" if predictions else "")
              + f" — {report['project_url']}", highlight=False, soft_wrap=True)
    if report["no_proxy"]:
        err.print(f"  {len(report['no_proxy'])} clips have no browser proxy and were not pushed", highlight=False)
    for failure in report["predictions_failed"]:
        err.print(f"  prediction for clip {failure['clip']}: {failure['error']}", highlight=False, markup=False)


@labelstudio_app.command("pull")
def labelstudio_pull(
    project: ProjectArg,
    url: LsUrlOption = None,
    api_key: LsKeyOption = None,
    project_id: Annotated[int | None, typer.Option(help="Label Studio project id (default: the pushed one).")] = None,
    user: LsUserOption = None,
    as_json: JsonOption = False,
) -> None:
    """Import the annotations made in Label Studio: by annotator, time spent, skips, new versions. Idempotent."""
    from annotate_ui.label_studio.bridge import pull

    opened = open_project(project)
    result = pull(opened, url=url, api_key=api_key, project_id=project_id, user_map=_ls_user_map(user)).to_dict()
    _refresh_after_import(opened, result)
    if as_json:
        print_json(result)
    else:
        _ls_report(result, "pulled")


@labelstudio_app.command("import-export")
def labelstudio_import_export(
    project: ProjectArg,
    path: Annotated[Path, typer.Argument(help="A Label Studio JSON export file.")],
    user: LsUserOption = None,
    as_json: JsonOption = False,
) -> None:
    """Import a Label Studio JSON export offline. Malformed tasks are reported by id; the rest is imported."""
    from annotate_ui.label_studio.bridge import import_export

    opened = open_project(project)
    result = import_export(opened, path, user_map=_ls_user_map(user)).to_dict()
    _refresh_after_import(opened, result)
    if as_json:
        print_json(result)
    else:
        _ls_report(result, f"imported {path}")


def _refresh_after_import(project: Any, result: dict[str, Any]) -> None:
    """The gold answers and agreement rows of the clips that got answers, now rather than at the next page."""
    if result.get("imported"):
        from curation.review.refresh import refresh_derived_state

        result["derived_state"] = refresh_derived_state(project)


def register(app: typer.Typer) -> None:
    """Add ``ui``, ``demo`` and ``labelstudio …`` to ``cliptune`` (the ``cliptune.commands`` entry point)."""
    app.command("ui")(ui_command)
    app.command("demo")(demo_command)
    app.add_typer(labelstudio_app, name="labelstudio")

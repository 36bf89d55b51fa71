"""The `cliptune` command: a thin shell over library functions. It parses, calls and prints.

Every verb takes ``--json`` for machine-readable output. Mistakes in the user's input print one line on
stderr and exit non-zero; tracebacks are for bugs only.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from curation.errors import CliptuneError

app = typer.Typer(
    help="cliptune: turn video clips into fine-tuning datasets for video VLMs, locally.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
rubric_app = typer.Typer(help="Check and inspect rubrics.", no_args_is_help=True)
users_app = typer.Typer(help="Manage the people who label and review.", no_args_is_help=True)
app.add_typer(rubric_app, name="rubric")
app.add_typer(users_app, name="users")

out = Console()
err = Console(stderr=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of a table.")]
ProjectArg = Annotated[Path, typer.Argument(help="The project folder (made by `cliptune init`).")]
BUILTIN_RUBRICS = Path(__file__).resolve().parent.parent / "rubrics"


def _print_json(data: Any) -> None:
    out.file.write(json.dumps(data, indent=2, default=str, ensure_ascii=False) + "\n")


def _rubric_path(value: str) -> Path:
    """A rubric file path, or the name of a rubric shipped in rubrics/ (e.g. `surveillance_alert`)."""
    path = Path(value)
    if path.exists() or path.suffix:
        return path
    builtin = BUILTIN_RUBRICS / f"{value}.yaml"
    return builtin if builtin.exists() else path


def _open(project: Path):
    from curation.store import Project

    return Project.open(project)


@app.command()
def init(
    project: ProjectArg,
    rubric: Annotated[str, typer.Option(help="Rubric YAML file, or the name of a shipped rubric.")],
    name: Annotated[str | None, typer.Option(help="Project name (default: the folder name).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Create a project folder with its database and rubric."""
    from curation.store import Project

    created = Project.init(project, _rubric_path(rubric), name=name)
    result = {"project": created.name, "path": str(project), "rubric": created.rubric.name,
              "rubric_version": created.rubric_version}
    if as_json:
        _print_json(result)
    else:
        out.print(f"Created project [bold]{created.name}[/] in {project} (rubric {created.rubric.name} "
                  f"{created.rubric_version}). Next: cliptune ingest {project} FOLDER")


@app.command()
def ingest(
    project: ProjectArg,
    sources: Annotated[list[Path], typer.Argument(help="Video files or folders (searched recursively).")],
    metadata: Annotated[
        Path | None, typer.Option(help="CSV with a `file` column; other columns become metadata.")
    ] = None,
    group_by: Annotated[str | None, typer.Option(help="Metadata column that groups clips (camera, session…).")] = None,
    segment: Annotated[float | None, typer.Option(help="Cut long recordings into clips of this many seconds.")] = None,
    proxy_height: Annotated[int, typer.Option(help="Height of the browser proxies in pixels.")] = 480,
    workers: Annotated[int | None, typer.Option(help="Worker processes (default: one per core).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Add video files: hash, skip duplicates, probe, make browser proxies and thumbnails, join metadata."""
    from curation.ingest import ingest as run_ingest

    opened = _open(project)
    progress_bar = None
    callback = None
    if not as_json and sys.stderr.isatty():
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        progress_bar = Progress(TextColumn("ingest"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                                TextColumn("{task.description}"), console=err)
        task = progress_bar.add_task("", total=None)

        def callback(done: int, total: int, path: str) -> None:
            progress_bar.update(task, completed=done, total=total, description=path)

        progress_bar.start()
    try:
        report = run_ingest(opened, sources, metadata=metadata, group_by=group_by, segment_s=segment,
                            proxy_height=proxy_height, workers=workers, progress=callback)
    finally:
        if progress_bar is not None:
            progress_bar.stop()
    result = report.to_dict()
    if as_json:
        _print_json(result)
        return
    out.print(f"added {report.added}, duplicates {report.duplicates}, failed {len(report.failed)}, "
              f"ignored {report.ignored} non-video files; {report.clips} clips in the project "
              f"({report.seconds:.1f} s)")
    for failure in report.failed:
        err.print(f"  failed: {failure['path']}: {failure['error']}", highlight=False)


@app.command()
def status(project: ProjectArg, as_json: JsonOption = False) -> None:
    """Counts of clips, users, annotations and reviews."""
    from curation.status import project_status

    result = project_status(_open(project))
    if as_json:
        _print_json(result)
        return
    table = Table(title=f"{result['project']} — rubric {result['rubric']['name']} {result['rubric']['version']}")
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_column("detail")
    table.add_row("clips", str(result["clips"]["total"]),
                  f"{result['clips']['groups']} groups, {result['clips']['hours']} h")
    table.add_row("users", str(result["users"]["total"]), _fmt_counts(result["users"]["by_role"]))
    table.add_row("assignments", str(result["assignments"]), "")
    table.add_row("annotations", str(result["annotations"]["current"]),
                  f"{_fmt_counts(result['annotations']['by_status'])}; {result['annotations']['versions']} versions")
    table.add_row("reviews", str(result["reviews"]["total"]), f"{result['reviews']['clips_reviewed']} clips")
    out.print(table)


def _fmt_counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{key} {value}" for key, value in sorted(counts.items())) or "-"


@rubric_app.command("check")
def rubric_check(
    path: Annotated[str, typer.Argument(help="Rubric YAML file, or the name of a shipped rubric.")],
    as_json: JsonOption = False,
) -> None:
    """Validate a rubric file: schema, template, and that every example renders and parses back."""
    from curation.rubric import load_rubric

    rubric = load_rubric(_rubric_path(path))
    result = {"name": rubric.name, "version": rubric.version, "fields": [f.name for f in rubric.fields],
              "stratify": rubric.stratify_fields, "examples": len(rubric.examples), "ok": True}
    if as_json:
        _print_json(result)
        return
    out.print(f"{path}: ok — {rubric.name} {rubric.version}, {len(rubric.fields)} fields "
              f"({', '.join(result['fields'])}), {len(rubric.examples)} examples round-trip")
    for example in rubric.examples[:1]:
        out.print(rubric.render(example.fields), highlight=False)


@users_app.command("add")
def users_add(
    project: ProjectArg,
    name: Annotated[str, typer.Argument(help="Login name.")],
    role: Annotated[str, typer.Option(help="annotator, reviewer or lead.")] = "annotator",
    password_env: Annotated[str, typer.Option(help="Environment variable holding the password.")] = "CLIPTUNE_PASSWORD",
    as_json: JsonOption = False,
) -> None:
    """Add a person. The password comes from $CLIPTUNE_PASSWORD (or --password-env) or a prompt."""
    from curation.users import add_user

    opened = _open(project)
    password = os.environ.get(password_env)
    if not password:
        if not sys.stdin.isatty():
            raise CliptuneError(f"no password: set ${password_env} or run in a terminal to be prompted")
        password = typer.prompt(f"password for {name}", hide_input=True, confirmation_prompt=True)
    user = add_user(opened, name, role, password)
    if as_json:
        _print_json({"name": user.name, "role": user.role})
    else:
        out.print(f"added {user.role} {user.name}")


@users_app.command("list")
def users_list(project: ProjectArg, as_json: JsonOption = False) -> None:
    """List the people in a project."""
    from curation.users import list_users

    users = [{"name": u.name, "role": u.role, "can_log_in": bool(u.password_hash), "active": u.active}
             for u in list_users(_open(project))]
    if as_json:
        _print_json(users)
        return
    for user in users:
        out.print(f"{user['name']:<20} {user['role']:<10} {'' if user['can_log_in'] else '(no password)'}")


@app.command("assign")
def assign_command(
    project: ProjectArg,
    annotators: Annotated[str, typer.Option(help="Comma-separated annotator names.")],
    overlap: Annotated[float, typer.Option(help="Share of clips labelled by several annotators (agreement).")] = 0.0,
    per_clip: Annotated[int, typer.Option(help="Annotators per overlap clip.")] = 2,
    random_state: Annotated[int, typer.Option(help="Seed for choosing overlap clips and breaking ties.")] = 0,
    as_json: JsonOption = False,
) -> None:
    """Assign unassigned clips: each once, a share --overlap to --per-clip annotators, load balanced."""
    from curation.assign import assign

    report = assign(_open(project), annotators.split(","), overlap=overlap, per_clip=per_clip,
                    random_state=random_state)
    if as_json:
        _print_json(report.to_dict())
        return
    out.print(f"assigned {report.new_clips} new clips ({report.overlap_clips} with overlap), "
              f"{report.assignments} assignments; load: {_fmt_counts(report.load)}")


@app.command("import-annotations")
def import_annotations_command(
    project: ProjectArg,
    path: Annotated[Path, typer.Argument(help="JSONL: one {clip, annotator, fields | output, seconds} per line.")],
    as_json: JsonOption = False,
) -> None:
    """Import existing labels. Bad lines are reported by line number; the good ones are imported."""
    from curation.imports import import_annotations

    report = import_annotations(_open(project), path)
    if as_json:
        _print_json(report.to_dict())
        return
    out.print(f"imported {report.imported}, unchanged {report.unchanged}, failed {len(report.failed)}"
              + (f"; new annotators: {', '.join(report.users_created)}" if report.users_created else ""))
    for failure in report.failed:
        err.print(f"  line {failure['line']}: {failure['error']}", highlight=False, markup=False)


@app.command("resolve")
def resolve_command(
    project: ProjectArg,
    policy: Annotated[str, typer.Option(help="unanimous: gold only when annotators agree; majority: per-field "
                                             "majority when they do not.")] = "unanimous",
    limit: Annotated[int, typer.Option(help="Queue items to show.")] = 20,
    as_json: JsonOption = False,
) -> None:
    """Gold answers (adjudicated > unanimous > majority) and the review queue, most disputed first."""
    from curation.resolve import resolve

    result = resolve(_open(project), policy)
    summary = result.summary()
    queue = [
        {"clip": item.clip_id, "disagreement": item.disagreement, "rare": item.rare, "fields": list(item.fields),
         "annotators": list(item.annotators), "reason": item.reason}
        for item in result.needs_review
    ]
    if as_json:
        _print_json({**summary, "queue": queue[:limit]})
        return
    out.print(f"gold {summary['gold']} ({_fmt_counts(summary['by_source'])}), needs review "
              f"{summary['needs_review']}, unlabelled {summary['unlabelled']} — policy {policy}")
    if queue:
        table = Table(title="review queue (rare events first, then most disputed)")
        for column in ("clip", "disagreement", "rare", "fields", "annotators", "reason"):
            table.add_column(column)
        for item in queue[:limit]:
            table.add_row(str(item["clip"]), f"{item['disagreement']:.2f}", "yes" if item["rare"] else "",
                          ", ".join(item["fields"]), ", ".join(item["annotators"]), item["reason"])
        out.print(table)


@app.command()
def sample(
    out_dir: Annotated[Path, typer.Argument(help="Folder for the synthetic clips, metadata and ground truth.")],
    clips: Annotated[int, typer.Option(help="Number of clips.")] = 60,
    random_state: Annotated[int, typer.Option(help="Seed: the same seed gives the same clips.")] = 0,
    shortcut: Annotated[str | None, typer.Option(help="Plant a shortcut, e.g. night_intrusion.")] = None,
    near_duplicates: Annotated[int, typer.Option(help="Plant this many near-duplicate copies.")] = 0,
    as_json: JsonOption = False,
) -> None:
    """Generate the synthetic surveillance sample (door, people, badge reader, day/night, cameras)."""
    from dataclasses import asdict

    from curation.synthetic import generate_sample

    info = generate_sample(out_dir, n_clips=clips, random_state=random_state, shortcut=shortcut,
                           near_duplicates=near_duplicates)
    result = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(info).items()}
    if as_json:
        _print_json(result)
    else:
        out.print(f"wrote {clips} clips to {out_dir}")


@app.command("agree")
def agree_command(
    project: ProjectArg,
    n_boot: Annotated[int, typer.Option(help="Bootstrap resamples for the confidence intervals.")] = 1000,
    random_state: Annotated[int, typer.Option(help="Seed for the bootstrap.")] = 0,
    as_json: JsonOption = False,
) -> None:
    """Agreement per rubric field (Krippendorff's alpha by the field's level, with 95 % CIs) and per annotator."""
    from curation.agreement import agreement_report

    report = agreement_report(_open(project), n_boot=n_boot, random_state=random_state)
    if as_json:
        _print_json(report)
        return
    fields = Table(title=f"agreement per field ({report['clips_with_overlap']} clips with several annotators)")
    for column in ("field", "metric", "level", "value", "95% CI", "clips", "annotators"):
        fields.add_column(column)
    for name, row in report["fields"].items():
        low, high = row["ci"]
        fields.add_row(name, METRIC_NAMES.get(row["metric"], row["metric"]), row["level"],
                       _fmt_number(row["value"]), f"{_fmt_number(low)} – {_fmt_number(high)}", str(row["n_items"]),
                       str(row["n_annotators"]))
    out.print(fields)
    people = Table(title="annotators")
    for column in ("annotator", "clips", "agrees with others", "agrees with gold", "median s/clip"):
        people.add_column(column)
    for name, row in report["annotators"].items():
        people.add_row(name, str(row["clips"]), _fmt_number(row["agreement_with_others"]),
                       _fmt_number(row["agreement_with_gold"]), _fmt_number(row["median_seconds"]))
    out.print(people)


METRIC_NAMES = {"krippendorff_alpha": "alpha", "mean_pairwise_similarity": "similarity"}


def _fmt_number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}".rstrip("0").rstrip(".") if isinstance(value, float) else str(value)


def _near_duplicate_groups(project_obj: Any) -> dict[int, str] | None:
    """Near-duplicate clusters from the audit, when that module is installed (it is optional here)."""
    try:
        from curation.audit.duplicates import near_duplicate_groups
    except ImportError:
        return None
    return near_duplicate_groups(project_obj)


@app.command("split")
def split_command(
    project: ProjectArg,
    test_size: Annotated[float, typer.Option(help="Share of clips to hold out.")] = 0.2,
    stratify: Annotated[str | None, typer.Option(help="Comma-separated fields whose class proportions both sides "
                                                      "keep (default: the rubric's stratify fields).")] = None,
    random_state: Annotated[int, typer.Option(help="Seed for placing equally sized groups.")] = 0,
    freeze: Annotated[bool, typer.Option("--freeze", help="Freeze the result: these clips never change side.")] = False,
    policy: Annotated[str, typer.Option(help="Gold answers: unanimous, or majority per field.")] = "unanimous",
    as_json: JsonOption = False,
) -> None:
    """Draw the held-out split: whole groups and near-duplicates on one side, class proportions kept, frozen
    clips never moved."""
    from curation.ledger import split_project

    opened = _open(project)
    result = split_project(opened, test_size=test_size, stratify=stratify, random_state=random_state,
                           freeze=freeze, policy=policy, extra_groups=_near_duplicate_groups(opened))
    report = result.report
    if as_json:
        _print_json(report)
        return
    out.print(f"train {report['train']}, test {report['test']} (share {report['test_share']:.3f}); "
              f"max proportion deviation {report['max_proportion_deviation']:.4f}; groups straddling "
              f"{report['groups_straddling']}; {report['newly_assigned']} assigned, {report['kept_frozen']} kept "
              f"frozen{' — frozen now' if freeze else ''}; version {report['dataset_version']}")
    out.print(f"left out: {_fmt_counts(report['left_out'])}")
    for field_name, classes in report["per_class"].items():
        table = Table(title=f"{field_name} per split")
        for column in ("class", "train", "test"):
            table.add_column(column)
        for value, counts in classes.items():
            table.add_row(value, str(counts["train"]), str(counts["test"]))
        out.print(table)


@app.command("export")
def export_command(
    project: ProjectArg,
    out_dir: Annotated[Path, typer.Argument(help="Folder for the export (new, empty, or an earlier export).")],
    formats: Annotated[str, typer.Option("--format", help="Comma-separated: hf, llamafactory, swift, trl.")] = (
        "hf,llamafactory,swift,trl"),
    oversample: Annotated[str, typer.Option(help="Train-only oversampling: none, auto, share, repeat-factor.")] = (
        "none"),
    target_share: Annotated[float, typer.Option(help="Share each rare class should reach in train (share), or "
                                                     "the repeat-factor threshold.")] = 0.2,
    max_repeat: Annotated[int, typer.Option(help="Extra copies of one clip at most.")] = 3,
    copy_media: Annotated[bool, typer.Option("--copy-media", help="Copy the clips' proxies into OUT/media.")] = False,
    policy: Annotated[str | None, typer.Option(help="Gold answers: unanimous, or majority per field (default: "
                                                    "the split's).")] = None,
    audit: Annotated[Path | None, typer.Option(help="JSON file of audit findings to put in the data card.")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an earlier export in OUT.")] = False,
    random_state: Annotated[int, typer.Option(help="Seed for choosing which clips get an extra copy.")] = 0,
    as_json: JsonOption = False,
) -> None:
    """Export gold answers with their split for Hugging Face datasets, LLaMA-Factory, ms-swift and TRL, with a
    data card and a sha256 manifest."""
    from curation.export import export_dataset
    from curation.oversample import OversampleConfig

    findings = None
    if audit is not None:
        try:
            findings = json.loads(audit.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CliptuneError(f"--audit {audit}: cannot read it as JSON ({exc})") from None
    opened = _open(project)
    config = OversampleConfig(method=oversample, target_share=target_share, max_repeat=max_repeat,
                              random_state=random_state)
    report = export_dataset(opened, out_dir, formats=formats, oversample=config, copy_media=copy_media, policy=policy,
                            overwrite=overwrite, audit_findings=findings, extra_groups=_near_duplicate_groups(opened))
    if as_json:
        _print_json({**report, "out": str(out_dir)})
        return
    counts = report["counts"]
    out.print(f"exported {counts['train_clips']} train clips ({counts['train']} rows) and {counts['test_clips']} "
              f"held-out clips to {out_dir} as {', '.join(report['formats'])}; left out: "
              f"{_fmt_counts(report['left_out'])}. Data card: {out_dir / 'README.md'}")


@app.command("budget")
def budget_command(
    project: ProjectArg,
    target: Annotated[int, typer.Option(help="Clips the dataset should have.")] = 1000,
    overlap: Annotated[float, typer.Option(help="Share of clips labelled by several annotators.")] = 0.2,
    per_clip: Annotated[int, typer.Option(help="Annotators per overlap clip.")] = 2,
    test_size: Annotated[float, typer.Option(help="Held-out share (each gets a second annotator).")] = 0.15,
    review_share: Annotated[float | None, typer.Option(help="Share of clips a reviewer resolves (default: "
                                                           "measured).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Person-hours to label, hold out and review --target clips, at this project's measured pace."""
    from curation.budget import budget_forecast

    result = budget_forecast(_open(project), target, overlap=overlap, per_clip=per_clip, test_size=test_size,
                             review_share=review_share)
    if as_json:
        _print_json(result)
        return
    pace = result["pace"]
    out.print(f"{target} clips at {pace['clips_per_hour']} clips/hour ({pace['source'].replace('_', ' ')}): "
              f"label {result['label']['hours']} h, hold out {result['hold_out']['hours']} h, review "
              f"{result['review']['hours']} h — total {result['total_hours']} person-hours "
              f"({result['remaining_hours']} h still to go)")


@app.command("ui")
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
    _open(project)  # a clear one-line error before anything is printed or started
    url = f"http://{address}:{port}"
    if as_json:
        _print_json({"url": url, "project": str(project)})
    else:
        out.print(f"cliptune app for {project} on {url} (Ctrl+C stops it)", highlight=False, soft_wrap=True)
    if address not in ("127.0.0.1", "localhost", "::1"):
        err.print(f"warning: listening on {address}: anyone who can reach this machine can open the login page",
                  highlight=False)
    sys.exit(serve(project, port=port, address=address, idle_s=idle_hours * 3600))


@app.command("demo")
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
    from curation.demo import DEMO_ANNOTATORS, DEMO_PASSWORD, build_demo

    result = build_demo(project, sample, n_clips=clips)
    logins = {**{name: "annotator" for name in DEMO_ANNOTATORS}, "rev": "reviewer", "lead": "lead"}
    url = f"http://127.0.0.1:{port}"
    if as_json:
        _print_json({**result, "url": url, "logins": logins})
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
app.add_typer(labelstudio_app, name="labelstudio")
LsUrlOption = Annotated[str | None, typer.Option("--url", help="Label Studio's address, e.g. http://127.0.0.1:8080 "
                                                               "(default: the one pushed to last).")]
LsKeyOption = Annotated[str | None, typer.Option("--api-key", help="Personal access token (default: "
                                                                   "$LABEL_STUDIO_API_KEY). Never stored.")]
LsUserOption = Annotated[list[str] | None, typer.Option("--user", help="Map a Label Studio e-mail, username or user "
                                                                       "id to a cliptune user: EMAIL=NAME (repeat).")]


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
              f"Studio), {result['unchanged']} unchanged, {len(result['failed'])} tasks failed, of {result['tasks']}"
              + (f"; new annotators: {', '.join(result['users_created'])}" if result["users_created"] else ""),
              highlight=False, soft_wrap=True)
    for failure in result["failed"]:
        err.print(f"  task {failure['task']}: {failure['error']}", highlight=False, markup=False, soft_wrap=True)


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
    from annotate_ui.label_studio import push, read_predictions

    answers = read_predictions(predictions) if predictions is not None else None
    report = push(_open(project), url=url, api_key=api_key, title=title, media_url=media_url,
                  document_root=document_root, predictions=answers, model_version=model_version).to_dict()
    if as_json:
        _print_json(report)
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
    from annotate_ui.label_studio import pull

    result = pull(_open(project), url=url, api_key=api_key, project_id=project_id,
                  user_map=_ls_user_map(user)).to_dict()
    if as_json:
        _print_json(result)
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
    from annotate_ui.label_studio import import_export

    result = import_export(_open(project), path, user_map=_ls_user_map(user)).to_dict()
    if as_json:
        _print_json(result)
    else:
        _ls_report(result, f"imported {path}")


@app.command("train")
def train_command(
    export: Annotated[Path, typer.Argument(help="Export folder (made by `cliptune export`).")],
    base_model: Annotated[str, typer.Option(help="Local checkpoint folder (nothing is downloaded), or 'tiny': a "
                                                 "random-init Qwen2.5-VL built offline, for a CPU demo.")],
    output: Annotated[Path, typer.Option(help="Run folder: adapter, processor, run card, checkpoints.")],
    method: Annotated[str, typer.Option(help="lora, or qlora (4-bit base; needs CUDA and bitsandbytes).")] = "lora",
    rank: Annotated[int, typer.Option(help="LoRA rank.")] = 16,
    frames: Annotated[int, typer.Option(help="Frames per clip (uniformly; with --fps, at most this many).")] = 8,
    fps: Annotated[float | None, typer.Option(help="Take one frame every 1/fps seconds instead.")] = None,
    max_pixels: Annotated[int | None, typer.Option(help="Pixel budget per frame (default 448*448; tiny 112*112).")]
    = None,
    epochs: Annotated[float | None, typer.Option(help="Passes over the train split (default 3; tiny 20).")] = None,
    batch_size: Annotated[int, typer.Option(help="Clips per step (8 or more: tiny batches collapse).")] = 8,
    grad_accum: Annotated[int, typer.Option(help="Micro-batches per optimizer step.")] = 1,
    learning_rate: Annotated[float | None, typer.Option(help="Default 2e-4; 6e-3 for tiny.")] = None,
    vision_lora: Annotated[bool | None, typer.Option("--vision-lora/--no-vision-lora",
                                                     help="LoRA on the vision tower too.")] = None,
    gradient_checkpointing: Annotated[bool, typer.Option(help="Less memory, slower steps.")] = False,
    save_every: Annotated[int, typer.Option(help="Checkpoint every N steps (0: every epoch).")] = 0,
    random_state: Annotated[int, typer.Option(help="Seed: model init (tiny), LoRA init, data order.")] = 0,
    shuffle_labels: Annotated[bool, typer.Option(help="Control run: train on targets shuffled across clips.")] = False,
    resume: Annotated[bool, typer.Option(help="Continue the run in --output from its last checkpoint.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Fine-tune a video VLM with LoRA on an export's train split; saves adapter, processor and run card."""
    from training.lora import TrainConfig, default_frames, train

    spec = default_frames(base_model, num_frames=frames, fps=fps, max_pixels=max_pixels)
    config = TrainConfig(method=method, rank=rank, frames=spec, epochs=epochs, batch_size=batch_size,
                         grad_accum=grad_accum, learning_rate=learning_rate, vision_lora=vision_lora,
                         gradient_checkpointing=gradient_checkpointing, save_every=save_every,
                         random_state=random_state, shuffle_labels=shuffle_labels)
    progress_bar = None
    callback = None
    if not as_json and sys.stderr.isatty():
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        progress_bar = Progress(TextColumn("train"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                                TextColumn("{task.description}"), console=err)
        task = progress_bar.add_task("", total=None)

        def callback(info: dict[str, Any]) -> None:
            progress_bar.update(task, completed=info["step"], total=info["total"],
                                description=f"epoch {info['epoch']} loss {info['loss']:.4f}")

        progress_bar.start()
    try:
        card = train(export, base_model, output, config, resume=resume, progress=callback)
    finally:
        if progress_bar is not None:
            progress_bar.stop()
    if as_json:
        _print_json(card)
        return
    metrics = card["metrics"]["train"]
    out.print(f"trained {card['hyper_parameters']['method']} rank {card['hyper_parameters']['rank']} on "
              f"{card['data']['train_rows']} rows: {metrics['steps']} steps, loss {metrics['first_loss']:.3f} -> "
              f"{metrics['final_loss']:.3f}, {metrics['seconds']} s. Adapter and run card in {output}. "
              f"Next: cliptune evaluate {output}", highlight=False)


@app.command("evaluate")
def evaluate_command(
    run: Annotated[Path, typer.Argument(help="Run folder (made by `cliptune train`).")],
    batch_size: Annotated[int, typer.Option(help="Clips per generation batch.")] = 8,
    forgetting_threshold: Annotated[float, typer.Option(help="Warn when general probe accuracy drops by more.")]
    = 0.05,
    probes: Annotated[bool, typer.Option("--probes/--no-probes", help="Run the forgetting check.")] = True,
    as_json: JsonOption = False,
) -> None:
    """Held-out metrics through the rubric, base vs fine-tuned, and the forgetting check."""
    from training.evaluate import evaluate_run

    report = evaluate_run(run, batch_size=batch_size, forgetting_threshold=forgetting_threshold, probes=probes)
    warning = (report.get("forgetting") or {}).get("warning")
    if warning:
        err.print(f"warning: {warning}", highlight=False, markup=False)
    if as_json:
        summary = {k: v for k, v in report.items() if k not in ("predictions", "probes")}
        summary["evaluation_file"] = str(run / "evaluation.json")
        _print_json(summary)
        return
    table = Table(title=f"held-out ({report['n']} clips) — {run}")
    for column in ("metric", "base", "fine-tuned"):
        table.add_column(column, justify="right" if column != "metric" else "left")
    base, tuned = report["base"], report["fine_tuned"]
    table.add_row("exact match", f"{base['exact_match']:.3f}", f"{tuned['exact_match']:.3f}")
    table.add_row("format validity", f"{base['format_validity']:.3f}", f"{tuned['format_validity']:.3f}")
    for name, scores in tuned["fields"].items():
        table.add_row(f"{name} accuracy", f"{base['fields'][name]['accuracy']:.3f}", f"{scores['accuracy']:.3f}")
    forgetting = report.get("forgetting")
    if forgetting:
        table.add_row("general probes", f"{forgetting['before']:.3f}", f"{forgetting['after']:.3f}")
    out.print(table)


@app.command("audit")
def audit_command(
    project: ProjectArg,
    html_path: Annotated[Path | None, typer.Option("--html", help="Also write a self-contained HTML report.")] = None,
    checks: Annotated[str, typer.Option(help="Comma-separated checks to run.")] = (
        "shortcuts,duplicates,conformance,balance"),
    workers: Annotated[int | None, typer.Option(help="Processes decoding clips (default: one per core).")] = None,
    random_state: Annotated[int, typer.Option(help="Seed for the folds and label shuffles.")] = 0,
    as_json: JsonOption = False,
) -> None:
    """Audit the data: shortcuts, near-duplicates and leakage, rubric conformance, rare classes."""
    from curation.audit.report import audit_report, write_html

    if html_path is not None and not html_path.parent.exists():
        raise CliptuneError(f"--html {html_path}: no such folder {html_path.parent}")
    opened = _open(project)
    bar, callback = None, None
    if not as_json and sys.stderr.isatty():
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        bar = Progress(TextColumn("decoding clips"), BarColumn(), MofNCompleteColumn(), console=err)
        task = bar.add_task("", total=None)

        def callback(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        bar.start()
    try:
        report = audit_report(opened, checks=[c.strip() for c in checks.split(",") if c.strip()], workers=workers,
                              random_state=random_state, progress=callback)
    finally:
        if bar is not None:
            bar.stop()
    if html_path is not None:
        write_html(report, html_path, opened)
    if as_json:
        _print_json(report)
        return
    results = report["checks"]
    out.print(f"labels: {report['labels']['gold']} gold answers ({_fmt_counts(report['labels']['by_source'])}), "
              f"{report['labels']['needs_review']} need review, {report['labels']['unlabelled']} unlabelled")
    for name, check in results.items():
        items = check["flagged"]
        if name == "duplicates":
            out.print(f"[bold]duplicates[/]: {len(check['clusters'])} clusters ({len(items)} clips), "
                      f"{len(check['leakage'])} leaks")
            lines = [leak["message"] for leak in check["leakage"]] + [str(c) for c in check["clusters"]]
        else:
            out.print(f"[bold]{name}[/]: {len(items)} flagged")
            lines = [item["message"] for item in items]
        for line in lines[:10]:
            out.print(f"  {line}", highlight=False, markup=False)
        if len(lines) > 10:
            out.print(f"  … and {len(lines) - 10} more (see --json or --html)", highlight=False)
    if html_path is not None:
        out.print(f"report: {html_path}")


def main(argv: list[str] | None = None) -> int:
    """Console entry point: runs the app and turns user errors into one line and a non-zero exit."""
    try:
        # Standalone mode: typer prints usage errors and help itself and leaves by SystemExit.
        app(args=argv, prog_name="cliptune")
    except CliptuneError as exc:
        err.print(f"error: {exc}", highlight=False, markup=False, soft_wrap=True)
        return 1
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The `cliptune` command: a thin shell over library functions. It parses, calls and prints.

Every verb takes ``--json`` for machine-readable output. Mistakes in the user's input print one line on
stderr and exit non-zero; tracebacks are for bugs only. This module holds the verbs for projects, people,
labels and agreement, and the entry point. The data lead's verbs come from :mod:`curation.cli.dataset`; the app's,
Label Studio's and the trainer's verbs live in ``annotate_ui`` and ``training``, which sit above this library, so
they join through the ``cliptune.commands`` entry-point group (declared in ``pyproject.toml``) instead of an import:
each entry names a ``register(app)`` function. A part that cannot be loaded (say, ``training`` without its
``[train]`` extra) leaves its verbs out, and ``cliptune --help`` says which and why.
"""

from __future__ import annotations

import os
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from sqlalchemy.exc import DatabaseError

from curation.cli.common import (
    JsonOption,
    ProjectArg,
    app,
    err,
    fmt_counts,
    fmt_number,
    open_project,
    out,
    print_json,
    progress_bar,
)
from curation.errors import CliptuneError

rubric_app = typer.Typer(help="Check and inspect rubrics.", no_args_is_help=True)
users_app = typer.Typer(help="Manage the people who label and review.", no_args_is_help=True)
app.add_typer(rubric_app, name="rubric")
app.add_typer(users_app, name="users")
BUILTIN_RUBRICS = Path(__file__).resolve().parents[2] / "rubrics"
COMMAND_GROUP = "cliptune.commands"


def _rubric_path(value: str) -> Path:
    """A rubric file path, or the name of a rubric shipped in rubrics/ (e.g. `surveillance_alert`)."""
    path = Path(value)
    if path.exists() or path.suffix:
        return path
    builtin = BUILTIN_RUBRICS / f"{value}.yaml"
    return builtin if builtin.exists() else path



@app.command()
def init(
    project: ProjectArg,
    rubric: Annotated[str, typer.Option(help="Rubric YAML file, or the name of a shipped rubric.")],
    name: Annotated[str | None, typer.Option(help="Project name (default: the folder name).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Create a project folder with its database and rubric."""
    from curation.records.store import Project

    created = Project.init(project, _rubric_path(rubric), name=name)
    result = {"project": created.name, "path": str(project), "rubric": created.rubric.name,
              "rubric_version": created.rubric_version}
    if as_json:
        print_json(result)
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
    from curation.media.ingest import ingest as run_ingest

    opened = open_project(project)
    with progress_bar("ingest", enabled=not as_json) as update:
        report = run_ingest(opened, sources, metadata=metadata, group_by=group_by, segment_s=segment,
                            proxy_height=proxy_height, workers=workers, progress=update)
    result = report.to_dict()
    if as_json:
        print_json(result)
        return
    out.print(f"added {report.added}, duplicates {report.duplicates}, failed {len(report.failed)}, "
              f"ignored {report.ignored} non-video files; {report.clips} clips in the project "
              f"({report.seconds:.1f} s)")
    for failure in report.failed:
        err.print(f"  failed: {failure['path']}: {failure['error']}", highlight=False)


@app.command()
def status(project: ProjectArg, as_json: JsonOption = False) -> None:
    """Counts of clips, users, annotations and reviews."""
    from curation.records.status import project_status

    result = project_status(open_project(project))
    if as_json:
        print_json(result)
        return
    table = Table(title=f"{result['project']} — rubric {result['rubric']['name']} {result['rubric']['version']}")
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_column("detail")
    table.add_row("clips", str(result["clips"]["total"]),
                  f"{result['clips']['groups']} groups, {result['clips']['hours']} h")
    table.add_row("users", str(result["users"]["total"]), fmt_counts(result["users"]["by_role"]))
    table.add_row("assignments", str(result["assignments"]), "")
    table.add_row("annotations", str(result["annotations"]["current"]),
                  f"{fmt_counts(result['annotations']['by_status'])}; {result['annotations']['versions']} versions")
    table.add_row("reviews", str(result["reviews"]["total"]), f"{result['reviews']['clips_reviewed']} clips")
    out.print(table)


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
        print_json(result)
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
    from curation.records.users import add_user

    opened = open_project(project)
    password = os.environ.get(password_env)
    if not password:
        if not sys.stdin.isatty():
            raise CliptuneError(f"no password: set ${password_env} or run in a terminal to be prompted")
        password = typer.prompt(f"password for {name}", hide_input=True, confirmation_prompt=True)
    user = add_user(opened, name, role, password)
    if as_json:
        print_json({"name": user.name, "role": user.role})
    else:
        out.print(f"added {user.role} {user.name}")


@users_app.command("list")
def users_list(project: ProjectArg, as_json: JsonOption = False) -> None:
    """List the people in a project."""
    from curation.records.users import list_users

    users = [{"name": u.name, "role": u.role, "can_log_in": bool(u.password_hash), "active": u.active}
             for u in list_users(open_project(project))]
    if as_json:
        print_json(users)
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
    from curation.team.assign import assign

    report = assign(open_project(project), annotators.split(","), overlap=overlap, per_clip=per_clip,
                    random_state=random_state)
    if as_json:
        print_json(report.to_dict())
        return
    out.print(f"assigned {report.new_clips} new clips ({report.overlap_clips} with overlap), "
              f"{report.assignments} assignments; load: {fmt_counts(report.load)}")


@app.command("import-annotations")
def import_annotations_command(
    project: ProjectArg,
    path: Annotated[Path, typer.Argument(help="JSONL: one {clip, annotator, fields | output, seconds} per line.")],
    create_users: Annotated[bool, typer.Option("--create-users", help="Make annotator accounts (without a "
                                               "password) for names the project does not know; by default "
                                               "their lines fail.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Import existing labels. Bad lines are reported by line number; the good ones are imported, in short
    transactions, so people labelling meanwhile are not kept waiting. Running it again imports only what is new."""
    from curation.records.imports import import_annotations
    from curation.review.refresh import refresh_derived_state

    opened = open_project(project)
    report = import_annotations(opened, path, create_users=create_users)
    # the gold answers and agreement rows of the changed clips, now rather than at the next `agree` or page
    derived = refresh_derived_state(opened) if report.imported else None
    if as_json:
        print_json({**report.to_dict(), "derived_state": derived})
        return
    out.print(f"imported {report.imported}, unchanged {report.unchanged}, failed {len(report.failed)}"
              + (f"; new annotators: {', '.join(report.users_created)}" if report.users_created else "")
              + (f"; gold answers and agreement of {derived['clips_resolved']} clips brought up to date in "
                 f"{derived['seconds']} s" if derived else ""))
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
    from curation.review.resolve import resolve

    result = resolve(open_project(project), policy)
    summary = result.summary()
    queue = [
        {"clip": item.clip_id, "disagreement": item.disagreement, "rare": item.rare, "fields": list(item.fields),
         "annotators": list(item.annotators), "reason": item.reason}
        for item in result.needs_review
    ]
    if as_json:
        print_json({**summary, "queue": queue[:limit]})
        return
    out.print(f"gold {summary['gold']} ({fmt_counts(summary['by_source'])}), needs review "
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

    from curation.media.synthetic import generate_sample

    info = generate_sample(out_dir, n_clips=clips, random_state=random_state, shortcut=shortcut,
                           near_duplicates=near_duplicates)
    result = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(info).items()}
    if as_json:
        print_json(result)
    else:
        out.print(f"wrote {clips} clips to {out_dir}")


METRIC_NAMES = {"krippendorff_alpha": "alpha", "mean_pairwise_similarity": "similarity"}


@app.command("agree")
def agree_command(
    project: ProjectArg,
    n_boot: Annotated[int, typer.Option(help="Bootstrap resamples for the confidence intervals.")] = 1000,
    random_state: Annotated[int, typer.Option(help="Seed for the bootstrap.")] = 0,
    as_json: JsonOption = False,
) -> None:
    """Agreement per rubric field (Krippendorff's alpha by the field's level, with 95 % CIs) and per annotator."""
    from curation.review.field_agreement import agreement_report

    report = agreement_report(open_project(project), n_boot=n_boot, random_state=random_state)
    if as_json:
        print_json(report)
        return
    fields = Table(title=f"agreement per field ({report['clips_with_overlap']} clips with several annotators)")
    for column in ("field", "metric", "level", "value", "95% CI", "clips", "annotators"):
        fields.add_column(column)
    for name, row in report["fields"].items():
        low, high = row["ci"]
        fields.add_row(name, METRIC_NAMES.get(row["metric"], row["metric"]), row["level"],
                       fmt_number(row["value"]), f"{fmt_number(low)} – {fmt_number(high)}", str(row["n_items"]),
                       str(row["n_annotators"]))
    out.print(fields)
    people = Table(title="annotators")
    for column in ("annotator", "clips", "agrees with others", "agrees with gold", "median s/clip"):
        people.add_column(column)
    for name, row in report["annotators"].items():
        people.add_row(name, str(row["clips"]), fmt_number(row["agreement_with_others"]),
                       fmt_number(row["agreement_with_gold"]), fmt_number(row["median_seconds"]))
    out.print(people)


# The data lead's and the store's verbs: inside this package, so a plain import registers them on `app`.
from curation.cli import clips as _clip_verbs  # noqa: E402,F401
from curation.cli import dataset as _dataset_verbs  # noqa: E402,F401
from curation.cli import maintenance as _maintenance_verbs  # noqa: E402,F401


def load_commands(target: typer.Typer = app) -> list[str]:
    """Add the verbs registered under the ``cliptune.commands`` entry-point group to ``target``.

    Returns one line per part that could not be loaded (its verbs are left out). Heavy imports (torch, Streamlit,
    the Label Studio SDK) stay inside each command, so loading is fast.
    """
    unavailable = []
    for entry in sorted(entry_points(group=COMMAND_GROUP), key=lambda entry: entry.name):
        try:
            entry.load()(target)
        except ImportError as exc:
            unavailable.append(f"{entry.name} verbs unavailable: {exc}")
    if not entry_points(group=COMMAND_GROUP):
        unavailable.append("the app, Label Studio and training verbs are unavailable: cliptune is not installed "
                           "(run `make install`, or `pip install -e .` in this folder)")
    return unavailable


_unavailable = load_commands()
if _unavailable:
    app.info.epilog = "  \n".join(_unavailable)


def main(argv: list[str] | None = None) -> int:
    """Console entry point: runs the app and turns user errors into one line and a non-zero exit."""
    try:
        # Standalone mode: typer prints usage errors and help itself and leaves by SystemExit.
        app(args=argv, prog_name="cliptune")
    except CliptuneError as exc:
        err.print(f"error: {exc}", highlight=False, markup=False, soft_wrap=True)
        return 1
    except DatabaseError as exc:  # a damaged database met outside the store's own error handler
        from curation.records.store import describe_database_error

        err.print(f"error: {describe_database_error(None, exc)}", highlight=False, markup=False, soft_wrap=True)
        return 1
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

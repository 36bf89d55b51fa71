"""`cliptune check` and `cliptune backup`: keeping the project store sound (see :mod:`curation.cli.common`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from curation.cli.common import JsonOption, ProjectArg, app, err, out, print_json

MEDIA_NOTE = ("the database only: the media files (proxies, thumbnails) are derived from the source videos and can "
              "be made again from them; keep the source videos safe yourself")


@app.command("check")
def check_command(project: ProjectArg, as_json: JsonOption = False) -> None:
    """Check the store: SQLite's integrity check, schema version, every clip's proxy and thumbnail, orphan rows
    and files. Works on a damaged database (it only reads). Exit code 0 when sound, 1 otherwise."""
    from curation.records.maintenance import check_project

    report = check_project(project)
    if as_json:
        print_json(report.to_dict())
    else:
        counts = report.counts
        if report.schema_version is None:
            out.print(f"{report.database}: not readable as a cliptune database", highlight=False, markup=False,
                      soft_wrap=True)
        else:
            out.print(f"{report.database}: schema {report.schema_version}; {counts.get('clip', 0)} clips, "
                      f"{counts.get('user', 0)} users, {counts.get('annotation', 0)} answers, "
                      f"{counts.get('review', 0)} reviews, {counts.get('media_files', 0)} media files",
                      highlight=False, markup=False, soft_wrap=True)
        for line in report.problems:
            out.print(f"problem: {line}", highlight=False, markup=False, soft_wrap=True)
        for line in report.warnings:
            out.print(f"warning: {line}", highlight=False, markup=False, soft_wrap=True)
        if report.ok:
            out.print(f"ok{f' ({len(report.warnings)} warnings)' if report.warnings else ''}", highlight=False)
    if not report.ok:
        first = report.problems[0]
        more = f" (and {len(report.problems) - 1} more problems above)" if len(report.problems) > 1 else ""
        err.print(f"error: {project}: check failed: {first}{more}", highlight=False, markup=False, soft_wrap=True)
        raise typer.Exit(code=1)


@app.command("backup")
def backup_command(
    project: ProjectArg,
    dest: Annotated[Path, typer.Argument(help="A new file, or an existing folder (then DEST/cliptune-<project>-"
                                              "<UTC time>.db).")],
    as_json: JsonOption = False,
) -> None:
    """Back up the project database, consistently even while the app is writing, and check the copy. The
    database only: media are remade from the source videos. Restore: see README, 'The store'."""
    from curation.records.maintenance import backup_project

    written = backup_project(project, dest)
    result = {"backup": str(written), "bytes": written.stat().st_size, "integrity": "ok", "contains": MEDIA_NOTE}
    if as_json:
        print_json(result)
        return
    out.print(f"backed up {project} to {written} ({result['bytes']:,} bytes, integrity check ok); {MEDIA_NOTE}",
              highlight=False, markup=False, soft_wrap=True)

"""What every part of the `cliptune` command shares: the typer app, the consoles, common options and helpers.

The verbs live beside the code they call: :mod:`curation.cli.main` (project, people, labels, agreement),
:mod:`curation.cli.dataset` (split, export, budget, audit), :mod:`annotate_ui.cli` (the app, the demo, Label Studio)
and :mod:`training.cli` (train, evaluate). The last two join through the ``cliptune.commands`` entry-point group
(see :mod:`curation.cli.main`); heavy imports stay inside the commands.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

app = typer.Typer(
    help="cliptune: turn video clips into fine-tuning datasets for video VLMs, locally.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
out = Console()
err = Console(stderr=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of a table.")]
ProjectArg = Annotated[Path, typer.Argument(help="The project folder (made by `cliptune init`).")]


def print_json(data: Any) -> None:
    out.file.write(json.dumps(data, indent=2, default=str, ensure_ascii=False) + "\n")


def open_project(project: Path):
    from curation.records.store import Project

    return Project.open(project)


def fmt_counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{key} {value}" for key, value in sorted(counts.items())) or "-"


def fmt_number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}".rstrip("0").rstrip(".") if isinstance(value, float) else str(value)


@contextmanager
def progress_bar(label: str, *, enabled: bool = True) -> Iterator[Callable[..., None] | None]:
    """A progress bar on stderr while the block runs, when ``enabled`` and stderr is a terminal (never in
    ``--json`` output or a log file). Yields ``update(completed, total, description="")``, or None."""
    if not enabled or not sys.stderr.isatty():
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                   TextColumn("{task.description}"), console=err)
    task = bar.add_task("", total=None)

    def update(completed: int, total: int, description: str = "") -> None:
        bar.update(task, completed=completed, total=total, description=description)

    bar.start()
    try:
        yield update
    finally:
        bar.stop()

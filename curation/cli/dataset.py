"""`cliptune split`, `export`, `budget` and `audit`: the data lead's verbs (see :mod:`curation.cli.common`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from curation.cli.common import (
    JsonOption,
    ProjectArg,
    app,
    err,
    fmt_counts,
    open_project,
    out,
    print_json,
    progress_bar,
)
from curation.errors import CliptuneError


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
    from curation.audit.duplicates import near_duplicate_groups
    from curation.dataset.ledger import split_project

    opened = open_project(project)
    result = split_project(opened, test_size=test_size, stratify=stratify, random_state=random_state,
                           freeze=freeze, policy=policy, extra_groups=near_duplicate_groups(opened))
    report = result.report
    if as_json:
        print_json(report)
        return
    out.print(f"train {report['train']}, test {report['test']} (share {report['test_share']:.3f}); "
              f"max proportion deviation {report['max_proportion_deviation']:.4f}; groups straddling "
              f"{report['groups_straddling']}; {report['newly_assigned']} assigned, {report['kept_frozen']} kept "
              f"frozen{' — frozen now' if freeze else ''}; version {report['dataset_version']}")
    out.print(f"left out: {fmt_counts(report['left_out'])}")
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
    from curation.audit.duplicates import near_duplicate_groups
    from curation.dataset.export import export_dataset
    from curation.dataset.oversample import OversampleConfig

    findings = None
    if audit is not None:
        try:
            findings = json.loads(audit.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CliptuneError(f"--audit {audit}: cannot read it as JSON ({exc})") from None
    opened = open_project(project)
    config = OversampleConfig(method=oversample, target_share=target_share, max_repeat=max_repeat,
                              random_state=random_state)
    report = export_dataset(opened, out_dir, formats=formats, oversample=config, copy_media=copy_media, policy=policy,
                            overwrite=overwrite, audit_findings=findings, extra_groups=near_duplicate_groups(opened))
    if as_json:
        print_json({**report, "out": str(out_dir)})
        return
    counts = report["counts"]
    out.print(f"exported {counts['train_clips']} train clips ({counts['train']} rows) and {counts['test_clips']} "
              f"held-out clips to {out_dir} as {', '.join(report['formats'])}; left out: "
              f"{fmt_counts(report['left_out'])}. Data card: {out_dir / 'README.md'}")
    if report.get("split_state") == "draft":
        err.print(f"warning: the split is a draft ({report['draft_clips']} clips not frozen): run `cliptune split "
                  "--freeze` before training a model you will report on", highlight=False)


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
    from curation.team.budget import budget_forecast

    result = budget_forecast(open_project(project), target, overlap=overlap, per_clip=per_clip, test_size=test_size,
                             review_share=review_share)
    if as_json:
        print_json(result)
        return
    pace = result["pace"]
    out.print(f"{target} clips at {pace['clips_per_hour']} clips/hour ({pace['source'].replace('_', ' ')}): "
              f"label {result['label']['hours']} h, hold out {result['hold_out']['hours']} h, review "
              f"{result['review']['hours']} h — total {result['total_hours']} person-hours "
              f"({result['remaining_hours']} h still to go)")


@app.command("audit")
def audit_command(
    project: ProjectArg,
    html_path: Annotated[Path | None, typer.Option("--html", help="Also write a self-contained HTML report.")] = None,
    checks: Annotated[str, typer.Option(help="Comma-separated checks to run.")] = (
        "shortcuts,local_shortcuts,duplicates,conformance,balance"),
    workers: Annotated[int | None, typer.Option(help="Processes decoding clips (default: one per core).")] = None,
    random_state: Annotated[int, typer.Option(help="Seed for the folds and label shuffles.")] = 0,
    as_json: JsonOption = False,
) -> None:
    """Audit the data: shortcuts, near-duplicates and leakage, rubric conformance, rare classes. Every part a check
    could not test (no gold answers, too few clips of a class, one clip, missing or unreadable media) is listed with
    why; these are findings, not errors (exit 0)."""
    from curation.audit.report import audit_report, write_html
    from curation.audit.text_report import text_lines

    if html_path is not None and not html_path.parent.exists():
        raise CliptuneError(f"--html {html_path}: no such folder {html_path.parent}")
    opened = open_project(project)
    with progress_bar("decoding clips", enabled=not as_json) as update:
        report = audit_report(opened, checks=[c.strip() for c in checks.split(",") if c.strip()], workers=workers,
                              random_state=random_state, progress=update)
    if html_path is not None:
        write_html(report, html_path, opened)
    if as_json:
        print_json(report)
        return
    for line in text_lines(report):
        out.print(line, highlight=False, markup=False, soft_wrap=True)
    if html_path is not None:
        out.print(f"report: {html_path}")

"""`cliptune clips`: clip id -> source file, group, split side and label status, for people and scripts."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from curation.cli.common import ProjectArg, app, open_project, out

COLUMNS = ("clip", "file", "group", "split", "label")


@app.command("clips")
def clips_command(
    project: ProjectArg,
    label: Annotated[str | None, typer.Option(help="Only clips with this label status: unlabelled, answered, gold "
                                                   "or 'needs review'.")] = None,
    split: Annotated[str | None, typer.Option(help="Only clips on this side: train, test or none.")] = None,
    group: Annotated[str | None, typer.Option(help="Only clips of this group key (e.g. camera:CAM-2).")] = None,
    policy: Annotated[str, typer.Option(help="Gold answers: unanimous, or majority per field (as for "
                                             "`cliptune split`).")] = "unanimous",
    limit: Annotated[int | None, typer.Option(help="At most this many clips (in id order).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON array of clips instead of a table.")] = False,
    jsonl: Annotated[bool, typer.Option("--jsonl", help="Print one JSON object per line (streams well).")] = False,
) -> None:
    """List clips: id, source file, group, split side (train/test/none, frozen or draft) and label status
    (unlabelled, answered, gold, needs review)."""
    from curation.review.clip_list import list_clips

    rows = list_clips(open_project(project), policy=policy, label=label, split=split, group=group, limit=limit)
    if jsonl:
        out.file.write("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
        return
    if as_json:
        out.file.write(json.dumps(rows, indent=1, ensure_ascii=False) + "\n")
        return
    # Plain columns, not a rich Table: a table measures every cell and takes a minute on 100,000 clips.
    lines = [(str(row["clip"]), row["file"], row["group"],
              row["split"] if row["split_state"] is None else f"{row['split']} ({row['split_state']})",
              row["label"] + (f" ({row['gold_source'] or row['review_reason']})"
                              if row["gold_source"] or row["review_reason"] else "")) for row in rows]
    widths = [max([len(column)] + [len(line[i]) for line in lines]) for i, column in enumerate(COLUMNS)]
    text = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
            for line in [COLUMNS, tuple("-" * w for w in widths), *lines]]
    out.file.write("\n".join(text) + f"\n{len(rows)} clip{'' if len(rows) == 1 else 's'}\n")

"""The data card (``OUT/README.md``) of an export: what is in it, how it was drawn, and how far to trust it.

A plain function over the facts :mod:`curation.dataset.export` gathered; it reads nothing itself.

Example::

    text = render_datacard(facts)   # markdown
"""

from __future__ import annotations

import json
from typing import Any


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, default=str)[:120]
    return str(value).replace("|", "\\|").replace("\n", " ")


def table(rows: list[dict[str, Any]], columns: list[str] | None = None) -> str:
    """A markdown table of dict rows (columns: the union of keys, in first-seen order)."""
    if not rows:
        return "_none_\n"
    if columns is None:
        columns = []
        for row in rows:
            columns.extend(k for k in row if k not in columns)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _generic(data: Any) -> str:
    """Findings or statistics of a shape this module does not know: tables where it can, JSON otherwise."""
    if hasattr(data, "to_dict"):
        data = data.to_dict()
    if isinstance(data, list) and all(isinstance(item, dict) for item in data):
        return table(data)
    if not isinstance(data, dict):
        return "```\n" + json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n```\n"
    nested = {k: v for k, v in data.items() if isinstance(v, dict) and v and all(isinstance(i, dict)
                                                                                 for i in v.values())}
    scalars = [{"what": k, "value": v} for k, v in data.items() if k not in nested]
    parts = [table(scalars)] if scalars else []
    for key, rows in nested.items():
        parts.append(f"\n**{key}**\n\n" + table([{"": name, **row} for name, row in rows.items()]))
    return "".join(parts) or "_none_\n"


def render_datacard(facts: dict[str, Any]) -> str:
    """Markdown data card from the facts an export gathered (see :func:`curation.dataset.export.export_dataset`)."""
    rubric = facts["rubric"]
    counts = facts["counts"]
    split = facts.get("split") or {}
    out = [f"# {facts['project']} — {rubric['name']} dataset\n\n",
           f"Exported by cliptune {facts['cliptune_version']} on {facts['created_at']} (UTC). "
           f"Dataset version `{facts['dataset_version']}`, rubric `{rubric['name']}` version `{rubric['version']}` "
           f"(its text is in `rubric.yaml`).\n\n",
           _split_state(facts),
           "Only gold answers are exported: reviewer adjudications and answers all annotators agreed on"
           + (", and per-field majorities (policy `majority`).\n" if facts["policy"] == "majority" else
              " (policy `unanimous`: no majority votes).\n"),
           "\n## Counts\n\n",
           table([{"split": name, "clips": counts[f"{name}_clips"], "rows": counts[name],
                   "oversampled copies": counts[name] - counts[f"{name}_clips"]} for name in ("train", "test")]),
           ]
    for field_name, classes in facts["per_class"].items():
        out.append(f"\n**{field_name}** (clips per class; rows after oversampling in brackets)\n\n")
        out.append(table([{"class": value, "train": f"{c['train']} [{c['train_rows']}]", "test": c["test"]}
                          for value, c in classes.items()]))
    left = facts["left_out"]
    out += ["\n### Left out\n\n",
            table([{"reason": key.replace("_", " "), "clips": value} for key, value in left.items()]),
            "\nClips that still need review, have no answer yet, or whose answers no longer fit the rubric are not "
            "exported; resolve them and export again.\n",
            "\n## How the held-out set was drawn\n\n"]
    if split:
        frozen = facts["frozen_test_clips"]
        out.append(
            f"- `{counts['test_clips']}` clips held out ({split.get('test_size', '?')} asked), drawn with "
            f"`stratified_group_split` (random_state {split.get('random_state', '?')}), stratified on "
            f"{', '.join(f'`{s}`' for s in split.get('stratify', [])) or 'nothing (no stratify field)'}.\n"
            "- Whole groups go to one side: a group is the clips' group key (camera, session, patient) united with "
            f"near-duplicate clusters ({split.get('extra_groups', 0)} clips had a cluster label). "
            f"Groups straddling the split: **{facts['groups_straddling']}**.\n"
            f"- Rare classes are placed on both sides wherever they occur in at least two groups.\n"
            f"- Frozen: {frozen} of {counts['test_clips']} held-out clips are frozen in the project's split ledger; "
            "a frozen clip never moves and is never oversampled. "
            + ("" if frozen == counts["test_clips"] else "**The held-out set is not (fully) frozen: a later split "
               "may still change it — run `cliptune split --freeze` before you report results on it.**") + "\n")
    else:
        out.append("_The project's event log has no record of the split run; see the split ledger._\n")
    out += ["\n## Oversampling (train only)\n\n", _oversampling(facts["oversampling"]),
            "\n## Agreement between annotators\n\n",
            _generic(facts["agreement"]) if facts.get("agreement") is not None
            else "_not available: agreement statistics were not computed for this export_\n",
            "\n## Audit findings\n\n",
            _generic(facts["audit"]) if facts.get("audit") is not None
            else "_no audit findings were passed to this export (run the audit and export again with them)_\n",
            "\n## Files\n\n", _files(facts)]
    return "".join(out)


def _split_state(facts: dict[str, Any]) -> str:
    """A draft split may still move clips between train and test: say so before anything else."""
    text = ""
    if facts.get("split_state") == "draft":
        text += (f"> **Draft split** — {facts.get('draft_clips', '?')} clips of the split ledger are not frozen: a "
                 "later `cliptune split` may move them between train and test. Do not report results on this "
                 "export; run `cliptune split --freeze` and export again.\n\n")
    exported = facts.get("exported_clips_version")
    if exported and exported != facts["dataset_version"]:
        text += (f"Not every clip of the split is in this export (see *Left out*): the exported clips and their "
                 f"sides hash to `{exported}`.\n\n")
    return text


def _oversampling(report: dict[str, Any]) -> str:
    if report.get("method", "none") == "none":
        return "None: every clip appears once.\n"
    text = (f"Method `{report['method']}` on {', '.join(f'`{f}`' for f in report['fields'])}, target share "
            f"{report['target_share']}, at most {report['max_repeat']} extra copies per clip; train rows "
            f"{report['train_rows_before']} → {report['train_rows_after']}, {report['clips_repeated']} clips "
            f"repeated; held-out rows repeated: {report['held_out_repeated']}. Each copy has its own `frame_offset` "
            "(seconds to shift frame sampling) so copies are not identical samples.\n\n")
    columns = ["field", "value", "clips", "copies", "repeat_per_clip", "share_before", "share_after"]
    return text + table(report["classes"], columns)


def _files(facts: dict[str, Any]) -> str:
    lines = ["- `export.json`: what was exported, counts, oversampling; `manifest.json`: sha256 of every file.",
             "- `rubric.yaml`: the rubric text at the exported version."]
    formats = facts["formats"]
    media = ("copied into `media/`" if facts["copy_media"]
             else "the project's browser proxies, by paths relative to this folder (move the project and this "
                  "folder together, or export with `--copy-media`)")
    lines.append(f"- Videos: {media}.")
    if "hf" in formats:
        lines.append("- `hf/`: `datasets.load_from_disk('hf')` → `DatasetDict` with `train` and `test`; `video` is "
                     "relative to this folder.")
    if "llamafactory" in formats:
        lines.append("- `llamafactory/`: sharegpt JSONL with `<video>` tags and `dataset_info.json`; use "
                     "`dataset_dir: <this folder>/llamafactory` (video paths are relative to it, which is "
                     "LLaMA-Factory's default `media_dir`).")
    if "swift" in formats:
        lines.append("- `swift/`: ms-swift messages JSONL with `<video>` tags; video paths are relative to this "
                     "folder: run `swift sft` from here or set `ROOT_IMAGE_DIR=<this folder>`.")
    if "trl" in formats:
        lines.append("- `trl/`: messages whose content parts are `{\"type\": \"video\", \"video\": path}` and "
                     "`{\"type\": \"text\"}`, plus a `videos` column; paths relative to this folder.")
    lines.append("- Oversampled copies appear as repeated lines in the JSONL files; their frame offsets are in "
                 "`hf/` only.")
    return "\n".join(lines) + "\n"

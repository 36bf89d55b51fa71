"""Export the gold answers with their split: Hugging Face datasets, LLaMA-Factory, ms-swift and TRL JSONL, a data card.

Layout of ``OUT`` (a trainer reads this, never the project store)::

    hf/                 datasets.DatasetDict(train, test) saved with save_to_disk
    llamafactory/       train.jsonl, test.jsonl (sharegpt, <video> tags), dataset_info.json
    swift/              train.jsonl, test.jsonl (ms-swift messages, <video> tags)
    trl/                train.jsonl, test.jsonl (messages with {"type": "video"} content parts)
    media/              the clips' proxies, with --copy-media (hard links where OUT is on the project's filesystem)
    rubric.yaml  export.json  README.md (data card)  manifest.json (sha256 of every file)

Video paths are relative: to ``OUT`` in ``hf``, ``swift`` and ``trl``, and to ``OUT/llamafactory`` in
``llamafactory`` (LLaMA-Factory joins them to its ``media_dir``, which defaults to the ``dataset_dir``). Only
clips with a gold answer and a side in the split ledger are exported; the rest are counted in the card.
The export is written to a temporary folder beside ``OUT`` and moved into place at the end, so a failed export
leaves no half-written folder and an earlier export stays intact until the new one is complete; a killed one's
folder is removed by the next export into ``OUT`` (see :mod:`curation.dataset.staging`). ``dataset_version`` is
the split ledger's version; ``split_state`` says ``draft`` while any clip of the ledger is not frozen.

Example::

    report = export_dataset(project, "exports/v1", oversample=OversampleConfig(method="auto"))
    datasets.load_from_disk("exports/v1/hf")["train"][0]["video"]   # '../projects/lobby/media/proxies/….mp4'
"""

from __future__ import annotations

import errno
import json
import os
import posixpath
import shutil
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from curation import __version__
from curation.dataset.datacard import render_datacard
from curation.dataset.ledger import (
    SPLITS,
    current_split,
    dataset_version,
    last_split_params,
    ledger_version,
    split_groups,
)
from curation.dataset.oversample import OversampleConfig, frame_offsets, plan_oversampling
from curation.dataset.staging import staged
from curation.errors import CliptuneError
from curation.media.ingest import sha256_file
from curation.records.store import Clip, Project, RubricRow
from curation.review.resolve import resolve

FORMATS = ("hf", "llamafactory", "swift", "trl")
HF_COLUMNS = ("clip_id", "video", "prompt", "output", "fields", "group", "split", "repeat", "frame_offset",
              "duration_s", "fps")


def _hf_features():
    from datasets import Features, Value

    types = {"clip_id": "int64", "repeat": "int32", "frame_offset": "float32", "duration_s": "float32",
             "fps": "float32"}
    return Features({name: Value(types.get(name, "string")) for name in HF_COLUMNS})


def parse_formats(formats: str | Sequence[str]) -> list[str]:
    """``"hf,trl"`` or a list -> validated format names, in the canonical order."""
    names = [f.strip().lower() for f in (formats.split(",") if isinstance(formats, str) else formats) if f.strip()]
    unknown = sorted(set(names) - set(FORMATS))
    if unknown or not names:
        raise CliptuneError(f"--format {','.join(names) or '(empty)'}: choose from {','.join(FORMATS)}")
    return [f for f in FORMATS if f in names]


def _write_jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")


def _gather(project: Project, policy: str, extra_groups: dict[int, str] | None) -> dict[str, Any]:
    """Gold clips with a ledger side, and the counts of everything left out."""
    resolution = resolve(project, policy)
    ledger = current_split(project)
    if not ledger:
        raise CliptuneError("no split yet: run `cliptune split PROJECT` (and `--freeze` it) before exporting")
    with project.session() as session:
        clips = {c.id: c for c in session.scalars(select(Clip))}
    groups = split_groups({c.id: c.group_key for c in clips.values()}, extra_groups)
    # A group with clips on both sides (near-duplicates found after the split was frozen) would train on copies of
    # held-out clips. The held-out side stays as it is; the group's train-side clips are left out of the export.
    held_out_groups = {groups[c] for c, entry in ledger.items() if entry.split == "test" and c in groups}
    leaking = {c for c, entry in ledger.items()
               if entry.split == "train" and groups.get(c) in held_out_groups}
    selected, missing_media = [], 0
    for clip_id in sorted((set(resolution.gold) & set(ledger)) - leaking):
        clip = clips[clip_id]
        if not clip.proxy_path or not (project.path / clip.proxy_path).is_file():
            missing_media += 1
            continue
        selected.append(clip)
    left_out = {
        "needs_review": len(resolution.needs_review),
        "unlabelled": resolution.unlabelled,
        "invalid_answers": resolution.invalid_answers,
        "gold_but_not_in_split": len(set(resolution.gold) - set(ledger)),
        "in_split_without_gold": len([c for c in ledger if c not in resolution.gold and c in clips]),
        "missing_media": missing_media,
        "train_side_of_a_group_held_out": len(leaking & set(resolution.gold)),
    }
    return {"resolution": resolution, "ledger": ledger, "clips": selected, "groups": groups, "left_out": left_out}


def _media_path(project: Project, clip: Clip, out: Path, staging: Path, copy_media: bool) -> str:
    source = project.path / clip.proxy_path
    if copy_media:
        relative = f"media/{clip.sha256}{source.suffix}"
        target = staging / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            # A hard link costs no space, so a killed export's staging folder never holds a media copy. Safe
            # because proxies are never changed in place: video.write_video renames a new file over the old.
            os.link(source, target)
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EACCES):
                raise
            shutil.copyfile(source, target)  # another filesystem, or one without hard links
        return relative
    return Path(os.path.relpath(source.resolve(), out.resolve())).as_posix()


def export_dataset(
    project: Project,
    out: str | os.PathLike,
    *,
    formats: str | Sequence[str] = FORMATS,
    oversample: OversampleConfig | None = None,
    copy_media: bool = False,
    policy: str | None = None,
    overwrite: bool = False,
    audit_findings: Any = None,
    extra_groups: dict[int, str] | None = None,
) -> dict[str, Any]:
    """Write the export described in the module docstring to ``out`` and return its report (as export.json).

    ``policy`` (how gold answers are drawn) defaults to the policy the split was drawn with.
    """
    formats = parse_formats(formats)
    if policy is None:
        policy = (last_split_params(project) or {}).get("policy", "unanimous")
    config = (oversample or OversampleConfig()).validated()
    out = Path(out)
    gathered = _gather(project, policy, extra_groups)
    clips: list[Clip] = gathered["clips"]
    if not clips:
        raise CliptuneError(f"nothing to export: no clip has both a gold answer and a side in the split "
                            f"(left out: {gathered['left_out']})")
    with staged(out, overwrite) as staging:
        report = _write_export(project, out, staging, formats, config, copy_media, policy, gathered, audit_findings)
    project.log("export", out=str(out), formats=formats, counts=report["counts"],
                dataset_version=report["dataset_version"])
    return report


def _write_export(project: Project, out: Path, staging: Path, formats: list[str], config: OversampleConfig,
                  copy_media: bool, policy: str, gathered: dict[str, Any], audit_findings: Any) -> dict[str, Any]:
    rubric = project.rubric
    resolution, ledger, clips = gathered["resolution"], gathered["ledger"], gathered["clips"]
    golds = [resolution.gold[c.id] for c in clips]
    sides = [ledger[c.id].split for c in clips]
    copies, over_report = plan_oversampling([g.fields for g in golds], [s == "test" for s in sides], rubric, config)
    # The ledger's version, not a hash of the clips exported: the two differed whenever clips of the split were
    # left out (a held-out clip that lost its gold answer, missing media, a train copy of a held-out group), so
    # an export could not be traced to its split. What was actually exported has its own hash beside it.
    version = ledger_version(project, ledger)
    exported_version = dataset_version({c.id: s for c, s in zip(clips, sides, strict=True)},
                                       {c.id: c.sha256 for c in clips}, project.rubric_version)
    draft_clips = sum(1 for entry in ledger.values() if not entry.frozen)

    rows: dict[str, list[dict[str, Any]]] = {name: [] for name in SPLITS}
    for clip, gold, side, n_copies in zip(clips, golds, sides, copies.tolist(), strict=True):
        video = _media_path(project, clip, out, staging, copy_media)
        offsets = [0.0] + frame_offsets(clip.duration_s, n_copies, config.num_frames)
        for repeat, offset in enumerate(offsets):
            rows[side].append({
                "clip_id": clip.id, "video": video, "prompt": rubric.prompt.strip(), "output": gold.output_text,
                "fields": json.dumps(gold.fields, ensure_ascii=False, sort_keys=True),
                "group": gathered["groups"][clip.id], "split": side, "repeat": repeat, "frame_offset": offset,
                "duration_s": float(clip.duration_s), "fps": float(clip.fps),
            })
    written: list[str] = []
    if "hf" in formats:
        _write_hf(staging / "hf", rows, _hf_description(project, version, draft_clips))
        written.append("hf")
    writers = {"llamafactory": _llamafactory_record, "swift": _swift_record, "trl": _trl_record}
    for name in ("llamafactory", "swift", "trl"):
        if name in formats:
            for side in SPLITS:
                _write_jsonl(staging / name / f"{side}.jsonl", [writers[name](row) for row in rows[side]])
            written.append(name)
    if "llamafactory" in formats:
        info = {f"{rubric.name}_{side}": {
            "file_name": f"{side}.jsonl", "formatting": "sharegpt", "columns": {"messages": "messages",
                                                                                 "videos": "videos"},
            "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"},
        } for side in SPLITS}
        (staging / "llamafactory" / "dataset_info.json").write_text(json.dumps(info, indent=2) + "\n",
                                                                   encoding="utf-8")
    with project.session() as session:
        rubric_text = session.get(RubricRow, project.rubric_version).text
    (staging / "rubric.yaml").write_text(rubric_text, encoding="utf-8")

    counts = {side: len(rows[side]) for side in SPLITS}
    counts.update({f"{side}_clips": sides.count(side) for side in SPLITS})
    report = {
        "cliptune_version": __version__,
        "project": project.name,
        "rubric": {"name": rubric.name, "version": project.rubric_version},
        "dataset_version": version,
        "split_state": "draft" if draft_clips else "frozen",  # draft: a later `cliptune split` may move clips
        "draft_clips": draft_clips,
        "exported_clips_version": exported_version,
        "created_at": datetime.now(UTC).replace(microsecond=0, tzinfo=None).isoformat(),
        "counts": counts,
        "per_class": _per_class(rubric, golds, sides, copies.tolist()),
        "left_out": gathered["left_out"],
        "formats": written,
        "copy_media": copy_media,
        "video_paths": {"hf": "relative to OUT", "swift": "relative to OUT", "trl": "relative to OUT",
                        "llamafactory": "relative to OUT/llamafactory"},
        "policy": policy,
        "oversampling": over_report,
        "split": last_split_params(project),
        "frozen_test_clips": sum(1 for c in clips if ledger[c.id].frozen and ledger[c.id].split == "test"),
        "groups_straddling": _straddling(gathered),
    }
    (staging / "export.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (staging / "README.md").write_text(render_datacard({**report, "agreement": _agreement(project),
                                                        "audit": audit_findings}), encoding="utf-8")
    _write_manifest(staging)
    return report


def _hf_description(project: Project, version: str, draft_clips: int) -> str:
    state = (f"DRAFT split ({draft_clips} clips not frozen): a later `cliptune split` may move clips between train "
             "and test; do not report results on it" if draft_clips else "frozen split")
    return f"cliptune export of project {project.name}, dataset version {version}: {state}."


def _write_hf(path: Path, rows: dict[str, list[dict[str, Any]]], description: str) -> None:
    import datasets

    features = _hf_features()
    splits = {side: datasets.Dataset.from_dict({c: [r[c] for r in rows[side]] for c in HF_COLUMNS},
                                               features=features,
                                               info=datasets.DatasetInfo(description=description, features=features))
              for side in SPLITS}
    quiet = datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()  # a library call must not draw bars on the caller's terminal
    try:
        # An empty split saved with the default sharding writes no shard and cannot be loaded back: give it one.
        shards = {side: 1 for side, data in splits.items() if data.num_rows == 0}
        datasets.DatasetDict(splits).save_to_disk(str(path), num_shards=shards)
    finally:
        if not quiet:
            datasets.enable_progress_bars()


def _llamafactory_record(row: dict[str, Any]) -> dict[str, Any]:
    # LLaMA-Factory joins relative media paths to media_dir (default: dataset_dir = OUT/llamafactory).
    video = posixpath.normpath(posixpath.join("..", row["video"]))
    return {"messages": [{"role": "user", "content": "<video>" + row["prompt"]},
                         {"role": "assistant", "content": row["output"]}], "videos": [video]}


def _swift_record(row: dict[str, Any]) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": "<video>" + row["prompt"]},
                         {"role": "assistant", "content": row["output"]}], "videos": [row["video"]]}


def _trl_record(row: dict[str, Any]) -> dict[str, Any]:
    # transformers' apply_chat_template loads a video part from its "video" (or "path"/"url") key.
    return {"messages": [{"role": "user", "content": [{"type": "video", "video": row["video"]},
                                                      {"type": "text", "text": row["prompt"]}]},
                         {"role": "assistant", "content": [{"type": "text", "text": row["output"]}]}],
            "videos": [row["video"]]}


def _per_class(rubric, golds, sides: list[str], copies: list[int]) -> dict[str, dict[str, dict[str, int]]]:
    names = [f.name for f in rubric.fields if f.stratify or f.rare]
    table: dict[str, dict[str, dict[str, int]]] = {}
    for name in names:
        classes: dict[str, dict[str, int]] = {}
        for gold, side, n_copies in zip(golds, sides, copies, strict=True):
            entry = classes.setdefault(str(gold.fields.get(name)), {"train": 0, "train_rows": 0, "test": 0})
            entry[side] += 1
            if side == "train":
                entry["train_rows"] += 1 + n_copies
        table[name] = dict(sorted(classes.items()))
    return table


def _straddling(gathered: dict[str, Any]) -> int:
    """Groups with exported clips on both sides (0 by construction: leaking train clips are left out)."""
    sides: dict[str, set[str]] = {}
    for clip in gathered["clips"]:
        if clip.id in gathered["groups"]:
            sides.setdefault(gathered["groups"][clip.id], set()).add(gathered["ledger"][clip.id].split)
    return sum(1 for s in sides.values() if len(s) > 1)


def _agreement(project: Project) -> Any:
    from curation.review.field_agreement import agreement_report

    try:
        return agreement_report(project)
    except Exception as exc:  # another module's statistics must not block an export: say so in the card
        return {"not available": f"{type(exc).__name__}: {exc}"}


def _write_manifest(root: Path) -> None:
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.name != "manifest.json")
    manifest = {"algorithm": "sha256", "files": {p.relative_to(root).as_posix(): {"sha256": sha256_file(p),
                                                                                  "bytes": p.stat().st_size}
                                                 for p in files}}
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


def verify_export(out: str | os.PathLike) -> list[str]:
    """Files of an export whose sha256 no longer matches its manifest (or that are missing); empty when intact."""
    root = Path(out)
    try:
        manifest = json.loads((root / "manifest.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CliptuneError(f"{root} has no manifest.json; it is not a cliptune export") from None
    problems = []
    for name, entry in manifest["files"].items():
        path = root / name
        if not path.is_file():
            problems.append(f"{name}: missing")
        elif sha256_file(path) != entry["sha256"]:
            problems.append(f"{name}: sha256 differs")
    return problems

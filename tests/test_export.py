"""Export: every file loads with the library that reads it, paths resolve where the export is moved, only gold
answers leave, oversampled rows are train-only, and the manifest matches the files."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import datasets
import numpy as np
import pytest
from sqlalchemy import select

from curation.dataset.export import export_dataset, verify_export
from curation.dataset.ledger import current_split, split_project
from curation.dataset.oversample import OversampleConfig
from curation.errors import CliptuneError
from curation.media.ingest import ingest
from curation.media.video import sample_frames
from curation.records.imports import import_annotations
from curation.records.store import Clip, Project

RUBRICS = Path(__file__).resolve().parent.parent / "rubrics"
UNLABELLED = "CAM-4/CAM-4_0011.mp4"
DISPUTED = ("CAM-2/CAM-2_0005.mp4", "CAM-4/CAM-4_0007.mp4")
FINDINGS = [{"check": "shortcuts", "severity": "high", "message": "brightness alone predicts INTRUSION"}]


@pytest.fixture(scope="module")
def exported(sample_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    base = tmp_path_factory.mktemp("work")
    project = Project.init(base / "projects" / "lobby", RUBRICS / "surveillance_alert.yaml")
    report = ingest(project, [sample_dir / "clips"], metadata=sample_dir / "cameras.csv", group_by="camera")
    assert report.added == 12 and not report.failed
    truth = [json.loads(line) for line in (sample_dir / "ground_truth.jsonl").read_text().splitlines()]
    lines = [{"clip": r["file"], "annotator": "gt", "fields": r["fields"], "seconds": 40} for r in truth
             if r["file"] != UNLABELLED]
    lines += [{"clip": r["file"], "annotator": "ben", "fields": dict(r["fields"], door=999)} for r in truth
              if r["file"] in DISPUTED]
    labels = base / "labels.jsonl"
    labels.write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert not import_annotations(project, labels, create_users=True).failed
    with project.session() as session:
        by_path = {c.path: c.id for c in session.scalars(select(Clip))}
    # A near-duplicate cluster linking a CAM-1 clip and a CAM-2 clip: the two cameras become one group.
    extra = {by_path["CAM-1/CAM-1_0000.mp4"]: "dup-1", by_path["CAM-2/CAM-2_0001.mp4"]: "dup-1"}
    split = split_project(project, test_size=0.25, random_state=0, freeze=True, extra_groups=extra)
    assert split.report["groups_straddling"] == 0
    out = base / "exports" / "v1"
    result = export_dataset(project, out, oversample=OversampleConfig(method="auto", target_share=0.3),
                            audit_findings=FINDINGS, extra_groups=extra)
    return {"project": project, "out": out, "report": result, "split": split, "by_path": by_path, "base": base,
            "extra": extra}


def test_hf_dataset_loads_with_exact_columns_and_only_gold(exported: dict) -> None:
    out, split, by_path = exported["out"], exported["split"], exported["by_path"]
    data = datasets.load_from_disk(str(out / "hf"))
    assert isinstance(data, datasets.DatasetDict) and set(data) == {"train", "test"}
    expected = {"clip_id": "int64", "video": "string", "prompt": "string", "output": "string", "fields": "string",
                "group": "string", "split": "string", "repeat": "int32", "frame_offset": "float32",
                "duration_s": "float32", "fps": "float32"}
    for name in ("train", "test"):
        assert {k: v.dtype for k, v in data[name].features.items()} == expected
        assert set(data[name]["split"]) == {name}
    left_out = {by_path[UNLABELLED], *(by_path[p] for p in DISPUTED)}
    exported_ids = set(data["train"]["clip_id"]) | set(data["test"]["clip_id"])
    assert exported_ids == set(split.assignment) and not exported_ids & left_out
    ledger = current_split(exported["project"])
    assert set(data["test"]["clip_id"]) == {c for c, e in ledger.items() if e.split == "test"}
    # Held-out rows are originals only; oversampled copies live in train, each with its own frame offset.
    assert set(data["test"]["repeat"]) == {0} and set(data["test"]["frame_offset"]) == {0.0}
    train = data["train"].to_pandas()
    copies = train[train["repeat"] > 0]
    assert len(copies) > 0 and (copies["frame_offset"] > 0).all()
    assert copies.groupby("clip_id")["frame_offset"].nunique().equals(copies.groupby("clip_id").size())
    rubric = exported["project"].rubric
    for row in data["test"]:
        assert rubric.parse(row["output"]) == json.loads(row["fields"]) and row["prompt"] == rubric.prompt.strip()
    linked = {row["group"] for row in data["train"]} | {row["group"] for row in data["test"]}
    assert "camera:CAM-1 (+1 linked)" in linked  # the near-duplicate cluster joined two cameras


def test_videos_decode_and_repeats_see_other_frames(exported: dict) -> None:
    out = exported["out"]
    data = datasets.load_from_disk(str(out / "hf"))
    for video in set(data["train"]["video"]) | set(data["test"]["video"]):
        assert not os.path.isabs(video)
        frames = sample_frames(out / video, num_frames=4)
        assert frames.shape[0] == 4 and frames.dtype == np.uint8
    copy = next(row for row in data["train"] if row["repeat"] > 0)
    original = sample_frames(out / copy["video"], num_frames=8)
    shifted = sample_frames(out / copy["video"], num_frames=8, start_s=copy["frame_offset"])
    assert not np.array_equal(original, shifted)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_llamafactory_sharegpt_matches_its_documented_schema(exported: dict, tmp_path: Path) -> None:
    folder = exported["out"] / "llamafactory"
    info = json.loads((folder / "dataset_info.json").read_text())
    assert set(info) == {"surveillance_alert_train", "surveillance_alert_test"}
    for entry in info.values():
        assert entry["formatting"] == "sharegpt" and entry["columns"] == {"messages": "messages", "videos": "videos"}
        tags = entry["tags"]
        records = read_jsonl(folder / entry["file_name"])
        assert records
        for record in records:
            messages = record[entry["columns"]["messages"]]
            roles = [m[tags["role_tag"]] for m in messages]
            assert roles == [tags["user_tag"], tags["assistant_tag"]]  # user in odd, assistant in even positions
            text = "".join(m[tags["content_tag"]] for m in messages)
            videos = record[entry["columns"]["videos"]]
            assert text.count("<video>") == len(videos) == 1
            # LLaMA-Factory joins media paths to media_dir, which defaults to dataset_dir (this folder).
            assert os.path.isfile(os.path.join(folder, videos[0]))
    loaded = datasets.load_dataset("json", data_files=str(folder / "train.jsonl"), cache_dir=str(tmp_path))
    assert loaded["train"].num_rows == exported["report"]["counts"]["train"]


def test_swift_and_trl_jsonl_match_their_documented_schemas(exported: dict, tmp_path: Path) -> None:
    out, counts = exported["out"], exported["report"]["counts"]
    for split in ("train", "test"):
        swift = read_jsonl(out / "swift" / f"{split}.jsonl")
        trl = read_jsonl(out / "trl" / f"{split}.jsonl")
        assert len(swift) == len(trl) == counts[split]
        for record in swift:
            assert set(record) == {"messages", "videos"}
            assert [m["role"] for m in record["messages"]] == ["user", "assistant"]
            assert record["messages"][0]["content"].count("<video>") == len(record["videos"]) == 1
            assert os.path.isfile(out / record["videos"][0])  # relative to OUT (ms-swift: ROOT_IMAGE_DIR=OUT)
        for record in trl:
            user, assistant = record["messages"]
            assert user["role"] == "user" and assistant["role"] == "assistant"
            assert all(isinstance(m["content"], list) for m in record["messages"])
            video_parts = [p for p in user["content"] if p["type"] == "video"]
            assert len(video_parts) == len(record["videos"]) == 1 and video_parts[0]["video"] == record["videos"][0]
            assert {p["type"] for p in user["content"]} == {"video", "text"}
            assert [p["type"] for p in assistant["content"]] == ["text"]
            assert os.path.isfile(out / record["videos"][0])
        loaded = datasets.load_dataset("json", data_files=str(out / "trl" / f"{split}.jsonl"),
                                       cache_dir=str(tmp_path / split))
        assert loaded["train"].num_rows == counts[split]


def test_card_manifest_and_export_json(exported: dict, tmp_path: Path) -> None:
    out, report = exported["out"], exported["report"]
    assert verify_export(out) == []
    manifest = json.loads((out / "manifest.json").read_text())["files"]
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()} - {"manifest.json"}
    assert set(manifest) == on_disk and "hf/train/dataset_info.json" in manifest
    info = json.loads((out / "export.json").read_text())
    assert {"cliptune_version", "rubric", "dataset_version", "created_at", "counts", "formats",
            "oversampling"} <= set(info)
    assert info["rubric"]["version"] == exported["project"].rubric_version
    assert info["left_out"]["needs_review"] == 2 and info["left_out"]["unlabelled"] == 1
    assert info["oversampling"]["held_out_repeated"] == 0
    assert (out / "rubric.yaml").read_text() == (RUBRICS / "surveillance_alert.yaml").read_text()
    card = (out / "README.md").read_text()
    for expected in (f"version `{exported['project'].rubric_version}`", "| needs review | 2 |", "| unlabelled | 1 |",
                     "Groups straddling the split: **0**", "brightness alone predicts INTRUSION",
                     f"{report['counts']['test_clips']} of {report['counts']['test_clips']} held-out clips are frozen",
                     "## Agreement between annotators", "| event | INTRUSION |"):
        assert expected in card, expected
    tampered = tmp_path / "copy"
    shutil.copytree(out, tampered)
    (tampered / "README.md").write_text(card + "edited\n")
    (tampered / "trl" / "test.jsonl").unlink()
    assert sorted(verify_export(tampered)) == ["README.md: sha256 differs", "trl/test.jsonl: missing"]


def test_relative_paths_survive_moving_project_and_export_together(exported: dict, tmp_path: Path) -> None:
    moved = tmp_path / "elsewhere"
    shutil.copytree(exported["base"], moved)
    data = datasets.load_from_disk(str(moved / "exports" / "v1" / "hf"))
    for video in set(data["train"]["video"]):
        path = moved / "exports" / "v1" / video
        assert path.resolve().is_relative_to(moved.resolve()) and path.is_file()


def test_copy_media_export_is_self_contained(exported: dict, tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    report = export_dataset(exported["project"], out, formats="hf,llamafactory", copy_media=True,
                            extra_groups=exported["extra"])
    assert report["formats"] == ["hf", "llamafactory"] and not (out / "swift").exists()
    moved = shutil.move(str(out), str(tmp_path / "moved"))
    data = datasets.load_from_disk(os.path.join(moved, "hf"))
    videos = set(data["train"]["video"]) | set(data["test"]["video"])
    assert all(v.startswith("media/") for v in videos) and len(videos) == report["counts"]["train_clips"] + \
        report["counts"]["test_clips"]
    for video in videos:
        assert sample_frames(Path(moved) / video, num_frames=2).shape[0] == 2
    for record in read_jsonl(Path(moved) / "llamafactory" / "test.jsonl"):
        assert os.path.isfile(os.path.join(moved, "llamafactory", record["videos"][0]))
    assert verify_export(moved) == []


def test_bad_input_is_refused_and_loses_nothing(exported: dict, project: Project, tmp_path: Path) -> None:
    with pytest.raises(CliptuneError, match="no split yet"):
        export_dataset(project, tmp_path / "x")
    with pytest.raises(CliptuneError, match="choose from hf,llamafactory,swift,trl"):
        export_dataset(exported["project"], tmp_path / "x", formats="hf,parquet")
    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "mine.txt").write_text("keep me")
    with pytest.raises(CliptuneError, match="not a cliptune export"):
        export_dataset(exported["project"], foreign)
    assert (foreign / "mine.txt").read_text() == "keep me" and len(list(foreign.iterdir())) == 1
    target = tmp_path / "again"
    first = export_dataset(exported["project"], target, formats="hf")
    with pytest.raises(CliptuneError, match="pass --overwrite"):
        export_dataset(exported["project"], target, formats="trl")
    assert json.loads((target / "export.json").read_text())["formats"] == ["hf"]
    second = export_dataset(exported["project"], target, formats="trl", overwrite=True)
    assert second["formats"] == ["trl"] and not (target / "hf").exists() and (target / "trl").is_dir()
    assert first["dataset_version"] == second["dataset_version"]
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folders left behind


def test_held_out_clips_that_lose_their_gold_are_left_out_and_counted(project: Project, tmp_path: Path) -> None:
    events = ["NO_ACTIVITY", "NORMAL_ENTRY", "TAILGATING", "INTRUSION"]
    with project.write() as session:
        rows = [Clip(root="/footage", path=f"c{i}.mp4", sha256=f"{i:064x}", source_sha256=f"{i:064x}",
                     duration_s=2.0, fps=10.0, width=64, height=48, n_frames=20, group_key=f"camera:{i % 6}",
                     proxy_path=f"media/proxies/c{i}.mp4") for i in range(24)]
        session.add_all(rows)
        session.flush()
        ids = [row.id for row in rows]
    (project.path / "media" / "proxies").mkdir(parents=True)
    for i in range(24):  # stand-ins: this test reads no frames
        (project.path / "media" / "proxies" / f"c{i}.mp4").write_bytes(b"proxy")
    gold = [{"clip": c, "annotator": "gt", "fields": {"event": events[i % 4], "persons": 1, "badge_events": 1,
                                                      "door": 1, "time": "01:00"}} for i, c in enumerate(ids)]
    (tmp_path / "gold.jsonl").write_text("".join(json.dumps(g) + "\n" for g in gold))
    import_annotations(project, tmp_path / "gold.jsonl", create_users=True)
    split = split_project(project, test_size=0.2, freeze=True)
    held_out = [c for c, side in split.assignment.items() if side == "test"]
    # A second annotator disagrees on every held-out clip: they need review now, so nothing held out is gold.
    dissent = [dict(g, annotator="ben", fields=dict(g["fields"], door=2)) for g in gold if g["clip"] in held_out]
    (tmp_path / "dissent.jsonl").write_text("".join(json.dumps(d) + "\n" for d in dissent))
    import_annotations(project, tmp_path / "dissent.jsonl", create_users=True)
    report = export_dataset(project, tmp_path / "out", formats="hf,trl")
    assert report["counts"]["test"] == 0 and report["counts"]["train_clips"] == 24 - len(held_out)
    assert report["left_out"]["in_split_without_gold"] == len(held_out) == report["left_out"]["needs_review"]
    data = datasets.load_from_disk(str(tmp_path / "out" / "hf"))  # an empty split still loads
    assert data["test"].num_rows == 0 and data["train"].num_rows == 24 - len(held_out)
    assert (tmp_path / "out" / "trl" / "test.jsonl").read_text() == ""
    assert current_split(project)[held_out[0]].split == "test"  # still frozen on its side


@pytest.mark.slow  # two interpreters importing datasets: about 5 s
def test_cli_export_json(exported: dict, tmp_path: Path) -> None:
    out = tmp_path / "cli"
    result = subprocess.run([sys.executable, "-m", "curation.cli", "export", str(exported["project"].path), str(out),
                             "--format", "hf,swift", "--oversample", "share", "--max-repeat", "1", "--json"],
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["formats"] == ["hf", "swift"] and report["oversampling"]["max_repeat"] == 1
    assert report["counts"]["train"] - report["counts"]["train_clips"] <= report["counts"]["train_clips"]
    bad = subprocess.run([sys.executable, "-m", "curation.cli", "export", str(exported["project"].path), str(out),
                          "--oversample", "smote"], capture_output=True, text=True, timeout=180)
    assert bad.returncode == 1 and bad.stderr.startswith("error: --oversample smote") and "Traceback" not in bad.stderr


def test_near_duplicates_found_after_the_freeze_keep_their_copy_out_of_train(exported: dict, tmp_path: Path) -> None:
    """The audit links a frozen train clip to a frozen held-out clip: the held-out clip stays, the train copy goes."""
    project, ledger = exported["project"], current_split(exported["project"])
    train_clip = next(c for c, e in sorted(ledger.items()) if e.split == "train")
    test_clip = next(c for c, e in sorted(ledger.items()) if e.split == "test")
    linked = {**exported["extra"], train_clip: "late-dup", test_clip: "late-dup"}
    report = export_dataset(project, tmp_path / "v2", extra_groups=linked, formats="hf")
    data = datasets.load_from_disk(str(tmp_path / "v2" / "hf"))
    assert test_clip in set(data["test"]["clip_id"])
    leaked = train_clip not in set(data["train"]["clip_id"])
    assert leaked and report["left_out"]["train_side_of_a_group_held_out"] >= 1
    assert report["groups_straddling"] == 0
    assert current_split(project)[train_clip].split == "train"  # nothing in the ledger moved

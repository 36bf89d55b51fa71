"""The same media, metadata and answers give the same clip ids, split and dataset version whatever the worker
count or the order workers finish in; an export reports the ledger's version, and says when its split is a draft."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from curation.dataset.export import export_dataset
from curation.dataset.ledger import current_split, ledger_version, split_project
from curation.media.ingest import ingest
from curation.media.video import write_video
from curation.records.imports import import_annotations
from curation.records.store import Clip, Project
from curation.records.users import get_or_create_user

RUBRIC = Path(__file__).resolve().parent.parent / "rubrics" / "surveillance_alert.yaml"
QUIET = {"event": "NO_ACTIVITY", "persons": 0, "badge_events": 0, "door": 14, "time": "03:00"}


@pytest.fixture(scope="module")
def media(sample_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The sample's short clips plus one long recording that sorts first, so that with two workers the short
    files finish before it: finishing order and job order differ."""
    root = tmp_path_factory.mktemp("media")
    footage = root / "footage"
    shutil.copytree(sample_dir / "clips", footage)
    rng = np.random.default_rng(3)
    frames = [np.clip(rng.normal(90 + i % 50, 20, (144, 192, 3)), 0, 255).astype(np.uint8) for i in range(360)]
    write_video(footage / "AAA-long" / "recording.mp4", frames, 12.0)
    truth = [json.loads(line) for line in (sample_dir / "ground_truth.jsonl").read_text().splitlines()]
    lines = [{"clip": r["file"], "annotator": "gt", "fields": r["fields"]} for r in truth]
    lines.append({"clip": "AAA-long/recording.mp4", "annotator": "gt", "fields": QUIET})
    labels = root / "labels.jsonl"
    labels.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return {"root": root, "footage": footage, "metadata": sample_dir / "cameras.csv", "labels": labels}


def build(media: dict, name: str, workers: int) -> Project:
    project = Project.init(media["root"] / name, RUBRIC)
    report = ingest(project, [media["footage"]], metadata=media["metadata"], group_by="camera", workers=workers)
    assert report.added == 13 and not report.failed
    get_or_create_user(project, "gt")
    assert not import_annotations(project, media["labels"]).failed
    return project


def clip_ids(project: Project) -> dict[tuple[str, float], int]:
    with project.session() as session:
        return {(c.path, c.start_s): c.id for c in session.scalars(select(Clip))}


def sides(project: Project) -> dict[str, str]:
    paths = {clip_id: path for (path, _), clip_id in clip_ids(project).items()}
    return {paths[c]: entry.split for c, entry in current_split(project).items()}


def test_same_media_same_ids_split_and_version_whatever_the_workers(media: dict) -> None:
    serial, parallel = build(media, "serial", workers=1), build(media, "parallel", workers=2)
    ids = clip_ids(serial)
    assert ids == clip_ids(parallel)
    assert sorted(ids, key=ids.get) == sorted(ids)  # ids follow the sorted file list
    first = split_project(serial, test_size=0.25)
    second = split_project(parallel, test_size=0.25)
    assert first.assignment == second.assignment and sides(serial) == sides(parallel)
    assert first.dataset_version == second.dataset_version
    for project, split in ((serial, first), (parallel, second)):
        assert ledger_version(project) == split.dataset_version
        assert {e.dataset_version for e in current_split(project).values()} == {split.dataset_version}
        report = export_dataset(project, media["root"] / f"{project.path.name}-export", formats="hf,trl")
        assert report["dataset_version"] == split.dataset_version


def test_a_draft_split_says_so_in_its_export_and_a_frozen_one_does_not(media: dict) -> None:
    project = build(media, "lobby", workers=2)
    draft = split_project(project, test_size=0.25)
    out = media["root"] / "draft-export"
    report = export_dataset(project, out, formats="hf")
    assert report["split_state"] == "draft" and report["draft_clips"] == 13
    assert json.loads((out / "export.json").read_text())["split_state"] == "draft"
    assert "**Draft split**" in (out / "README.md").read_text()
    for side in ("train", "test"):
        info = json.loads((out / "hf" / side / "dataset_info.json").read_text())
        assert "DRAFT split" in info["description"] and draft.dataset_version in info["description"]

    frozen = split_project(project, test_size=0.25, freeze=True)
    assert frozen.dataset_version == draft.dataset_version  # the same sides: freezing moves nothing
    report = export_dataset(project, out, formats="hf", overwrite=True)
    assert report["split_state"] == "frozen" and report["draft_clips"] == 0
    assert report["dataset_version"] == frozen.dataset_version == ledger_version(project)
    assert "draft" not in (out / "README.md").read_text().lower()
    for side in ("train", "test"):
        info = json.loads((out / "hf" / side / "dataset_info.json").read_text())
        assert "draft" not in info["description"].lower() and "frozen split" in info["description"]


def add_stand_in_clips(project: Project, first: int, n: int) -> list[int]:
    """Clips without real videos (stand-in proxy files): these tests read no frames."""
    with project.write() as session:
        rows = [Clip(root="/footage", path=f"c{i}.mp4", sha256=f"{i:064x}", source_sha256=f"{i:064x}",
                     duration_s=2.0, fps=10.0, width=64, height=48, n_frames=20, group_key=f"camera:{i % 6}",
                     proxy_path=f"media/proxies/c{i}.mp4") for i in range(first, first + n)]
        session.add_all(rows)
        session.flush()
        ids = [row.id for row in rows]
    (project.path / "media" / "proxies").mkdir(parents=True, exist_ok=True)
    for i in range(first, first + n):
        (project.path / "media" / "proxies" / f"c{i}.mp4").write_bytes(b"proxy")
    return ids


def answer(project: Project, path: Path, ids: list[int], annotator: str, door: int = 1) -> None:
    events = ["NO_ACTIVITY", "NORMAL_ENTRY", "TAILGATING", "INTRUSION"]
    lines = [{"clip": c, "annotator": annotator, "fields": {"event": events[c % 4], "persons": 1, "badge_events": 1,
                                                            "door": door, "time": "01:00"}} for c in ids]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    get_or_create_user(project, annotator)
    assert not import_annotations(project, path).failed


def test_the_export_keeps_the_ledgers_version_when_clips_of_the_split_are_left_out(tmp_path: Path) -> None:
    """The cause of the old mismatch: the export hashed only the clips it exported, the ledger every clip with a
    side. A held-out clip that loses its gold answer after the freeze is left out of the export; the version the
    export reports must still be the ledger's, and the exported subset gets its own hash."""
    project = Project.init(tmp_path / "project", RUBRIC)
    ids = add_stand_in_clips(project, 0, 24)
    answer(project, tmp_path / "gold.jsonl", ids, "gt")
    split = split_project(project, test_size=0.2, freeze=True)
    held_out = sorted(c for c, side in split.assignment.items() if side == "test")
    answer(project, tmp_path / "dissent.jsonl", held_out[:1], "ben", door=2)  # now it needs review
    report = export_dataset(project, tmp_path / "out", formats="trl")
    assert report["left_out"]["in_split_without_gold"] == 1
    assert report["dataset_version"] == split.dataset_version == ledger_version(project)
    assert report["exported_clips_version"] != report["dataset_version"]
    assert report["exported_clips_version"] in (tmp_path / "out" / "README.md").read_text()

    # Clips labelled later extend the split as a draft: the export is a draft again and reports the new split's
    # version, while the frozen rows keep the version of the split that froze them.
    new_ids = add_stand_in_clips(project, 24, 12)
    answer(project, tmp_path / "new.jsonl", new_ids, "gt")
    extended = split_project(project, test_size=0.2)
    assert extended.dataset_version != split.dataset_version
    stamped = {e.dataset_version for c, e in current_split(project).items() if c in new_ids}
    assert stamped == {extended.dataset_version} == {ledger_version(project)}
    report = export_dataset(project, tmp_path / "out", formats="trl", overwrite=True)
    assert report["split_state"] == "draft" and report["draft_clips"] == 12
    assert report["dataset_version"] == extended.dataset_version

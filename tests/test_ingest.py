"""Ingest of real video files: good, corrupt, duplicate and non-video files; idempotent and resumable runs;
metadata join and group keys; segmentation of long recordings."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from curation.errors import CliptuneError
from curation.media.ingest import ingest, segment_bounds
from curation.media.video import probe, write_video
from curation.records.store import Clip, Project

RUBRIC = Path(__file__).resolve().parent.parent / "rubrics" / "surveillance_alert.yaml"


def sample_clips(sample_dir: Path) -> list[Path]:
    """Every clip of the sample: MP4 (H.264) from most cameras, WebM (VP9, odd size) from one."""
    return sorted(p for p in (sample_dir / "clips").rglob("*") if p.suffix in {".mp4", ".webm"})


@pytest.fixture
def messy_folder(tmp_path: Path, sample_dir: Path) -> Path:
    """Three good clips, an exact copy under another name, and files that are not playable video."""
    folder = tmp_path / "footage"
    (folder / "day1").mkdir(parents=True)
    good = sample_clips(sample_dir)[:3]
    for index, clip in enumerate(good):
        shutil.copy(clip, folder / "day1" / f"good{index}.mp4")
    shutil.copy(good[0], folder / "copy_of_good0.mp4")
    (folder / "empty.mp4").write_bytes(b"")
    data = good[1].read_bytes()
    (folder / "truncated.mp4").write_bytes(data[: len(data) // 2])
    (folder / "text.mp4").write_text("this is not a video\n" * 50)
    (folder / "notes.txt").write_text("camera 2 was moved on Tuesday")
    return folder


def test_ingest_good_corrupt_duplicate_and_non_video(project: Project, messy_folder: Path) -> None:
    report = ingest(project, [messy_folder], workers=1)
    assert (report.added, report.duplicates, report.ignored, report.clips) == (3, 1, 1, 3)
    failed = {Path(f["path"]).name: f["error"] for f in report.failed}
    assert sorted(failed) == ["empty.mp4", "text.mp4", "truncated.mp4"]
    assert "empty" in failed["empty.mp4"].lower()
    assert all(message and "Traceback" not in message for message in failed.values())
    with project.session() as session:
        clips = list(session.scalars(select(Clip).order_by(Clip.path)))
    # Of two identical files, the first in path order is kept ("copy_of_good0.mp4" sorts before "day1/").
    assert [c.path for c in clips] == ["copy_of_good0.mp4", "day1/good1.mp4", "day1/good2.mp4"]
    for clip in clips:
        assert clip.source_path.exists()
        proxy = probe(project.path / clip.proxy_path)  # proxies decode back with decord
        assert proxy.codec == "h264" and proxy.width % 2 == 0 and proxy.height % 2 == 0
        assert abs(proxy.duration_s - clip.duration_s) < 0.3
        assert (project.path / clip.thumbnail_path).stat().st_size > 0
        assert clip.group_key == f"file:{clip.path}"  # without metadata, a recording is its own group

    again = ingest(project, [messy_folder], workers=2)
    assert (again.added, again.duplicates, len(again.failed), again.clips) == (0, 4, 3, 3)


def test_metadata_join_and_group_keys(project: Project, sample_dir: Path) -> None:
    report = ingest(project, [sample_dir / "clips"], metadata=sample_dir / "cameras.csv", group_by="camera")
    assert report.added == len(sample_clips(sample_dir)) and not report.failed and report.unmatched_metadata == 0
    rows = {}
    with open(sample_dir / "cameras.csv") as handle:
        header = handle.readline().strip().split(",")
        for line in handle:
            values = dict(zip(header, line.strip().split(","), strict=True))
            rows[values["file"]] = values
    with project.session() as session:
        clips = list(session.scalars(select(Clip)))
    for clip in clips:
        expected = rows[clip.path]
        assert clip.group_key == f"camera:{expected['camera']}"
        assert clip.metadata_["site"] == expected["site"] and clip.metadata_["recorded_at"] == expected["recorded_at"]
    assert len({c.group_key for c in clips}) == len({r["camera"] for r in rows.values()})


def test_metadata_errors_are_clear(project: Project, sample_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(CliptuneError, match="has no such column"):
        ingest(project, [sample_dir / "clips"], metadata=sample_dir / "cameras.csv", group_by="patient")
    no_key = tmp_path / "no_key.csv"
    no_key.write_text("camera,site\nCAM-1,north\n")
    with pytest.raises(CliptuneError, match="no file-name column"):
        ingest(project, [sample_dir / "clips"], metadata=no_key)
    repeated = tmp_path / "repeated.csv"
    repeated.write_text("file,camera\na.mp4,1\na.mp4,2\n")
    with pytest.raises(CliptuneError, match="more than once: a.mp4"):
        ingest(project, [sample_dir / "clips"], metadata=repeated)
    with pytest.raises(CliptuneError, match="needs --metadata"):
        ingest(project, [sample_dir / "clips"], group_by="camera")
    with pytest.raises(CliptuneError, match="no such file or folder"):
        ingest(project, [tmp_path / "missing"])


def test_segment_bounds() -> None:
    assert segment_bounds(10.0, None) == [(0.0, None)]
    assert segment_bounds(10.0, 3.0) == [(0.0, 3.0), (3.0, 6.0), (6.0, 9.0), (9.0, 10.0)]
    assert segment_bounds(9.5, 3.0) == [(0.0, 3.0), (3.0, 6.0), (6.0, 9.5)]  # a 0.5 s tail joins the last clip
    assert segment_bounds(2.0, 5.0) == [(0.0, 2.0)]


def test_segmenting_a_long_recording(project: Project, tmp_path: Path) -> None:
    fps, seconds = 10, 9
    # Each frame's grey level encodes its second, so every segment's content can be checked.
    frames = [np.full((64, 96, 3), 20 + 25 * (i // fps), np.uint8) for i in range(fps * seconds)]
    recording = write_video(tmp_path / "long" / "recording.mp4", frames, fps)
    report = ingest(project, [recording], segment_s=3.0, proxy_height=64)
    assert report.added == 3
    with project.session() as session:
        clips = list(session.scalars(select(Clip).order_by(Clip.start_s)))
    assert [(c.start_s, c.end_s) for c in clips] == [(0.0, 3.0), (3.0, 6.0), (6.0, 9.0)]
    assert len({c.group_key for c in clips}) == 1 and len({c.sha256 for c in clips}) == 3
    from curation.media.video import sample_frames

    for clip in clips:
        proxy = project.path / clip.proxy_path
        assert abs(probe(proxy).duration_s - 3.0) < 0.25
        levels = sample_frames(proxy, num_frames=3).mean(axis=(1, 2, 3))
        expected = [20 + 25 * int(clip.start_s + s) for s in (0.5, 1.5, 2.5)]
        assert np.allclose(levels, expected, atol=6), (clip.start_s, levels, expected)
    assert ingest(project, [recording], segment_s=3.0).added == 0


def test_killed_ingest_resumes_with_every_clip_once(tmp_path: Path, sample_dir: Path) -> None:
    project_dir = tmp_path / "resumed"
    Project.init(project_dir, RUBRIC)
    footage = sample_dir / "clips"
    n_files = len(sample_clips(sample_dir))
    command = [sys.executable, "-m", "curation.cli", "ingest", str(project_dir), str(footage), "--workers", "1"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    database = project_dir / "cliptune.db"
    deadline = time.time() + 120
    added = 0
    while time.time() < deadline and process.poll() is None:
        with sqlite3.connect(database) as connection:
            added = connection.execute("SELECT count(*) FROM clip").fetchone()[0]
        if added >= 2:
            os.killpg(process.pid, signal.SIGKILL)
            break
        time.sleep(0.05)
    process.wait(timeout=30)
    assert 2 <= added < n_files, "the ingest should have been killed half-way"
    result = subprocess.run([*command[:-2], "--json"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["clips"] == n_files and report["duplicates"] >= 2 and not report["failed"]
    with sqlite3.connect(database) as connection:
        rows = connection.execute("SELECT path, proxy_path FROM clip").fetchall()
    expected = sorted(p.relative_to(footage).as_posix() for p in sample_clips(sample_dir))
    assert sorted(path for path, _ in rows) == expected
    for _, proxy in rows:
        probe(project_dir / proxy)
    leftovers = [p for p in (project_dir / "media").rglob("*") if p.name.endswith(".part")]
    assert len(leftovers) <= 1  # at most the file being written when the process was killed


def test_cli_ingest_json(tmp_path: Path, messy_folder: Path) -> None:
    project_dir = tmp_path / "cli"
    run = [sys.executable, "-m", "curation.cli"]
    created = subprocess.run([*run, "init", str(project_dir), "--rubric", str(RUBRIC)], capture_output=True)
    assert created.returncode == 0
    result = subprocess.run([*run, "ingest", str(project_dir), str(messy_folder), "--json"], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert {"added", "duplicates", "failed", "clips"} <= set(report)
    assert report["added"] == 3 and report["duplicates"] == 1 and report["clips"] == 3
    assert all(set(f) == {"path", "error"} for f in report["failed"]) and len(report["failed"]) == 3
    status = subprocess.run([*run, "status", str(project_dir), "--json"], capture_output=True, text=True)
    assert json.loads(status.stdout)["clips"]["total"] == 3
    bad = subprocess.run([*run, "ingest", str(project_dir), str(tmp_path / "nowhere")], capture_output=True, text=True)
    assert bad.returncode == 1 and "no such file or folder" in bad.stderr and "Traceback" not in bad.stderr

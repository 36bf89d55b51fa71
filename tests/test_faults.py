"""Killed and failed runs leave nothing behind: an export's staging folders go (its own on an error, SIGTERM or
SIGINT; a SIGKILLed one's at the next run), and a SIGKILLed ingest's workers die with it. Real processes, real
signals, real videos."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from sqlalchemy import select

from curation.dataset.export import export_dataset, verify_export
from curation.dataset.ledger import split_project
from curation.media.ingest import ingest
from curation.media.video import probe
from curation.records.imports import import_annotations
from curation.records.store import Clip, Project
from curation.records.users import get_or_create_user

RUBRIC = Path(__file__).resolve().parent.parent / "rubrics" / "surveillance_alert.yaml"
CLI = [sys.executable, "-m", "curation.cli"]


@pytest.fixture(scope="module")
def labelled(sample_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Project:
    """The sample ingested, every clip answered, the split frozen: ready to export."""
    base = tmp_path_factory.mktemp("faults")
    project = Project.init(base / "project", RUBRIC)
    assert ingest(project, [sample_dir / "clips"], metadata=sample_dir / "cameras.csv", group_by="camera").added
    truth = [json.loads(line) for line in (sample_dir / "ground_truth.jsonl").read_text().splitlines()]
    labels = base / "labels.jsonl"
    labels.write_text("".join(json.dumps({"clip": r["file"], "annotator": "gt", "fields": r["fields"]}) + "\n"
                              for r in truth))
    get_or_create_user(project, "gt")
    assert not import_annotations(project, labels).failed
    split_project(project, test_size=0.25, freeze=True)
    return project


def staging_folders(out: Path) -> list[str]:
    return sorted(p.name for p in out.parent.glob(f".{out.name}.*"))


def reaped_pid() -> int:
    """The PID of a process that has exited and been reaped: no process runs under it (until it is reused)."""
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def start_export_and_wait_for_staging(project: Project, out: Path, *extra: str) -> subprocess.Popen:
    """Start `cliptune export --copy-media` and return once its staging folder exists (the run is mid-way)."""
    process = subprocess.Popen([*CLI, "export", str(project.path), str(out), "--copy-media", *extra],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if list(out.parent.glob(f".{out.name}.partial-{process.pid}")):
            return process
        time.sleep(0.005)
    process.kill()
    process.wait()
    pytest.fail(f"the export finished or hung before its staging folder was seen (rc {process.returncode})")


def test_a_killed_exports_staging_folder_is_removed_by_the_next_run(labelled: Project, tmp_path: Path) -> None:
    out = tmp_path / "exports" / "v1"
    process = start_export_and_wait_for_staging(labelled, out)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    assert staging_folders(out) == [f".v1.partial-{process.pid}"], "the kill should have left its staging folder"
    assert not out.exists()
    report = export_dataset(labelled, out, copy_media=True, formats="hf,trl")
    assert staging_folders(out) == []
    assert verify_export(out) == [] and report["counts"]["train_clips"] + report["counts"]["test_clips"] == 12
    # The media are hard links to the proxies (same filesystem): no staging folder ever held a copy of them.
    with labelled.session() as session:
        proxies = {labelled.path / c.proxy_path for c in session.scalars(select(Clip))}
    proxy_inodes = {p.stat().st_ino for p in proxies}
    media = list((out / "media").iterdir())
    assert len(media) == 12 and all(m.stat().st_ino in proxy_inodes and m.stat().st_nlink >= 2 for m in media)


def test_a_live_runs_staging_folder_is_left_alone(labelled: Project, tmp_path: Path) -> None:
    out = tmp_path / "v1"
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        concurrent = tmp_path / f".v1.partial-{sleeper.pid}"
        concurrent.mkdir()
        (concurrent / "hf").mkdir()
        stale = tmp_path / f".v1.partial-{reaped_pid()}"
        (stale / "media").mkdir(parents=True)
        export_dataset(labelled, out, formats="trl")
        assert staging_folders(out) == [concurrent.name]
    finally:
        sleeper.kill()
        sleeper.wait()


def test_an_export_killed_while_swapping_gets_its_predecessor_back(labelled: Project, tmp_path: Path) -> None:
    """Killed between moving the old export aside and moving the new one in: the next run puts the old one back,
    and still asks for --overwrite before replacing it."""
    out = tmp_path / "v1"
    export_dataset(labelled, out, formats="trl")
    before = (out / "manifest.json").read_text()
    pid = reaped_pid()
    out.rename(tmp_path / f".v1.old-{pid}")
    (tmp_path / f".v1.partial-{pid}" / "trl").mkdir(parents=True)  # its finished new export, never moved in
    with pytest.raises(Exception, match="pass --overwrite"):
        export_dataset(labelled, out, formats="hf")
    assert staging_folders(out) == [] and (out / "manifest.json").read_text() == before
    export_dataset(labelled, out, formats="hf", overwrite=True)
    assert staging_folders(out) == [] and (out / "hf").is_dir() and not (out / "trl").exists()


class BrokenFindings:
    def to_dict(self):
        raise RuntimeError("the audit findings cannot be read")


def test_an_export_that_fails_removes_its_staging_and_keeps_the_old_export(labelled: Project, tmp_path: Path) -> None:
    out = tmp_path / "v1"
    export_dataset(labelled, out, formats="trl")
    before = (out / "manifest.json").read_text()
    with pytest.raises(RuntimeError, match="cannot be read"):  # raised while writing the card: media are in
        export_dataset(labelled, out, formats="hf", copy_media=True, overwrite=True, audit_findings=BrokenFindings())
    assert staging_folders(out) == [] and (out / "manifest.json").read_text() == before


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stopped_export_removes_its_staging_folder(labelled: Project, tmp_path: Path, stop: int) -> None:
    out = tmp_path / "v1"
    export_dataset(labelled, out, formats="trl")
    before = (out / "manifest.json").read_text()
    process = start_export_and_wait_for_staging(labelled, out, "--overwrite")
    process.send_signal(stop)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode != 0, "the export should have been stopped, not finished"
    if stop == signal.SIGTERM:
        assert process.returncode == -signal.SIGTERM  # it still dies by the signal, after cleaning up
    assert staging_folders(out) == [], stderr.decode()[-2000:]
    assert (out / "manifest.json").read_text() == before


def descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def running(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_a_killed_ingests_workers_die_and_the_next_run_ingests_every_file_once(tmp_path: Path,
                                                                               sample_dir: Path) -> None:
    project_dir = tmp_path / "project"
    Project.init(project_dir, RUBRIC)
    footage = sample_dir / "clips"
    expected = sorted(p.relative_to(footage).as_posix() for p in footage.rglob("*") if p.suffix in {".mp4", ".webm"})
    process = subprocess.Popen([*CLI, "ingest", str(project_dir), str(footage), "--workers", "2"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    workers: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None and len(workers) < 2:
            workers = descendants(process.pid)
            time.sleep(0.01)
        assert len(workers) >= 2 and process.poll() is None, "the ingest should be running with its workers"
        time.sleep(0.3)  # let them get into their first files
        os.kill(process.pid, signal.SIGKILL)  # the parent only: its workers must go by themselves
        process.wait(timeout=30)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and any(running(w) for w in workers):
            time.sleep(0.05)
        strays = [w.pid for w in workers if running(w)]
        assert strays == [], f"worker processes outlived the killed ingest: {strays}"
    finally:
        for worker in workers:  # started by this test (through the ingest): never leave them running
            if running(worker):
                worker.kill()

    project = Project.open(project_dir)
    report = ingest(project, [footage], workers=2)
    assert not report.failed and report.clips == len(expected)
    with project.session() as session:
        clips = session.scalars(select(Clip).order_by(Clip.id)).all()
    assert sorted(c.path for c in clips) == expected  # every file exactly once
    # Files are committed in sorted order: the killed run kept a prefix, the second run added the rest after it.
    assert [c.path for c in clips] == expected
    for clip in clips:
        probe(project_dir / clip.proxy_path)
    leftovers = [p.name for p in (project_dir / "media").rglob("*") if p.name.endswith(".part")]
    assert leftovers == []  # the temporary files of the killed workers were removed

"""Audit reports hide nothing: bad input (no answers, one clip, deleted media, unreadable files, too few clips per
class) audits with exit code 0, and the text names every part that was not tested and why, clips by file.

Each case runs the real command in a subprocess on a real project of real (synthetic) videos."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from curation.audit.report import CHECKS
from curation.audit.text_report import text_lines
from curation.audit.untested import DECODED_CHECKS

REPO = Path(__file__).resolve().parent.parent
RUBRIC = REPO / "rubrics" / "surveillance_alert.yaml"


def audit(project: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-m", "curation.cli", "audit", str(project), "--workers", "1", *extra],
                          capture_output=True, text=True, cwd=REPO, env=env, timeout=300)
    assert "Traceback" not in done.stdout + done.stderr, done.stderr
    assert done.returncode == 0, done.stderr
    return done


def make_project(folder: Path, sources: list[Path], answers: list[dict] | None = None):
    """A project with these clips ingested (group by camera folder) and ``answers`` imported."""
    from curation.media.ingest import ingest
    from curation.records.imports import import_annotations
    from curation.records.store import Project

    project = Project.init(folder, RUBRIC)
    report = ingest(project, sources, workers=1)
    assert report.added == len(sources) and not report.failed
    if answers:
        path = folder / "answers.jsonl"
        path.write_text("".join(json.dumps(a) + "\n" for a in answers))
        assert import_annotations(project, path, create_users=True).imported == len(answers)
    return project


@pytest.fixture
def six_clips(sample_dir: Path, tmp_path: Path) -> list[Path]:
    """Copies of six sample clips (the tests delete and damage them)."""
    clips = sorted((sample_dir / "clips").rglob("*.mp4"))[:6]
    copies = []
    for clip in clips:
        target = tmp_path / "media" / clip.name
        target.parent.mkdir(exist_ok=True)
        shutil.copyfile(clip, target)
        copies.append(target)
    return copies


def proxy_of(project, file_name: str) -> Path:
    from sqlalchemy import select

    from curation.records.store import Clip

    with project.session() as session:
        clip = session.scalars(select(Clip).where(Clip.path == file_name)).one()
    return project.path / clip.proxy_path


def test_no_answers_deleted_and_unreadable_media_are_named(six_clips: list[Path], tmp_path: Path) -> None:
    project = make_project(tmp_path / "p", six_clips)
    deleted, damaged = six_clips[1], six_clips[2]
    deleted_proxy, damaged_proxy = proxy_of(project, deleted.name), proxy_of(project, damaged.name)
    deleted.unlink()
    deleted_proxy.unlink()
    for path in (damaged, damaged_proxy):  # truncated: "moov atom not found" or a broken stream
        path.write_bytes(path.read_bytes()[:3000])
    html = tmp_path / "audit.html"
    text = audit(project.path, "--html", str(html)).stdout
    lines = text.splitlines()
    assert "shortcuts: 0 flagged — nothing could be tested (see \"not tested\" below)" in lines
    assert any(line.startswith("  not tested: the whole check: no feature was tested against any label — no clip "
                               "has a gold answer yet (6 unlabelled") for line in lines)
    # The deleted clip and the damaged one, by file, under every check that decodes pictures.
    missing = [i for i, line in enumerate(lines) if "1 clip whose media file is missing" in line]
    broken = [i for i, line in enumerate(lines) if "1 clip whose media cannot be decoded" in line]
    assert len(missing) == len(DECODED_CHECKS) and len(broken) == len(DECODED_CHECKS)
    for i in missing:
        assert str(deleted) in lines[i + 1] and "clip 2 " in lines[i + 1]
    for i in broken:
        assert str(damaged) in lines[i + 1] and "clip 3 " in lines[i + 1]
    assert "duplicates: 0 clusters (0 clips), 0 leaks among 4 clips compared; 3 parts not tested" in lines
    assert any("leakage across the split — no split in the ledger yet" in line for line in lines)
    assert any("no answer was checked against the rubric — no answers or reviews are stored yet" in line
               for line in lines)
    assert any(line.startswith("  not tested: class counts — no clip has a gold answer yet") for line in lines)
    page = html.read_text(encoding="utf-8")
    assert "<h2 id='untested'>Not tested</h2>" in page and str(deleted) in page and str(damaged) in page

    report = json.loads(audit(project.path, "--json").stdout)
    files = {int(k): v for k, v in report["clip_files"].items()}
    assert files == {i + 1: str(path) for i, path in enumerate(six_clips)}
    assert [(f["clip"], f["file"]) for f in report["features"]["failed"]] == [(2, str(deleted)), (3, str(damaged))]
    parts = {(p["check"], p["what"]): p for p in report["untested"]}
    gone = parts[("duplicates", "1 clip whose media file is missing")]["clips"]
    assert [(c["clip"], c["file"]) for c in gone] == [(2, str(deleted))] and gone[0]["error"]
    assert set(CHECKS) == {p["check"] for p in report["untested"]}


def test_one_clip_with_a_gold_answer(sample_dir: Path, tmp_path: Path) -> None:
    truth = json.loads((sample_dir / "ground_truth.jsonl").read_text().splitlines()[0])
    source = sample_dir / "clips" / truth["file"]
    project = make_project(tmp_path / "p", [source],
                           [{"clip": source.name, "annotator": "ana", "fields": truth["fields"]}])
    lines = audit(project.path).stdout.splitlines()
    event = truth["fields"]["event"]
    assert "labels: 1 gold answers (single 1), 0 need review, 0 unlabelled" in lines
    assert "shortcuts: 0 flagged — nothing could be tested (see \"not tested\" below)" in lines
    assert f"  not tested: event={event} — too few clips: 1 clips of {event} and 0 others: each side needs at " \
           "least 5" in lines
    assert any(line.startswith("  not tested: features duration_s, fps,") and "the same for every clip" in line
               for line in lines)
    assert ("  not tested: the whole check: no pair of clips was compared — the project has one clip: there is "
            "nothing to compare it with") in lines
    assert not any("conformance" in line and "not tested" in line for line in lines)  # its one answer was checked


@pytest.mark.slow
def test_too_few_clips_per_class_and_flagged_clips_by_file(sample_dir: Path, tmp_path: Path) -> None:
    truth = [json.loads(line) for line in (sample_dir / "ground_truth.jsonl").read_text().splitlines()]
    sources = [sample_dir / "clips" / t["file"] for t in truth]
    answers = [{"clip": t["file"], "annotator": "gt", "fields": t["fields"]} for t in truth]
    from curation.media.ingest import ingest
    from curation.records.imports import import_annotations
    from curation.records.store import Project

    project = Project.init(tmp_path / "p", RUBRIC)
    ingest(project, [sample_dir / "clips"], workers=1)
    (tmp_path / "a.jsonl").write_text("".join(json.dumps(a) + "\n" for a in answers))
    assert import_annotations(project, tmp_path / "a.jsonl", create_users=True).imported == len(truth)
    lines = audit(project.path).stdout.splitlines()
    counts: dict[str, int] = {}
    for t in truth:
        counts[t["fields"]["event"]] = counts.get(t["fields"]["event"], 0) + 1
    short = {event for event, n in counts.items() if n < 5 or len(truth) - n < 5}
    assert short  # the 12-clip sample has rare classes
    for event in short:
        assert (f"  not tested: event={event} — too few clips: {counts[event]} clips of {event} and "
                f"{len(truth) - counts[event]} others: each side needs at least 5") in lines
    headline = next(line for line in lines if line.startswith("shortcuts:"))
    assert "feature/class combinations tested" in headline
    report = json.loads(audit(project.path, "--json").stdout)
    files = report["clip_files"]
    assert sorted(files.values()) == sorted(str(s) for s in sources)
    balance = report["checks"]["balance"]["flagged_clips"]
    assert balance and all(files[str(c["clip"])] == c["file"] and c["score"] > 0 for c in balance)
    assert report["untested"] and not any(p["check"] == "conformance" for p in report["untested"])


def test_text_states_every_part_and_cuts_only_long_clip_lists() -> None:
    clips = [{"clip": i, "file": f"/d/c{i}.mp4", "error": "moov atom not found"} for i in range(1, 26)]
    report = {"labels": {"gold": 0, "by_source": {}, "needs_review": 0, "unlabelled": 25},
              "clip_files": {str(c["clip"]): c["file"] for c in clips},
              "checks": {"duplicates": {"summary": {"compared": 0}, "flagged": [], "clusters": [], "leakage": []}},
              "untested": [{"check": "duplicates", "what": "25 clips whose media cannot be decoded", "why": "bad",
                            "clips": clips},
                           {"check": "duplicates", "what": "the whole check", "why": "nothing could be read"}]}
    lines = text_lines(report, limit=10)
    assert lines[1] == "duplicates: 0 clusters (0 clips), 0 leaks among 0 clips compared; 2 parts not tested"
    assert lines[2] == "  not tested: 25 clips whose media cannot be decoded — bad"
    assert lines[3] == "    clip 1 /d/c1.mp4: moov atom not found" and lines[12].startswith("    clip 10 ")
    assert lines[13] == "    … and 15 more (see --json or --html)"
    assert lines[14] == "  not tested: the whole check — nothing could be read"

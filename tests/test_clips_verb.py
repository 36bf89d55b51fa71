"""`cliptune clips`: clip id -> source file, group, split side and label status, through the real command, and in
a fixed number of queries on 100,000 clips."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import event, insert

from curation.records.store import Clip, Project, SplitEntry
from curation.review.clip_list import list_clips

REPO = Path(__file__).resolve().parent.parent
RUBRIC = REPO / "rubrics" / "surveillance_alert.yaml"
# The verb registers itself on import; `curation.cli.main` imports it once the verb is wired in there.
COMMAND = "import sys, curation.cli.clips; from curation.cli.main import main; sys.exit(main(sys.argv[1:]))"


def cliptune(*args: str, ok: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-c", COMMAND, *args], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=300)
    assert "Traceback" not in done.stdout + done.stderr, done.stderr
    assert (done.returncode == 0) == ok, done.stderr
    return done


@pytest.fixture(scope="module")
def labelled(sample_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Project, dict[str, int]]:
    """The 12-clip sample: every clip answered by ana but the last two; bob disagrees on one clip, skips another,
    and finds a third unclear; a frozen split of the gold clips."""
    from curation.dataset.ledger import split_project
    from curation.media.ingest import ingest
    from curation.records.imports import import_annotations

    folder = tmp_path_factory.mktemp("clips") / "project"
    project = Project.init(folder, RUBRIC)
    ingest(project, [sample_dir / "clips"], metadata=sample_dir / "cameras.csv", group_by="camera", workers=1)
    truth = [json.loads(line) for line in (sample_dir / "ground_truth.jsonl").read_text().splitlines()]
    files = sorted(t["file"] for t in truth)
    fields = {t["file"]: t["fields"] for t in truth}
    answers = [{"clip": f, "annotator": "ana", "fields": fields[f]} for f in files[:10]]
    other = "INTRUSION" if fields[files[0]]["event"] != "INTRUSION" else "NO_ACTIVITY"
    answers += [{"clip": files[0], "annotator": "bob", "fields": {**fields[files[0]], "event": other}},
                {"clip": files[10], "annotator": "bob", "status": "skipped"},
                {"clip": files[1], "annotator": "bob", "status": "unclear", "comment": "too dark"}]
    path = folder / "answers.jsonl"
    path.write_text("".join(json.dumps(a) + "\n" for a in answers))
    assert import_annotations(project, path, create_users=True).imported == len(answers)
    split_project(project, test_size=0.3, freeze=True)
    ids = {clip.path: clip.id for clip in _clips(project)}
    return project, {"disputed": ids[files[0]], "unclear": ids[files[1]], "skipped": ids[files[10]],
                     "untouched": ids[files[11]]}


def _clips(project: Project) -> list[Clip]:
    with project.session() as session:
        return list(session.query(Clip).order_by(Clip.id))


def test_json_maps_every_clip_to_its_file_side_and_label(labelled) -> None:
    from curation.dataset.ledger import current_split

    project, planted = labelled
    rows = json.loads(cliptune("clips", str(project.path), "--json").stdout)
    clips = _clips(project)
    assert [r["clip"] for r in rows] == [c.id for c in clips]
    ledger = current_split(project)
    assert ledger  # the split assigned the gold clips
    for row, clip in zip(rows, clips, strict=True):
        assert row["file"] == str(clip.source_path) and Path(row["file"]).is_file()
        assert row["group"] == clip.group_key
        entry = ledger.get(clip.id)
        assert (row["split"], row["split_state"]) == ((entry.split, "frozen") if entry else ("none", None))
    by_id = {r["clip"]: r for r in rows}
    assert (by_id[planted["disputed"]]["label"], by_id[planted["disputed"]]["review_reason"]) == (
        "needs review", "disagreement")
    assert (by_id[planted["unclear"]]["label"], by_id[planted["unclear"]]["review_reason"]) == (
        "needs review", "unclear")
    assert by_id[planted["skipped"]]["label"] == "answered" and by_id[planted["skipped"]]["annotators"] == 0
    assert by_id[planted["untouched"]]["label"] == "unlabelled"
    gold = [r for r in rows if r["label"] == "gold"]
    assert len(gold) == 8 and {r["gold_source"] for r in gold} == {"single"}
    assert all(r["split"] != "none" for r in gold)  # a split holds every gold clip
    assert all(r["split"] == "none" for r in rows if r["label"] != "gold")


def test_filters_lines_table_and_errors(labelled) -> None:
    project, planted = labelled
    lines = cliptune("clips", str(project.path), "--jsonl", "--label", "needs review").stdout.splitlines()
    assert sorted(json.loads(line)["clip"] for line in lines) == sorted([planted["disputed"], planted["unclear"]])
    tests = [json.loads(line) for line in cliptune("clips", str(project.path), "--jsonl", "--split", "test").stdout
             .splitlines()]
    assert tests and all(r["split"] == "test" and r["split_state"] == "frozen" for r in tests)
    assert len(cliptune("clips", str(project.path), "--jsonl", "--limit", "3").stdout.splitlines()) == 3
    table = cliptune("clips", str(project.path)).stdout.splitlines()
    assert table[0].split() == ["clip", "file", "group", "split", "label"] and table[-1] == "12 clips"
    untouched = next(line for line in table[2:-1] if line.split()[0] == str(planted["untouched"]))
    assert untouched.split()[-1] == "unlabelled" and "none" in untouched.split()
    bad = cliptune("clips", str(project.path), "--label", "done", ok=False)
    assert bad.stderr.startswith("error: --label 'done': choose one of unlabelled, answered, gold, needs review")
    assert cliptune("clips", str(project.path / "nowhere"), ok=False).stderr.startswith("error:")


def test_100000_clips_in_a_fixed_number_of_queries(tmp_path: Path) -> None:
    project = Project.init(tmp_path / "big", RUBRIC)
    n = 100_000
    with project.engine.begin() as connection:
        connection.execute(insert(Clip), [
            {"id": i, "root": "/data", "path": f"cam{i % 6}/c{i}.mp4", "sha256": f"{i:064x}",
             "source_sha256": f"{i:064x}", "duration_s": 4.0, "fps": 25.0, "width": 320, "height": 240,
             "n_frames": 100, "group_key": f"camera:{i % 6}", "metadata_": {}} for i in range(1, n + 1)])
        # every other clip frozen; a draft entry after a frozen one must not win
        connection.execute(insert(SplitEntry), [
            {"clip_id": i, "split": "test" if i % 5 == 0 else "train", "dataset_version": "v1", "frozen": i % 2 == 0}
            for i in range(1, n + 1)] + [{"clip_id": 2, "split": "test", "dataset_version": "v2", "frozen": False}])
    list_clips(project)  # creates the derived tables once, as any first read does
    statements: list[str] = []
    event.listen(project.engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    started = time.perf_counter()
    rows = list_clips(project)
    seconds = time.perf_counter() - started
    selects = [s for s in statements if "FROM clip " in s or "FROM clip\n" in s]
    assert len(rows) == n and len(selects) == 1, statements
    assert rows[1] == {"clip": 2, "file": "/data/cam2/c2.mp4", "group": "camera:2", "split": "train",
                       "split_state": "frozen", "label": "unlabelled", "gold_source": None, "review_reason": None,
                       "annotators": 0}
    assert rows[4]["split"] == "test" and rows[4]["split_state"] == "draft"
    assert seconds < 30  # about 1.5 s here; generous for a machine shared by five

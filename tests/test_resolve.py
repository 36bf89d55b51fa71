"""Gold answers, field agreement rules and the review queue; JSONL import of existing labels."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from curation.errors import CliptuneError
from curation.records.annotations import add_annotation, add_review
from curation.records.imports import import_annotations
from curation.records.status import project_status
from curation.records.store import Clip, Project
from curation.records.users import add_user, list_users
from curation.review.consensus import resolve_answers, values_agree
from curation.review.resolve import resolve
from curation.rubric import load_rubric

RUBRICS = Path(__file__).resolve().parent.parent / "rubrics"
BASE = {"event": "NORMAL_ENTRY", "persons": 1, "badge_events": 1, "door": 14, "time": "02:14"}


def add_clips(project: Project, n: int) -> list[int]:
    with project.write() as session:
        rows = [Clip(root="/footage", path=f"cam{i % 2}/clip{i:03d}.mp4", sha256=f"{i:064x}",
                     source_sha256=f"{i:064x}", duration_s=4.0, fps=8.0, width=160, height=120, n_frames=32,
                     group_key=f"camera:cam{i % 2}") for i in range(n)]
        session.add_all(rows)
        session.flush()
        return [row.id for row in rows]


@pytest.fixture
def labelled(project: Project) -> tuple[Project, list[int]]:
    clips = add_clips(project, 8)
    for name in ("ana", "ben", "cho"):
        add_user(project, name, "annotator", f"password-{name}")
    add_user(project, "rev", "reviewer", "password-rev")
    return project, clips


def test_field_rules() -> None:
    rubric = load_rubric(RUBRICS / "surveillance_alert.yaml")
    fields = rubric.field_map
    assert values_agree(fields["time"], "02:14", "02:15")  # tolerance 60 s
    assert not values_agree(fields["time"], "02:14", "02:16")
    assert not values_agree(fields["persons"], 1, 2)  # tolerance 0
    assert not values_agree(fields["event"], "TAILGATING", "INTRUSION")
    note = load_rubric(RUBRICS / "telemedicine_note.yaml").field_map
    assert values_agree(note["complaint"], "Swollen right ankle after a fall", "swollen right ankle after fall")
    assert not values_agree(note["complaint"], "Swollen right ankle after a fall", "Review of blood pressure")
    assert values_agree(note["pain_score"], None, None) and not values_agree(note["pain_score"], None, 3)
    assert values_agree(note["pain_score"], 5, 6)  # tolerance 1


def test_resolve_answers_policies() -> None:
    rubric = load_rubric(RUBRICS / "surveillance_alert.yaml")
    two_one = {"ana": BASE, "ben": BASE, "cho": dict(BASE, persons=2, event="TAILGATING")}
    assert resolve_answers(rubric, two_one, "unanimous")["fields"] is None
    majority = resolve_answers(rubric, two_one, "majority")
    assert majority["fields"] == BASE and majority["source"] == "majority"
    assert set(majority["disagreeing"]) == {"persons", "event"}
    near = {"ana": BASE, "ben": dict(BASE, time="02:15"), "cho": dict(BASE, time="02:14")}
    unanimous = resolve_answers(rubric, near, "unanimous")
    assert unanimous["source"] == "unanimous" and unanimous["fields"]["time"] == "02:14"
    split = {"ana": BASE, "ben": dict(BASE, door=3)}
    assert resolve_answers(rubric, split, "majority")["fields"] is None
    assert resolve_answers(rubric, {"ana": BASE}, "unanimous")["source"] == "single"
    with pytest.raises(CliptuneError, match="choose one of unanimous, majority"):
        resolve_answers(rubric, split, "vote")


def test_gold_sources_and_review_queue(labelled: tuple[Project, list[int]]) -> None:
    project, clips = labelled
    tailgating = dict(BASE, event="TAILGATING", persons=2)
    plan = {
        clips[0]: {"ana": BASE, "ben": BASE, "cho": BASE},  # unanimous
        clips[1]: {"ana": BASE},  # single
        clips[2]: {"ana": BASE, "ben": BASE, "cho": tailgating},  # majority, rare minority
        clips[3]: {"ana": BASE, "ben": dict(BASE, door=3)},  # one-field split
        clips[4]: {"ana": BASE, "ben": dict(tailgating, door=3, time="05:00")},  # many fields, rare
        clips[5]: {"ana": BASE, "ben": dict(BASE, persons=2, badge_events=2)},  # two fields
    }
    for clip, answers in plan.items():
        for name, fields in answers.items():
            add_annotation(project, clip, name, fields=fields, seconds_spent=20)
    add_annotation(project, clips[6], "ana", status="unclear", comment="lens covered")

    strict = resolve(project, "unanimous")
    assert {c: g.source for c, g in strict.gold.items()} == {clips[0]: "unanimous", clips[1]: "single"}
    queue = [item.clip_id for item in strict.needs_review]
    # Rare events first (by disagreement), then the rest by disagreement.
    assert queue[:2] == [clips[4], clips[2]] and set(queue) == {clips[2], clips[3], clips[4], clips[5], clips[6]}
    assert queue.index(clips[6]) < queue.index(clips[5]) < queue.index(clips[3])
    assert strict.summary()["unlabelled"] == 1

    relaxed = resolve(project, "majority")
    assert relaxed.gold[clips[2]].source == "majority" and relaxed.gold[clips[2]].fields == BASE
    assert clips[3] not in relaxed.gold

    add_review(project, clips[3], "rev", fields=dict(BASE, door=3), reason="door number visible at 00:02")
    adjudicated = resolve(project, "unanimous").gold[clips[3]]
    assert adjudicated.source == "adjudicated" and adjudicated.fields["door"] == 3
    assert adjudicated.output_text.endswith("Door 3, 02:14")


def write_jsonl(path: Path, lines: list) -> Path:
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n")
    return path


def test_import_reports_bad_lines_and_imports_good_ones(labelled: tuple[Project, list[int]], tmp_path: Path) -> None:
    project, clips = labelled
    lines = [
        {"clip": clips[0], "annotator": "ana", "fields": BASE, "seconds": 31},
        {"clip": "cam1/clip001.mp4", "annotator": "newcomer", "output": "INTRUSION — 1 person, 0 badge events, "
                                                                         "Door 3, 01:10"},
        {"clip": f"{2:064x}", "annotator": "ben", "fields": dict(BASE, persons="2")},
        "{not json",
        {"clip": "cam9/missing.mp4", "annotator": "ana", "fields": BASE},
        {"clip": clips[0], "annotator": "ben", "fields": dict(BASE, event="PARTY")},
        {"clip": clips[0], "annotator": "ben", "fields": dict(BASE, persons="many")},
        {"clip": clips[0], "fields": BASE},
        {"clip": clips[0], "annotator": "ben", "fields": BASE, "output": "x"},
        {"clip": clips[0], "annotator": "ben", "fields": BASE, "seconds": -4},
        ["a", "list"],
        {"clip": clips[0], "annotator": "ben", "fields": BASE, "colour": "red"},
        {"clip": clips[3], "annotator": "cho", "status": "unclear", "comment": "too dark"},
    ]
    report = import_annotations(project, write_jsonl(tmp_path / "labels.jsonl", lines), create_users=True)
    assert report.imported == 4 and report.users_created == ["newcomer"]
    errors = {f["line"]: f["error"] for f in report.failed}
    assert sorted(errors) == [4, 5, 6, 7, 8, 9, 10, 11, 12]
    assert "not valid JSON" in errors[4] and "not in this project" in errors[5]
    assert "'PARTY' is not one of" in errors[6] and "not a whole number" in errors[7]
    assert "'annotator'" in errors[8] and "exactly one of" in errors[9] and "'seconds'" in errors[10]
    assert "JSON object" in errors[11] and "unknown keys ['colour']" in errors[12]
    assert project_status(project)["annotations"]["current"] == 4
    assert "newcomer" in [u.name for u in list_users(project)]

    again = import_annotations(project, tmp_path / "labels.jsonl", create_users=True)
    assert again.imported == 0 and again.unchanged == 4 and len(again.failed) == 9


def test_import_cli_json(labelled: tuple[Project, list[int]], tmp_path: Path) -> None:
    project, clips = labelled
    path = write_jsonl(tmp_path / "labels.jsonl", [{"clip": clips[0], "annotator": "ana", "fields": BASE},
                                                   {"clip": clips[0], "annotator": "ben", "fields": {"door": 1}}])
    result = subprocess.run([sys.executable, "-m", "curation.cli", "import-annotations", str(project.path), str(path),
                             "--json"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["imported"] == 1 and report["failed"][0]["line"] == 2
    assert "event: required" in report["failed"][0]["error"]
    resolved = subprocess.run([sys.executable, "-m", "curation.cli", "resolve", str(project.path), "--policy",
                               "majority", "--json"], capture_output=True, text=True, timeout=120)
    summary = json.loads(resolved.stdout)
    assert summary["gold"] == 1 and summary["needs_review"] == 0 and summary["unlabelled"] == 7

"""The project store: real SQLite files, append-only rows, concurrent writers, schema versions, users."""

from __future__ import annotations

import multiprocessing
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import select

from curation.errors import RubricError, StoreError
from curation.records.annotations import add_annotation, add_review, current_annotations
from curation.records.status import project_status
from curation.records.store import DATABASE_NAME, SCHEMA_VERSION, Clip, Meta, Project
from curation.records.users import add_user, authenticate, get_or_create_user

RUBRIC = Path(__file__).resolve().parent.parent / "rubrics" / "surveillance_alert.yaml"
FIELDS = {"event": "TAILGATING", "persons": 2, "badge_events": 1, "door": 14, "time": "02:14"}


def add_clips(project: Project, n: int) -> list[int]:
    with project.write() as session:
        rows = [
            Clip(root="/footage", path=f"cam1/clip{i:03d}.mp4", sha256=f"{i:064x}", source_sha256=f"{i:064x}",
                 duration_s=4.0, fps=8.0, width=160, height=120, n_frames=32, group_key="camera:cam1")
            for i in range(n)
        ]
        session.add_all(rows)
        session.flush()
        return [row.id for row in rows]


def test_init_open_and_wal(tmp_path: Path) -> None:
    project = Project.init(tmp_path / "p", RUBRIC)
    assert (tmp_path / "p" / DATABASE_NAME).exists()
    with sqlite3.connect(tmp_path / "p" / DATABASE_NAME) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    reopened = Project.open(tmp_path / "p")
    assert reopened.rubric.name == "surveillance_alert"
    assert reopened.rubric_version == project.rubric.version
    with pytest.raises(StoreError, match="already a cliptune project"):
        Project.init(tmp_path / "p", RUBRIC)
    with pytest.raises(StoreError, match="not a cliptune project"):
        Project.open(tmp_path / "elsewhere")


def test_newer_schema_is_a_clear_error(project: Project) -> None:
    with project.write() as session:
        session.get(Meta, "schema_version").value = str(SCHEMA_VERSION + 1)
    with pytest.raises(StoreError, match=r"newer cliptune \(schema 2; this one understands up to 1\)"):
        Project.open(project.path)


def test_annotations_are_append_only(project: Project) -> None:
    (clip,) = add_clips(project, 1)
    add_user(project, "ana", "annotator", "password-ana")
    first = add_annotation(project, clip, "ana", fields=FIELDS, seconds_spent=31.5)
    second = add_annotation(project, clip, "ana", fields=dict(FIELDS, persons=3), seconds_spent=12.0)
    current = current_annotations(project)
    assert [a.id for a in current] == [second] and current[0].fields["persons"] == 3
    assert [a.id for a in current_annotations(project, history=True)] == [first, second]
    assert current[0].output_text == "TAILGATING — 3 persons, 1 badge event, Door 14, 02:14"
    # Even a direct SQL write cannot change or remove what a person typed.
    with sqlite3.connect(project.path / DATABASE_NAME) as connection:
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            connection.execute("UPDATE annotation SET output_text = 'x' WHERE id = ?", (first,))
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            connection.execute("DELETE FROM annotation")


def test_annotation_validation(project: Project) -> None:
    (clip,) = add_clips(project, 1)
    add_user(project, "ana", "annotator", "password-ana")
    with pytest.raises(RubricError, match="persons"):
        add_annotation(project, clip, "ana", fields=dict(FIELDS, persons=-2))
    with pytest.raises(RubricError, match="does not match"):
        add_annotation(project, clip, "ana", output_text="looks fine to me")
    parsed = add_annotation(project, clip, "ana", output_text="intrusion — 1 person, 0 badge events, Door 3, 01:00")
    assert current_annotations(project)[0].id == parsed
    assert current_annotations(project)[0].fields["event"] == "INTRUSION"
    with pytest.raises(StoreError, match="needs a comment"):
        add_annotation(project, clip, "ana", status="unclear")
    add_annotation(project, clip, "ana", status="unclear", comment="too dark to count")
    with pytest.raises(StoreError, match="no user 'zed'"):
        add_annotation(project, clip, "zed", fields=FIELDS)
    with pytest.raises(StoreError, match="no clip 999"):
        add_annotation(project, 999, "ana", fields=FIELDS)


def test_concurrent_annotators_lose_nothing(project: Project) -> None:
    clips = add_clips(project, 25)
    names = [f"annotator{i}" for i in range(8)]
    for name in names:
        add_user(project, name, "annotator", f"password-{name}")

    def label_everything(name: str) -> int:
        # Each thread opens its own Project, as separate Streamlit sessions would.
        own = Project.open(project.path)
        for clip in clips:
            add_annotation(own, clip, name, fields=dict(FIELDS, persons=clip % 5), seconds_spent=1.0)
        return len(clips)

    with ThreadPoolExecutor(max_workers=8) as pool:
        written = sum(pool.map(label_everything, names))
    rows = current_annotations(project)
    assert written == len(rows) == 8 * 25
    assert {(a.clip_id, a.user) for a in rows} == {(c, n) for c in clips for n in names}
    assert all(a.fields["persons"] == a.clip_id % 5 for a in rows)


def _write_from_process(path: str, name: str, clips: list[int]) -> None:
    project = Project.open(path)
    for clip in clips:
        add_annotation(project, clip, name, fields=FIELDS, seconds_spent=2.0)


def test_concurrent_processes_lose_nothing(project: Project) -> None:
    clips = add_clips(project, 20)
    names = [f"proc{i}" for i in range(4)]
    for name in names:
        add_user(project, name, "annotator", f"password-{name}")
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_write_from_process, args=(str(project.path), n, clips)) for n in names]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert [w.exitcode for w in workers] == [0, 0, 0, 0]
    assert len(current_annotations(project)) == 4 * 20


def test_users_passwords_and_roles(project: Project) -> None:
    add_user(project, "ana", "annotator", "correct horse")
    add_user(project, "rev", "reviewer", "battery staple")
    with sqlite3.connect(project.path / DATABASE_NAME) as connection:
        stored = connection.execute("SELECT password_hash FROM user WHERE name = 'ana'").fetchone()[0]
    assert stored.startswith("scrypt$") and "correct horse" not in stored
    assert authenticate(project, "ana", "correct horse").name == "ana"
    assert authenticate(project, "ana", "wrong password") is None
    assert authenticate(project, "nobody", "correct horse") is None
    with pytest.raises(StoreError, match="already exists"):
        add_user(project, "ana", "annotator", "another one")
    with pytest.raises(StoreError, match="choose one of annotator, reviewer, lead"):
        add_user(project, "carl", "boss", "password1")
    with pytest.raises(StoreError, match="at least 8"):
        add_user(project, "dee", "annotator", "short")
    imported = get_or_create_user(project, "external")
    assert imported.password_hash is None and authenticate(project, "external", "") is None


def test_review_needs_reason_and_reviewer(project: Project) -> None:
    (clip,) = add_clips(project, 1)
    add_user(project, "ana", "annotator", "password-ana")
    add_user(project, "rev", "reviewer", "password-rev")
    chosen = add_annotation(project, clip, "ana", fields=FIELDS)
    with pytest.raises(StoreError, match="needs a reason"):
        add_review(project, clip, "rev", annotation_id=chosen, reason=" ")
    with pytest.raises(StoreError, match="only reviewers and leads"):
        add_review(project, clip, "ana", annotation_id=chosen, reason="mine is right")
    add_review(project, clip, "rev", annotation_id=chosen, reason="counted the badge flashes")
    add_review(project, clip, "rev", fields=dict(FIELDS, persons=3), reason="a third person at 00:03")
    status = project_status(project)
    assert status["reviews"] == {"total": 2, "clips_reviewed": 1}
    assert status["annotations"]["current"] == 1 and status["clips"]["total"] == 1
    with project.session() as session:
        assert session.scalar(select(Clip.group_key)) == "camera:cam1"


def test_init_refuses_a_database_url_that_already_holds_a_project(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    Project.init(tmp_path / "first", RUBRIC, database_url=url)
    with pytest.raises(StoreError, match="already holds a cliptune project"):
        Project.init(tmp_path / "second", RUBRIC, database_url=url)
    assert not (tmp_path / "second").exists()  # refused before anything was written

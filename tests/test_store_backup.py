"""Backups of the project store: `cliptune backup` while four processes write, restore and check, automatic backups
before a schema upgrade (also when several processes open an old project at once) and their retention. Real SQLite
files, real processes."""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import shutil
import sqlite3
import time
from pathlib import Path

import pytest
from sqlalchemy import inspect, select
from test_store_durability import CLI_WITH_MAINTENANCE, FIELDS, add_clips, assert_one_error_line, run

from curation.errors import StoreError
from curation.records.annotations import add_annotation
from curation.records.maintenance import automatic_backup, backup_project, check_project
from curation.records.sqlite_file import AUTOMATIC_BACKUP, integrity_check
from curation.records.store import DATABASE_NAME, Annotation, Assignment, Project
from curation.records.users import add_user


def _keep_answering(project_path: str, name: str, clips: list[int], log: str, stop: str) -> None:
    """A writer process: answers clips until ``stop`` exists, logging each committed answer's id and time."""
    project = Project.open(project_path)
    with open(log, "a", encoding="utf-8") as handle:
        for turn in range(100_000):
            if os.path.exists(stop):
                break
            answer = add_annotation(project, clips[turn % len(clips)], name, fields=dict(FIELDS, persons=turn % 4),
                                    seconds_spent=1.0)
            handle.write(json.dumps({"id": answer, "committed_by": time.time()}) + "\n")
            handle.flush()


def _logged(logs: list[Path]) -> list[dict]:
    return [json.loads(line) for log in logs if log.exists() for line in log.read_text().splitlines() if line]


def _wait_for(condition, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "the writers did not get going"
        time.sleep(0.05)


@pytest.mark.slow
def test_a_backup_taken_while_four_processes_write_is_consistent(project: Project, tmp_path: Path) -> None:
    clips = add_clips(project, 10)
    names = [f"writer{i}" for i in range(4)]
    for name in names:
        add_user(project, name, "annotator", f"password-{name}")
    logs = [tmp_path / f"{name}.jsonl" for name in names]
    stop = tmp_path / "stop"
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=_keep_answering, args=(str(project.path), name, clips, str(log), str(stop)))
               for name, log in zip(names, logs, strict=True)]
    for writer in writers:
        writer.start()
    try:
        _wait_for(lambda: all(len(_logged([log])) >= 5 for log in logs))
        began = time.time()
        backup = backup_project(project.path, tmp_path)  # a folder: the name is made up
        ended = time.time()
        _wait_for(lambda: sum(r["committed_by"] > ended for r in _logged(logs)) >= 8)  # they went on writing
    finally:
        stop.touch()
        for writer in writers:
            writer.join(timeout=120)
    assert [writer.exitcode for writer in writers] == [0, 0, 0, 0]
    assert re.fullmatch(r"cliptune-project-\d{8}T\d{6}Z\.db", backup.name)
    assert integrity_check(backup) == []

    # Restore as README says: the backup becomes PROJECT/cliptune.db (here in a fresh folder), then check.
    restored = tmp_path / "restored"
    (restored / "media").mkdir(parents=True)
    shutil.copy(backup, restored / DATABASE_NAME)
    report = check_project(restored)
    assert report.ok, report.problems
    reopened = Project.open(restored)
    with reopened.session() as session:
        in_backup = set(session.scalars(select(Annotation.id)))
    reopened.engine.dispose()

    logged = _logged(logs)
    everything = sorted(r["id"] for r in logged)
    before = {r["id"] for r in logged if r["committed_by"] < began}
    assert len(before) >= 20
    assert before <= in_backup  # every answer committed before the backup began is in it
    # One instant's snapshot: answers are numbered in commit order (one writer at a time), so it holds a prefix.
    assert sorted(in_backup) == everything[: len(in_backup)]
    assert len(in_backup) < len(everything)
    with project.session() as session:  # and the project itself lost nothing
        assert sorted(session.scalars(select(Annotation.id))) == everything


def test_backup_command_names_refuses_and_explains(project: Project, tmp_path: Path, monkeypatch) -> None:
    add_clips(project, 3)
    dest = tmp_path / "lobby.db"
    made = run(CLI_WITH_MAINTENANCE, "backup", str(project.path), str(dest), "--json")
    assert made.returncode == 0, made.stderr
    result = json.loads(made.stdout)
    assert result["backup"] == str(dest) and result["integrity"] == "ok" and "database only" in result["contains"]
    with sqlite3.connect(dest) as connection:
        assert connection.execute("SELECT count(*) FROM clip").fetchone()[0] == 3
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # one self-contained file
    connection.close()
    before = dest.read_bytes()
    again = run(CLI_WITH_MAINTENANCE, "backup", str(project.path), str(dest))
    assert_one_error_line(again, str(dest), "already exists")
    assert dest.read_bytes() == before
    assert not list(tmp_path.glob(".*partial"))

    monkeypatch.setenv("CLIPTUNE_DATABASE_URL", "postgresql+psycopg://cliptune@/cliptune?host=/tmp/nowhere")
    with pytest.raises(StoreError, match="server's job.*pg_dump"):
        backup_project(project.path, tmp_path)


def test_an_automatic_backup_comes_before_the_schema_upgrade_and_only_then(project: Project) -> None:
    add_clips(project, 4)
    project.engine.dispose()
    Project.open(project.path).engine.dispose()
    assert not (project.path / "backups").exists()  # nothing to upgrade: no backup
    with sqlite3.connect(project.path / DATABASE_NAME) as connection:  # an older project: no clip_features yet
        connection.execute("DROP TABLE clip_features")
    connection.close()

    upgraded = Project.open(project.path)
    assert inspect(upgraded.engine).has_table("clip_features")
    (backup,) = (project.path / "backups").iterdir()
    assert re.fullmatch(r"cliptune-\d{8}T\d{6}Z-schema-upgrade\.db", backup.name)
    assert integrity_check(backup) == []
    with sqlite3.connect(backup) as connection:  # the database as it was before the upgrade
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert "clip_features" not in tables and connection.execute("SELECT count(*) FROM clip").fetchone()[0] == 4
    connection.close()
    upgraded.engine.dispose()
    Project.open(project.path).engine.dispose()
    assert list((project.path / "backups").iterdir()) == [backup]


def _open_together(project_path: str, barrier) -> None:
    barrier.wait(timeout=120)
    Project.open(project_path).engine.dispose()


def test_processes_opening_an_old_project_at_once_all_open_it(project: Project) -> None:
    add_clips(project, 3)
    project.engine.dispose()
    with sqlite3.connect(project.path / DATABASE_NAME) as connection:
        connection.execute("DROP TABLE clip_features")
    connection.close()
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(3)
    openers = [context.Process(target=_open_together, args=(str(project.path), barrier)) for _ in range(3)]
    for opener in openers:
        opener.start()
    for opener in openers:
        opener.join(timeout=120)
    assert [opener.exitcode for opener in openers] == [0, 0, 0]  # none refused for a backup name another took
    backups = sorted((project.path / "backups").iterdir())
    assert 1 <= len(backups) <= 3 and all(integrity_check(backup) == [] for backup in backups)
    assert inspect(Project.open(project.path).engine).has_table("clip_features")


def test_automatic_backups_keep_the_newest_five(project: Project) -> None:
    clips = add_clips(project, 7)
    ana = add_user(project, "ana", "annotator", "password-ana").id
    backups = project.path / "backups"
    backups.mkdir()
    mine = backups / "cliptune-project-20250101T000000Z.db"  # a `cliptune backup` someone put there
    mine.write_bytes(b"kept")
    made = []
    for clip in clips:  # seven in quick succession: several share a second, and are numbered in order
        with project.write() as session:
            session.add(Assignment(clip_id=clip, user_id=ana))
        made.append(automatic_backup(project, "refreeze"))
    assert len(set(made)) == 7 and all(AUTOMATIC_BACKUP.match(path.name) for path in made)
    assert sorted(backups.iterdir()) == sorted([mine, *made[2:]])
    with sqlite3.connect(made[-1]) as connection:  # the newest holds the newest state
        assert connection.execute("SELECT count(*) FROM assignment").fetchone()[0] == 7
    connection.close()
    with pytest.raises(ValueError, match="reason"):
        automatic_backup(project, "Re freeze!")

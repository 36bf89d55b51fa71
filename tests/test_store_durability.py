"""Durability of the project store: damaged and foreign database files, a busy database, `cliptune check`. Real
SQLite files, real processes, the real command line. Backups: tests/test_store_backup.py."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from curation.errors import StoreError
from curation.records.annotations import add_annotation
from curation.records.engine import BUSY_TIMEOUT_ENV, busy_timeout_s
from curation.records.maintenance import backup_project, check_project
from curation.records.status import project_status
from curation.records.store import DATABASE_NAME, Clip, Project
from curation.records.users import add_user, get_user

REPO = Path(__file__).resolve().parent.parent
RUBRIC = REPO / "rubrics" / "surveillance_alert.yaml"
FIELDS = {"event": "TAILGATING", "persons": 2, "badge_events": 1, "door": 14, "time": "02:14"}
PAGE = 4096
# `check` and `backup` until curation/cli/main.py imports curation.cli.maintenance; then `-m curation.cli` is the same.
CLI_WITH_MAINTENANCE = [sys.executable, "-m", "curation.cli"]
CLI = [sys.executable, "-m", "curation.cli"]
STATUS = [*CLI, "status"]


def add_clips(project: Project, n: int, *, media: bool = False) -> list[int]:
    """``n`` clips without video (their sources do not exist); with ``media``, a proxy and thumbnail file each."""
    with project.write() as session:
        rows = [
            Clip(root="/footage", path=f"cam1/clip{i:03d}.mp4", sha256=f"{i:064x}", source_sha256=f"{i:064x}",
                 duration_s=4.0, fps=8.0, width=160, height=120, n_frames=32, group_key="camera:cam1",
                 proxy_path=f"media/proxies/{i:020x}.mp4" if media else None,
                 thumbnail_path=f"media/thumbs/{i:020x}.jpg" if media else None)
            for i in range(n)
        ]
        session.add_all(rows)
        session.flush()
        ids = [row.id for row in rows]
    if media:
        for row in rows:
            for relative in (row.proxy_path, row.thumbnail_path):
                (project.path / relative).parent.mkdir(parents=True, exist_ok=True)
                (project.path / relative).write_bytes(b"derived media " + relative.encode())
    return ids


def run(command: list[str], *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*command, *args], cwd=REPO, capture_output=True, text=True, timeout=180,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})})


def assert_one_error_line(result: subprocess.CompletedProcess, *must_contain: str) -> str:
    assert result.returncode != 0, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    for text in must_contain:
        assert text in lines[0], lines[0]
    return lines[0]


# -- damaged and foreign files ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sound_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A closed project with 60 clips, 2 people and answers (several pages per table). Copy it; do not change it."""
    project = Project.init(tmp_path_factory.mktemp("sound") / "project", RUBRIC)
    clips = add_clips(project, 60)
    add_user(project, "ana", "annotator", "password-ana")
    for clip in clips[:20]:
        add_annotation(project, clip, "ana", fields=FIELDS, seconds_spent=3.0)
    project.engine.dispose()  # checkpoints and removes the write-ahead log: the database is one file
    assert not (project.path / f"{DATABASE_NAME}-wal").exists()
    return project.path


def _clip_table_pages(database: Path) -> list[int]:
    """The clip table's root page and the pages after it (1-based), read before the file is damaged."""
    with sqlite3.connect(database) as connection:
        root = connection.execute("SELECT rootpage FROM sqlite_master WHERE name = 'clip'").fetchone()[0]
        total = connection.execute("PRAGMA page_count").fetchone()[0]
    connection.close()
    return [page for page in (root, root + 1, root + 2) if page <= total]


def _truncate_mid_page(database: Path) -> None:
    os.truncate(database, database.stat().st_size // 2 + 100)


def _truncate_whole_pages(database: Path) -> None:
    os.truncate(database, PAGE * 6)


def _overwrite_header(database: Path) -> None:
    with database.open("r+b") as handle:
        handle.write(bytes(range(7, 107)))


def _garbage_in_the_middle(database: Path) -> None:
    # The clip table's pages: opening (which reads `meta`) still works; the first read of clips meets the damage.
    pages = _clip_table_pages(database)
    with database.open("r+b") as handle:
        for page in pages:
            handle.seek((page - 1) * PAGE)
            handle.write(bytes((i * 37 + page) % 251 for i in range(PAGE)))


def _png(database: Path) -> None:
    database.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 8)


def _text(database: Path) -> None:
    database.write_text("these are my notes about the lobby cameras\n" * 200)


def _empty(database: Path) -> None:
    database.write_bytes(b"")


DAMAGE = {
    "truncated mid-page": (_truncate_mid_page, "is truncated"),
    "truncated at a page boundary": (_truncate_whole_pages, "is truncated"),
    "overwritten header": (_overwrite_header, "is not a SQLite database"),
    "garbage in the middle": (_garbage_in_the_middle, "is damaged"),
    "a PNG named cliptune.db": (_png, "is not a SQLite database"),
    "a text file named cliptune.db": (_text, "is not a SQLite database"),
    "an empty file": (_empty, "is empty"),
}


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_a_damaged_or_foreign_database_is_one_clear_line(kind: str, sound_project: Path, tmp_path: Path) -> None:
    damage, says = DAMAGE[kind]
    project = tmp_path / "project"
    shutil.copytree(sound_project, project)
    database = project / DATABASE_NAME
    damage(database)
    damaged_bytes = database.read_bytes()

    line = assert_one_error_line(run(STATUS, str(project)), str(database), says)
    assert "cliptune check" in line and "backup" in line  # says what to do
    checked = run(CLI_WITH_MAINTENANCE, "check", str(project))
    assert checked.returncode == 1
    assert_one_error_line(checked, str(database))
    assert database.read_bytes() == damaged_bytes  # neither command wrote to the damaged file

    report = check_project(project)
    assert not report.ok and report.problems and report.problems[0].startswith(str(database))


def test_damage_found_after_opening_is_one_clear_error(sound_project: Path, tmp_path: Path) -> None:
    project_path = tmp_path / "project"
    shutil.copytree(sound_project, project_path)
    _garbage_in_the_middle(project_path / DATABASE_NAME)
    project = Project.open(project_path)  # meta and the schema are intact: the damage is met later
    with pytest.raises(StoreError, match=r"cliptune\.db: the project database is damaged \(SQLite: database disk "
                                         r"image is malformed\)\. Run `cliptune check"):
        project_status(project)
    project.engine.dispose()


# -- a busy database --------------------------------------------------------------------------------------------

HOLD_THE_WRITE_LOCK = """
import sqlite3, sys
connection = sqlite3.connect(sys.argv[1], isolation_level=None)
connection.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.readline()  # hold the lock until the test says so (or closes our stdin)
connection.execute("ROLLBACK")
"""


def test_a_busy_database_is_a_clear_error_and_loses_nothing(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(BUSY_TIMEOUT_ENV, raising=False)
    assert busy_timeout_s() == 60.0
    with project.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 60000
    monkeypatch.setenv(BUSY_TIMEOUT_ENV, "1")
    busy = Project.open(project.path)
    with busy.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 1000

    holder = subprocess.Popen([sys.executable, "-c", HOLD_THE_WRITE_LOCK, str(project.path / DATABASE_NAME)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        started = time.monotonic()
        with pytest.raises(StoreError) as caught:
            add_user(busy, "ana", "annotator", "password-ana")
        waited = time.monotonic() - started
        assert str(caught.value).startswith("the project database is busy: another process has held the write lock "
                                            "for over 1 s; try again")
        assert "database is locked" not in str(caught.value)  # not SQLite's raw words
        assert 0.9 <= waited < 15, waited  # it waited for the lock, and not without end
        # The same through the command line, in another process: one line, no traceback.
        cli = run(CLI, "users", "add", str(project.path), "ben",
                  env={BUSY_TIMEOUT_ENV: "1", "CLIPTUNE_PASSWORD": "password-ben"})
        assert_one_error_line(cli, "the project database is busy", "for over 1 s; try again")
    finally:
        holder.communicate("release\n", timeout=30)
    assert holder.returncode == 0
    add_user(busy, "ana", "annotator", "password-ana")  # the lock is free again: the write goes through
    assert get_user(busy, "ana") is not None and get_user(busy, "ben") is None
    busy.engine.dispose()


def test_a_bad_busy_timeout_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for bad in ("soon", "0", "-3", "nan"):
        monkeypatch.setenv(BUSY_TIMEOUT_ENV, bad)
        with pytest.raises(StoreError, match=f"{BUSY_TIMEOUT_ENV}=.*give a number of seconds above 0"):
            busy_timeout_s()


# -- cliptune check ---------------------------------------------------------------------------------------------


def _check_cli(project: Path, *extra: str) -> subprocess.CompletedProcess:
    return run(CLI_WITH_MAINTENANCE, "check", str(project), *extra)


def test_check_passes_on_a_clean_project_and_finds_what_is_missing_or_dangling(project: Project) -> None:
    clips = add_clips(project, 6, media=True)
    add_user(project, "ana", "annotator", "password-ana")
    for clip in clips[:3]:
        add_annotation(project, clip, "ana", fields=FIELDS)
    source = project.path.parent / "footage" / "kept.mp4"  # one clip whose source is where it was ingested from
    source.parent.mkdir()
    source.write_bytes(b"a source video")
    with project.write() as session:
        session.get(Clip, clips[0]).root = str(source.parent)
        session.get(Clip, clips[0]).path = source.name

    clean = check_project(project.path)
    assert clean.ok and clean.problems == [] and clean.integrity == []
    assert clean.schema_version == 1
    assert clean.counts["clip"] == 6 and clean.counts["annotation"] == 3 and clean.counts["media_files"] == 12
    assert [m["clips"] for m in clean.missing_sources] == [[c] for c in clips[1:]]  # a warning, not a problem
    assert any(w.startswith("source missing: 5 source videos") for w in clean.warnings)
    assert clean.orphan_files == [] and clean.orphan_rows == [] and clean.missing_media == []
    result = _check_cli(project.path, "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["ok"] is True and result.stderr == ""

    with project.session() as session:
        deleted = session.get(Clip, clips[2]).proxy_path
    (project.path / deleted).unlink()
    stray = project.path / "media" / "proxies" / "left-by-a-killed-ingest.mp4"
    stray.write_bytes(b"half a proxy")
    found = check_project(project.path)
    assert not found.ok
    assert found.missing_media == [{"clip": clips[2], "kind": "proxy", "path": deleted, "why": "missing"}]
    assert any(deleted in p and p.startswith("media: 1 proxy files missing") for p in found.problems)
    assert found.orphan_files == ["media/proxies/left-by-a-killed-ingest.mp4"]
    assert any("left-by-a-killed-ingest.mp4" in w for w in found.warnings)
    result = _check_cli(project.path)
    assert result.returncode == 1 and deleted in result.stdout
    assert_one_error_line(result, str(project.path), deleted)

    # Rows whose clip or person is gone (written around the store, foreign keys off, as a careless script would).
    with sqlite3.connect(project.path / DATABASE_NAME) as connection:
        connection.execute("DELETE FROM clip WHERE id = ?", (clips[1],))
        connection.execute("INSERT INTO assignment (clip_id, user_id, created_at) VALUES (?, 999, '2026-01-01')",
                           (clips[3],))
    connection.close()
    dangling = check_project(project.path)
    assert {(o["table"], o["column"], tuple(o["ids"])) for o in dangling.orphan_rows} == {
        ("annotation", "clip_id", (2,)), ("assignment", "user_id", (1,))}
    assert sum(p.startswith("orphans: ") for p in dangling.problems) == 2
    assert stray.exists() and (project.path / DATABASE_NAME).exists()  # check only reports; it deletes nothing


def test_check_of_a_folder_that_is_no_project_is_one_line(tmp_path: Path) -> None:
    assert_one_error_line(_check_cli(tmp_path), "is not a cliptune project")


# -- backups ----------------------------------------------------------------------------------------------------


def test_a_damaged_database_is_not_backed_up(sound_project: Path, tmp_path: Path) -> None:
    project = tmp_path / "project"
    shutil.copytree(sound_project, project)
    _garbage_in_the_middle(project / DATABASE_NAME)
    with pytest.raises(StoreError, match="integrity check|is damaged"):
        backup_project(project, tmp_path / "copy.db")
    assert not (tmp_path / "copy.db").exists() and not list(tmp_path.glob(".*partial"))

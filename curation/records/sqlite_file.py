"""The project database as a file: is it SQLite at all, what to tell a person when it is damaged, and consistent
copies of it (online backups, automatic backups before risky changes).

Only the standard library's ``sqlite3`` here, on purpose: these functions must work when SQLAlchemy cannot open
the file at all, and they never write to the database they read.

Example::

    problem = file_problem(Path("projects/lobby/cliptune.db"))   # None, or "is empty (0 bytes)", ...
    backup_database(Path("projects/lobby/cliptune.db"), Path("/backups/lobby.db"))
"""

from __future__ import annotations

import os
import re
import sqlite3
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

from sqlalchemy.engine import URL, make_url

from curation.errors import StoreError

SQLITE_HEADER = b"SQLite format 3\x00"
SQLITE_CORRUPT, SQLITE_NOTADB = 11, 26  # primary result codes of a damaged file
BACKUPS_FOLDER = "backups"
KEEP_AUTOMATIC_BACKUPS = 5
AUTOMATIC_BACKUP = re.compile(r"^cliptune-(\d{8}T\d{6}Z)(?:-(\d+))?-([a-z][a-z0-9-]*)\.db$")
REASON = re.compile(r"^[a-z][a-z0-9-]{0,39}$")


def sqlite_file_of(url: str | URL) -> Path | None:
    """The database file a SQLite URL names; None for a server database or an in-memory one."""
    parsed = make_url(url)
    if not parsed.drivername.startswith("sqlite"):
        return None
    if not parsed.database or parsed.database == ":memory:" or parsed.database.startswith("file:"):
        return None
    return Path(parsed.database)


def file_problem(path: Path) -> str | None:
    """Why ``path`` cannot be a sound SQLite database, judged from its size and header alone; None if it may be.

    Runs before SQLite touches the file: SQLite turns an empty file into a new database on its first write, and
    every connection of the store switches the journal to WAL, which is a write.
    """
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            header = handle.read(100)
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    if size == 0:
        return "is empty (0 bytes)"
    if not header.startswith(SQLITE_HEADER):
        return "is not a SQLite database (it does not start with SQLite's header: overwritten, or another kind of file)"
    if len(header) < 100:
        return f"is truncated ({size} bytes, shorter than SQLite's 100-byte header)"
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    if page_size < 512 or page_size & (page_size - 1):
        return f"has a damaged header (page size {page_size})"
    # While a write-ahead log holds pages the file may legitimately lag behind its header; judge sizes only without.
    wal = path.with_name(path.name + "-wal")
    if wal.exists() and wal.stat().st_size > 0:
        return None
    if size % page_size:
        return f"is truncated ({size} bytes is not a whole number of {page_size}-byte pages)"
    pages = int.from_bytes(header[28:32], "big")
    size_is_current = header[24:28] == header[92:96]  # SQLite trusts the page count only when these agree
    if pages and size_is_current and size < pages * page_size:
        return f"is truncated (its header counts {pages * page_size} bytes, the file has {size})"
    return None


def is_damage(exc: BaseException) -> bool:
    """Whether a (possibly SQLAlchemy-wrapped) sqlite3 error says the file is damaged or not a database."""
    code = getattr(getattr(exc, "orig", None) or exc, "sqlite_errorcode", None)
    return isinstance(code, int) and code & 0xFF in (SQLITE_CORRUPT, SQLITE_NOTADB)


def damage_message(path: Path | None, what: str, project: Path | None = None) -> str:
    """One line: which file, what is wrong with it, and how to recover."""
    if path is None:
        return (f"the project database {what}. Run `cliptune check PROJECT` for details; to recover, restore a "
                f"backup as README's 'The store' says")
    folder = project if project is not None else path.parent
    return (f"{path}: the project database {what}. Run `cliptune check {folder}` for details. To recover: stop "
            f"the app, copy a backup over {path} (yours from `cliptune backup`, or the newest automatic one in "
            f"{folder / BACKUPS_FOLDER}), delete {path.name}-wal and {path.name}-shm beside it, and run "
            f"`cliptune check` again")


def describe_database_error(path: Path | None, exc: BaseException, project: Path | None = None) -> str:
    """One line for a database error (sqlite3's, or SQLAlchemy's wrapping of it): the file, what went wrong and,
    for a damaged file, how to recover. ``path`` is the database file, or None where it is not known."""
    original = getattr(exc, "orig", None) or exc
    reason = (str(original).strip().splitlines() or [type(original).__name__])[0]
    if not is_damage(original):
        return f"{path if path is not None else 'the project database'}: cannot use the project database: {reason}"
    code = getattr(original, "sqlite_errorcode", 0) & 0xFF
    what = "is not a SQLite database or its header is damaged" if code == SQLITE_NOTADB else "is damaged"
    return damage_message(path, f"{what} (SQLite: {reason})", project)


def read_only(path: Path, *, timeout_s: float = 60.0) -> sqlite3.Connection:
    """A read-only connection: it never writes to (or creates) the database, even a damaged one."""
    return sqlite3.connect(f"file:{quote(str(path.resolve()))}?mode=ro", uri=True, timeout=timeout_s,
                           check_same_thread=False)


def integrity_check(path: Path, *, max_errors: int = 100) -> list[str]:
    """SQLite's ``PRAGMA integrity_check``: [] when the file is sound, else its findings (at most ``max_errors``).
    Raises sqlite3.DatabaseError when the file cannot be read as a database at all."""
    with closing(read_only(path)) as connection:
        lines = [row[0] for row in connection.execute(f"PRAGMA integrity_check({int(max_errors)})")]
    return [] if lines == ["ok"] else lines


def backup_database(source: Path, dest: Path, *, timeout_s: float = 60.0) -> Path:
    """Copy the database ``source`` to the new file ``dest`` with SQLite's online backup API and check the copy.

    The copy is one read transaction, so it is the database as it was at one instant even while other processes
    write (WAL readers do not block writers). It is written beside ``dest`` first and moved into place only after
    ``PRAGMA integrity_check`` passes; an existing ``dest`` is never overwritten. The copy is a single file (its
    journal mode is DELETE; the store switches it back to WAL when it is opened as a project).
    """
    if dest.exists():
        raise StoreError(f"{dest} already exists: a backup never overwrites a file; choose another name")
    if not dest.parent.is_dir():
        raise StoreError(f"{dest.parent} is not a folder: create it first, or choose another destination")
    problem = file_problem(source)
    if problem is not None:
        raise StoreError(damage_message(source, problem))
    partial = dest.with_name(f".{dest.name}.{os.getpid()}.partial")
    placed = False
    try:
        partial.unlink(missing_ok=True)
        with closing(read_only(source, timeout_s=timeout_s)) as origin, closing(sqlite3.connect(partial)) as copy:
            origin.backup(copy)  # all pages in one step: one snapshot, never restarted by concurrent writers
            copy.execute("PRAGMA journal_mode=DELETE")
        findings = integrity_check(partial)
        if findings:
            raise StoreError(damage_message(source, f"gave a copy that fails SQLite's integrity check "
                                                    f"({findings[0]})"))
        # Claim the name exclusively, then move the checked copy onto it: never overwrites a file made meanwhile.
        os.close(os.open(dest, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        placed = True
        os.replace(partial, dest)
    except FileExistsError:
        raise StoreError(f"{dest} already exists: a backup never overwrites a file; choose another name") from None
    except sqlite3.Error as exc:
        if placed:
            dest.unlink(missing_ok=True)
        raise StoreError(describe_database_error(source, exc)) from None
    except OSError as exc:
        if placed:
            dest.unlink(missing_ok=True)
        raise StoreError(f"cannot write the backup {dest}: {exc.strerror or exc}") from None
    finally:
        partial.unlink(missing_ok=True)
    return dest


def automatic_backup_file(database: Path, backups: Path, reason: str, *, keep: int = KEEP_AUTOMATIC_BACKUPS) -> Path:
    """Back ``database`` up to ``backups/cliptune-<UTC time>-<reason>.db`` and keep only the newest ``keep``
    automatic backups there (files of other names, such as `cliptune backup`'s, are left alone)."""
    if not REASON.match(reason):
        raise ValueError(f"reason {reason!r}: use lower-case letters, digits and '-', starting with a letter")
    backups.mkdir(parents=True, exist_ok=True)
    for _attempt in range(20):
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        # Several in one second are numbered past the highest number that second has had (its newest is never
        # pruned), so names keep sorting by age even after older ones were deleted.
        numbers = [_sort_key(path)[1] for path in automatic_backups(backups) if _sort_key(path)[0] == stamp]
        number = max(numbers, default=0) + 1
        dest = backups / (f"cliptune-{stamp}-{reason}.db" if number == 1 else f"cliptune-{stamp}-{number}-{reason}.db")
        try:
            backup_database(database, dest)
        except StoreError:
            if not dest.exists():
                raise
            continue  # another process (opening the same old project) took the name a moment earlier
        prune_automatic_backups(backups, keep=keep)
        return dest
    raise StoreError(f"cannot name an automatic backup in {backups}: every name was taken; try again")


def _sort_key(path: Path) -> tuple[str, int]:
    match = AUTOMATIC_BACKUP.match(path.name)
    return (match.group(1), int(match.group(2) or 1)) if match else ("", 0)


def automatic_backups(backups: Path) -> list[Path]:
    """The automatic backups in ``backups``, oldest first."""
    found = [path for path in (backups.iterdir() if backups.is_dir() else []) if AUTOMATIC_BACKUP.match(path.name)]
    return sorted((path for path in found if path.is_file()), key=_sort_key)


def prune_automatic_backups(backups: Path, *, keep: int = KEEP_AUTOMATIC_BACKUPS) -> list[Path]:
    """Delete all but the newest ``keep`` automatic backups; returns the deleted files."""
    old = automatic_backups(backups)[:-keep] if keep > 0 else automatic_backups(backups)
    for path in old:
        path.unlink(missing_ok=True)
    return old

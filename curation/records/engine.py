"""The store's database engine: SQLite in WAL mode with a busy timeout, writes that take the write lock up front,
and damage and lock waits reported as one-line StoreErrors; any other URL (PostgreSQL) as SQLAlchemy makes it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

from curation.errors import StoreError
from curation.records.sqlite_file import describe_database_error, is_damage, sqlite_file_of

BUSY_TIMEOUT_ENV = "CLIPTUNE_BUSY_TIMEOUT_S"
DEFAULT_BUSY_TIMEOUT_S = 60.0


def busy_timeout_s() -> float:
    """How long a writer waits for another's write lock: $CLIPTUNE_BUSY_TIMEOUT_S seconds, 60 by default."""
    raw = os.environ.get(BUSY_TIMEOUT_ENV, "").strip()
    if not raw:
        return DEFAULT_BUSY_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not 0 < value <= 86400:
        raise StoreError(f"{BUSY_TIMEOUT_ENV}={raw!r}: give a number of seconds above 0 (at most 86400), or unset it "
                         f"for the default {DEFAULT_BUSY_TIMEOUT_S:g}")
    return value


def make_engine(url: str, *, busy_timeout: float | None = None) -> Engine:
    """An engine for ``url``. SQLite gets WAL, a busy timeout (``busy_timeout`` seconds, default
    :func:`busy_timeout_s`), foreign keys, BEGIN IMMEDIATE for writes, and damage reported as a StoreError."""
    if not url.startswith("sqlite"):
        return create_engine(url)
    timeout = busy_timeout_s() if busy_timeout is None else busy_timeout
    engine = create_engine(url, connect_args={"timeout": timeout, "check_same_thread": False})
    database = sqlite_file_of(url)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's begin event issue BEGIN itself (pysqlite's implicit BEGIN is DEFERRED).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        immediate = connection.get_execution_options().get("immediate", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    @event.listens_for(engine, "handle_error")
    def _on_error(context: Any) -> StoreError | None:
        # Damage often shows only when a damaged page is read, long after the project opened: say so in one line.
        if is_damage(context.original_exception):
            return StoreError(describe_database_error(database, context.original_exception))
        return None

    return engine


def is_busy(exc: OperationalError) -> bool:
    name = getattr(exc.orig, "sqlite_errorname", "") or ""
    return name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "database is locked" in str(exc.orig)


def busy_message(where: Path, timeout: float) -> str:
    return (f"the project database is busy: another process has held the write lock for over {timeout:g} s; try "
            f"again ({where}; {BUSY_TIMEOUT_ENV} sets how long to wait)")

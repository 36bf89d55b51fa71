"""The project store: one SQLite database per project folder (WAL mode), SQLAlchemy 2.

Append-only where it matters: annotations, reviews and events are never updated or deleted (SQLite triggers
enforce it); an edit is a new row and the latest row per (clip, user) is current. Writes take SQLite's write
lock up front (``BEGIN IMMEDIATE``) so concurrent annotators wait for each other instead of failing.

Example::

    project = Project.init("projects/lobby", "rubrics/surveillance_alert.yaml")
    project = Project.open("projects/lobby")
    project.status()
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
    select,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DatabaseError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from curation.errors import StoreError
from curation.records.engine import busy_message, busy_timeout_s, is_busy, make_engine
from curation.records.sqlite_file import (
    BACKUPS_FOLDER,
    automatic_backup_file,
    damage_message,
    describe_database_error,
    file_problem,
    is_damage,
    sqlite_file_of,
)
from curation.rubric import Rubric, load_rubric, parse_rubric_text

SCHEMA_VERSION = 1
DATABASE_NAME = "cliptune.db"
ROLES = ("annotator", "reviewer", "lead")
ANNOTATION_STATUSES = ("submitted", "skipped", "unclear")
ANNOTATION_SOURCES = ("ui", "label_studio", "import")
WRITE_LOCK_ATTEMPTS = 3  # SQLite may answer "busy" early (e.g. while recovering a log): try again, within the wait


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON}


class Meta(Base):
    __tablename__ = "meta"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class RubricRow(Base):
    __tablename__ = "rubric"
    version: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class ProjectRow(Base):
    __tablename__ = "project"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    rubric_version: Mapped[str] = mapped_column(ForeignKey("rubric.version"))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Clip(Base):
    __tablename__ = "clip"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    root: Mapped[str] = mapped_column(Text)  # the ingest root the path is relative to
    path: Mapped[str] = mapped_column(Text, index=True)
    start_s: Mapped[float] = mapped_column(Float, default=0.0)  # segments of long recordings
    end_s: Mapped[float | None] = mapped_column(Float)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)  # content (+ segment) identity
    source_sha256: Mapped[str] = mapped_column(String(64), index=True)
    duration_s: Mapped[float] = mapped_column(Float)
    fps: Mapped[float] = mapped_column(Float)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    n_frames: Mapped[int] = mapped_column(Integer)
    codec: Mapped[str | None] = mapped_column(String(32))
    bitrate: Mapped[int | None] = mapped_column(Integer)
    variable_frame_rate: Mapped[bool] = mapped_column(Boolean, default=False)
    group_key: Mapped[str] = mapped_column(Text, index=True)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    proxy_path: Mapped[str | None] = mapped_column(Text)  # relative to the project folder
    thumbnail_path: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="ready")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    @property
    def source_path(self) -> Path:
        return Path(self.root) / self.path


class User(Base):
    __tablename__ = "user"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str | None] = mapped_column(Text)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Assignment(Base):
    __tablename__ = "assignment"
    __table_args__ = (UniqueConstraint("clip_id", "user_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    clip_id: Mapped[int] = mapped_column(ForeignKey("clip.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Annotation(Base):
    __tablename__ = "annotation"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    clip_id: Mapped[int] = mapped_column(ForeignKey("clip.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id"), index=True)
    rubric_version: Mapped[str] = mapped_column(String(32))
    fields: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    output_text: Mapped[str | None] = mapped_column(Text)
    seconds_spent: Mapped[float | None] = mapped_column(Float)
    source: Mapped[str] = mapped_column(String(16), default="ui")
    status: Mapped[str] = mapped_column(String(16), default="submitted")
    comment: Mapped[str | None] = mapped_column(Text)
    external_id: Mapped[str | None] = mapped_column(String(200), index=True)  # e.g. Label Studio annotation id
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Review(Base):
    __tablename__ = "review"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    clip_id: Mapped[int] = mapped_column(ForeignKey("clip.id"), index=True)
    reviewer_id: Mapped[int] = mapped_column(ForeignKey("user.id"))
    annotation_id: Mapped[int | None] = mapped_column(ForeignKey("annotation.id"))  # chosen as is, or None
    rubric_version: Mapped[str] = mapped_column(String(32))
    fields: Mapped[dict[str, Any]] = mapped_column(JSON)
    output_text: Mapped[str] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class SplitEntry(Base):
    __tablename__ = "split_ledger"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    clip_id: Mapped[int] = mapped_column(ForeignKey("clip.id"), index=True)
    split: Mapped[str] = mapped_column(String(8))  # train | test
    dataset_version: Mapped[str] = mapped_column(String(64))
    frozen: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Event(Base):
    __tablename__ = "event"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_name: Mapped[str | None] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(64), index=True)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class ClipFeatures(Base):
    """Cached audit features of a clip (curation.media.features), one row per clip and extractor version."""

    __tablename__ = "clip_features"
    __table_args__ = (UniqueConstraint("clip_id", "version"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    clip_id: Mapped[int] = mapped_column(ForeignKey("clip.id"), index=True)
    version: Mapped[str] = mapped_column(String(32))
    values: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


APPEND_ONLY_TABLES = ("annotation", "review", "event")


def _append_only_triggers() -> list[str]:
    statements = []
    for table in APPEND_ONLY_TABLES:
        for operation in ("UPDATE", "DELETE"):
            statements.append(
                f"CREATE TRIGGER IF NOT EXISTS {table}_no_{operation.lower()} BEFORE {operation} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, '{table} rows are append-only: add a new row instead'); END"
            )
    return statements


class Project:
    """An open project: its folder, database engine and current rubric."""

    def __init__(self, path: Path, engine: Engine, *, busy_timeout: float | None = None):
        self.path = path
        self.engine = engine
        self.busy_timeout = busy_timeout_s() if busy_timeout is None else busy_timeout
        self._writer = engine.execution_options(immediate=True)
        self._rubric: Rubric | None = None
        self._rubric_version: str | None = None

    # -- opening ---------------------------------------------------------------------------------------
    @classmethod
    def init(
        cls,
        path: str | os.PathLike,
        rubric: str | os.PathLike | Rubric,
        *,
        name: str | None = None,
        database_url: str | None = None,
    ) -> Project:
        """Create a project folder and its database. Fails if a project already exists there."""
        path = Path(path)
        if not isinstance(rubric, Rubric):
            rubric_path = Path(rubric)
            rubric_text = rubric_path.read_text(encoding="utf-8") if rubric_path.exists() else None
            rubric = load_rubric(rubric_path)
        else:
            rubric_text = None
        if (path / DATABASE_NAME).exists():
            raise StoreError(f"{path} is already a cliptune project; open it instead of initialising it")
        url = database_url or _sqlite_url(path)
        engine = make_engine(url)
        if database_url is not None:
            from sqlalchemy import inspect

            if inspect(engine).has_table(Meta.__tablename__):
                raise StoreError("that database already holds a cliptune project; open it instead of initialising it")
        path.mkdir(parents=True, exist_ok=True)
        (path / "media").mkdir(exist_ok=True)
        Base.metadata.create_all(engine)
        project = cls(path, engine)
        with project.write() as session:
            if engine.dialect.name == "sqlite":
                for statement in _append_only_triggers():
                    session.connection().exec_driver_sql(statement)
            session.add(Meta(key="schema_version", value=str(SCHEMA_VERSION)))
            text = rubric_text or _rubric_to_yaml(rubric)
            session.add(RubricRow(version=rubric.version, name=rubric.name, text=text))
            session.flush()
            session.add(ProjectRow(id=1, name=name or path.name, rubric_version=rubric.version))
            session.add(Event(action="project_init", detail={"rubric": rubric.name, "version": rubric.version}))
        return project

    @classmethod
    def open(cls, path: str | os.PathLike, *, database_url: str | None = None) -> Project:
        """Open an existing project. A project written by a newer cliptune, a damaged database file and a file
        that is no database at all are clear errors, not guesses. Before the additive schema upgrade an older
        project needs, the database is backed up to PROJECT/backups/ (see :func:`automatic_backup_file`)."""
        path = Path(path)
        database_url = database_url or os.environ.get("CLIPTUNE_DATABASE_URL")
        if database_url is None and not (path / DATABASE_NAME).exists():
            raise StoreError(f"{path} is not a cliptune project (no {DATABASE_NAME}); create it with `cliptune init`")
        url = database_url or _sqlite_url(path)
        database = sqlite_file_of(url)
        if database is not None and database.exists():
            problem = file_problem(database)
            if problem is not None:
                raise StoreError(damage_message(database, problem, path))
        timeout = busy_timeout_s()
        engine = make_engine(url, busy_timeout=timeout)
        try:
            with Session(engine) as session:
                row = session.get(Meta, "schema_version")
        except StoreError:
            engine.dispose()
            raise
        except DatabaseError as exc:
            engine.dispose()
            if is_damage(exc):
                raise StoreError(describe_database_error(database, exc, path)) from None
            raise StoreError(f"{path}: cannot read the project database: {exc.orig}") from None
        if row is None:
            raise StoreError(f"{path}: the database has no schema version; it was not made by cliptune")
        if not row.value.isdigit():
            raise StoreError(damage_message(database, f"has an unreadable schema version {row.value!r}", path))
        if int(row.value) > SCHEMA_VERSION:
            raise StoreError(
                f"{path} was written by a newer cliptune (schema {row.value}; this one understands up to "
                f"{SCHEMA_VERSION}): upgrade cliptune to open it"
            )
        # clip_features came after schema 1 and is an additive cache: older projects get it here. IF NOT EXISTS,
        # so two processes opening one project at once do not race; checked first, so a plain open writes nothing.
        from sqlalchemy import inspect
        from sqlalchemy.schema import CreateIndex, CreateTable

        if not inspect(engine).has_table(ClipFeatures.__tablename__):
            if database is not None:  # a server database is backed up by its server
                automatic_backup_file(database, path / BACKUPS_FOLDER, "schema-upgrade")
            try:
                with engine.begin() as connection:
                    connection.execute(CreateTable(ClipFeatures.__table__, if_not_exists=True))
                    for index in ClipFeatures.__table__.indexes:
                        connection.execute(CreateIndex(index, if_not_exists=True))
            except OperationalError as exc:
                if not is_busy(exc):
                    raise
                raise StoreError(busy_message(database or path, timeout)) from None
        return cls(path, engine, busy_timeout=timeout)

    # -- sessions --------------------------------------------------------------------------------------
    def session(self) -> Session:
        """A session for reading (and small writes that tolerate waiting)."""
        return Session(self.engine, expire_on_commit=False)

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A write transaction holding SQLite's write lock from the start; commits on exit.

        Waits up to ``busy_timeout`` seconds for another writer's lock, then raises a StoreError that says so
        (never a raw "database is locked"). The lock is taken before the block runs, so a refusal loses nothing.
        """
        started = time.monotonic()
        for attempt in range(1, WRITE_LOCK_ATTEMPTS + 1):
            session = Session(self._writer, expire_on_commit=False)
            transaction = session.begin()
            try:
                session.connection()  # runs BEGIN IMMEDIATE: the write lock, or the wait for it
                break
            except BaseException as exc:
                session.close()
                if not (isinstance(exc, OperationalError) and is_busy(exc)):
                    raise
                waited = time.monotonic() - started
                if attempt == WRITE_LOCK_ATTEMPTS or waited >= self.busy_timeout:
                    raise StoreError(busy_message(sqlite_file_of(self.engine.url) or self.path,
                                                   self.busy_timeout)) from None
                time.sleep(min(0.05 * attempt, max(self.busy_timeout - waited, 0.0)))
        with session, transaction:
            yield session

    @property
    def media_dir(self) -> Path:
        return self.path / "media"

    # -- rubric ----------------------------------------------------------------------------------------
    @property
    def rubric_version(self) -> str:
        if self._rubric_version is None:
            with self.session() as session:
                self._rubric_version = session.get(ProjectRow, 1).rubric_version
        return self._rubric_version

    @property
    def rubric(self) -> Rubric:
        if self._rubric is None:
            self._rubric = self.rubric_at(self.rubric_version)
        return self._rubric

    def rubric_at(self, version: str) -> Rubric:
        with self.session() as session:
            row = session.get(RubricRow, version)
        if row is None:
            raise StoreError(f"rubric version {version} is not in this project")
        return parse_rubric_text(row.text, source=f"rubric {row.name} ({version})")

    @property
    def name(self) -> str:
        with self.session() as session:
            return session.get(ProjectRow, 1).name

    def log(self, action: str, user: str | None = None, **detail: Any) -> None:
        with self.write() as session:
            session.add(Event(action=action, user_name=user, detail=detail))


def _sqlite_url(path: Path) -> str:
    return f"sqlite:///{(path / DATABASE_NAME).resolve()}"


def _rubric_to_yaml(rubric: Rubric) -> str:
    import yaml

    return yaml.safe_dump(rubric.model_dump(mode="json"), sort_keys=False, allow_unicode=True)


def count_rows(session: Session, model: type[Base], *where: Any) -> int:
    return session.scalar(select(func.count()).select_from(model).where(*where)) or 0

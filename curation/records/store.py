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
    create_engine,
    event,
    func,
    select,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from curation.errors import StoreError
from curation.rubric import Rubric, load_rubric, parse_rubric_text

SCHEMA_VERSION = 1
DATABASE_NAME = "cliptune.db"
ROLES = ("annotator", "reviewer", "lead")
ANNOTATION_STATUSES = ("submitted", "skipped", "unclear")
ANNOTATION_SOURCES = ("ui", "label_studio", "import")


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


def make_engine(url: str) -> Engine:
    """An engine for ``url``. SQLite gets WAL, a busy timeout, foreign keys and BEGIN IMMEDIATE for writes."""
    if not url.startswith("sqlite"):
        return create_engine(url)
    engine = create_engine(url, connect_args={"timeout": 60, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's begin event issue BEGIN itself (pysqlite's implicit BEGIN is DEFERRED).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=60000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        immediate = connection.get_execution_options().get("immediate", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


class Project:
    """An open project: its folder, database engine and current rubric."""

    def __init__(self, path: Path, engine: Engine):
        self.path = path
        self.engine = engine
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
        """Open an existing project. A project written by a newer cliptune is a clear error, not a guess."""
        path = Path(path)
        database_url = database_url or os.environ.get("CLIPTUNE_DATABASE_URL")
        if database_url is None and not (path / DATABASE_NAME).exists():
            raise StoreError(f"{path} is not a cliptune project (no {DATABASE_NAME}); create it with `cliptune init`")
        engine = make_engine(database_url or _sqlite_url(path))
        try:
            with Session(engine) as session:
                row = session.get(Meta, "schema_version")
        except OperationalError as exc:
            raise StoreError(f"{path}: cannot read the project database: {exc.orig}") from None
        if row is None:
            raise StoreError(f"{path}: the database has no schema version; it was not made by cliptune")
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
            with engine.begin() as connection:
                connection.execute(CreateTable(ClipFeatures.__table__, if_not_exists=True))
                for index in ClipFeatures.__table__.indexes:
                    connection.execute(CreateIndex(index, if_not_exists=True))
        return cls(path, engine)

    # -- sessions --------------------------------------------------------------------------------------
    def session(self) -> Session:
        """A session for reading (and small writes that tolerate waiting)."""
        return Session(self.engine, expire_on_commit=False)

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A write transaction holding SQLite's write lock from its first statement; commits on exit."""
        with Session(self._writer, expire_on_commit=False) as session, session.begin():
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

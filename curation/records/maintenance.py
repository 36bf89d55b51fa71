"""Keeping a project's store sound: `cliptune check` (is anything damaged, missing or dangling?) and backups
(`cliptune backup`, and the automatic ones taken before schema upgrades and destructive operations).

Backups copy the database only. The media under PROJECT/media (proxies, thumbnails) are derived from the source
videos and can be made again from them; the sources themselves are the user's to keep safe.

Example::

    report = check_project("projects/lobby")
    report.ok, report.problems, report.warnings
    backup_project(Project.open("projects/lobby"), "/mnt/backups")   # /mnt/backups/cliptune-lobby-<UTC>.db
"""

from __future__ import annotations

import os
import re
import sqlite3
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from sqlalchemy import Table, create_engine, func, inspect, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DatabaseError
from sqlalchemy.pool import NullPool

from curation.errors import CliptuneError, StoreError
from curation.records.engine import make_engine
from curation.records.sqlite_file import (
    BACKUPS_FOLDER,
    automatic_backup_file,
    backup_database,
    file_problem,
    integrity_check,
    read_only,
    sqlite_file_of,
)
from curation.records.store import DATABASE_NAME, SCHEMA_VERSION, Base, Project

DATABASE_URL_ENV = "CLIPTUNE_DATABASE_URL"
SHOWN = 10  # items named per problem line; the report's lists hold them all
# (table, column, table it points to): rows whose target is gone are orphans.
REFERENCES = (
    ("annotation", "clip_id", "clip"), ("annotation", "user_id", "user"),
    ("review", "clip_id", "clip"), ("review", "reviewer_id", "user"), ("review", "annotation_id", "annotation"),
    ("assignment", "clip_id", "clip"), ("assignment", "user_id", "user"),
    ("split_ledger", "clip_id", "clip"), ("clip_features", "clip_id", "clip"),
)
COUNTED = ("clip", "user", "annotation", "review", "assignment", "split_ledger", "clip_features", "event")


@dataclass
class CheckReport:
    """What `cliptune check` found. ``ok`` is False when anything in ``problems``; warnings do not fail it."""

    project: str
    database: str
    ok: bool = True
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    schema_version: int | None = None
    integrity: list[str] = field(default_factory=list)  # SQLite's findings; empty when sound or not run
    missing_media: list[dict[str, Any]] = field(default_factory=list)  # {clip, kind, path}
    missing_sources: list[dict[str, Any]] = field(default_factory=list)  # {clips, path}
    orphan_rows: list[dict[str, Any]] = field(default_factory=list)  # {table, column, target, ids}
    orphan_files: list[str] = field(default_factory=list)  # relative to the project folder

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def problem(self, line: str) -> None:
        self.problems.append(line)
        self.ok = False


def check_project(project_path: str | os.PathLike) -> CheckReport:
    """Check a project's store without opening it as a project (so it works on a damaged file, writes nothing
    and upgrades nothing): SQLite's integrity check, the schema version, every clip's proxy and thumbnail under
    the project folder, source videos (a warning when missing), and orphans (rows pointing to clips, users or
    answers that do not exist; files in PROJECT/media no clip refers to, a warning)."""
    path = Path(project_path)
    url = os.environ.get(DATABASE_URL_ENV)
    database = sqlite_file_of(url) if url else path / DATABASE_NAME
    report = CheckReport(project=str(path), database=str(database if database is not None else "(server database)"))
    if url is None and not database.exists():
        if not path.is_dir():
            raise StoreError(f"{path}: no such folder; give the project folder (made by `cliptune init`)")
        raise StoreError(f"{path} is not a cliptune project (no {DATABASE_NAME}); give the project folder")
    if database is not None:
        problem = file_problem(database)
        if problem is not None:
            report.problem(f"{database}: the database {problem}")
            return report
        try:
            report.integrity = integrity_check(database)
        except sqlite3.DatabaseError as exc:
            report.problem(f"{database}: SQLite cannot read it as a database ({exc})")
            return report
        if report.integrity:
            report.problem(f"{database}: SQLite's integrity check failed ({len(report.integrity)} findings; first: "
                           f"{report.integrity[0]})")
        engine = create_engine("sqlite://", creator=lambda: read_only(database), poolclass=NullPool)
    else:
        report.warnings.append("integrity: SQLite's integrity check does not apply to a server database; its "
                               "server checks its own storage")
        engine = make_engine(url)
    try:
        _check_rows(engine, path, report)
    except (DatabaseError, CliptuneError) as exc:
        report.problem(f"{report.database}: reading the rows failed ({getattr(exc, 'orig', None) or exc})")
    finally:
        engine.dispose()
    return report


def _check_rows(engine: Engine, project: Path, report: CheckReport) -> None:
    present = set(inspect(engine).get_table_names())
    tables = Base.metadata.tables
    for name in sorted(set(tables) - present):
        if name == "clip_features":
            report.warnings.append("schema: the clip_features table is missing (an older project): it is added, "
                                   "after an automatic backup, the next time the project is opened")
        else:
            report.problem(f"schema: the {name} table is missing")
    if "meta" not in present:
        return
    with engine.connect() as connection:
        version = connection.scalar(select(tables["meta"].c.value).where(tables["meta"].c.key == "schema_version"))
        if version is None or not str(version).isdigit():
            report.problem(f"schema: no readable schema version ({version!r}): not a cliptune database")
        else:
            report.schema_version = int(version)
            if not 1 <= report.schema_version <= SCHEMA_VERSION:
                report.problem(f"schema: version {version} is not one this cliptune knows (1 to {SCHEMA_VERSION}); "
                               f"upgrade cliptune")
        for name in COUNTED:
            if name in present:
                report.counts[name] = connection.scalar(select(func.count()).select_from(tables[name])) or 0
        for table, column, target in REFERENCES:
            if table in present and target in present:
                _orphans(connection, tables[table], column, tables[target], report)
        if "clip" in present:
            _check_files(connection, tables["clip"], project, report)


def _orphans(connection: Any, table: Table, column: str, target: Table, report: CheckReport) -> None:
    pointer = table.c[column]
    ids = connection.scalars(
        select(table.c.id).select_from(table.outerjoin(target, target.c.id == pointer))
        .where(pointer.is_not(None), target.c.id.is_(None)).order_by(table.c.id)
    ).all()
    if ids:
        report.orphan_rows.append({"table": table.name, "column": column, "target": target.name, "ids": list(ids)})
        report.problem(f"orphans: {len(ids)} {table.name} rows point to a missing {target.name} ({column}; ids "
                       f"{_first(ids)})")


def _check_files(connection: Any, clip: Table, project: Path, report: CheckReport) -> None:
    referenced: set[str] = set()
    sources: dict[str, list[int]] = {}
    rows = connection.execute(select(clip.c.id, clip.c.root, clip.c.path, clip.c.proxy_path, clip.c.thumbnail_path)
                              .order_by(clip.c.id))
    for row in rows:
        for kind, relative in (("proxy", row.proxy_path), ("thumbnail", row.thumbnail_path)):
            if not relative:
                continue
            normal = _inside(relative)
            if normal is None:
                report.missing_media.append({"clip": row.id, "kind": kind, "path": relative,
                                             "why": "outside the project folder"})
                continue
            referenced.add(normal)
            if not (project / normal).is_file():
                report.missing_media.append({"clip": row.id, "kind": kind, "path": normal, "why": "missing"})
        sources.setdefault(str(Path(row.root) / row.path), []).append(row.id)
    for kind in ("proxy", "thumbnail"):
        missing = [m for m in report.missing_media if m["kind"] == kind]
        if missing:
            named = ", ".join(f"clip {m['clip']}: {m['path']} ({m['why']})" for m in missing[:SHOWN])
            more = f", … and {len(missing) - SHOWN} more" if len(missing) > SHOWN else ""
            report.problem(f"media: {len(missing)} {kind} files missing under {project} ({named}{more}); "
                           f"those clips cannot be played or exported until they are made again from the source videos")
    for source, clip_ids in sources.items():
        if not Path(source).is_file():
            report.missing_sources.append({"path": source, "clips": clip_ids})
    if report.missing_sources:
        named = ", ".join(m["path"] for m in report.missing_sources[:SHOWN])
        more = f", … and {len(report.missing_sources) - SHOWN} more" if len(report.missing_sources) > SHOWN else ""
        report.warnings.append(f"source missing: {len(report.missing_sources)} source videos are not where they "
                               f"were ingested from ({named}{more}); labelling works from the proxies, but "
                               f"proxies cannot be remade without them")
    media = project / "media"
    if media.is_dir():
        found = sorted(p.relative_to(project).as_posix() for p in media.rglob("*") if p.is_file())
        report.counts["media_files"] = len(found)
        report.orphan_files = [name for name in found if name not in referenced]
    if report.orphan_files:
        more = f", … and {len(report.orphan_files) - SHOWN} more" if len(report.orphan_files) > SHOWN else ""
        report.warnings.append(f"orphan files: {len(report.orphan_files)} files in {media} belong to no clip "
                               f"({', '.join(report.orphan_files[:SHOWN])}{more}); they may be deleted")


def _inside(relative: str) -> str | None:
    """``relative`` normalised (posix), or None when it is absolute or climbs out of the project folder."""
    normal = PurePosixPath(os.path.normpath(relative.replace("\\", "/")))
    if normal.is_absolute() or normal.parts[:1] == ("..",):
        return None
    return normal.as_posix()


def _first(ids: list[int]) -> str:
    return ", ".join(map(str, ids[:SHOWN])) + (f", … and {len(ids) - SHOWN} more" if len(ids) > SHOWN else "")


def _database_file(project: Project | str | os.PathLike) -> tuple[Path, Path]:
    """(project folder, SQLite database file) of a project or its folder. A server database is refused."""
    if isinstance(project, Project):
        folder, url = project.path, project.engine.url
    else:
        folder = Path(project)
        url = os.environ.get(DATABASE_URL_ENV) or f"sqlite:///{(folder / DATABASE_NAME).resolve()}"
    database = sqlite_file_of(url)
    if database is None:
        raise StoreError("this project's database is on a database server: backing it up is the server's job "
                         "(for PostgreSQL, pg_dump); cliptune backs up SQLite projects only")
    if not database.exists():
        raise StoreError(f"{folder} is not a cliptune project (no {database.name}); give the project folder")
    return folder, database


def backup_project(project: Project | str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Back the project's SQLite database up to ``dest`` while the app may be writing, check the copy with
    ``PRAGMA integrity_check`` and return its path. ``dest`` is a new file, or an existing folder (the backup is
    then ``DEST/cliptune-<project>-<UTC time>.db``). Never overwrites a file. The database only: media are derived
    from the source videos and can be made again."""
    folder, database = _database_file(project)
    dest = Path(dest)
    if dest.is_dir():
        slug = re.sub(r"[^A-Za-z0-9._-]+", "-", folder.resolve().name).strip("-.") or "project"
        dest = dest / f"cliptune-{slug}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.db"
    if dest.resolve() == database.resolve():
        raise StoreError(f"{dest} is the project database itself: choose another destination")
    return backup_database(database, dest)


def automatic_backup(project: Project, reason: str) -> Path | None:
    """Back the database up to ``PROJECT/backups/cliptune-<UTC time>-<reason>.db`` before a schema upgrade or a
    destructive operation, keeping the newest 5 automatic backups. None for a server database (its server keeps
    backups). ``reason``: lower-case letters, digits and '-', e.g. ``"refreeze"``."""
    database = sqlite_file_of(project.engine.url)
    if database is None:
        return None
    return automatic_backup_file(database, project.path / BACKUPS_FOLDER, reason)

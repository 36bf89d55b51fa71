"""Ingest: scan files or folders, hash, de-duplicate, probe, make proxies and thumbnails, join metadata.

Each source file's clips are committed in one transaction after their proxies exist, so an ingest killed
half-way and run again ends with every clip exactly once. A file that cannot be decoded is listed with its
reason and the rest goes on. Files are committed in sorted order whatever order the workers finish in, so the
same media gets the same clip ids (hence the same split and dataset version) on every machine. Workers die with
the ingest that started them, and the next ingest removes the temporary files a killed one left behind.

Example::

    report = ingest(project, ["/footage/lobby"], metadata="cameras.csv", group_by="camera")
    report.added, report.duplicates, report.failed
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from curation.errors import CliptuneError, VideoError
from curation.records.store import Clip, Event, Project

VIDEO_EXTENSIONS = frozenset(
    {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".mts", ".wmv", ".flv", ".3gp"}
)
METADATA_KEY_COLUMNS = ("file", "path", "filename", "clip")
MIN_LAST_SEGMENT_S = 1.0


@dataclass
class IngestReport:
    added: int = 0
    duplicates: int = 0
    failed: list[dict[str, str]] = field(default_factory=list)
    ignored: int = 0  # files in scanned folders without a video extension
    clips: int = 0  # total clips in the project afterwards
    source_files: int = 0
    unmatched_metadata: int = 0  # added clips with no metadata row
    seconds: float = 0.0
    hash_s: float = 0.0
    decode_s: float = 0.0
    encode_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        result = asdict(self)
        result["clips_per_s"] = round(self.added / self.seconds, 3) if self.seconds > 0 else None
        for key in ("seconds", "hash_s", "decode_s", "encode_s"):
            result[key] = round(result[key], 3)
        return result


@dataclass(frozen=True)
class SourceFile:
    root: Path
    relative: str

    @property
    def path(self) -> Path:
        return self.root / self.relative


def scan(sources: Iterable[str | os.PathLike], extensions: frozenset[str] = VIDEO_EXTENSIONS) -> tuple[
    list[SourceFile], int
]:
    """Files to ingest (folders recursively, by extension) and the number of other files ignored."""
    files: list[SourceFile] = []
    ignored = 0
    for source in sources:
        source = Path(source).expanduser()
        if source.is_dir():
            root = source.resolve()
            for path in sorted(p for p in root.rglob("*") if p.is_file()):
                if path.name.startswith("."):
                    continue
                if path.suffix.lower() in extensions:
                    files.append(SourceFile(root, path.relative_to(root).as_posix()))
                else:
                    ignored += 1
        elif source.exists():
            # A file named explicitly is tried whatever its extension: the user asked for it.
            resolved = source.resolve()
            files.append(SourceFile(resolved.parent, resolved.name))
        else:
            raise CliptuneError(f"{source}: no such file or folder")
    return files, ignored


def sha256_file(path: Path, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def segment_bounds(duration_s: float, segment_s: float | None) -> list[tuple[float, float | None]]:
    """(start, end) of each clip cut from a recording; a short tail joins the previous segment."""
    if not segment_s:
        return [(0.0, None)]
    if segment_s <= 0:
        raise CliptuneError(f"--segment must be a positive number of seconds, got {segment_s}")
    bounds: list[tuple[float, float | None]] = []
    start = 0.0
    while start < duration_s - 1e-6:
        end = min(start + segment_s, duration_s)
        if duration_s - end < MIN_LAST_SEGMENT_S:
            end = duration_s
        bounds.append((round(start, 6), round(end, 6)))
        start = end
    return bounds or [(0.0, None)]


def read_metadata(path: str | os.PathLike, group_by: str | None = None) -> dict[str, dict[str, str]]:
    """Metadata CSV -> {file key: {column: value}}; the key column is one of file, path, filename, clip."""
    import pandas as pd

    path = Path(path)
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise CliptuneError(f"{path}: no such metadata file") from None
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise CliptuneError(f"{path}: cannot read metadata CSV: {str(exc).splitlines()[0]}") from None
    key = next((c for c in METADATA_KEY_COLUMNS if c in table.columns), None)
    if key is None:
        raise CliptuneError(
            f"{path}: no file-name column; name one of {', '.join(METADATA_KEY_COLUMNS)} (columns: "
            f"{', '.join(table.columns)})"
        )
    if group_by is not None and group_by not in table.columns:
        raise CliptuneError(f"--group-by {group_by}: {path} has no such column (columns: {', '.join(table.columns)})")
    repeated = table[key][table[key].duplicated()].tolist()
    if repeated:
        raise CliptuneError(f"{path}: file names listed more than once: {', '.join(repeated[:5])}")
    records = table.to_dict(orient="records")
    return {str(row.pop(key)).replace("\\", "/").strip("/"): row for row in records}


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` still runs (a zombie, dead but not yet reaped, counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc (not Linux): signal 0 went through, so it exists
    return stat.rpartition(")")[2].split()[0] != "Z"


def remove_stale_parts(folders: Iterable[Path]) -> int:
    """Delete ``.NAME.PID.part`` files (see :func:`curation.media.video.write_video`) whose writer is gone.

    A killed worker cannot run its own clean-up; a live PID's file belongs to a concurrent ingest and stays."""
    removed = 0
    for folder in folders:
        for part in folder.glob(".*.part") if folder.is_dir() else ():
            pid = part.name.rsplit(".", 2)[-2]
            if pid.isdigit() and not pid_alive(int(pid)):
                part.unlink(missing_ok=True)
                removed += 1
    return removed


def _die_with_parent(parent_pid: int) -> None:
    """Worker initializer: the kernel SIGKILLs this worker when the ingest that forked it dies, even by SIGKILL.

    Without it, a killed ingest's workers wait on their task queue forever (they hold its write end too)."""
    if sys.platform != "linux":
        return
    import ctypes

    pr_set_pdeathsig = 1
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(pr_set_pdeathsig, ctypes.c_ulong(signal.SIGKILL), 0, 0, 0) != 0:
        return  # best effort: the worker still works, it just may outlive a killed parent
    if os.getppid() != parent_pid:  # the parent died before the death signal was armed
        os.kill(os.getpid(), signal.SIGKILL)


def _match_metadata(relative: str, metadata: dict[str, dict[str, str]], by_name: dict[str, str]) -> dict | None:
    if relative in metadata:
        return metadata[relative]
    name = Path(relative).name
    key = by_name.get(name)
    return metadata.get(key) if key else None


def _prepare_file(job: dict[str, Any]) -> dict[str, Any]:
    """Probe one source file and make its proxies and thumbnails (runs in a worker process)."""
    from curation.media import video

    started = time.perf_counter()
    path = Path(job["path"])
    try:
        info = video.probe(path)
    except VideoError as exc:
        return {"error": str(exc), "decode_s": time.perf_counter() - started}
    decode_s = time.perf_counter() - started
    encode_s = 0.0
    clips = []
    try:
        for start_s, end_s in segment_bounds(info.duration_s, job["segment_s"]):
            segmented = end_s is not None
            sha = (
                hashlib.sha256(f"{job['sha256']}:{start_s:.6f}-{end_s:.6f}".encode()).hexdigest()
                if segmented
                else job["sha256"]
            )
            proxy_rel = f"media/proxies/{sha[:20]}.mp4"
            thumb_rel = f"media/thumbs/{sha[:20]}.jpg"
            proxy = video.make_proxy(
                path, Path(job["project"]) / proxy_rel, max_height=job["proxy_height"], start_s=start_s, end_s=end_s
            )
            decode_s += proxy.decode_s
            encode_s += proxy.encode_s
            length = (end_s - start_s) if segmented else info.duration_s
            tic = time.perf_counter()
            video.make_thumbnail(path, Path(job["project"]) / thumb_rel, at_s=start_s + length / 2)
            encode_s += time.perf_counter() - tic
            clips.append(
                {
                    "sha256": sha,
                    "start_s": start_s,
                    "end_s": end_s,
                    "duration_s": length,
                    "n_frames": proxy.n_frames if segmented else info.n_frames,
                    "proxy_path": proxy_rel,
                    "thumbnail_path": thumb_rel,
                }
            )
    except VideoError as exc:
        return {"error": str(exc), "decode_s": decode_s, "encode_s": encode_s}
    return {"info": asdict(info), "clips": clips, "decode_s": decode_s, "encode_s": encode_s}


def ingest(
    project: Project,
    sources: Sequence[str | os.PathLike],
    *,
    metadata: str | os.PathLike | None = None,
    group_by: str | None = None,
    segment_s: float | None = None,
    proxy_height: int = 480,
    workers: int | None = None,
    extensions: Iterable[str] = VIDEO_EXTENSIONS,
    progress: Callable[[int, int, str], None] | None = None,
) -> IngestReport:
    """Add the video files under ``sources`` to ``project``. See the module docstring."""
    if group_by is not None and metadata is None:
        raise CliptuneError("--group-by needs --metadata: the group column comes from the metadata CSV")
    if segment_s is not None and segment_s <= 0:
        raise CliptuneError(f"--segment must be a positive number of seconds, got {segment_s}")
    if proxy_height < 16:
        raise CliptuneError(f"proxy height {proxy_height} is too small; use at least 16 pixels")
    started = time.perf_counter()
    table = read_metadata(metadata, group_by) if metadata is not None else {}
    by_name: dict[str, str] = {}
    for key in table:
        name = Path(key).name
        by_name[name] = key if name not in by_name else ""  # ambiguous base names match by full path only
    files, ignored = scan(sources, frozenset(e.lower() for e in extensions))
    # One order for every run: clip ids, and which copy of a file seen twice is kept, do not depend on the order
    # the sources were named in, nor on which worker finishes first.
    files.sort(key=lambda f: (f.relative, str(f.root)))
    report = IngestReport(ignored=ignored, source_files=len(files))
    remove_stale_parts([project.path / "media" / "proxies", project.path / "media" / "thumbs"])

    with project.session() as session:
        known_sources = set(session.scalars(select(Clip.source_sha256)))
    tic = time.perf_counter()
    jobs: list[dict[str, Any]] = []
    seen: set[str] = set()
    for source in files:
        try:
            digest = sha256_file(source.path)
        except OSError as exc:
            report.failed.append({"path": str(source.path), "error": f"cannot read file: {exc.strerror}"})
            continue
        if digest in known_sources or digest in seen:
            report.duplicates += 1
            continue
        seen.add(digest)
        jobs.append(
            {
                "path": str(source.path),
                "root": str(source.root),
                "relative": source.relative,
                "sha256": digest,
                "segment_s": segment_s,
                "proxy_height": proxy_height,
                "project": str(project.path.resolve()),
            }
        )
    report.hash_s = time.perf_counter() - tic

    workers = workers if workers is not None else min(len(jobs), os.cpu_count() or 1)
    done = 0
    for job, result in _run_jobs(jobs, workers):
        done += 1
        report.decode_s += result.get("decode_s", 0.0)
        report.encode_s += result.get("encode_s", 0.0)
        if "error" in result:
            report.failed.append({"path": job["path"], "error": result["error"]})
        else:
            added, duplicate = _insert_clips(project, job, result, table, by_name, group_by, report)
            report.added += added
            report.duplicates += duplicate
        if progress is not None:
            progress(done, len(jobs), job["relative"])

    with project.session() as session:
        report.clips = session.scalar(select(func.count()).select_from(Clip)) or 0
    report.seconds = time.perf_counter() - started
    project.log(
        "ingest",
        sources=[str(s) for s in sources],
        added=report.added,
        duplicates=report.duplicates,
        failed=report.failed,
    )
    return report


def _run_jobs(jobs: list[dict[str, Any]], workers: int) -> Iterable[tuple[dict[str, Any], dict[str, Any]]]:
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            yield job, _prepare_file(job)
        return
    # fork keeps the workers children of this process (the death-signal check relies on it) and starts them fast.
    context = multiprocessing.get_context("fork") if sys.platform == "linux" else None
    executor: Executor = ProcessPoolExecutor(max_workers=workers, mp_context=context,
                                             initializer=_die_with_parent, initargs=(os.getpid(),))
    try:
        futures = [executor.submit(_prepare_file, job) for job in jobs]
        # In job order, not finishing order: a result that is ready early waits in its future until every earlier
        # file is committed, so ids follow the sorted file list and a killed ingest keeps a committed prefix.
        for job, future in zip(jobs, futures, strict=True):
            yield job, future.result()
    finally:
        executor.shutdown(wait=True, cancel_futures=True)


def _insert_clips(
    project: Project,
    job: dict[str, Any],
    result: dict[str, Any],
    table: dict[str, dict[str, str]],
    by_name: dict[str, str],
    group_by: str | None,
    report: IngestReport,
) -> tuple[int, int]:
    info = result["info"]
    row_metadata = _match_metadata(job["relative"], table, by_name) if table else None
    if table and row_metadata is None:
        report.unmatched_metadata += len(result["clips"])
    group_value = (row_metadata or {}).get(group_by) if group_by else None
    # Without a group column, the clips of one recording form a group so its segments never straddle a split.
    group_key = f"{group_by}:{group_value}" if group_value else f"file:{job['relative']}"
    try:
        with project.write() as session:
            for clip in result["clips"]:
                session.add(
                    Clip(
                        root=job["root"],
                        path=job["relative"],
                        start_s=clip["start_s"],
                        end_s=clip["end_s"],
                        sha256=clip["sha256"],
                        source_sha256=job["sha256"],
                        duration_s=clip["duration_s"],
                        fps=info["fps"],
                        width=info["width"],
                        height=info["height"],
                        n_frames=clip["n_frames"],
                        codec=info.get("codec"),
                        bitrate=info.get("bitrate"),
                        variable_frame_rate=bool(info.get("variable_frame_rate")),
                        group_key=group_key,
                        metadata_=dict(row_metadata or {}),
                        proxy_path=clip["proxy_path"],
                        thumbnail_path=clip["thumbnail_path"],
                    )
                )
            session.add(Event(action="clip_add", detail={"path": job["relative"], "clips": len(result["clips"])}))
    except IntegrityError:
        # Another ingest added the same content meanwhile: it is a duplicate, not a failure.
        return 0, 1
    return len(result["clips"]), 0

"""Nuisance features of each clip for the dataset audit, computed once and cached in the store.

A nuisance feature is something about a clip that should *not* decide its label: how bright or colourful it is
(infrared night cameras are dark and grey), how much moves, how sharp it is, its duration, frame rate, size and
bitrate, and its metadata (camera, site, hour of day from a timestamp column, the group key). The shortcut check
(:mod:`curation.audit.shortcuts`) measures how well each of them alone predicts each label.

The picture features come from a few frames decoded with decord from the clip's browser proxy (``SAMPLE_FPS``
frames a second, at most ``MAX_FRAMES``, scaled to at most ``MAX_HEIGHT`` pixels high, so the numbers are
comparable between cameras):

- ``brightness_mean``: mean grey level, 0 (black) to 1 (white); ``brightness_spread``: the grey levels' standard
  deviation within a frame (contrast), averaged over frames, 0 to 1;
- ``saturation``: mean HSV saturation, 0 to 1 (infrared night footage is about 0);
- ``motion_energy``: mean absolute grey change between consecutive sampled frames (0.25 s apart in clips up to
  8 s), 0 to 1;
- ``sharpness``: variance of the Laplacian of the grey frame, averaged over frames (higher is sharper or noisier).

``duration_s``, ``fps``, ``width``, ``height`` and ``bitrate`` come from the clip's probe at ingest.

The same frames give the clip's near-duplicate signature (frame hashes, the median
picture, what moves, and the foreground content grids: each frame minus the clip's still background on a
size-independent grid; see :mod:`curation.audit.duplicates`). Results are cached in the ``clip_features`` table,
one row per clip and ``EXTRACTOR_VERSION``: a clip is decoded again only when it is new or the extractor changed.
A clip that cannot be decoded is listed with its reason and is not cached, so it is tried again next time.

Example::

    report = extract_features(project)          # decodes only clips without cached features
    table = feature_table(project)              # pandas DataFrame, one row per clip id
    table[["brightness_mean", "camera", "hour"]]
"""

from __future__ import annotations

import base64
import math
import os
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from curation.errors import CliptuneError, VideoError
from curation.records.store import Clip, ClipFeatures, Project

# "2": the near-duplicate signature gained the foreground content grids (``content``); version-1 rows lack them
# and are recomputed, never misread.
EXTRACTOR_VERSION = "2"
SAMPLE_FPS = 4.0
MAX_FRAMES = 32
MAX_HEIGHT = 144
VISUAL_FEATURES = ("brightness_mean", "brightness_spread", "saturation", "motion_energy", "sharpness")
FILE_FEATURES = ("duration_s", "fps", "width", "height", "bitrate")
# A metadata column whose values parse as date-times gives the hour of day (fractional: 20.5 is 20:30).
TIMESTAMP_SHARE = 0.9
UNSTABLE_RANGE = 30.0  # grey levels a (3x3 averaged) pixel must swing within a clip to count as moving
OCCUPANCY_LEVEL = 12.0  # grey levels a grid cell must differ from the clip's median picture to count as occupied
OCCUPANCY_GRID = (8, 6)  # columns, rows (cv2's order); packed into a 64-bit code, high bits first
OCCUPANCY_PAD = 64 - OCCUPANCY_GRID[0] * OCCUPANCY_GRID[1]  # leading zero bits of each code
# Foreground content grid (columns, rows): each sampled frame minus the clip's median picture (its still
# background), in colour, averaged into this many cells whatever the clip's size, so rescaled copies give the
# same grid. Stored as int8 (residual / 2).
CONTENT_GRID = (16, 12)


@dataclass
class FeatureReport:
    computed: int = 0
    cached: int = 0
    failed: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    workers: int = 1

    @property
    def clips_per_s(self) -> float | None:
        return round(self.computed / self.seconds, 3) if self.computed and self.seconds > 0 else None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "seconds": round(self.seconds, 3), "clips_per_s": self.clips_per_s}


# -- per clip (runs in worker processes) ------------------------------------------------------------------------


def phash(grey: np.ndarray) -> int:
    """64-bit DCT perceptual hash of a grey picture: signs of the 8x8 lowest frequencies of a 32x32 DCT against
    their median. Invariant to brightness and contrast changes and to resizing."""
    import cv2
    from scipy.fft import dctn

    small = cv2.resize(grey.astype(np.float32), (32, 32), interpolation=cv2.INTER_AREA)
    low = dctn(small, norm="ortho")[:8, :8].ravel()
    bits = low > np.median(low[1:])
    return int(np.packbits(bits).view(">u8")[0])


def encode_png(image: np.ndarray) -> str:
    import cv2

    ok, data = cv2.imencode(".png", image)
    if not ok:  # pragma: no cover - OpenCV encodes any uint8 picture
        raise VideoError("cannot encode a signature picture")
    return base64.b64encode(data.tobytes()).decode("ascii")


def decode_png(text: str) -> np.ndarray:
    import cv2

    return cv2.imdecode(np.frombuffer(base64.b64decode(text), np.uint8), cv2.IMREAD_UNCHANGED)


def frame_features(frames: np.ndarray) -> dict[str, Any]:
    """Picture features and near-duplicate signature of RGB uint8 frames (k, H, W, 3) sampled from one clip."""
    import cv2

    grey = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]).astype(np.float32)
    saturation = np.mean([cv2.cvtColor(f, cv2.COLOR_RGB2HSV)[..., 1].mean() for f in frames]) / 255.0
    sharpness = np.mean([cv2.Laplacian(g, cv2.CV_32F).var() for g in grey])
    motion = float(np.abs(np.diff(grey, axis=0)).mean() / 255.0) if len(grey) > 1 else 0.0
    median = np.median(grey, axis=0)
    smooth = np.stack([cv2.blur(g, (3, 3)) for g in grey])
    # Pixels that change within the clip (people, a running clock's seconds) are left out of the comparison of
    # still pictures; where they change, over time, is compared separately (occupancy).
    unstable = (smooth.max(axis=0) - smooth.min(axis=0)) > UNSTABLE_RANGE
    residual = np.abs(smooth - cv2.blur(median, (3, 3)))
    cells = [(cv2.resize(r, OCCUPANCY_GRID, interpolation=cv2.INTER_AREA) > OCCUPANCY_LEVEL).ravel() for r in residual]
    occupancy = [int(np.packbits(np.concatenate([[False] * OCCUPANCY_PAD, c])).view(">u8")[0]) for c in cells]
    return {
        "brightness_mean": round(float(grey.mean() / 255.0), 6),
        "brightness_spread": round(float(grey.std(axis=(1, 2)).mean() / 255.0), 6),
        "saturation": round(float(saturation), 6),
        "motion_energy": round(motion, 6),
        "sharpness": round(float(sharpness), 3),
        "n_frames_sampled": int(len(grey)),
        "signature": {
            "hashes": [f"{phash(g):016x}" for g in grey],
            "median_hash": f"{phash(median):016x}",
            "median": encode_png(np.clip(np.round(median), 0, 255).astype(np.uint8)),
            "unstable": encode_png(unstable.astype(np.uint8) * 255),
            "occupancy": [f"{o:012x}" for o in occupancy],
            "content": content_grids(frames),
        },
    }


def content_grids(frames: np.ndarray) -> str:
    """What differs from the clip's still background, frame by frame: RGB frames minus their median picture,
    averaged into ``CONTENT_GRID`` cells (int8, residual / 2), base64 of shape (frames, rows, columns, 3).

    A brightened copy has the same residual (both terms shift), a rescaled one the same cells; the still
    background that every clip of a fixed camera shares is gone, so the comparison sees who moves where and when.
    """
    import cv2

    colour = frames.astype(np.float32)
    residual = colour - np.median(colour, axis=0)
    cells = np.stack([cv2.resize(r, CONTENT_GRID, interpolation=cv2.INTER_AREA) for r in residual])
    return base64.b64encode(np.clip(np.rint(cells / 2), -127, 127).astype(np.int8).tobytes()).decode("ascii")


def clip_visuals(job: dict[str, Any]) -> dict[str, Any]:
    """Decode one clip's sampled frames and compute its picture features; ``{"error"}`` if it cannot be decoded."""
    from curation.media.video import sample_frames

    started = time.perf_counter()
    try:
        frames = sample_frames(job["path"], fps=SAMPLE_FPS, num_frames=MAX_FRAMES, max_height=MAX_HEIGHT,
                               start_s=job["start_s"], end_s=job["end_s"])
        decode_s = time.perf_counter() - started
        values = frame_features(frames)
    except (VideoError, OSError, ValueError) as exc:  # listed and skipped: the other clips go on
        return {"clip_id": job["clip_id"], "error": str(exc)}
    values["decode_s"] = round(decode_s, 4)
    values["compute_s"] = round(time.perf_counter() - started - decode_s, 4)
    return {"clip_id": job["clip_id"], "values": values}


# -- project level ----------------------------------------------------------------------------------------------


def _job(project: Project, clip: Clip) -> dict[str, Any]:
    """Where to read a clip's frames: its proxy (already cut to the segment), else the source file's segment."""
    if clip.proxy_path and (project.path / clip.proxy_path).exists():
        return {"clip_id": clip.id, "path": str(project.path / clip.proxy_path), "start_s": 0.0, "end_s": None}
    return {"clip_id": clip.id, "path": str(clip.source_path), "start_s": clip.start_s, "end_s": clip.end_s}


def _cached_ids(project: Project, version: str) -> set[int]:
    with project.session() as session:
        return set(session.scalars(select(ClipFeatures.clip_id).where(ClipFeatures.version == version)))


def _store(project: Project, rows: list[dict[str, Any]], version: str) -> None:
    """Cache computed rows; rows another process cached meanwhile are kept as they are."""
    try:
        with project.write() as session:
            session.add_all(ClipFeatures(clip_id=r["clip_id"], version=version, values=r["values"]) for r in rows)
    except IntegrityError:
        done = _cached_ids(project, version)
        with project.write() as session:
            session.add_all(ClipFeatures(clip_id=r["clip_id"], version=version, values=r["values"])
                            for r in rows if r["clip_id"] not in done)


def _run(compute: Callable[[dict[str, Any]], dict[str, Any]], jobs: list[dict[str, Any]], workers: int
         ) -> Iterable[dict[str, Any]]:
    if workers <= 1 or len(jobs) <= 1:
        yield from map(compute, jobs)
        return
    with ProcessPoolExecutor(max_workers=workers) as executor:
        futures = [executor.submit(compute, job) for job in jobs]
        for future in as_completed(futures):
            yield future.result()


def extract_features(
    project: Project,
    *,
    clip_ids: Iterable[int] | None = None,
    workers: int | None = None,
    batch_size: int = 32,
    progress: Callable[[int, int], None] | None = None,
) -> FeatureReport:
    """Compute and cache the picture features of every clip (or ``clip_ids``) that has none for this extractor
    version. Parallel over clips with ``workers`` processes (default: one per core). Returns what it did."""
    return extract_cached(project, clip_visuals, EXTRACTOR_VERSION, clip_ids=clip_ids, workers=workers,
                          batch_size=batch_size, progress=progress)


def extract_cached(
    project: Project,
    compute: Callable[[dict[str, Any]], dict[str, Any]],
    version: str,
    *,
    clip_ids: Iterable[int] | None = None,
    workers: int | None = None,
    batch_size: int = 32,
    progress: Callable[[int, int], None] | None = None,
) -> FeatureReport:
    """Run ``compute`` (a top-level function: job -> ``{"clip_id", "values"}`` or ``{"clip_id", "error"}``) on
    every clip (or ``clip_ids``) without a ``clip_features`` row of ``version``, and cache its rows under that
    version. A clip that cannot be decoded is listed in ``failed`` and not cached, so it is tried again next time."""
    if workers is not None and workers < 1:
        raise CliptuneError(f"workers must be at least 1, got {workers}")
    started = time.perf_counter()
    with project.session() as session:
        query = select(Clip).order_by(Clip.id)
        if clip_ids is not None:
            query = query.where(Clip.id.in_(list(clip_ids)))
        clips = list(session.scalars(query))
    cached = _cached_ids(project, version)
    jobs = [_job(project, clip) for clip in clips if clip.id not in cached]
    workers = workers if workers is not None else max(1, min(len(jobs), os.cpu_count() or 1))
    report = FeatureReport(cached=len(clips) - len(jobs), workers=workers)
    pending: list[dict[str, Any]] = []
    for done, result in enumerate(_run(compute, jobs, workers), start=1):
        if "error" in result:
            report.failed.append({"clip": result["clip_id"], "error": result["error"]})
        else:
            pending.append(result)
        if len(pending) >= batch_size:  # written as they come, so an interrupted run keeps its work
            _store(project, pending, version)
            report.computed += len(pending)
            pending = []
        if progress is not None:
            progress(done, len(jobs))
    if pending:
        _store(project, pending, version)
        report.computed += len(pending)
    report.failed.sort(key=lambda item: item["clip"])
    report.seconds = time.perf_counter() - started
    return report


def load_features(project: Project, *, version: str = EXTRACTOR_VERSION) -> dict[int, dict[str, Any]]:
    """Cached feature values per clip id (without extracting anything)."""
    with project.session() as session:
        rows = session.execute(select(ClipFeatures.clip_id, ClipFeatures.values)
                               .where(ClipFeatures.version == version)).all()
    return {clip_id: values for clip_id, values in rows}


def _as_hour(values: list[str]) -> list[float] | None:
    """Fractional hour of day of each value if (nearly) all parse as date-times, else None."""

    present = [v for v in values if v not in ("", None)]
    # No clock time without a colon: most metadata columns (camera, site) end here, before the slow parse.
    if not present or any(isinstance(v, int | float) for v in present) or not any(":" in str(v) for v in present):
        return None
    # One value at a time: footage that spans a daylight-saving change mixes UTC offsets, which a whole-column
    # parse refuses. The hour is the wall-clock hour as written (what "night" means on site), not UTC.
    parsed = [_parse_time(v) for v in values]
    if sum(t is not None for t in parsed) < TIMESTAMP_SHARE * len(present):
        return None
    return [t.hour + t.minute / 60.0 if t is not None else math.nan for t in parsed]


def _parse_time(value: Any) -> Any:
    """A date-time (ISO 8601 and the other forms pandas reads), or None."""
    import pandas as pd

    if value in ("", None):
        return None
    try:
        return datetime.fromisoformat(str(value).strip())
    except ValueError:
        pass
    try:
        stamp = pd.to_datetime(str(value).strip())
    except (ValueError, TypeError, OverflowError):
        return None
    return None if pd.isna(stamp) else stamp


def _as_number(values: list[Any]) -> list[float] | None:
    numbers = []
    for value in values:
        if value in ("", None):
            numbers.append(math.nan)
            continue
        try:
            numbers.append(float(value))
        except (TypeError, ValueError):
            return None
    return numbers


def metadata_columns(clips: list[Clip]) -> dict[str, tuple[str, list[Any]]]:
    """Nuisance columns from clip metadata: ``{name: ("numeric" | "categorical", values)}``.

    A timestamp column gives ``hour`` (``<column>_hour`` if there are several); numeric columns stay numbers;
    other columns are categories, unless nearly every clip has its own value (an id predicts nothing).
    """
    keys = sorted({key for clip in clips for key in (clip.metadata_ or {})})
    columns: dict[str, tuple[str, list[Any]]] = {}
    timestamps = []
    for key in keys:
        values = [(clip.metadata_ or {}).get(key, "") for clip in clips]
        hours = _as_hour(values)
        if hours is not None:
            timestamps.append((key, hours))
            continue
        numbers = _as_number(values)
        if numbers is not None:
            columns[key] = ("numeric", numbers)
            continue
        distinct = {str(v) for v in values}
        if 2 <= len(distinct) <= max(2, len(clips) // 2):
            columns[key] = ("categorical", [str(v) if v not in ("", None) else "(none)" for v in values])
    for key, hours in timestamps:
        columns["hour" if len(timestamps) == 1 else f"{key}_hour"] = ("numeric", hours)
    return columns


def feature_table(project: Project, *, workers: int | None = None, report: FeatureReport | None = None):
    """One row per clip id that has picture features: file features, picture features, metadata, group.

    Numeric columns are floats; categorical ones (metadata, ``group``) are strings. ``table.attrs`` holds
    ``numeric``, ``categorical`` (column names) and ``failed`` (clips that could not be decoded). ``report`` is
    what :func:`extract_features` just returned for this project, so it is not run (and failing clips are not
    decoded) again; None runs it.
    """
    import pandas as pd

    report = report if report is not None else extract_features(project, workers=workers)
    cached = load_features(project)
    with project.session() as session:
        clips = [c for c in session.scalars(select(Clip).order_by(Clip.id)) if c.id in cached]
    data: dict[str, list[Any]] = {}
    for name in FILE_FEATURES:
        data[name] = [float(getattr(c, name)) if getattr(c, name) is not None else math.nan for c in clips]
    for name in VISUAL_FEATURES:
        data[name] = [float(cached[c.id][name]) for c in clips]
    numeric = list(FILE_FEATURES + VISUAL_FEATURES)
    categorical = []
    for name, (kind, values) in metadata_columns(clips).items():
        column = name if name not in data else f"meta_{name}"
        data[column] = values
        (numeric if kind == "numeric" else categorical).append(column)
    data["group"] = [c.group_key for c in clips]
    categorical.append("group")
    table = pd.DataFrame(data, index=pd.Index([c.id for c in clips], name="clip_id"))
    for column in categorical:
        table[column] = table[column].astype(str)
    table.attrs.update(numeric=numeric, categorical=categorical, failed=report.failed)
    return table


def signature_of(values: dict[str, Any]) -> dict[str, Any]:
    """A cached clip's near-duplicate signature with its pictures decoded (for :mod:`curation.audit.duplicates`)."""
    signature = values["signature"]
    return {
        "hashes": np.array([int(h, 16) for h in signature["hashes"]], dtype=np.uint64),
        "median_hash": np.uint64(int(signature["median_hash"], 16)),
        "median": decode_png(signature["median"]),
        "unstable": decode_png(signature["unstable"]) > 0,
        "occupancy": np.array([int(o, 16) for o in signature["occupancy"]], dtype=np.uint64),
        "content": content_of(signature),
    }


def content_of(signature: dict[str, Any]) -> np.ndarray:
    """The stored foreground content grids as float32 (frames, rows, columns, 3), in grey levels."""
    cells = np.frombuffer(base64.b64decode(signature["content"]), np.int8).astype(np.float32) * 2
    return cells.reshape(-1, CONTENT_GRID[1], CONTENT_GRID[0], 3)

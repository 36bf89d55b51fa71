"""Where in the picture: small per-clip maps for the local shortcut check, computed once and cached in the store.

The whole-frame features of :mod:`curation.media.features` cannot see a logo in one corner: it moves a frame's
mean brightness by a fraction of a level. These maps keep the place. From the frames decoded for a clip (decord,
``SAMPLE_FPS`` a second, at most ``MAX_FRAMES``) three maps of ``MAP_SIZE`` pixels (relative to the picture, so
cameras of any size line up) are kept:

- ``still``: the per-pixel median over time of the frames (RGB): the clip's picture with passers-by removed, where a
  static overlay (logo, burned-in text, a marker) stays;
- ``detail``: the gradient magnitude of the still picture at full resolution, averaged down (edges, text);
- ``motion``: the mean absolute change from the still picture over time (where people pass; an overlay on top of
  the scene hides them, so it is stiller there).

They are cached in the ``clip_features`` table under their own version (``REGIONS_VERSION``), as PNG pictures
(about 8 KB a clip), so the grid and the comparison can change without decoding again; a new version of the maps
is a new key, and maps of an old version are never read.

Example::

    report = extract_regions(project)        # decodes only clips without cached maps
    maps = load_regions(project)             # {clip_id: {"still": (48, 64, 3) uint8, "detail": ..., "motion": ...}}
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from curation.errors import VideoError
from curation.media.features import FeatureReport, decode_png, encode_png, extract_cached, load_features
from curation.records.store import Project

REGIONS_VERSION = "regions-1"
SAMPLE_FPS = 4.0
MAX_FRAMES = 24
MAX_HEIGHT = 144
MAP_SIZE = (64, 48)  # width, height (cv2's order): a 0.5 % mark covers about 15 map pixels
# Scales to fit uint8: gradient magnitude (Sobel, grey levels per pixel) / 4 and motion in grey levels.
DETAIL_SCALE = 4.0
MAPS = ("still", "detail", "motion")


def region_maps(frames: np.ndarray) -> dict[str, np.ndarray]:
    """The three maps (uint8, ``MAP_SIZE``) of RGB uint8 frames (k, H, W, 3) sampled from one clip."""
    import cv2

    still_full = np.median(frames, axis=0).astype(np.float32)
    grey = cv2.cvtColor(still_full, cv2.COLOR_RGB2GRAY)
    gradient = np.hypot(cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(grey, cv2.CV_32F, 0, 1, ksize=3))
    small = np.stack([cv2.resize(f, MAP_SIZE, interpolation=cv2.INTER_AREA) for f in frames]).astype(np.float32)
    still = np.median(small, axis=0)
    motion = np.abs(small - still).mean(axis=(0, 3))
    return {
        "still": np.clip(np.round(still), 0, 255).astype(np.uint8),
        "detail": np.clip(np.round(cv2.resize(gradient, MAP_SIZE, interpolation=cv2.INTER_AREA) / DETAIL_SCALE),
                          0, 255).astype(np.uint8),
        "motion": np.clip(np.round(motion), 0, 255).astype(np.uint8),
    }


def clip_regions(job: dict[str, Any]) -> dict[str, Any]:
    """Decode one clip's frames and compute its maps as PNG text; ``{"error"}`` if it cannot be decoded."""
    import cv2

    from curation.media.video import sample_frames

    try:
        frames = sample_frames(job["path"], fps=SAMPLE_FPS, num_frames=MAX_FRAMES, max_height=MAX_HEIGHT,
                               start_s=job["start_s"], end_s=job["end_s"])
        maps = region_maps(frames)
    except (VideoError, OSError, ValueError) as exc:  # listed and skipped: the other clips go on
        return {"clip_id": job["clip_id"], "error": str(exc)}
    # PNG keeps channels in OpenCV's BGR order: store the still picture as BGR so it decodes back to RGB below.
    values = {"map_size": list(MAP_SIZE), "still": encode_png(cv2.cvtColor(maps["still"], cv2.COLOR_RGB2BGR)),
              "detail": encode_png(maps["detail"]), "motion": encode_png(maps["motion"])}
    return {"clip_id": job["clip_id"], "values": values}


def extract_regions(
    project: Project,
    *,
    clip_ids: Iterable[int] | None = None,
    workers: int | None = None,
    batch_size: int = 32,
    progress: Callable[[int, int], None] | None = None,
) -> FeatureReport:
    """Compute and cache the maps of every clip (or ``clip_ids``) that has none for ``REGIONS_VERSION``, with
    ``workers`` processes (default: one per core). A clip that cannot be decoded is listed in ``failed`` and not
    cached, so it is tried again next time."""
    return extract_cached(project, clip_regions, REGIONS_VERSION, clip_ids=clip_ids, workers=workers,
                          batch_size=batch_size, progress=progress)


def decode_maps(values: dict[str, Any]) -> dict[str, np.ndarray]:
    """A cached row's maps as arrays: still (h, w, 3) RGB, detail and motion (h, w), all uint8."""
    import cv2

    return {"still": cv2.cvtColor(decode_png(values["still"]), cv2.COLOR_BGR2RGB),
            "detail": decode_png(values["detail"]), "motion": decode_png(values["motion"])}


def load_regions(project: Project) -> dict[int, dict[str, np.ndarray]]:
    """Cached maps per clip id (extracting nothing)."""
    return {clip_id: decode_maps(values) for clip_id, values in load_features(project, version=REGIONS_VERSION).items()}

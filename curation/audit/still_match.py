"""The still-picture comparison of two clips, for clips where (almost) nothing moves (and the still-detail measure
the content comparison's veto uses): a 64-bit DCT perceptual hash of every sampled frame and of the clip's median
picture, the median picture itself, which of its pixels move, and a coarse grid of where things move in each frame.

1. **median hash**: the median pictures' hashes differ in at most ``HASH_BITS`` of 64 bits;
2. **frames**: every sampled frame has a close frame in the other clip (median over frames of the best-aligned
   hash distance at most ``SEQUENCE_BITS``, both ways) — so a trimmed copy still matches;
3. **still detail**: after matching brightness and scaling to the smaller size, the share of picture detail
   (edges) that differs by more than ``DETAIL_LEVEL`` grey levels must be at most ``DETAIL_PERMILLE`` per mille.
   Pixels that move within either clip are left out;
4. **motion**: where and when things move must agree (occupied grid cells, best time offset, one frame and one
   cell of slack): at most ``MOTION_DISTANCE`` of the occupied cells unmatched.

A fixed camera without a clock shows the same still picture in every clip: these tests cannot tell its empty
scenes apart (nothing can), and must not decide for clips where people move (:mod:`curation.audit.duplicates`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from curation.audit.content_match import histogram_match
from curation.media.features import OCCUPANCY_GRID, OCCUPANCY_PAD

HASH_BITS = 12
SEQUENCE_BITS = 10
DETAIL_LEVEL = 8.0
# Measured on three synthetic samples (34 planted copies): copies differ in at most 0.94 per mille of their still
# detail (a trimmed copy re-encoded at a higher crf), distinct scenes of one camera in at least 1.62.
DETAIL_PERMILLE = 1.2
EDGE_LEVEL = 40.0
MOTION_DISTANCE = 0.3
GRID = OCCUPANCY_GRID[::-1]  # occupancy rows, columns


def popcount(values: np.ndarray) -> np.ndarray:
    return np.bitwise_count(values.astype(np.uint64))


def sequence_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Median over frames of the distance to the best-matching frame of the other clip, the worse direction."""
    distances = popcount(a[:, None] ^ b[None, :])
    return float(max(np.median(distances.min(axis=1)), np.median(distances.min(axis=0))))


def _detail_share(a: np.ndarray, b: np.ndarray, moving: np.ndarray, level: float = DETAIL_LEVEL) -> float:
    """Per mille of the picture where detail differs: pictures of one size, ``moving`` pixels left out."""
    import cv2

    b = histogram_match(b, a)
    a, b = cv2.GaussianBlur(a, (0, 0), 0.7), cv2.GaussianBlur(b, (0, 0), 0.7)
    edges = np.maximum(*(np.hypot(cv2.Sobel(x, cv2.CV_32F, 1, 0), cv2.Sobel(x, cv2.CV_32F, 0, 1)) for x in (a, b)))
    moving = cv2.dilate(moving.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    difference = np.where(moving | (edges <= EDGE_LEVEL), 0.0, np.abs(a - b))
    return float(1000.0 * (cv2.blur(difference, (3, 3)) > level).mean())


def detail_difference(sa: dict[str, Any], sb: dict[str, Any], level: float = DETAIL_LEVEL) -> float:
    """Still-detail difference of two clips in per mille, compared at the smaller clip's size.

    Sizes that differ are registered by trying the smaller picture with and without its last row and column:
    an odd size padded by one pixel for H.264, or rounded to even for the proxy, shifts the picture by that much.
    """
    import cv2

    if sa["median"].size < sb["median"].size:
        sa, sb = sb, sa
    big, small = sa["median"].astype(np.float32), sb["median"].astype(np.float32)
    if big.shape == small.shape:
        return _detail_share(big, small, sa["unstable"] | sb["unstable"], level)
    h, w = small.shape
    best = np.inf
    for dy in (0, 1):
        for dx in (0, 1):
            size = (w - dx, h - dy)
            scaled = cv2.resize(big, size, interpolation=cv2.INTER_AREA)
            moving = cv2.resize(sa["unstable"].astype(np.float32), size, interpolation=cv2.INTER_AREA) > 0
            best = min(best, _detail_share(scaled, small[: h - dy, : w - dx], moving | sb["unstable"][: h - dy,
                                                                                                    : w - dx], level))
    return best


def _cells(occupancy: np.ndarray) -> np.ndarray:
    """Occupancy codes -> bool (frames, rows, columns)."""
    bits = np.unpackbits(occupancy.astype(">u8").view(np.uint8).reshape(-1, 8), axis=1)[:, OCCUPANCY_PAD:]
    return bits.reshape(-1, *GRID).astype(bool)


def _dilate(cells: np.ndarray) -> np.ndarray:
    """Grow occupied cells by one frame and one cell in every direction."""
    out = cells.copy()
    for axis in range(3):
        grown = out.copy()
        lead, lag = [slice(None)] * 3, [slice(None)] * 3
        lead[axis], lag[axis] = slice(1, None), slice(None, -1)
        grown[tuple(lead)] |= out[tuple(lag)]
        grown[tuple(lag)] |= out[tuple(lead)]
        out = grown
    return out


def motion_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Share of occupied (frame, cell) pairs with no occupied neighbour in the other clip at the best offset.

    0 when both clips are still; 1 when only one of them moves.
    """
    ca, cb = _cells(a), _cells(b)
    total = int(ca.sum() + cb.sum())
    if total == 0:
        return 0.0
    if not ca.any() or not cb.any():
        return 1.0
    da, db = _dilate(ca), _dilate(cb)
    shortest = min(len(ca), len(cb))
    best = 1.0
    for lag in range(-len(cb) + 1, len(ca)):
        start, stop = max(0, lag), min(len(ca), len(cb) + lag)
        if stop - start < max(2, 0.6 * shortest):
            continue
        hits = (ca[start:stop] & db[start - lag : stop - lag]).sum() + (cb[start - lag : stop - lag]
                                                                        & da[start:stop]).sum()
        best = min(best, 1.0 - hits / total)
    return float(best)


def still_compare(sa: dict[str, Any], sb: dict[str, Any]) -> dict[str, Any]:
    """The still-picture tests, for clips where (almost) nothing moves: median hash, frame hashes, still detail,
    where motion happens. A clockless camera's empty scenes are alike in every respect and pass them."""
    evidence: dict[str, Any] = {"rule": "still",
                                "median_hash_bits": int(popcount(np.array([sa["median_hash"] ^ sb["median_hash"]]))[0])}
    if evidence["median_hash_bits"] > HASH_BITS:
        return {**evidence, "near_duplicate": False, "failed": "median_hash"}
    evidence["sequence_bits"] = sequence_distance(sa["hashes"], sb["hashes"])
    if evidence["sequence_bits"] > SEQUENCE_BITS:
        return {**evidence, "near_duplicate": False, "failed": "frames"}
    evidence["detail_permille"] = round(detail_difference(sa, sb), 4)
    if evidence["detail_permille"] > DETAIL_PERMILLE:
        return {**evidence, "near_duplicate": False, "failed": "still_detail"}
    evidence["motion"] = round(motion_distance(sa["occupancy"], sb["occupancy"]), 4)
    if evidence["motion"] > MOTION_DISTANCE:
        return {**evidence, "near_duplicate": False, "failed": "motion"}
    return {**evidence, "near_duplicate": True, "failed": None}

"""Near-duplicates and leakage: re-encoded, resized, trimmed or brightened copies of one clip, and splits that
put copies (or one group) on both sides.

Ingest already drops byte-identical files; this finds copies that differ in bytes. Each clip's signature is
computed once with its features (:mod:`curation.media.features`): a 64-bit DCT perceptual hash of every sampled
frame and of the clip's median picture, the median picture itself (grey, at most 144 pixels high), which of its
pixels move during the clip, and a coarse grid of where things move in each frame. Two clips are near-duplicates
when all four tests pass, cheapest first:

1. **median hash**: the median pictures' hashes differ in at most ``HASH_BITS`` of 64 bits;
2. **frames**: every sampled frame has a close frame in the other clip (median over frames of the best-aligned
   hash distance at most ``SEQUENCE_BITS``, both ways) — so a trimmed copy still matches;
3. **still detail**: all clips of one fixed camera share their background, and a frame hash sees little else, so
   the still parts are compared in detail: after matching brightness (histogram matching, so a brightened copy
   compares equal) and scaling to the smaller size, the share of picture detail (edges) that differs by more than
   ``DETAIL_LEVEL`` grey levels must be at most ``DETAIL_PERMILLE`` per mille. Different scenes of one camera
   differ there (a burned-in clock, a parked car); copies do not. Pixels that move within either clip (people, a
   clock's seconds) are left out;
4. **motion**: where and when things move must agree (occupied grid cells, best time offset, one frame and one
   cell of slack): at most ``MOTION_DISTANCE`` of the occupied cells unmatched.

Clusters are the connected groups of near-duplicate pairs. They become split groups (the split unions them with
the group key through :func:`near_duplicate_groups`), and an existing split in the ``split_ledger`` that puts a
cluster, or one group, on both sides is reported as leakage.

Example::

    result = check_duplicates(project)
    result.details["clusters"]     # [[3, 41], [17, 18, 52]]
    result.details["leakage"]      # [{"kind": "near_duplicates", "clips": [3, 41], "train": [3], "test": [41], ...}]
    near_duplicate_groups(project) # {3: "dup:3", 41: "dup:3", 17: "dup:17", ...}
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sqlalchemy import func, select

from curation.audit.result import AuditResult
from curation.errors import CliptuneError
from curation.media.features import OCCUPANCY_GRID, OCCUPANCY_PAD, FeatureReport
from curation.records.store import Clip, Project, SplitEntry

HASH_BITS = 12
SEQUENCE_BITS = 10
DETAIL_LEVEL = 8.0
# Measured on three synthetic samples (34 planted copies): copies differ in at most 0.94 per mille of their still
# detail (a trimmed copy re-encoded at a higher crf), distinct scenes of one camera in at least 1.62.
DETAIL_PERMILLE = 1.2
EDGE_LEVEL = 40.0
MOTION_DISTANCE = 0.3
GRID = OCCUPANCY_GRID[::-1]  # occupancy rows, columns


# -- comparing two signatures ----------------------------------------------------------------------------------


def popcount(values: np.ndarray) -> np.ndarray:
    return np.bitwise_count(values.astype(np.uint64))


def sequence_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Median over frames of the distance to the best-matching frame of the other clip, the worse direction."""
    distances = popcount(a[:, None] ^ b[None, :])
    return float(max(np.median(distances.min(axis=1)), np.median(distances.min(axis=0))))


def _histogram_match(source: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``source`` with its grey levels mapped, quantile for quantile, onto those of ``reference`` — a brightened
    copy (even one clipped at white) then compares equal to its original. Through 256-level histograms: O(pixels)."""
    levels = np.arange(256, dtype=np.float64)

    def mid_quantiles(picture: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        counts = np.bincount(np.clip(np.rint(picture), 0, 255).astype(np.uint8).ravel(), minlength=256)
        return counts, (np.cumsum(counts) - counts / 2) / picture.size

    _, source_q = mid_quantiles(source)
    reference_counts, reference_q = mid_quantiles(reference)
    used = reference_counts > 0
    lookup = np.interp(source_q, reference_q[used], levels[used]).astype(np.float32)
    return lookup[np.clip(np.rint(source), 0, 255).astype(np.uint8)]


def _detail_share(a: np.ndarray, b: np.ndarray, moving: np.ndarray) -> float:
    """Per mille of the picture where detail differs: pictures of one size, ``moving`` pixels left out."""
    import cv2

    b = _histogram_match(b, a)
    a, b = cv2.GaussianBlur(a, (0, 0), 0.7), cv2.GaussianBlur(b, (0, 0), 0.7)
    edges = np.maximum(*(np.hypot(cv2.Sobel(x, cv2.CV_32F, 1, 0), cv2.Sobel(x, cv2.CV_32F, 0, 1)) for x in (a, b)))
    moving = cv2.dilate(moving.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    difference = np.where(moving | (edges <= EDGE_LEVEL), 0.0, np.abs(a - b))
    return float(1000.0 * (cv2.blur(difference, (3, 3)) > DETAIL_LEVEL).mean())


def detail_difference(sa: dict[str, Any], sb: dict[str, Any]) -> float:
    """Still-detail difference of two clips in per mille, compared at the smaller clip's size.

    Sizes that differ are registered by trying the smaller picture with and without its last row and column:
    an odd size padded by one pixel for H.264, or rounded to even for the proxy, shifts the picture by that much.
    """
    import cv2

    if sa["median"].size < sb["median"].size:
        sa, sb = sb, sa
    big, small = sa["median"].astype(np.float32), sb["median"].astype(np.float32)
    if big.shape == small.shape:
        return _detail_share(big, small, sa["unstable"] | sb["unstable"])
    h, w = small.shape
    best = np.inf
    for dy in (0, 1):
        for dx in (0, 1):
            size = (w - dx, h - dy)
            scaled = cv2.resize(big, size, interpolation=cv2.INTER_AREA)
            moving = cv2.resize(sa["unstable"].astype(np.float32), size, interpolation=cv2.INTER_AREA) > 0
            best = min(best, _detail_share(scaled, small[: h - dy, : w - dx], moving | sb["unstable"][: h - dy,
                                                                                                    : w - dx]))
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


def compare(sa: dict[str, Any], sb: dict[str, Any]) -> dict[str, Any]:
    """The four tests for one pair of signatures (:func:`curation.media.features.signature_of`), cheapest first; a test
    that fails ends the comparison. ``near_duplicate`` is True when all pass."""
    evidence: dict[str, Any] = {"median_hash_bits": int(popcount(np.array([sa["median_hash"] ^ sb["median_hash"]]))[0])}
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


def find_near_duplicates(
    signatures: dict[int, dict[str, Any]], *, never: set[frozenset[int]] | None = None
) -> tuple[list[dict[str, Any]], list[list[int]], list[dict[str, Any]]]:
    """(near-duplicate pairs with their evidence, clusters of size >= 2, closest pairs that were not merged).

    ``never`` holds pairs known to be distinct (segments of one recording) that are not compared.
    """
    ids = sorted(signatures)
    hashes = np.array([signatures[i]["median_hash"] for i in ids], dtype=np.uint64)
    pairs, near_misses = [], []
    parent = {i: i for i in ids}

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for index, a in enumerate(ids[:-1]):
        close = np.flatnonzero(popcount(hashes[index + 1 :] ^ hashes[index]) <= HASH_BITS) + index + 1
        for other in close.tolist():
            b = ids[other]
            if never and frozenset((a, b)) in never:
                continue
            evidence = compare(signatures[a], signatures[b])
            record = {"clips": [a, b], **evidence}
            if evidence["near_duplicate"]:
                pairs.append(record)
                parent[root(b)] = root(a)
            elif "detail_permille" in evidence:
                near_misses.append(record)
    members: dict[int, list[int]] = {}
    for i in ids:
        members.setdefault(root(i), []).append(i)
    clusters = sorted((sorted(m) for m in members.values() if len(m) > 1), key=lambda c: c[0])
    near_misses.sort(key=lambda r: r["detail_permille"])
    return pairs, clusters, near_misses[:10]


# -- project level ---------------------------------------------------------------------------------------------


def _clips(project: Project) -> list[Clip]:
    with project.session() as session:
        return list(session.scalars(select(Clip).order_by(Clip.id)))


def _segment_pairs(clips: list[Clip]) -> set[frozenset[int]]:
    """Pairs of segments cut from one recording at different times: distinct by construction."""
    by_source: dict[str, list[Clip]] = {}
    for clip in clips:
        by_source.setdefault(clip.source_sha256, []).append(clip)
    never = set()
    for segments in by_source.values():
        for i, a in enumerate(segments):
            for b in segments[i + 1 :]:
                if a.start_s != b.start_s:
                    never.add(frozenset((a.id, b.id)))
    return never


def _signatures(project: Project, workers: int | None, report: FeatureReport | None = None
                ) -> tuple[dict[int, dict[str, Any]], list[dict[str, Any]]]:
    from curation.media.features import extract_features, load_features, signature_of

    report = report if report is not None else extract_features(project, workers=workers)
    return {clip_id: signature_of(values) for clip_id, values in load_features(project).items()}, report.failed


def split_sides(project: Project) -> dict[int, str]:
    """The current side of each clip in the split ledger (its latest entry): "train" or "test"."""
    with project.session() as session:
        latest = select(func.max(SplitEntry.id)).group_by(SplitEntry.clip_id)
        return dict(session.execute(select(SplitEntry.clip_id, SplitEntry.split)
                                    .where(SplitEntry.id.in_(latest))).all())


def leakage(clusters: list[list[int]], groups: dict[int, str], sides: dict[int, str]) -> list[dict[str, Any]]:
    """Clusters and groups with clips on both sides of an existing split."""
    found = []
    for cluster in clusters:
        train = [c for c in cluster if sides.get(c) == "train"]
        test = [c for c in cluster if sides.get(c) == "test"]
        if train and test:
            found.append({"kind": "near_duplicates", "clips": cluster, "train": train, "test": test,
                          "message": f"near-duplicates {cluster} straddle the split: {train} in train, {test} "
                                     "held out — the held-out copies have been seen in training"})
    by_group: dict[str, dict[str, int]] = {}
    for clip_id, side in sides.items():
        if clip_id in groups:
            counts = by_group.setdefault(groups[clip_id], {"train": 0, "test": 0})
            counts[side] = counts.get(side, 0) + 1
    for group, counts in sorted(by_group.items()):
        if counts.get("train") and counts.get("test"):
            found.append({"kind": "group", "group": group, "train": counts["train"], "test": counts["test"],
                          "message": f"group {group} straddles the split: {counts['train']} clips in train, "
                                     f"{counts['test']} held out"})
    return found


def check_duplicates(project: Project, *, workers: int | None = None,
                     feature_report: FeatureReport | None = None) -> AuditResult:
    """Near-duplicate clusters and split leakage; see the module docstring. ``feature_report``: what
    :func:`curation.media.features.extract_features` just returned for this project (not run again); None runs it.

    Per-clip score: 1 for a clip in a near-duplicate cluster, else 0. ``flagged``: those clip ids.
    """
    if not isinstance(project, Project):
        raise CliptuneError("the duplicate check reads clip signatures from a project: pass the Project")
    clips = _clips(project)
    signatures, failed = _signatures(project, workers, feature_report)
    pairs, clusters, near_misses = find_near_duplicates(signatures, never=_segment_pairs(clips))
    groups = {c.id: c.group_key for c in clips}
    sides = split_sides(project)
    leaks = leakage(clusters, groups, sides)
    across = [{"clips": cluster, "groups": sorted({groups[c] for c in cluster})} for cluster in clusters
              if len({groups[c] for c in cluster}) > 1]
    in_clusters = sorted(c for cluster in clusters for c in cluster)
    summary = {
        "clips": len(clips), "compared": len(signatures), "failed": failed, "pairs": len(pairs),
        "clusters": len(clusters), "clips_in_clusters": len(in_clusters), "split_clips": len(sides),
        "leaking_clusters": sum(1 for leak in leaks if leak["kind"] == "near_duplicates"),
        "straddling_groups": sum(1 for leak in leaks if leak["kind"] == "group"),
        "clusters_across_groups": len(across),
        "thresholds": {"median_hash_bits": HASH_BITS, "sequence_bits": SEQUENCE_BITS,
                       "detail_permille": DETAIL_PERMILLE, "detail_level": DETAIL_LEVEL, "motion": MOTION_DISTANCE},
    }
    if not sides:
        summary["note"] = "no split in the ledger yet: leakage is checked once a split exists"
    members = set(in_clusters)
    scores = {c.id: (1.0 if c.id in members else 0.0) for c in clips if c.id in signatures}
    return AuditResult("duplicates", scores=scores, flagged=in_clusters, summary=summary,
                       details={"clusters": clusters, "leakage": leaks, "pairs": pairs,
                                "clusters_across_groups": across, "near_misses": near_misses})


def near_duplicate_groups(project: Project, *, workers: int | None = None) -> dict[int, str]:
    """Clip id -> ``"dup:<smallest clip id of its cluster>"`` for every clip in a near-duplicate cluster.

    The split unions these with the group key, so that copies of one clip never straddle train and held-out.
    """
    clips = _clips(project)
    signatures, _ = _signatures(project, workers)
    _, clusters, _ = find_near_duplicates(signatures, never=_segment_pairs(clips))
    return {clip_id: f"dup:{cluster[0]}" for cluster in clusters for clip_id in cluster}

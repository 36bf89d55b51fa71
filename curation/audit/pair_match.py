"""Whether two clips are near-duplicates, and clusters from confirmed pairs: pure functions over the clips'
signatures (:mod:`curation.media.features`), used by the check (:mod:`curation.audit.duplicates`) and the index
(:mod:`curation.audit.duplicate_index`), which both stand above this module.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from curation.audit.content_match import CONTENT_SIMILARITY, content_similarity, prepare
from curation.audit.registration import crop, register
from curation.audit.still_match import (
    HASH_BITS,
    detail_difference,
    popcount,
    still_compare,
)
from curation.media.features import phash

# Clips whose 90th-percentile frame has less foreground energy than this (sum of squared content cells, grey
# levels^2, see curation.audit.content_match) have too little moving content to compare and are compared by their
# still pictures. Measured: the project's own sample's scenes with only a ticking clock reach at most 509;
# tests/fixed_cameras.py clips (two or three people, some far off) at least 901 (seeds 1-4; 566 on seed 5). A
# fixed-camera clip below it meets clips with content through the mixed rule (WEAK_SIMILARITY).
CONTENT_ENERGY = 1000.0
# Clips whose moving content matches: still detail differing by more than VETO_LEVEL grey levels on more than
# DETAIL_VETO per mille of the picture (at the smaller size; a crop registered first) vetoes the match. Measured at
# 8 levels, copies re-encoded at crf 38 reached 4.48 per mille and distinct scenes of the project's sample (same
# camera, another time on the clock) came down to 4.30: no gap. At 16 levels: every rescaled, re-encoded, trimmed,
# brightened and mirrored copy of tests/fixed_cameras.py (seeds 1-4) and of the project's sample 0.0, distinct
# scenes of the sample with content at least 1.06. Cropped copies after registration: 0-6.7 (x264 places its
# blocks elsewhere in a cropped picture): one crop in each of seeds 3, 4 and 7 is vetoed (missed).
VETO_LEVEL = 16.0
# One clip with content, the other with little: the still rule decides only if what moves agrees this well. Both
# with little (but something) moving: at least WEAK_FLOOR. Measured: the project's sample's copies of that kind
# 0.80 and 0.34; tests/fixed_cameras.py (seed 21, 6 cameras x 40 clips), a far-off walker's clip against other
# scenes of its camera 0.52-0.64 with content, 0.10 without.
WEAK_SIMILARITY = 0.75
WEAK_FLOOR = 0.25
DETAIL_VETO = 0.5


def _prepared(signature: dict[str, Any]) -> dict[str, Any]:
    if "prepared" not in signature:
        signature["prepared"] = prepare(signature["content"])
    return signature["prepared"]


def has_content(signature: dict[str, Any]) -> bool:
    """Whether enough moves in the clip for its foreground to be the evidence (see ``CONTENT_ENERGY``)."""
    return _prepared(signature)["energy_p90"] >= CONTENT_ENERGY


def _mirror(signature: dict[str, Any]) -> dict[str, Any]:
    return {**signature, "median": signature["median"][:, ::-1], "unstable": signature["unstable"][:, ::-1]}


def compare(sa: dict[str, Any], sb: dict[str, Any]) -> dict[str, Any]:
    """Whether two clips (:func:`curation.media.features.signature_of`) are near-duplicates, with the evidence.

    Clips where people move are compared by their foreground (:mod:`curation.audit.content_match`): similarity at
    least ``CONTENT_SIMILARITY`` at the best offset and orientation; pictures of one size must also agree in their
    still detail (at most ``DETAIL_VETO`` per mille; mirrored first if the content was), which tells apart scenes
    of one camera whose moving content looks alike but whose background differs (a burned-in clock). Clips where
    (almost) nothing moves are compared by their still pictures (:func:`still_compare`).
    ``mirrored`` is True for a left-right mirrored copy."""
    strong = has_content(sa) + has_content(sb)
    match = content_similarity(_prepared(sa), _prepared(sb))
    both_move = _prepared(sa)["moving"] and _prepared(sb)["moving"]
    if (strong == 1 and match["similarity"] < WEAK_SIMILARITY) or (
            strong == 0 and both_move and match["similarity"] < WEAK_FLOOR):
        # little content in one clip or both: a still rule alone would merge a clockless camera's scenes, so the
        # little that moves must also agree
        return {"rule": "still", "similarity": match["similarity"], "mirrored": False, "near_duplicate": False,
                "failed": "content"}
    if strong < 2:
        return {**still_compare(sa, sb), "mirrored": False}
    evidence: dict[str, Any] = {"rule": "content", "similarity": match["similarity"], "offset_frames": match["offset"],
                                "mirrored": match["mirrored"]}
    if match["similarity"] < CONTENT_SIMILARITY:
        return {**evidence, "near_duplicate": False, "failed": "content"}
    # the same scene: other cameras' clips can show look-alike motion (the project's own sample)
    other_hash = np.uint64(phash(sb["median"][:, ::-1])) if match["mirrored"] else sb["median_hash"]
    evidence["median_hash_bits"] = int(popcount(np.array([sa["median_hash"] ^ other_hash]))[0])
    if evidence["median_hash_bits"] > HASH_BITS:
        return {**evidence, "near_duplicate": False, "failed": "scene"}
    other = _mirror(sb) if match["mirrored"] else sb
    evidence["detail_permille"] = round(detail_difference(sa, other, VETO_LEVEL), 4)
    if evidence["detail_permille"] > DETAIL_VETO:  # perhaps a cropped copy: register the still pictures first
        outer, box = register(sa["median"], other["median"])
        cropped = {key: crop(value, box) for key, value in (sa if outer == "a" else other).items()
                   if key in ("median", "unstable")}
        pair = (cropped, other) if outer == "a" else (sa, cropped)
        evidence["crop"] = [round(side, 4) for side in box] if any(box) else None
        evidence["detail_permille"] = round(detail_difference(*pair, VETO_LEVEL), 4)
        if evidence["detail_permille"] > DETAIL_VETO:
            return {**evidence, "near_duplicate": False, "failed": "still_detail"}
    return {**evidence, "near_duplicate": True, "failed": None}


def cluster_pairs(ids: Iterable[int], pairs: Iterable[tuple[int, int, float]],
                  cannot: Iterable[tuple[int, int]] = ()) -> list[list[int]]:
    """Connected groups (size >= 2) of near-duplicate pairs (a, b, strength), each sorted, ordered by their smallest
    clip id. The strongest pairs join first; a pair that would put two clips known to differ (``cannot``: their
    contents match but their still detail does not) into one group is left out — a downscaled copy that no longer
    shows the clock does not join its original to another scene of that camera."""
    parent: dict[int, int] = {}
    apart: dict[int, set[int]] = {}

    def root(i: int) -> int:
        parent.setdefault(i, i)
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b in cannot:
        apart.setdefault(root(a), set()).add(b)
        apart.setdefault(root(b), set()).add(a)
    for a, b, _ in sorted(pairs, key=lambda p: -p[2]):
        ra, rb = root(a), root(b)
        if ra == rb:
            continue
        if any(root(other) == rb for other in apart.get(ra, ())) or any(root(other) == ra
                                                                         for other in apart.get(rb, ())):
            continue
        parent[rb] = ra
        apart[ra] = apart.get(ra, set()) | apart.pop(rb, set())
    members: dict[int, list[int]] = {}
    for i in ids:
        members.setdefault(root(i), []).append(i)
    return sorted((sorted(m) for m in members.values() if len(m) > 1), key=lambda c: c[0])


def strength(record: dict[str, Any]) -> float:
    """How sure a confirmed pair is, for the order of joining: content similarity (still-rule pairs: 1)."""
    return float(record.get("similarity", 1.0)) if record.get("rule") == "content" else 1.0


def find_near_duplicates(
    signatures: dict[int, dict[str, Any]], *, never: set[frozenset[int]] | None = None,
    candidates: Iterable[tuple[int, int]] | None = None,
) -> tuple[list[dict[str, Any]], list[list[int]], list[dict[str, Any]]]:
    """(near-duplicate pairs with their evidence, clusters of size >= 2, closest pairs that were not merged).

    ``candidates``: the pairs to compare (from the index, :mod:`curation.audit.duplicate_index`); None compares
    every pair (the reference the index is measured against). ``never`` holds pairs known to be distinct
    (segments of one recording) that are not compared.
    """
    ids = sorted(signatures)
    if candidates is None:
        candidates = ((a, b) for index, a in enumerate(ids) for b in ids[index + 1:])
    pairs, near_misses = [], []
    for a, b in candidates:
        if never and frozenset((a, b)) in never:
            continue
        evidence = compare(signatures[a], signatures[b])
        record = {"clips": sorted((a, b)), **evidence}
        if evidence["near_duplicate"]:
            pairs.append(record)
        elif evidence["failed"] in ("still_detail", "motion"):  # close in everything but the last test
            near_misses.append(record)
    clusters = cluster_pairs(ids, [(*r["clips"], strength(r)) for r in pairs], vetoed(near_misses))
    near_misses.sort(key=lambda r: -r.get("similarity", 0.0))
    return pairs, clusters, near_misses[:10]


def vetoed(records: Iterable[dict[str, Any]]) -> list[tuple[int, int]]:
    """Pairs whose content matched but whose still detail did not: known to be different scenes."""
    return [tuple(r["clips"]) for r in records if r.get("rule") == "content" and r.get("failed") == "still_detail"]


# -- project level ---------------------------------------------------------------------------------------------

"""The near-duplicate index, confirmed pairs and clusters, kept in the project store and updated incrementally.

Comparing every pair of clips grows with the square of the project; here each clip gets, once, a short descriptor
of its foreground (where and in what colours things differ from its still background, averaged over the clip:
the signed mean of its content grids, :mod:`curation.audit.content_match`) and ``BANDS`` locality-sensitive keys
(random-hyperplane signs of the descriptor, ``ROWS`` bits a key). A new clip is a candidate against the clips that
share a key with it or with its mirror image; of those, its ``TOP_K`` nearest by descriptor (cosine at least
``RANK_FLOOR``) are compared in full (:func:`curation.audit.pair_match.compare`). Descriptors, keys, confirmed
pairs and the clusters are stored: adding clips compares only pairs with a new clip, and reading the clusters
when nothing was added computes nothing.

Parameters, measured on tests/fixed_cameras.py (seeds 1-4, same-camera pairs): planted copies' descriptors have
cosine >= 0.80 (a trimmed copy; 5 % of copies below 0.90), distinct clips' a median of 0.35, 90 % below 0.61, 99 %
below 0.81. With 10-bit keys a copy at 0.80 shares one of 48 keys with probability 0.994 (at 0.90: 0.99998);
the candidates of a new clip are then ranked, so the full comparisons stay at most ``TOP_K`` per clip (twice that
with the still-picture candidates of clips where little moves). Measured with tests/bench/bench_audit.py (6
cameras, features cached): 1,000 clips 1.3 s, 5,000 clips 10.4 s, growth n^1.27; 8-bit keys (32 of them) made the
buckets four times fuller: 1.6 s and 15.4 s, n^1.4.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from sqlalchemy import JSON, Boolean, Integer, LargeBinary, String, delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from curation.media.features import CONTENT_GRID, EXTRACTOR_VERSION
from curation.records.store import Base, Clip, ClipFeatures, Project
from curation.review.derived import ensure_tables

ROWS = 10  # bits per key
BANDS = 48  # keys per clip
TOP_K = 5  # full comparisons per new clip, at most (a clip and four copies link directly)
RANK_FLOOR = 0.7  # descriptor cosine below which no full comparison is made (copies: >= 0.80)
INDEX_SEED = 20261204  # the random hyperplanes: fixed, so stored keys stay valid
INDEX_VERSION = f"2+features{EXTRACTOR_VERSION}"  # stored keys are valid for this index and extractor only
STATE = "duplicates"


class DuplicateEntry(Base):
    """One indexed clip: its descriptor (float16) and its keys (uint16 x BANDS)."""

    __tablename__ = "duplicate_index"
    clip_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[str] = mapped_column(String(32))
    descriptor: Mapped[bytes] = mapped_column(LargeBinary)
    keys: Mapped[bytes] = mapped_column(LargeBinary)
    # clips where (almost) nothing moves are compared by their still pictures: indexed by their median hash
    weak: Mapped[bool] = mapped_column(Boolean)
    still: Mapped[bytes] = mapped_column(LargeBinary)


class DuplicatePair(Base):
    """A compared pair (a < b) and its evidence: confirmed near-duplicates, and pairs whose content matched but whose
    still detail did not (kept apart when clustering)."""

    __tablename__ = "duplicate_pair"
    a: Mapped[int] = mapped_column(Integer, primary_key=True)
    b: Mapped[int] = mapped_column(Integer, primary_key=True)
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON)


class DuplicateState(Base):
    """The clusters and what they were computed from (clip count and newest clip id at the last update)."""

    __tablename__ = "duplicate_state"
    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    version: Mapped[str] = mapped_column(String(32))
    clip_count: Mapped[int] = mapped_column(Integer)
    max_clip_id: Mapped[int] = mapped_column(Integer)
    clusters: Mapped[list[list[int]]] = mapped_column(JSON)
    near_misses: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    stats: Mapped[dict[str, Any]] = mapped_column(JSON)


TABLES = (DuplicateEntry, DuplicatePair, DuplicateState)


def descriptor(prepared: dict[str, Any], *, mirrored: bool = False) -> np.ndarray:
    """Unit vector: the clip's signed mean foreground colour per content cell, centred."""
    flat = prepared["mirrored"] if mirrored else prepared["flat"]
    mean = flat.mean(axis=0)
    mean = mean - mean.mean()
    return (mean / (np.linalg.norm(mean) + 1e-9)).astype(np.float32)


def _planes() -> np.ndarray:
    size = CONTENT_GRID[0] * CONTENT_GRID[1] * 3
    return np.random.default_rng(INDEX_SEED).standard_normal((size, ROWS * BANDS)).astype(np.float32)


def keys_of(vectors: np.ndarray, planes: np.ndarray) -> np.ndarray:
    """(n, BANDS) uint16 keys: each band's ROWS hyperplane signs as one number."""
    bits = (vectors @ planes > 0).reshape(len(vectors), BANDS, ROWS)
    return (bits.astype(np.uint16) << np.arange(ROWS, dtype=np.uint16)).sum(axis=2, dtype=np.uint16)


def candidate_pairs(new_ids: list[int], new_vectors: np.ndarray, new_mirrored: np.ndarray, new_keys: np.ndarray,
                    new_mirrored_keys: np.ndarray, old_ids: list[int], old_vectors: np.ndarray,
                    old_keys: np.ndarray) -> list[tuple[int, int, float]]:
    """(a, b, descriptor cosine) pairs to compare in full: each new clip against every indexed and new clip that
    shares a key with it or with its mirror image, its ``TOP_K`` nearest kept (cosine >= ``RANK_FLOOR``)."""
    if not new_ids:
        return []
    ids = np.array(old_ids + new_ids, dtype=np.int64)
    vectors = np.concatenate([old_vectors, new_vectors]) if len(old_ids) else new_vectors
    keys = np.concatenate([old_keys, new_keys]) if len(old_ids) else new_keys
    first_new = len(old_ids)
    buckets: list[dict[int, np.ndarray]] = []
    for band in range(keys.shape[1]):
        order = np.argsort(keys[:, band], kind="stable")
        sorted_keys = keys[order, band]
        starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
        stops = np.r_[starts[1:], len(order)]
        buckets.append({int(sorted_keys[s]): order[s:e] for s, e in zip(starts, stops, strict=True)})
    empty = np.empty(0, dtype=np.int64)
    found: dict[tuple[int, int], float] = {}
    for offset, clip_id in enumerate(new_ids):
        row = first_new + offset
        members = np.unique(np.concatenate([buckets[band].get(int(query[band]), empty)
                                            for query in (new_keys[offset], new_mirrored_keys[offset])
                                            for band in range(keys.shape[1])]))
        members = members[members != row]
        if not len(members):
            continue
        cosine = np.maximum(vectors[members] @ new_vectors[offset], vectors[members] @ new_mirrored[offset])
        keep = np.argsort(-cosine)[:TOP_K]
        for index in keep[cosine[keep] >= RANK_FLOOR]:
            other = int(ids[members[index]])
            pair = (min(clip_id, other), max(clip_id, other))
            found[pair] = max(found.get(pair, -1.0), float(cosine[index]))
    return [(a, b, c) for (a, b), c in sorted(found.items())]


def still_vectors(hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The median hashes as +-1 unit vectors (cosine 1 - 2 x Hamming / 64) and as 8 one-byte keys: two hashes within
    7 bits share a key (pigeonhole), and still-picture copies differ in 0-4 bits."""
    bits = np.unpackbits(hashes.astype(">u8").view(np.uint8).reshape(-1, 8), axis=1).astype(np.float32)
    return (2 * bits - 1) / 8.0, hashes.astype(">u8").view(np.uint8).reshape(-1, 8)


def _load_signatures(project: Project, clip_ids: list[int]) -> dict[int, dict[str, Any]]:
    from curation.media.features import signature_of

    out: dict[int, dict[str, Any]] = {}
    with project.session() as session:
        for start in range(0, len(clip_ids), 2000):
            chunk = clip_ids[start:start + 2000]
            rows = session.execute(select(ClipFeatures.clip_id, ClipFeatures.values).where(
                ClipFeatures.version == EXTRACTOR_VERSION, ClipFeatures.clip_id.in_(chunk)))
            out.update({clip_id: signature_of(values) for clip_id, values in rows})
    return out


def _clip_watermark(session: Any) -> tuple[int, int]:
    return session.scalar(select(func.count(Clip.id))) or 0, session.scalar(select(func.max(Clip.id))) or 0


def stored_state(project: Project) -> DuplicateState | None:
    """The stored clusters if they are current (same index version, no clip added since), else None."""
    ensure_tables(project, *TABLES)
    with project.session() as session:
        state = session.get(DuplicateState, STATE)
        if state is None or state.version != INDEX_VERSION or (state.clip_count, state.max_clip_id) != \
                _clip_watermark(session):
            return None
        return state


def update_index(project: Project, never: set[frozenset[int]], *, failed: list[dict[str, Any]] | None = None
                 ) -> DuplicateState:
    """Index the clips that have features but no index entry, compare their candidate pairs, store the confirmed
    pairs and the clusters. ``never``: pairs known to be distinct (segments of one recording); ``failed``: clips
    whose media could not be read (kept with the state, so a later read still names them)."""
    from curation.audit.pair_match import _prepared, cluster_pairs, compare, has_content, strength, vetoed

    ensure_tables(project, *TABLES)
    started = time.perf_counter()
    with project.session() as session:
        watermark = _clip_watermark(session)
        state = session.get(DuplicateState, STATE)
        stale = state is not None and state.version != INDEX_VERSION
    if stale:  # another extractor or index version: start again, never mix
        with project.write() as session:
            for table in TABLES:
                session.execute(delete(table))
        state = None
    with project.session() as session:
        old = session.execute(select(DuplicateEntry.clip_id, DuplicateEntry.descriptor, DuplicateEntry.keys,
                                     DuplicateEntry.weak, DuplicateEntry.still)
                              .where(DuplicateEntry.version == INDEX_VERSION).order_by(DuplicateEntry.clip_id)).all()
        featured = set(session.scalars(select(ClipFeatures.clip_id).where(ClipFeatures.version == EXTRACTOR_VERSION)))
    indexed = {row.clip_id for row in old}
    new_ids = sorted(featured - indexed)
    signatures = _load_signatures(project, new_ids)
    new_ids = sorted(signatures)
    planes = _planes()
    size = planes.shape[0]
    if new_ids:
        prepared = [_prepared(signatures[i]) for i in new_ids]
        new_vectors = np.stack([descriptor(p) for p in prepared])
        new_mirrored = np.stack([descriptor(p, mirrored=True) for p in prepared])
    else:
        new_vectors = new_mirrored = np.empty((0, size), np.float32)
    new_keys, new_mirrored_keys = keys_of(new_vectors, planes), keys_of(new_mirrored, planes)
    old_ids = [row.clip_id for row in old]
    old_vectors = (np.stack([np.frombuffer(row.descriptor, np.float16).astype(np.float32) for row in old])
                   if old else np.empty((0, size), np.float32))
    old_keys = (np.stack([np.frombuffer(row.keys, np.uint16) for row in old]) if old
                else np.empty((0, BANDS), np.uint16))
    found = candidate_pairs(new_ids, new_vectors, new_mirrored, new_keys, new_mirrored_keys, old_ids, old_vectors,
                            old_keys)
    # still-picture candidates: every new clip against the weak ones (old and new), by median hash
    new_weak = {i for i, signature in signatures.items() if not has_content(signature)}
    new_hashes = np.array([signatures[i]["median_hash"] for i in new_ids], dtype=np.uint64)
    new_still, new_still_keys = still_vectors(new_hashes)
    weak_old = [row for row in old if row.weak]
    old_still, old_still_keys = still_vectors(np.array([np.frombuffer(row.still, ">u8")[0] for row in weak_old],
                                                       dtype=np.uint64))
    weak_ids = {row.clip_id for row in weak_old} | new_weak
    found += [c for c in candidate_pairs(new_ids, new_still, new_still, new_still_keys, new_still_keys,
                                         [row.clip_id for row in weak_old], old_still, old_still_keys)
              if c[0] in weak_ids or c[1] in weak_ids]
    best: dict[tuple[int, int], float] = {}
    for a, b, cosine in found:
        best[(a, b)] = max(best.get((a, b), -1.0), cosine)
    candidates = [(a, b, c) for (a, b), c in sorted(best.items()) if frozenset((a, b)) not in never]
    needed = sorted({i for a, b, _ in candidates for i in (a, b)} - set(signatures))
    signatures.update(_load_signatures(project, needed))
    confirmed, misses, vetoes = [], list(state.near_misses) if state is not None else [], []
    for a, b, cosine in candidates:
        evidence = {"clips": [a, b], **compare(signatures[a], signatures[b]), "descriptor_cosine": round(cosine, 4)}
        if evidence["near_duplicate"]:
            confirmed.append(evidence)
        elif evidence["failed"] in ("still_detail", "motion"):
            misses.append(evidence)
            if vetoed([evidence]):
                vetoes.append(evidence)
    misses = sorted(misses, key=lambda r: -r.get("similarity", 0.0))[:10]
    try:
        _write(project, new_ids, new_vectors, new_keys, new_hashes, new_weak, confirmed + vetoes)
    except IntegrityError:  # another process indexed some of these clips meanwhile: index what is left
        return update_index(project, never, failed=failed)
    with project.session() as session:
        stored = [evidence for (evidence,) in session.execute(select(DuplicatePair.evidence))]
    links = [(*e["clips"], strength(e)) for e in stored if e["near_duplicate"]]
    clusters = cluster_pairs(sorted(indexed | set(new_ids)), links, vetoed(stored))
    stats = {"indexed": len(indexed) + len(new_ids), "added": len(new_ids), "candidates": len(candidates),
             "confirmed": len(confirmed), "seconds": round(time.perf_counter() - started, 3), "failed": failed or []}
    result = DuplicateState(name=STATE, version=INDEX_VERSION, clip_count=watermark[0], max_clip_id=watermark[1],
                            clusters=clusters, near_misses=misses, stats=stats)
    with project.write() as session:
        session.merge(result)
    return result


def _write(project: Project, ids: list[int], vectors: np.ndarray, keys: np.ndarray, hashes: np.ndarray,
           weak: set[int], pairs: list[dict[str, Any]]) -> None:
    """New index entries and compared pairs (confirmed, and vetoed ones: content alike, still detail not, kept
    apart when clustering), in one transaction."""
    with project.write() as session:
        session.add_all(DuplicateEntry(clip_id=i, version=INDEX_VERSION, keys=k.tobytes(),
                                       descriptor=v.astype(np.float16).tobytes(), weak=i in weak,
                                       still=np.array([h], dtype=">u8").tobytes())
                        for i, v, k, h in zip(ids, vectors, keys, hashes, strict=True))
        session.add_all(DuplicatePair(a=e["clips"][0], b=e["clips"][1], evidence=e) for e in pairs)


def stored_pairs(project: Project) -> list[dict[str, Any]]:
    ensure_tables(project, *TABLES)
    with project.session() as session:
        rows = session.execute(select(DuplicatePair.evidence).order_by(DuplicatePair.a, DuplicatePair.b))
        return [evidence for (evidence,) in rows if evidence["near_duplicate"]]

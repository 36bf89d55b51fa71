"""Near-duplicates and leakage: re-encoded, rescaled, trimmed, brightened, cropped or mirrored copies of one clip,
and splits that put copies (or one group) on both sides.

Ingest already drops byte-identical files; this finds copies that differ in bytes. Each clip's signature is
computed once with its features (:mod:`curation.media.features`). A fixed camera's background is no evidence that
two clips are copies, so clips where people move are compared by **what happens** (:func:`compare`):

1. **content** (:mod:`curation.audit.content_match`): the foreground (each frame minus the clip's still
   background) on a size-independent grid, correlated at the best time offset and orientation, must reach
   ``CONTENT_SIMILARITY``; a mirrored copy is found this way and reported as ``mirrored``;
2. **scene**: the median pictures' perceptual hashes (mirrored if the content was) differ in at most
   ``HASH_BITS`` of 64 — clips of other cameras can show look-alike motion;
3. **still detail veto**: clips whose content matches must also agree in their still detail (at most
   ``DETAIL_VETO`` per mille differing by more than ``VETO_LEVEL`` levels, at the smaller picture's size, after
   registering a crop of up to 5 % a side, :mod:`curation.audit.registration`) — scenes of one camera with
   look-alike motion but another time on a burned-in clock differ there.

Clips where (almost) nothing moves (``CONTENT_ENERGY``) have no content to compare and keep the still-picture
tests (:func:`still_compare`: median hash, frame hashes, still detail at ``DETAIL_PERMILLE``, where motion happens);
a clockless camera's empty scenes are alike in every respect and are merged by them.

Candidate pairs come from an index kept in the project store (:mod:`curation.audit.duplicate_index`), not from
all pairs; confirmed pairs and clusters are stored, and adding clips compares only pairs with a new clip.

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

from sqlalchemy import func, select

from curation.audit.content_match import CONTENT_SIMILARITY
from curation.audit.pair_match import (  # noqa: F401 - compare and find_near_duplicates are this check's API too
    CONTENT_ENERGY,
    DETAIL_VETO,
    VETO_LEVEL,
    WEAK_FLOOR,
    WEAK_SIMILARITY,
    cluster_pairs,
    compare,
    find_near_duplicates,
    has_content,
    strength,
    vetoed,
)
from curation.audit.result import AuditResult
from curation.audit.still_match import (  # noqa: F401 - re-exported: the still tests were defined here before
    DETAIL_LEVEL,
    DETAIL_PERMILLE,
    HASH_BITS,
    MOTION_DISTANCE,
    SEQUENCE_BITS,
    _cells,
    detail_difference,
    motion_distance,
    popcount,
    sequence_distance,
    still_compare,
)
from curation.errors import CliptuneError
from curation.media.features import FeatureReport
from curation.records.store import Clip, Project, SplitEntry


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


def refresh(project: Project, *, workers: int | None = None, feature_report: FeatureReport | None = None,
            clips: list[Clip] | None = None) -> tuple[Any, list[dict[str, Any]]]:
    """The stored near-duplicate state, brought up to date: (state, clips whose media could not be read).

    When no clip was added since the last update nothing is decoded or compared; otherwise features are extracted
    for new clips (unless ``feature_report`` says that was just done) and only pairs with a new clip compared."""
    from curation.audit.duplicate_index import stored_state, update_index
    from curation.media.features import extract_features

    state = stored_state(project)
    if state is not None and feature_report is None:
        return state, list(state.stats.get("failed", []))
    report = feature_report if feature_report is not None else extract_features(project, workers=workers)
    clips = clips if clips is not None else _clips(project)
    state = update_index(project, _segment_pairs(clips), failed=report.failed)
    return state, report.failed


def check_duplicates(project: Project, *, workers: int | None = None,
                     feature_report: FeatureReport | None = None) -> AuditResult:
    """Near-duplicate clusters and split leakage; see the module docstring. ``feature_report``: what
    :func:`curation.media.features.extract_features` just returned for this project (not run again); None runs it.

    Per-clip score: 1 for a clip in a near-duplicate cluster, else 0. ``flagged``: those clip ids.
    """
    from curation.audit.duplicate_index import stored_pairs
    from curation.media.features import EXTRACTOR_VERSION
    from curation.records.store import ClipFeatures

    if not isinstance(project, Project):
        raise CliptuneError("the duplicate check reads clip signatures from a project: pass the Project")
    clips = _clips(project)
    state, failed = refresh(project, workers=workers, feature_report=feature_report, clips=clips)
    pairs, clusters, near_misses = stored_pairs(project), state.clusters, state.near_misses
    with project.session() as session:
        compared = set(session.scalars(select(ClipFeatures.clip_id).where(ClipFeatures.version == EXTRACTOR_VERSION)))
    groups = {c.id: c.group_key for c in clips}
    sides = split_sides(project)
    leaks = leakage(clusters, groups, sides)
    across = [{"clips": cluster, "groups": sorted({groups[c] for c in cluster})} for cluster in clusters
              if len({groups[c] for c in cluster}) > 1]
    in_clusters = sorted(c for cluster in clusters for c in cluster)
    mirrored = [pair["clips"] for pair in pairs if pair.get("mirrored")]
    summary = {
        "clips": len(clips), "compared": len(compared), "failed": failed, "pairs": len(pairs),
        "mirrored_pairs": len(mirrored),
        "clusters": len(clusters), "clips_in_clusters": len(in_clusters), "split_clips": len(sides),
        "leaking_clusters": sum(1 for leak in leaks if leak["kind"] == "near_duplicates"),
        "straddling_groups": sum(1 for leak in leaks if leak["kind"] == "group"),
        "clusters_across_groups": len(across), "index": {k: v for k, v in state.stats.items() if k != "failed"},
        "thresholds": {"content_similarity": CONTENT_SIMILARITY, "content_energy": CONTENT_ENERGY,
                       "detail_veto_permille": DETAIL_VETO, "veto_level": VETO_LEVEL,
                       "median_hash_bits": HASH_BITS, "sequence_bits": SEQUENCE_BITS,
                       "detail_permille": DETAIL_PERMILLE, "detail_level": DETAIL_LEVEL, "motion": MOTION_DISTANCE},
    }
    if not sides:
        summary["note"] = "no split in the ledger yet: leakage is checked once a split exists"
    members = set(in_clusters)
    scores = {c.id: (1.0 if c.id in members else 0.0) for c in clips if c.id in compared}
    return AuditResult("duplicates", scores=scores, flagged=in_clusters, summary=summary,
                       details={"clusters": clusters, "leakage": leaks, "pairs": pairs, "mirrored": mirrored,
                                "clusters_across_groups": across, "near_misses": near_misses})


def near_duplicate_groups(project: Project, *, workers: int | None = None) -> dict[int, str]:
    """Clip id -> ``"dup:<smallest clip id of its cluster>"`` for every clip in a near-duplicate cluster.

    The split unions these with the group key, so that copies of one clip never straddle train and held-out.
    Read from the stored clusters: nothing is decoded or compared when no clip was added since the last audit.
    """
    state, _ = refresh(project, workers=workers)
    return {clip_id: f"dup:{cluster[0]}" for cluster in state.clusters for clip_id in cluster}

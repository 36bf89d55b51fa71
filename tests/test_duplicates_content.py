"""Near-duplicates by what happens, on fixed cameras without a clock (tests/fixed_cameras.py): different people
walking to the same door are different clips, and every kind of copy (rescaled 0.5-2x, crf 38, trimmed, +-40
levels, cropped, mirrored) is found; candidates come from the stored index, and the stored clusters are read back
without recomputing anything."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from fixed_cameras import COPY_KINDS, generate
from sqlalchemy import select

from curation.audit.content_match import content_similarity, prepare
from curation.audit.duplicate_index import DuplicateState, candidate_pairs, descriptor, keys_of, stored_state
from curation.audit.duplicates import check_duplicates, find_near_duplicates, near_duplicate_groups
from curation.media import features
from curation.records.store import Clip, ClipFeatures, Project

RUBRIC = Path(__file__).resolve().parent.parent / "rubrics" / "surveillance_alert.yaml"


def _walk(rng: np.random.Generator, frames: int = 12) -> np.ndarray:
    """Content grids (frames, 12, 16, 3) of a coloured blob crossing the picture along a random path."""
    cells = np.zeros((frames, 12, 16, 3), np.float32)
    start, end = rng.uniform(0, [11, 15]), rng.uniform(0, [11, 15])
    colour = rng.uniform(-120, 120, 3)
    for t in range(frames):
        y, x = (start + (end - start) * t / (frames - 1)).astype(int)
        cells[t, y, x] = colour
    return cells


def test_content_matches_copies_in_time_and_mirror_but_not_other_walks() -> None:
    rng = np.random.default_rng(3)
    clip = _walk(rng) + _walk(rng)
    other = _walk(rng) + _walk(rng)
    same = content_similarity(prepare(clip), prepare(clip[3:]))  # trimmed: three frames cut
    assert same["similarity"] > 0.99 and same["offset"] == 3 and not same["mirrored"]
    flipped = content_similarity(prepare(clip), prepare(clip[:, :, ::-1]))
    assert flipped["similarity"] > 0.99 and flipped["mirrored"]
    assert content_similarity(prepare(clip), prepare(other))["similarity"] < 0.5
    still = np.zeros_like(clip)
    assert content_similarity(prepare(still), prepare(still))["similarity"] == 0.0


def test_the_index_proposes_a_mirrored_copy_and_few_others() -> None:
    rng = np.random.default_rng(4)
    clips = [prepare(_walk(rng) + _walk(rng) + _walk(rng)) for _ in range(40)]
    copy = prepare(np.stack([c.reshape(12, 16, 3)[:, ::-1] for c in clips[7]["flat"]]))
    from curation.audit import duplicate_index

    planes = duplicate_index._planes()
    vectors = np.stack([descriptor(c) for c in clips])
    new = descriptor(copy)[None]
    new_mirrored = descriptor(copy, mirrored=True)[None]
    pairs = candidate_pairs([100], new, new_mirrored, keys_of(new, planes), keys_of(new_mirrored, planes),
                            list(range(40)), vectors, keys_of(vectors, planes))
    assert (7, 100) in {(a, b) for a, b, _ in pairs}
    assert len(pairs) <= duplicate_index.TOP_K


def _signatures(folder: Path, rows: list[dict]) -> dict[int, dict]:
    from curation.media.video import sample_frames

    return {i: features.signature_of(features.frame_features(sample_frames(
        folder / row["file"], fps=features.SAMPLE_FPS, num_frames=features.MAX_FRAMES,
        max_height=features.MAX_HEIGHT))) for i, row in enumerate(rows)}


@pytest.mark.slow
def test_sixty_distinct_clips_of_three_clockless_cameras_make_no_cluster(tmp_path: Path) -> None:
    rows = generate(tmp_path / "control", n_cameras=3, clips_per_camera=20, copies=0, seed=11)
    _, clusters, _ = find_near_duplicates(_signatures(tmp_path / "control", rows))
    assert clusters == []


@pytest.fixture(scope="module")
def fixed(tmp_path_factory: pytest.TempPathFactory):
    """3 cameras x 8 distinct clips + one copy of each kind, ingested; the planted pairs by clip id."""
    from curation.media.ingest import ingest

    root = tmp_path_factory.mktemp("fixed")
    rows = generate(root / "clips", n_cameras=3, clips_per_camera=8, copies=len(COPY_KINDS), seed=8)
    held = next(r for r in rows if r["kind"] == "mirror")  # ingested later, to test the incremental update
    shutil.move(root / "clips" / held["file"], root / "later.mp4")
    project = Project.init(root / "project", RUBRIC)
    report = ingest(project, [root / "clips"], workers=1, proxy_height=240)
    assert report.added == len(rows) - 1 and not report.failed
    with project.session() as session:
        ids = {Path(clip.path).name: clip.id for clip in session.scalars(select(Clip))}
    return project, root, rows, held, ids


def _planted(rows: list[dict], ids: dict[str, int]) -> dict[frozenset[int], str]:
    name = {r["file"]: Path(r["file"]).name for r in rows}
    return {frozenset((ids[name[r["file"]]], ids[name[r["copy_of"]]])): r["kind"] for r in rows
            if r["copy_of"] and name[r["file"]] in ids}


@pytest.mark.slow
def test_every_kind_of_copy_is_found_and_distinct_walks_are_not(fixed) -> None:
    project, _, rows, _, ids = fixed
    planted = _planted(rows, ids)
    result = check_duplicates(project)
    found = {frozenset(pair["clips"]) for pair in result.details["pairs"]}
    assert found == set(planted), ({planted.get(p) for p in set(planted) - found}, found - set(planted))
    assert result.summary["clusters"] == len(planted) and result.summary["mirrored_pairs"] == 0
    index = result.summary["index"]
    # the index proposed far fewer pairs than all pairs (33 clips: 528)
    assert index["indexed"] == len(ids) and index["candidates"] < 528 // 4
    json.dumps(result.to_dict())


@pytest.mark.slow
def test_stored_clusters_are_read_back_and_a_new_clip_is_added_incrementally(fixed) -> None:
    project, root, rows, held, ids = fixed
    check_duplicates(project)
    before = stored_state(project)
    assert before is not None
    started = time.perf_counter()
    groups = near_duplicate_groups(project)
    assert time.perf_counter() - started < 2.0
    with project.session() as session:
        assert session.get(DuplicateState, "duplicates").stats == before.stats  # nothing was recomputed
    assert len(groups) == 2 * len(_planted(rows, ids))
    # the mirrored copy arrives: only its own candidates are compared, and it joins its original, as mirrored
    from curation.media.ingest import ingest

    (root / "more").mkdir()
    shutil.move(root / "later.mp4", root / "more" / Path(held["file"]).name)
    ingest(project, [root / "more"], workers=1, proxy_height=240)
    with project.session() as session:
        ids = {Path(clip.path).name: clip.id for clip in session.scalars(select(Clip))}
    groups = near_duplicate_groups(project)
    copy, original = ids[Path(held["file"]).name], ids[Path(held["copy_of"]).name]
    assert groups[copy] == groups[original] == f"dup:{min(copy, original)}"
    state = stored_state(project)
    from curation.audit.duplicate_index import TOP_K

    # content candidates and still-picture candidates, at most TOP_K each
    assert state.stats["added"] == 1 and state.stats["candidates"] <= 2 * TOP_K
    result = check_duplicates(project)
    assert [min(copy, original), max(copy, original)] in result.details["mirrored"]


@pytest.mark.slow
def test_features_of_an_older_extractor_are_recomputed_not_misread(fixed) -> None:
    project, *_ = fixed
    with project.write() as session:
        clip_id = session.scalars(select(Clip.id)).first()
        session.add(ClipFeatures(clip_id=clip_id, version="1", values={"signature": {"hashes": []}}))
    assert features.EXTRACTOR_VERSION != "1"
    loaded = features.load_features(project)
    assert "content" in loaded[clip_id]["signature"]  # the current version's row, not the old one


def test_a_project_without_clips_has_no_clusters_and_reads_back(tmp_path: Path) -> None:
    project = Project.init(tmp_path / "empty", RUBRIC)
    result = check_duplicates(project)
    assert result.details["clusters"] == [] and result.summary["compared"] == 0
    assert stored_state(project) is not None and near_duplicate_groups(project) == {}

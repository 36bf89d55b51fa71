"""Local shortcuts on real clips: a static corner mark that follows a class is flagged and its place named, with six
cameras and with one; the same mark spread evenly over the classes, and footage with no mark, flag nothing."""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from overlays import Mark, labels_jsonl, write_sample

from curation.audit.local_figure import local_shortcut_figure
from curation.audit.local_shortcuts import check_local_shortcuts, place_in_words, relit
from curation.audit.result import AuditInputs
from curation.errors import CliptuneError
from curation.media.regions import REGIONS_VERSION, extract_regions, load_regions, region_maps

RUBRIC = Path(__file__).resolve().parent.parent / "rubrics" / "surveillance_alert.yaml"
PERMUTATIONS = 199  # p-values down to 0.005, below alpha 0.01; the default 999 only refines them
EVENTS = ["INTRUSION", "TAILGATING", "NO_ACTIVITY", "NORMAL_ENTRY"]


def _events(n_cameras: int, per_camera: int) -> list[str]:
    """Per camera: a fifth INTRUSION, a fifth TAILGATING, the rest NO_ACTIVITY and NORMAL_ENTRY."""
    rare = max(2, round(per_camera / 5))
    common = per_camera - 2 * rare
    pattern = ["INTRUSION"] * rare + ["TAILGATING"] * rare + ["NO_ACTIVITY"] * (common // 2)
    return (pattern + ["NORMAL_ENTRY"] * (per_camera - len(pattern))) * n_cameras


def _marked(events: list[str], n_others: int) -> set[int]:
    """All INTRUSION clips but one (>= 90 %), and ``n_others`` of the rest spread over the list (<= 5 %)."""
    intrusion = [i for i, e in enumerate(events) if e == "INTRUSION"]
    others = [i for i, e in enumerate(events) if e != "INTRUSION"]
    picked = set(intrusion[1:]) | {others[k] for k in np.linspace(3, len(others) - 4, n_others).astype(int)}
    assert len(intrusion) - 1 >= 0.9 * len(intrusion) and n_others <= 0.05 * len(others)
    return picked


def _project(root: Path, *, n_cameras: int, per_camera: int, marked: set[int], mark: Mark, seed: int):
    from curation.media.ingest import ingest
    from curation.records.imports import import_annotations
    from curation.records.store import Project

    events = _events(n_cameras, per_camera)
    clips = write_sample(root / "clips", n_cameras=n_cameras, clips_per_camera=per_camera, marked=marked, mark=mark,
                         seed=seed)
    project = Project.init(root / "project", RUBRIC)
    report = ingest(project, [root / "clips"], metadata=root / "clips" / "cameras.csv", group_by="camera", workers=2)
    assert report.added == len(clips) and not report.failed
    assert import_annotations(project, labels_jsonl(root / "answers.jsonl", clips, events),
                              create_users=True).imported == len(clips)
    assert extract_regions(project, workers=2).computed == len(clips)
    return project, clips, events


@pytest.fixture(scope="module")
def six_cameras(tmp_path_factory: pytest.TempPathFactory):
    events = _events(6, 10)
    return _project(tmp_path_factory.mktemp("six"), n_cameras=6, per_camera=10, marked=_marked(events, 2),
                    mark=Mark("bottom-right", 0.005), seed=1)


@pytest.fixture(scope="module")
def one_camera(tmp_path_factory: pytest.TempPathFactory):
    events = _events(1, 48)
    # Placed across cell borders (top-left, 10 % in from the edges): the mark is split over four grid cells.
    return _project(tmp_path_factory.mktemp("one"), n_cameras=1, per_camera=48, marked=_marked(events, 1),
                    mark=Mark("top-left", 0.005, margin=0.1), seed=2)


def _evenly(events: list[str], marked: set[int]) -> list[str]:
    """The same clips relabelled so that every class has the same share of marked clips (largest remainders),
    classes dealt in turn so that each camera gets its mix."""
    counts = pd.Series(events).value_counts()
    exact = {e: counts[e] * len(marked) / len(events) for e in EVENTS}
    quota = {e: int(exact[e]) for e in EVENTS}
    for e in sorted(EVENTS, key=lambda e: int(exact[e]) - exact[e])[: len(marked) - sum(quota.values())]:
        quota[e] += 1
    relabelled = [""] * len(events)
    for indices, share in ((sorted(marked), quota), ([i for i in range(len(events)) if i not in marked],
                                                      {e: int(counts[e]) - quota[e] for e in EVENTS})):
        deck = [e for e in EVENTS for _ in range(share[e])]
        deck = [deck[k] for k in np.argsort(np.arange(len(deck)) % max(1, len(deck) // 4), kind="stable")]
        for index, event in zip(indices, deck, strict=True):
            relabelled[index] = event
    assert sorted(relabelled) == sorted(events)
    shares = {e: np.mean([i in marked for i in range(len(events)) if relabelled[i] == e]) for e in EVENTS}
    assert max(shares.values()) - min(shares.values()) < 0.1, shares
    return relabelled


def _with_labels(project, events: list[str]) -> AuditInputs:
    inputs = AuditInputs.from_project(project, features=False)
    labels = inputs.labels.copy()
    labels["event"] = events  # clip ids are in ingest order, which is the generator's order
    return replace(inputs, labels=labels)


def _assert_found(result, *, where: str, n_class: int, n_marked_class: int,
                  share: tuple[float, float] = (0.002, 0.015)) -> dict:
    assert len(result.flagged) == 1, [f["message"] for f in result.flagged]
    finding = result.flagged[0]
    assert (finding["field"], finding["value"], finding["where"]) == ("event", "INTRUSION", where)
    assert finding["p_value"] <= 0.01 and finding["score"] >= 0.7
    assert finding["n_class"] == n_class and finding["carriers"]["class"] >= n_marked_class - 1
    assert finding["carriers"]["rest"] <= 2
    assert share[0] <= finding["share"] <= share[1], finding["share"]  # planted: 0.5 % of the picture (default)
    assert finding["what"] in ("a static coloured mark", "extra static detail (text, a logo, a pattern)")
    assert finding["message"].startswith(f"event=INTRUSION: {where}, about ")
    assert f"of {n_class} INTRUSION clips" in finding["message"]
    return finding


def test_a_corner_mark_on_one_class_is_flagged_and_placed_with_six_cameras(six_cameras) -> None:
    project, clips, events = six_cameras
    result = check_local_shortcuts(project, n_permutations=PERMUTATIONS)
    finding = _assert_found(result, where="bottom-right corner", n_class=12, n_marked_class=11)
    assert finding["box"][0] > 0.8 and finding["box"][1] > 0.75  # the box's top-left corner
    assert result.summary["groups"] == 6 and result.summary["compared_with_whole_project"] == 0
    marked = {i + 1 for i, c in enumerate(clips) if c["marked"] and events[i] == "INTRUSION"}
    carrying = {clip for clip, score in result.scores.items() if score > 0}
    assert carrying <= marked and len(carrying) >= 10
    json.dumps(result.to_dict())  # JSON-ready

    figure = local_shortcut_figure(project, finding)
    import cv2

    picture = cv2.imdecode(np.frombuffer(figure["png"], np.uint8), cv2.IMREAD_COLOR)
    assert picture.shape[1] >= 320 and figure["data_uri"].startswith("data:image/png;base64,")
    assert base64.b64decode(figure["data_uri"].split(",", 1)[1]) == figure["png"]
    assert figure["text"] == finding["message"] and figure["clip_id"] in marked
    assert "middle frame" in figure["caption"]
    # The heat is in the bottom-right: the hottest pixel of the heat map lies there.
    from curation.media.features import decode_png

    heat = decode_png(finding["heat_png"])
    row, col = np.unravel_index(np.argmax(heat), heat.shape)
    assert row > 0.75 * heat.shape[0] and col > 0.75 * heat.shape[1]


def test_the_same_mark_spread_evenly_over_the_classes_flags_nothing(six_cameras, one_camera) -> None:
    for project, clips, events in (six_cameras, one_camera):
        marked = {i for i, c in enumerate(clips) if c["marked"]}
        result = check_local_shortcuts(project, inputs=_with_labels(project, _evenly(events, marked)),
                                       n_permutations=PERMUTATIONS)
        assert result.flagged == [], [f["message"] for f in result.flagged]
        assert result.summary["tested"] == 4 * result.summary["features"]  # every class was tested


def test_a_mark_split_over_four_cells_is_found_with_one_camera(one_camera) -> None:
    project, _, _ = one_camera
    result = check_local_shortcuts(project, n_permutations=PERMUTATIONS)
    _assert_found(result, where="top-left corner", n_class=10, n_marked_class=9)
    assert result.summary["groups"] == 1
    notes = set(result.summary["folds"].values())
    assert all("not grouped" in note for note in notes)  # one camera: folds cannot be grouped, and it says so


def test_a_large_mark_is_one_finding_and_does_not_spill_over_the_picture(tmp_path: Path) -> None:
    """A 4 % logo changes the clip's overall colour a little: the lighting fit must not carry that to far cells,
    and the several cells it covers make one finding, not several."""
    events = _events(6, 10)
    project, _, _ = _project(tmp_path, n_cameras=6, per_camera=10, marked=_marked(events, 2),
                             mark=Mark("bottom-left", 0.04), seed=31)
    result = check_local_shortcuts(project, n_permutations=PERMUTATIONS)
    finding = _assert_found(result, where="bottom-left corner", n_class=12, n_marked_class=11, share=(0.03, 0.06))
    assert len(finding["cells"]) >= 2


def test_footage_without_a_mark_flags_nothing(tmp_path: Path) -> None:
    project, _, events = _project(tmp_path, n_cameras=6, per_camera=10, marked=set(), mark=Mark(), seed=1)
    result = check_local_shortcuts(project, n_permutations=PERMUTATIONS)
    assert result.flagged == [], [f["message"] for f in result.flagged]
    assert result.summary["tested"] > 0 and all(score == 0 for score in result.scores.values())
    # Labels drawn at random on the same clips: the max-statistic keeps false alarms at <= 1 % per run.
    rng = np.random.default_rng(5)
    alarms = 0
    for seed in range(3):
        shuffled = rng.permutation(events).tolist()
        alarms += len(check_local_shortcuts(project, inputs=_with_labels(project, shuffled), random_state=seed,
                                            n_permutations=PERMUTATIONS).flagged)
    assert alarms == 0


# -- parts --------------------------------------------------------------------------------------------------------


def test_place_in_words() -> None:
    assert place_in_words((0.85, 0.8, 0.95, 0.95)) == "bottom-right corner"
    assert place_in_words((0.0, 0.0, 0.1, 0.1)) == "top-left corner"
    assert place_in_words((0.4, 0.0, 0.6, 0.1)) == "top edge, middle"
    assert place_in_words((0.0, 0.4, 0.1, 0.6)) == "left edge, half-way down"
    assert place_in_words((0.4, 0.4, 0.6, 0.6)) == "centre of the picture"


def test_relit_undoes_a_clip_gain_and_offset_but_keeps_a_mark() -> None:
    rng = np.random.default_rng(0)
    scene = rng.uniform(40, 200, (48, 64, 3))
    stills = np.stack([scene * g + o for g, o in [(1.0, 0), (1.0, 0), (0.9, -8), (1.1, 9), (1.0, 0)]])
    stills[3, 40:44, 56:60] = (235, 150, 20)
    back = relit(stills, np.array(["cam"] * 5, dtype=object))
    clean = np.ones((48, 64), bool)
    clean[40:44, 56:60] = False
    assert np.abs(back[2] - scene).max() < 1e-3 and np.abs(back[3][clean] - scene[clean]).max() < 6
    assert np.linalg.norm(back[3, 41, 57] - scene[41, 57]) > 50
    # A mark of 10 % of the picture: fitted without the worst-fitting pixels, the rest stays where it was.
    stills[4] = stills[4] * np.array([1.05, 1.0, 0.95]) + 6
    stills[4, 30:48, 38:64] = (235, 150, 20)
    back = relit(stills, np.array(["cam"] * 5, dtype=object))
    clean[30:48, 38:64] = False
    assert np.abs(back[4][clean] - scene[clean]).mean() < 3


def test_region_maps_remove_passers_by_and_see_the_mark() -> None:
    frames = np.full((8, 96, 128, 3), 100, np.uint8)
    for k in range(8):  # someone crossing the middle
        frames[k, 30:70, 10 + 12 * k:22 + 12 * k] = 220
    frames[:, 80:88, 112:120] = (235, 150, 20)
    maps = region_maps(frames)
    assert maps["still"].shape == (48, 64, 3) and maps["detail"].shape == maps["motion"].shape == (48, 64)
    assert np.abs(maps["still"][15:35, 5:60].astype(int) - 100).max() <= 1  # the passer-by is gone
    # The passer-by covers a pixel in 1 of 8 frames, 120 levels brighter: 15 levels of mean change there.
    assert maps["motion"][15:35, 5:60].max() >= 14 and maps["motion"][:10].max() == 0
    assert tuple(maps["still"][41, 57]) == (235, 150, 20) and maps["detail"][40:44, 55:61].max() > 5


def test_maps_are_cached_under_their_own_version_and_unreadable_media_is_listed(tmp_path: Path) -> None:
    project, clips, _ = _project(tmp_path, n_cameras=2, per_camera=4, marked=set(), mark=Mark(), seed=3)
    assert REGIONS_VERSION != "1"  # not the whole-frame features' key: neither reads the other's rows
    again = extract_regions(project, workers=1)
    assert (again.computed, again.cached) == (0, 8)
    assert set(load_regions(project)) == set(range(1, 9))
    # A clip whose media is gone: its maps are deleted from the cache, it is listed, the others are compared.
    from sqlalchemy import delete, select

    from curation.records.store import Clip, ClipFeatures

    with project.write() as session:
        session.execute(delete(ClipFeatures).where(ClipFeatures.clip_id == 1, ClipFeatures.version == REGIONS_VERSION))
        first = session.scalars(select(Clip).where(Clip.id == 1)).one()
        paths = [project.path / first.proxy_path, first.source_path]
    for path in paths:
        path.write_bytes(b"not a video")
    result = check_local_shortcuts(project, n_permutations=20, min_class_count=2)
    assert [f["clip"] for f in result.summary["failed_clips"]] == [1]
    assert result.summary["clips_labelled"] == 7


def test_bad_settings_and_nothing_to_compare_are_clear(tmp_path: Path) -> None:
    from curation.records.store import Project

    project = Project.init(tmp_path / "empty", RUBRIC)
    with pytest.raises(CliptuneError, match="grid"):
        check_local_shortcuts(project, grid=(0, 6))
    with pytest.raises(CliptuneError, match="margin"):
        check_local_shortcuts(project, margin=0.6)
    with pytest.raises(CliptuneError, match="not in the rubric"):
        check_local_shortcuts(project, fields=["colour"])
    result = check_local_shortcuts(project)
    assert result.flagged == [] and result.summary["tested"] == 0 and "nothing to compare" in result.summary["note"]
    with pytest.raises(CliptuneError, match="kind 'region'"):
        local_shortcut_figure(project, {"message": "x"})

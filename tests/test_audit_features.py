"""Nuisance features: computed from decoded frames, cached once per clip and extractor version, added to projects
made before the cache existed, and a clip that cannot be decoded is listed without stopping the rest."""

from __future__ import annotations

import json
import math
import shutil
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import func, select

from curation.media import features
from curation.media.features import extract_features, feature_table, metadata_columns
from curation.records.store import Clip, ClipFeatures, Project

RUBRIC = Path(__file__).resolve().parent.parent / "rubrics" / "surveillance_alert.yaml"


@pytest.fixture(scope="module")
def ingested(sample_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 12-clip sample ingested once; tests copy the folder before changing it."""
    from curation.media.ingest import ingest

    folder = tmp_path_factory.mktemp("features") / "project"
    project = Project.init(folder, RUBRIC)
    report = ingest(project, [sample_dir / "clips"], metadata=sample_dir / "cameras.csv", group_by="camera")
    assert report.added == 12 and not report.failed
    project.engine.dispose()
    return folder


def copy_of(folder: Path, tmp_path: Path) -> Project:
    shutil.copytree(folder, tmp_path / "copy")
    return Project.open(tmp_path / "copy")


def cached_rows(project: Project) -> int:
    with project.session() as session:
        return session.scalar(select(func.count()).select_from(ClipFeatures))


def test_features_are_computed_once_and_describe_the_pictures(ingested: Path, sample_dir: Path,
                                                              tmp_path: Path) -> None:
    project = copy_of(ingested, tmp_path)
    first = extract_features(project, workers=2)
    assert (first.computed, first.cached, first.failed) == (12, 0, []) and first.clips_per_s > 0
    again = extract_features(project)
    assert (again.computed, again.cached) == (0, 12) and cached_rows(project) == 12
    table = feature_table(project, report=again)
    assert len(table) == 12 and {"hour", "camera", "site", "group", "brightness_mean", "bitrate"} <= set(table)
    assert set(table.attrs["categorical"]) == {"camera", "site", "group"} and "hour" in table.attrs["numeric"]
    truth = {json.loads(line)["file"]: json.loads(line) for line in (sample_dir / "ground_truth.jsonl").open()}
    with project.session() as session:
        paths = {clip.id: clip.path for clip in session.scalars(select(Clip))}
    night = table.index.map(lambda i: truth[paths[i]]["night"]).to_numpy(bool)
    assert night.any() and (~night).any()
    # Infrared night footage is darker and greyer than any day clip, and its hour is late or early.
    assert table["brightness_mean"][night].max() < table["brightness_mean"][~night].min()
    assert table["saturation"][night].max() < table["saturation"][~night].min()
    assert all(h >= 20 or h < 6 for h in table["hour"][night])
    assert table["camera"].str.startswith("CAM-").all() and (table["width"] > 0).all()


def test_a_new_extractor_version_recomputes_and_keeps_the_old_rows(ingested: Path, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    project = copy_of(ingested, tmp_path)
    extract_features(project, workers=1)
    monkeypatch.setattr(features, "EXTRACTOR_VERSION", "next")
    report = extract_features(project, workers=1)
    assert report.computed == 12 and cached_rows(project) == 24


def test_a_clip_that_cannot_be_decoded_is_listed_and_the_rest_go_on(ingested: Path, tmp_path: Path) -> None:
    project = copy_of(ingested, tmp_path)
    with project.session() as session:
        broken = session.scalars(select(Clip).order_by(Clip.id)).first()
    (project.path / broken.proxy_path).write_bytes(b"not a video")
    report = extract_features(project, workers=1)
    assert report.computed == 11 and [f["clip"] for f in report.failed] == [broken.id]
    assert "cannot decode" in report.failed[0]["error"]
    table = feature_table(project, report=report)
    assert broken.id not in table.index and len(table) == 11 and table.attrs["failed"] == report.failed
    # Not cached: once the proxy is repaired, the next run computes it.
    shutil.copy(ingested / broken.proxy_path, project.path / broken.proxy_path)
    assert extract_features(project, workers=1).computed == 1


def test_projects_made_before_the_cache_get_its_table_on_open(ingested: Path, tmp_path: Path) -> None:
    shutil.copytree(ingested, tmp_path / "old")
    with sqlite3.connect(tmp_path / "old" / "cliptune.db") as connection:
        connection.execute("DROP TABLE clip_features")
    project = Project.open(tmp_path / "old")
    assert extract_features(project, workers=1).computed == 12
    with project.session() as session:
        assert session.scalar(select(func.count()).select_from(Clip)) == 12  # nothing else touched
    Project.open(tmp_path / "old")  # opening again is a no-op


def test_metadata_columns_find_the_hour_skip_ids_and_keep_numbers() -> None:
    clips = [Clip(metadata_={"recorded_at": f"2026-03-0{1 + i % 3}T{(20 + i) % 24:02d}:30:00", "camera": f"c{i % 2}",
                             "serial": f"SN{i}", "temperature": str(10 + i)}) for i in range(8)]
    columns = metadata_columns(clips)
    assert columns["hour"] == ("numeric", [20.5, 21.5, 22.5, 23.5, 0.5, 1.5, 2.5, 3.5])
    assert columns["camera"][0] == "categorical" and columns["temperature"][0] == "numeric"
    assert "serial" not in columns and "recorded_at" not in columns


def test_hour_of_day_across_a_daylight_saving_change() -> None:
    # Footage spanning a DST change mixes UTC offsets; the hour is the wall-clock hour written on site.
    from curation.media.features import _as_hour

    hours = _as_hour(["2024-03-30T23:30:00+01:00", "2024-04-02T01:15:00+02:00", "2024-04-02T01:15:00Z",
                      "2024-04-02 13:45:00", ""])
    assert hours[:4] == [23.5, 1.25, 1.25, 13.75] and math.isnan(hours[4])
    assert _as_hour(["north", "south"]) is None and _as_hour(["12", "13"]) is None

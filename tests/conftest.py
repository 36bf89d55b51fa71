"""Shared fixtures. Tests run offline: no hub, no telemetry."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

REPO = Path(__file__).resolve().parent.parent
RUBRICS = REPO / "rubrics"
ARTIFACTS = REPO / "artifacts"


@pytest.fixture(scope="session")
def sample_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic surveillance sample (clips, cameras.csv, ground_truth.jsonl), made once per run."""
    from curation.synthetic import generate_sample

    out = tmp_path_factory.mktemp("sample")
    generate_sample(out, n_clips=12, random_state=7)
    return out


@pytest.fixture
def project(tmp_path: Path):
    """An empty project with the surveillance rubric."""
    from curation.store import Project

    return Project.init(tmp_path / "project", RUBRICS / "surveillance_alert.yaml")


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS

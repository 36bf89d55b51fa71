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
    from curation.media.synthetic import generate_sample

    out = tmp_path_factory.mktemp("sample")
    generate_sample(out, n_clips=12, random_state=7)
    return out


@pytest.fixture(scope="session")
def training_export_dir(sample_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample as the trainer reads it (``OUT/hf`` ...), rare events repeated once in train. Read-only."""
    from training.tiny import build_sample_export

    return build_sample_export(tmp_path_factory.mktemp("export"), sample_dir=sample_dir, oversample_rare=1)


@pytest.fixture(scope="session")
def tiny_model_dir(training_export_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-init tiny Qwen2.5-VL checkpoint for the sample's rubric. Read-only."""
    from training.data import load_export
    from training.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny"), load_export(training_export_dir).rubric)


@pytest.fixture(scope="session")
def tiny_qwen2_vl_dir(training_export_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same, as a Qwen2-VL (the family before 2.5: another vision tower). Read-only."""
    from training.data import load_export
    from training.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-qwen2-vl"), load_export(training_export_dir).rubric,
                            architecture="qwen2_vl")


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread: tiny matrices gain nothing from a second, lose much when the cores are shared, and a fixed
    thread count keeps float reductions (hence greedy answers) the same from machine to machine."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def project(tmp_path: Path):
    """An empty project with the surveillance rubric."""
    from curation.records.store import Project

    return Project.init(tmp_path / "project", RUBRICS / "surveillance_alert.yaml")


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS

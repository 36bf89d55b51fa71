"""The trainer: LoRA placement, run folder and run card, exact resume, clear errors, the CLI verbs, and the GPU path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from curation.cli.main import main  # noqa: E402
from curation.errors import CliptuneError  # noqa: E402
from training.data import FrameSpec, load_export  # noqa: E402
from training.lora import TrainConfig, add_lora, load_base, train  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMALL = {"epochs": 1.0, "batch_size": 4, "frames": FrameSpec(num_frames=4, max_pixels=56 * 56)}


def _lora_modules(model) -> list[str]:
    return [name for name, module in model.named_modules() if hasattr(module, "lora_A") and len(module.lora_A)]


def test_lora_goes_on_the_language_model_unless_vision_is_asked(tiny_model_dir: Path) -> None:
    model, _ = load_base(tiny_model_dir)
    language = _lora_modules(add_lora(model, TrainConfig()))
    assert language and all(".language_model." in name for name in language)
    assert {name.rsplit(".", 1)[1] for name in language} == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                              "up_proj", "down_proj"}
    model, _ = load_base(tiny_model_dir)
    both = _lora_modules(add_lora(model, TrainConfig(vision_lora=True)))
    vision = [name for name in both if ".visual." in name]
    assert vision and all(".blocks." in name for name in vision)  # never the patch embedding or the merger
    assert {name.rsplit(".", 1)[1] for name in vision} >= {"qkv", "proj", "gate_proj", "up_proj", "down_proj"}
    assert len(both) == len(language) + len(vision)


def test_resume_continues_exactly(training_export_dir: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    config = TrainConfig(**SMALL, max_steps=4, save_every=1)
    straight = train(training_export_dir, "tiny", tmp_path / "straight", config)
    stopped = train(training_export_dir, "tiny", tmp_path / "resumed", config, stop_after=2)
    assert stopped == {"stopped_at": 2, "total": 4}
    assert not (tmp_path / "resumed" / "adapter").exists()
    with pytest.raises(CliptuneError, match="already holds a run"):
        train(training_export_dir, "tiny", tmp_path / "resumed", config)
    with pytest.raises(CliptuneError, match="same base model and settings"):
        train(training_export_dir, "tiny", tmp_path / "resumed", TrainConfig(**{**SMALL, "rank": 8}, max_steps=4),
              resume=True)
    resumed = train(training_export_dir, "tiny", tmp_path / "resumed", config, resume=True)
    assert resumed["metrics"]["train"]["steps"] == 4
    assert resumed["metrics"]["train"]["final_loss"] == straight["metrics"]["train"]["final_loss"]
    a = load_file(tmp_path / "straight" / "adapter" / "adapter_model.safetensors")
    b = load_file(tmp_path / "resumed" / "adapter" / "adapter_model.safetensors")
    assert a.keys() == b.keys() and any("lora_B" in key for key in a)
    assert all(torch.equal(a[key], b[key]) for key in a)
    assert torch.count_nonzero(a[next(k for k in a if "lora_B" in k)]) > 0  # it did learn something (B starts at 0)
    assert len(list((tmp_path / "resumed" / "checkpoints").glob("step-*"))) <= 2  # older checkpoints pruned


def test_run_folder_and_card(training_export_dir: Path, tmp_path: Path) -> None:
    card = train(training_export_dir, "tiny", tmp_path / "run", TrainConfig(**SMALL, random_state=5))
    run = tmp_path / "run"
    for part in ("adapter/adapter_config.json", "adapter/adapter_model.safetensors", "processor/processor_config.json",
                 "run_card.json", "run_card.md", "base-model/config.json"):
        assert (run / part).is_file(), part
    export = load_export(training_export_dir)
    assert card == json.loads((run / "run_card.json").read_text())
    assert card["dataset_version"] == export.dataset_version
    assert card["rubric"] == {"name": "surveillance_alert", "version": export.rubric.version}
    hp = card["hyper_parameters"]
    assert hp["random_state"] == 5 and hp["modules_to_save"] == ["lm_head", "embed_tokens"] and hp["alpha"] == 32
    assert card["data"]["train_rows"] == len(export.dataset["train"])
    assert card["metrics"]["train"]["steps"] == -(-len(export.dataset["train"]) // 4)
    assert card["metrics"]["train"]["final_loss"] < card["metrics"]["train"]["first_loss"]
    markdown = (run / "run_card.md").read_text()
    assert export.dataset_version in markdown and export.rubric.version in markdown and "rank 16" in markdown
    saved = json.loads((run / "processor" / "processor_config.json").read_text())
    assert saved["video_processor"]["size"]["longest_edge"] == 56 * 56  # the pixel budget travels with the run


def test_mistakes_get_clear_errors(training_export_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(CliptuneError, match="not a local model checkpoint"):
        train(training_export_dir, tmp_path / "no-model", tmp_path / "a", TrainConfig(**SMALL))
    with pytest.raises(CliptuneError, match="no checkpoint to resume"):
        train(training_export_dir, "tiny", tmp_path / "b", TrainConfig(**SMALL), resume=True)
    with pytest.raises(CliptuneError, match="method must be lora or qlora"):
        TrainConfig(method="full")
    with pytest.raises(CliptuneError, match="batch-size must be at least 1"):
        TrainConfig(batch_size=0)
    if not torch.cuda.is_available():
        with pytest.raises(CliptuneError, match="QLoRA needs a CUDA GPU"):
            train(training_export_dir, "tiny", tmp_path / "c", TrainConfig(**SMALL, method="qlora"))
    assert not (tmp_path / "a").exists()  # a failed start leaves nothing behind


def test_broken_videos_are_named_and_earlier_checkpoints_survive(training_export_dir: Path, tmp_path: Path) -> None:
    import shutil

    export = tmp_path / "export"
    shutil.copytree(training_export_dir, export)
    train_rows = load_export(export).dataset["train"]
    first = train_rows[0]
    (export / first["video"]).unlink()
    with pytest.raises(CliptuneError, match=rf"1 train video file\(s\) missing or empty: {first['clip_id']} "):
        train(export, "tiny", tmp_path / "missing", TrainConfig(**SMALL))
    assert not (tmp_path / "missing").exists()  # refused before anything was written
    shutil.copyfile(training_export_dir / first["video"], export / first["video"])
    # A file that is there but damaged is found when it is decoded: the run stops naming the clip, and the
    # checkpoints written before it stay usable.
    from training.checkpoints import epoch_order, latest_checkpoint

    # A clip the first step does not use (repeats share their clip's file), so a checkpoint exists before it.
    first_step = {train_rows[i]["video"] for i in epoch_order(len(train_rows), 0, 0)[:SMALL["batch_size"]]}
    damaged = next(row for row in train_rows if row["video"] not in first_step)
    (export / damaged["video"]).write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    config = TrainConfig(**{**SMALL, "epochs": 2.0}, save_every=1)
    with pytest.raises(CliptuneError, match=rf"train clip {damaged['clip_id']} \({damaged['video']}\): .*Re-export"):
        train(export, "tiny", tmp_path / "damaged", config)
    assert not (tmp_path / "damaged" / "run_card.json").exists()
    saved = latest_checkpoint(tmp_path / "damaged")
    assert saved is not None and (saved / "adapter" / "adapter_model.safetensors").is_file()


@pytest.mark.slow
def test_cli_train_then_evaluate(training_export_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "demo"
    code = main(["train", str(training_export_dir), "--base-model", "tiny", "--output", str(run), "--epochs", "1",
                 "--frames", "4", "--max-pixels", str(56 * 56), "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    card = json.loads(captured.out)
    assert card["base_model_kind"] == "tiny" and card["hyper_parameters"]["frames"]["num_frames"] == 4
    code = main(["evaluate", str(run), "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    report = json.loads(captured.out)
    n = len(load_export(training_export_dir).dataset["test"])
    assert report["n"] == n and report["base"]["n"] == n and "predictions" not in report
    assert set(report["forgetting"]) >= {"before", "after", "change", "threshold", "warning"}
    card = json.loads((run / "run_card.json").read_text())
    assert card["metrics"]["evaluation"]["fine_tuned"]["format_validity"] == report["fine_tuned"]["format_validity"]
    assert "forgetting" in card["metrics"] and "Held-out evaluation" in (run / "run_card.md").read_text()
    evaluation = json.loads((run / "evaluation.json").read_text())
    assert len(evaluation["predictions"]) == n and {"base", "fine_tuned", "reference"} <= set(
        evaluation["predictions"][0])
    # Both models score the same on the probes here (a random-init base); a threshold below zero makes even no
    # change a "drop", which exercises the warning's path to the command line and the run card.
    assert report["forgetting"]["warning"] is None and not card["warnings"]
    assert main(["evaluate", str(run), "--forgetting-threshold", "-0.5"]) == 0
    captured = capsys.readouterr()
    assert "warning: general probe accuracy fell" in captured.err
    assert "held-out" in captured.out and "format validity" in captured.out
    card = json.loads((run / "run_card.json").read_text())
    assert len(card["warnings"]) == 1 and "Warnings" in (run / "run_card.md").read_text()
    assert main(["evaluate", str(run), "--json"]) == 0  # evaluated again: the stale warning goes
    capsys.readouterr()
    assert json.loads((run / "run_card.json").read_text())["warnings"] == []
    code = main(["train", str(training_export_dir), "--base-model", str(tmp_path / "missing"),
                 "--output", str(tmp_path / "x")])
    captured = capsys.readouterr()
    assert code == 1 and captured.err.startswith("error: ") and "Traceback" not in captured.err
    assert main(["evaluate", str(tmp_path / "x")]) == 1
    assert "not a finished training run" in capsys.readouterr().err


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_trains_in_bf16(training_export_dir: Path, tmp_path: Path) -> None:
    card = train(training_export_dir, "tiny", tmp_path / "gpu", TrainConfig(**SMALL, max_steps=3))
    assert card["environment"]["device"].startswith("cuda")
    model, _ = load_base(Path(card["base_model"]))
    assert next(model.parameters()).dtype == torch.bfloat16
    import importlib.util

    if importlib.util.find_spec("bitsandbytes") is not None:
        card = train(training_export_dir, "tiny", tmp_path / "qlora", TrainConfig(**SMALL, max_steps=2, method="qlora"))
        assert card["metrics"]["train"]["steps"] == 2

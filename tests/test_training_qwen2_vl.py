"""The other family the trainer names first: a Qwen2-VL checkpoint (a tiny random-init one, saved like a real one and
passed as a local path) goes through the same train → evaluate → reload → merge path as Qwen2.5-VL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from training.data import FrameSpec, load_export  # noqa: E402
from training.evaluate import evaluate_run, generate, heldout_examples, load_fine_tuned  # noqa: E402
from training.lora import TrainConfig, add_lora, load_base, train  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")
FRAMES = FrameSpec(num_frames=4, max_pixels=112 * 112)


def test_lora_placement_on_qwen2_vl(tiny_qwen2_vl_dir: Path) -> None:
    model, _ = load_base(tiny_qwen2_vl_dir)
    assert type(model).__name__ == "Qwen2VLForConditionalGeneration"
    wrapped = add_lora(model, TrainConfig(vision_lora=True))
    names = [name for name, module in wrapped.named_modules() if hasattr(module, "lora_A") and len(module.lora_A)]
    language = {name.rsplit(".", 1)[1] for name in names if ".language_model." in name}
    vision = {name.rsplit(".", 1)[1] for name in names if ".visual." in name}
    assert language == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    assert vision == {"qkv", "proj", "fc1", "fc2"}  # Qwen2-VL's vision MLP is fc1/fc2, not gate/up/down
    assert not any(".merger." in name or "patch_embed" in name for name in names)


def test_qwen2_vl_trains_evaluates_and_reloads(training_export_dir: Path, tiny_qwen2_vl_dir: Path,
                                               tmp_path: Path) -> None:
    run = tmp_path / "run"
    # A random-init base: train the output layer and embeddings too, as the tiny defaults do, so it says something.
    config = TrainConfig(epochs=3.0, batch_size=4, frames=FRAMES, learning_rate=6e-3, packing=True, dropout=0.0,
                         modules_to_save=["lm_head", "embed_tokens"])
    card = train(training_export_dir, tiny_qwen2_vl_dir, run, config)
    assert card["base_model_kind"] == "local" and card["hyper_parameters"]["cache_vision"] is True
    assert card["metrics"]["train"]["final_loss"] < card["metrics"]["train"]["first_loss"]
    report = evaluate_run(run, compare_base=False, max_new_tokens=24)
    evaluated = [p["fine_tuned"] for p in json.loads((run / "evaluation.json").read_text())["predictions"]]
    assert len(evaluated) == report["n"] > 0 and any(evaluated)
    model, processor = load_fine_tuned(run)
    examples = heldout_examples(load_export(training_export_dir), processor, FRAMES)
    assert generate(model, processor, examples, max_new_tokens=24) == evaluated
    merged, _ = load_fine_tuned(run, merge=True)
    assert generate(merged, processor, examples, max_new_tokens=24) == evaluated

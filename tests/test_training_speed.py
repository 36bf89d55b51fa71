"""The trainer's speed levers change nothing but speed: packed clips and cached vision features give the same hidden
states, loss, gradients and training run as the plain padded batch; and each lever refuses what it cannot do."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from curation.errors import CliptuneError  # noqa: E402
from training.data import ClipDataset, FrameSpec, collate, configure_processor, load_export  # noqa: E402
from training.lora import TrainConfig, add_lora, answer_loss, load_base, train  # noqa: E402
from training.packing import pack  # noqa: E402
from training.vision_cache import VisionFeatureCache, inner_model, vision_is_frozen  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FRAMES = FrameSpec(num_frames=4, max_pixels=112 * 112)  # at this budget the cameras differ in tokens per frame
# A frozen vision tower (the default for a real checkpoint): what the vision cache is for.
FROZEN = replace(TrainConfig(vision_lora=False, cache_vision=False).resolved(tiny=True), frames=FRAMES)


@pytest.fixture(params=["qwen2_5_vl", "qwen2_vl"])
def setup(request: pytest.FixtureRequest, training_export_dir: Path):
    """(LoRA model, processor, three examples of different lengths) for each Qwen family."""
    checkpoint = request.getfixturevalue("tiny_model_dir" if request.param == "qwen2_5_vl" else "tiny_qwen2_vl_dir")
    model, processor = load_base(checkpoint, device=torch.device("cpu"), dtype=torch.float32)
    configure_processor(processor, FRAMES)
    model = add_lora(model, FROZEN)
    # LoRA's B starts at zero; give the adapters weight so they take part in what is compared.
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0.0, 0.05, generator=torch.Generator().manual_seed(len(name)))
    dataset = ClipDataset(load_export(training_export_dir), "train", processor, FRAMES)
    # Examples of different lengths, so the padded batch really pads.
    examples = [dataset[i] for i in range(len(dataset))]
    lengths = [len(e["input_ids"]) for e in examples]
    chosen = sorted(range(len(examples)), key=lambda i: lengths[i])
    picked = [examples[chosen[0]], examples[chosen[-1]], examples[chosen[len(chosen) // 2]]]
    assert len({len(e["input_ids"]) for e in picked}) > 1
    return model, processor, picked


def _hidden(model, batch):
    with torch.no_grad():
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        return inner_model(model)(**inputs, use_cache=False).last_hidden_state


def _loss_and_grads(model, batch):
    model.zero_grad(set_to_none=True)
    loss, tokens = answer_loss(model, batch)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad and p.grad is not None}
    return loss.item(), tokens, grads


def test_packed_clips_see_exactly_what_they_see_alone(setup) -> None:
    model, processor, examples = setup
    rope_index = inner_model(model).get_rope_index
    padded = collate(examples, processor.tokenizer.pad_token_id)
    packed = pack(examples, rope_index)
    assert packed["input_ids"].shape == (1, sum(len(e["input_ids"]) for e in examples))
    assert "attention_mask" not in packed
    lengths = [len(e["input_ids"]) for e in examples]
    starts = [sum(lengths[:i]) for i in range(len(lengths))]
    assert (packed["position_ids"][0, 0] == 0).nonzero().flatten().tolist() == starts  # text positions restart
    padded_hidden, packed_hidden = _hidden(model, padded), _hidden(model, packed)
    offset = 0
    for row, example in enumerate(examples):
        length = len(example["input_ids"])
        difference = (padded_hidden[row, :length] - packed_hidden[0, offset:offset + length]).abs().max().item()
        assert difference < 1e-4, (row, difference)
        offset += length
    # The check can fail: text positions that do not restart make one long sequence, and the second clip then
    # attends to the first.
    leaky = dict(packed, position_ids=packed["position_ids"].clone())
    leaky["position_ids"][0, 0] = torch.arange(packed["input_ids"].shape[1])
    first = len(examples[0]["input_ids"])
    second = slice(first, first + len(examples[1]["input_ids"]))
    assert (padded_hidden[1, :len(examples[1]["input_ids"])] - _hidden(model, leaky)[0, second]).abs().max() > 1e-2

    padded_loss, padded_tokens, padded_grads = _loss_and_grads(model, padded)
    packed_loss, packed_tokens, packed_grads = _loss_and_grads(model, packed)
    assert packed_tokens == padded_tokens
    assert packed_loss == pytest.approx(padded_loss, rel=1e-5)
    assert padded_grads.keys() == packed_grads.keys() and padded_grads
    for name, gradient in padded_grads.items():
        assert torch.allclose(gradient, packed_grads[name], rtol=1e-3, atol=1e-6), name


def test_a_packed_example_without_its_prompt_is_refused(setup) -> None:
    model, _, examples = setup
    broken = dict(examples[1], labels=examples[1]["input_ids"].clone())  # every token labelled
    with pytest.raises(ValueError, match="starts with a labelled token"):
        pack([examples[0], broken], inner_model(model).get_rope_index)


def test_cached_vision_features_give_the_same_loss_and_gradients(setup) -> None:
    model, processor, examples = setup
    batch = collate(examples, processor.tokenizer.pad_token_id)
    cache = VisionFeatureCache(model)
    plain = _loss_and_grads(model, batch)
    first = _loss_and_grads(model, cache.apply(batch, keys=[0, 1, 2]))
    assert (cache.misses, cache.hits, len(cache)) == (3, 0, 3)
    # Second epoch: the frames need not even be there.
    without_pixels = {k: v for k, v in batch.items() if k != "pixel_values_videos"}
    second = _loss_and_grads(model, cache.apply(without_pixels, keys=[0, 1, 2], with_pixels=[False] * 3))
    assert (cache.misses, cache.hits) == (3, 3)
    for run in (first, second):
        assert run[0] == pytest.approx(plain[0], rel=1e-6) and run[1] == plain[1]
        for name, gradient in plain[2].items():
            assert torch.allclose(gradient, run[2][name], rtol=1e-4, atol=1e-7), name
    # Features cached for other clips give other hidden states: the comparison above could fail.
    swapped = cache.apply(without_pixels, keys=[1, 0, 2], with_pixels=[False] * 3)
    assert (_hidden(model, swapped)[0] - _hidden(model, batch)[0]).abs().max() > 1e-3
    with pytest.raises(ValueError, match="no pixels and no cached features"):
        cache.apply(without_pixels, keys=[0, 1, 99], with_pixels=[False] * 3)


def test_a_full_vision_cache_recomputes_instead_of_failing(setup) -> None:
    model, processor, examples = setup
    batch = collate(examples, processor.tokenizer.pad_token_id)
    cache = VisionFeatureCache(model, max_bytes=1)  # room for nothing
    plain = _loss_and_grads(model, batch)[0]
    for _ in range(2):
        assert _loss_and_grads(model, cache.apply(batch, keys=[0, 1, 2]))[0] == pytest.approx(plain, rel=1e-6)
    assert (len(cache), cache.stored_bytes, cache.misses, cache.hits) == (0, 0, 6, 0)


def test_a_clip_whose_features_are_cached_is_not_decoded_again(training_export_dir: Path,
                                                               tiny_model_dir: Path) -> None:
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny_model_dir, local_files_only=True)
    configure_processor(processor, FRAMES)
    dataset = ClipDataset(load_export(training_export_dir), "train", processor, FRAMES, cache_bytes=0)
    example = dataset[0]
    assert "pixel_values_videos" in example and "pixel_values_videos" in dataset[0]  # no room: decoded each time
    dataset.forget_pixels(0, example)
    again = dataset[0]
    assert "pixel_values_videos" not in again  # what is left is kept even without room, so no decoding
    assert torch.equal(again["input_ids"], example["input_ids"]) and torch.equal(again["labels"], example["labels"])
    assert torch.equal(again["video_grid_thw"], example["video_grid_thw"])


def test_vision_cache_refuses_a_vision_tower_in_training(tiny_model_dir: Path) -> None:
    model, _ = load_base(tiny_model_dir)
    model = add_lora(model, TrainConfig(vision_lora=True))
    assert not vision_is_frozen(model)
    with pytest.raises(CliptuneError, match="cannot be cached"):
        VisionFeatureCache(model)
    with pytest.raises(CliptuneError, match="frozen vision tower"):
        TrainConfig(vision_lora=True, cache_vision=True).resolved()
    with pytest.raises(CliptuneError, match="frozen vision tower"):
        TrainConfig(modules_to_save=["visual.merger"], cache_vision=True).resolved()
    assert TrainConfig().resolved().cache_vision is True  # a real checkpoint: frozen tower, cache on
    assert TrainConfig().resolved(tiny=True).cache_vision is False  # tiny trains its vision tower
    assert TrainConfig(modules_to_save=["lm_head", "visual.merger"]).resolved().cache_vision is False


def test_training_with_packing_and_cached_vision_follows_the_plain_run(training_export_dir: Path,
                                                                       tmp_path: Path) -> None:
    """Same seed, same data order: the packed, cached run takes the same steps as the padded, uncached one.

    Compared step by step through the losses. (Not weight by weight: Adam divides by the gradient's running
    size, so rows of lm_head whose tokens never occur, with gradients near 1e-9, move by the full learning rate
    in a direction set by rounding.)"""
    base = replace(FROZEN, epochs=2.0, batch_size=4, max_steps=None)
    losses: dict[str, list[float]] = {"plain": [], "fast": []}
    plain = train(training_export_dir, "tiny", tmp_path / "plain", base, prefetch=True,
                  progress=lambda i: losses["plain"].append(i["loss"]))
    fast = train(training_export_dir, "tiny", tmp_path / "fast", replace(base, packing=True, cache_vision=True),
                 progress=lambda i: losses["fast"].append(i["loss"]))
    assert len(losses["plain"]) == len(losses["fast"]) >= 6
    assert losses["plain"][-1] < losses["plain"][0] - 0.5  # it learns, so the later steps depend on the earlier
    assert losses["fast"] == pytest.approx(losses["plain"], rel=1e-3)
    assert fast["metrics"]["train"]["tokens"] == plain["metrics"]["train"]["tokens"]  # padding is not counted
    # Both levers really ran: no padding computed, and the second epoch's features came from the cache.
    assert plain["metrics"]["train"]["padding_tokens"] > 0 and plain["metrics"]["train"]["vision_cache"] is None
    assert fast["metrics"]["train"]["padding_tokens"] == 0
    rows = fast["data"]["train_rows"]
    assert fast["metrics"]["train"]["vision_cache"] == {"hits": rows, "misses": rows, "clips_kept": rows}
    # Decoding the next step's clips in a thread changes nothing.
    serial: list[float] = []
    train(training_export_dir, "tiny", tmp_path / "serial", base, prefetch=False,
          progress=lambda i: serial.append(i["loss"]))
    assert serial == losses["plain"]
    # A different run (another seed) is not within that tolerance: the comparison can fail.
    other: list[float] = []
    train(training_export_dir, "tiny", tmp_path / "other", replace(base, random_state=1),
          progress=lambda i: other.append(i["loss"]))
    assert other != pytest.approx(losses["plain"], rel=1e-3)


def test_gpu_benchmark_script_runs_on_a_tiny_shape(tmp_path: Path) -> None:
    """The GPU benchmark is run by hand on a GPU machine; its --smoke mode keeps the script itself from rotting."""
    import subprocess
    import sys

    script = Path(__file__).parent / "bench" / "bench_train_gpu.py"
    result = subprocess.run([sys.executable, str(script), "--smoke", "--ours", "epoch1:1,cached+gc:2", "--skip-gc",
                             "--json", str(tmp_path / "bench.json")], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((tmp_path / "bench.json").read_text())
    assert [row["variant"] for row in report["results"]] == ["plain", "ours/epoch1", "ours/cached+gc"]
    assert all(row["tokens_per_s"] > 0 and row["loss"] > 0 for row in report["results"])

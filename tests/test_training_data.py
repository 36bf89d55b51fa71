"""The trainer's input side: the export it reads, the tiny checkpoint, frames, chat format and label masking."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from curation.errors import CliptuneError  # noqa: E402
from training.data import (  # noqa: E402
    IGNORE_INDEX,
    ClipDataset,
    FrameSpec,
    clip_frames,
    collate,
    configure_processor,
    encode,
    load_export,
)
from training.tiny import QWEN_SPECIAL_TOKENS, build_tiny_model  # noqa: E402


@pytest.fixture(scope="module")
def processor(tiny_model_dir: Path):
    from transformers import AutoProcessor

    loaded = AutoProcessor.from_pretrained(tiny_model_dir, local_files_only=True)
    configure_processor(loaded, FrameSpec(num_frames=4, max_pixels=112 * 112))
    return loaded


def test_sample_export_has_the_exporter_schema_and_a_camera_split(training_export_dir: Path) -> None:
    import datasets
    import decord

    dataset = datasets.load_from_disk(str(training_export_dir / "hf"))
    assert set(dataset) == {"train", "test"}
    dtypes = {name: feature.dtype for name, feature in dataset["train"].features.items()}
    assert dtypes == {"clip_id": "int64", "video": "string", "prompt": "string", "output": "string",
                      "fields": "string", "group": "string", "split": "string", "repeat": "int32",
                      "frame_offset": "float32", "duration_s": "float32", "fps": "float32"}
    train_groups, test_groups = set(dataset["train"]["group"]), set(dataset["test"]["group"])
    assert train_groups and test_groups and not train_groups & test_groups  # a camera never straddles the split
    assert set(dataset["test"]["repeat"]) == {0}  # the held-out set is never over-sampled
    repeats = dataset["train"].filter(lambda row: row["repeat"] > 0)
    assert len(repeats) > 0 and all(row["frame_offset"] > 0 for row in repeats)
    for row in dataset["test"]:
        assert row["video"].endswith(".mp4") and not Path(row["video"]).is_absolute()
        assert len(decord.VideoReader(str(training_export_dir / row["video"]))) > 0
        assert row["split"] == "test"
    meta = json.loads((training_export_dir / "export.json").read_text())
    assert meta["rubric"]["version"] == load_export(training_export_dir).rubric.version


def test_load_export_names_what_is_wrong(training_export_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(CliptuneError, match="no such export folder"):
        load_export(tmp_path / "nowhere")
    broken = tmp_path / "broken"
    shutil.copytree(training_export_dir, broken, ignore=shutil.ignore_patterns("media"))
    shutil.rmtree(broken / "hf")
    with pytest.raises(CliptuneError, match="hf missing"):
        load_export(broken)
    shutil.copytree(training_export_dir / "hf", broken / "hf")
    meta = json.loads((broken / "export.json").read_text())
    meta["rubric"]["version"] = "000000000000"
    (broken / "export.json").write_text(json.dumps(meta))
    with pytest.raises(CliptuneError, match="rubric.yaml is version"):
        load_export(broken)
    (broken / "export.json").write_text("{not json")
    with pytest.raises(CliptuneError, match="not valid JSON"):
        load_export(broken)


def test_tiny_model_loads_through_the_real_checkpoint_path(tiny_model_dir: Path, training_export_dir: Path,
                                                          tmp_path: Path) -> None:
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny_model_dir, local_files_only=True)
    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir, local_files_only=True)
    assert type(model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    tokenizer = processor.tokenizer
    ids = [tokenizer.convert_tokens_to_ids(token) for token in QWEN_SPECIAL_TOKENS]
    assert len(set(ids)) == len(QWEN_SPECIAL_TOKENS) and tokenizer.unk_token_id not in ids
    assert model.config.video_token_id == tokenizer.convert_tokens_to_ids("<|video_pad|>")
    assert model.config.text_config.vocab_size == len(tokenizer)
    # Byte-level BPE: any text round-trips, and the rubric's outputs are short in its vocabulary.
    output = load_export(training_export_dir).dataset["train"][0]["output"]
    assert tokenizer.decode(tokenizer(output)["input_ids"]) == output
    assert tokenizer.decode(tokenizer("Ünïcode ☃ text")["input_ids"]) == "Ünïcode ☃ text"
    assert len(tokenizer(output)["input_ids"]) < len(output) / 1.5
    text = processor.apply_chat_template([{"role": "user", "content": [{"type": "video"}, {"type": "text",
                                          "text": "hi"}]}], tokenize=False, add_generation_prompt=True)
    assert text.endswith("<|vision_start|><|video_pad|><|vision_end|>hi<|im_end|>\n<|im_start|>assistant\n")
    # Same seed, same weights; another seed, other weights.
    for seed, same in ((0, True), (1, False)):
        rubric = load_export(training_export_dir).rubric
        rebuilt = build_tiny_model(tmp_path / f"seed-{seed}", rubric, random_state=seed)
        other = AutoModelForImageTextToText.from_pretrained(rebuilt, local_files_only=True)
        pairs = zip(model.state_dict().values(), other.state_dict().values(), strict=True)
        assert all(torch.equal(a, b) for a, b in pairs) is same


def test_labels_cover_the_answer_only(processor, training_export_dir: Path) -> None:
    export = load_export(training_export_dir)
    row = export.dataset["train"][0]
    frames = clip_frames(export.root, row, FrameSpec(num_frames=4, max_pixels=112 * 112))
    example = encode(processor, row["prompt"], frames, answer=row["output"], duration_s=row["duration_s"])
    labels, ids = example["labels"], example["input_ids"]
    tokenizer = processor.tokenizer
    answered = labels != IGNORE_INDEX
    first = int(answered.nonzero()[0])
    assert answered[first:].all() and not answered[:first].any()  # one contiguous span at the end
    assert tokenizer.decode(ids[first:]) == row["output"] + "<|im_end|>"
    assert (labels[answered] == ids[answered]).all()
    assert tokenizer.decode(ids[:first]).endswith("<|im_start|>assistant\n")
    video = ids == tokenizer.convert_tokens_to_ids("<|video_pad|>")
    assert video.sum() == example["video_grid_thw"].prod() // 4 and not answered[video].any()
    assert row["prompt"] in tokenizer.decode(ids[:first])
    prompt_only = encode(processor, row["prompt"], frames, duration_s=row["duration_s"])
    assert "labels" not in prompt_only and (prompt_only["input_ids"] == ids[:first]).all()


def test_pixel_budget_is_enforced(tiny_model_dir: Path, training_export_dir: Path) -> None:
    from transformers import AutoProcessor

    export = load_export(training_export_dir)
    row = export.dataset["test"][0]
    tokens = {}
    for budget in (56 * 56, 112 * 112, 224 * 224):
        processor = AutoProcessor.from_pretrained(tiny_model_dir, local_files_only=True)
        spec = FrameSpec(num_frames=4, max_pixels=budget)
        configure_processor(processor, spec)
        example = encode(processor, "q", clip_frames(export.root, row, spec), duration_s=row["duration_s"])
        t, h, w = example["video_grid_thw"][0].tolist()
        assert t == 2 and h * w * 14 * 14 <= budget
        tokens[budget] = t * h * w // 4
    assert tokens[56 * 56] < tokens[112 * 112] < tokens[224 * 224]
    # The processor's own default (up to 768 tokens a frame) would upscale these 160x120 frames.
    assert tokens[224 * 224] <= 2 * 16 * 16 // 4


def test_repeats_show_other_frames_of_the_same_clip(training_export_dir: Path) -> None:
    export = load_export(training_export_dir)
    train = export.dataset["train"]
    repeat = next(row for row in train if row["repeat"] > 0)
    original = next(row for row in train if row["clip_id"] == repeat["clip_id"] and row["repeat"] == 0)
    spec = FrameSpec(num_frames=4)
    shifted, plain = clip_frames(export.root, repeat, spec), clip_frames(export.root, original, spec)
    assert shifted.shape == plain.shape and shifted.dtype == np.uint8
    assert not np.array_equal(shifted, plain)
    assert np.array_equal(clip_frames(export.root, original, spec), plain)  # decoding is deterministic
    by_rate = clip_frames(export.root, original, FrameSpec(num_frames=64, fps=2.0))
    assert len(by_rate) == int(original["duration_s"] * 2.0 + 1e-3)  # one frame every 0.5 s
    assert len(clip_frames(export.root, original, FrameSpec(num_frames=3, fps=2.0))) == 3  # at most num_frames


def test_dataset_and_collate(processor, training_export_dir: Path) -> None:
    export = load_export(training_export_dir)
    spec = FrameSpec(num_frames=4, max_pixels=112 * 112)
    dataset = ClipDataset(export, "train", processor, spec)
    assert len(dataset) == len(export.dataset["train"])
    examples = [dataset[0], dataset[1], dataset[2]]
    assert dataset[0] is examples[0]  # cached: decoded once
    pad = processor.tokenizer.pad_token_id
    batch = collate(examples, pad)
    lengths = [len(e["input_ids"]) for e in examples]
    assert batch["input_ids"].shape == (3, max(lengths))
    assert batch["attention_mask"].sum(1).tolist() == lengths
    assert (batch["labels"][batch["attention_mask"] == 0] == IGNORE_INDEX).all()
    assert batch["pixel_values_videos"].shape[0] == sum(e["pixel_values_videos"].shape[0] for e in examples)
    left = collate(examples, pad, padding_side="left")
    shortest = int(np.argmin(lengths))
    assert left["attention_mask"][shortest, 0] == 0 and left["attention_mask"][:, -1].all()
    text_only = encode(processor, "What is 7 plus 5?", None)
    mixed = collate([text_only, examples[0]], pad, padding_side="left")
    assert mixed["video_grid_thw"].shape == (1, 3) and "pixel_values_videos" in mixed
    shuffled = ClipDataset(export, "train", processor, spec, outputs=["X"] * len(dataset))
    assert processor.tokenizer.decode(shuffled[0]["input_ids"][shuffled[0]["labels"] != IGNORE_INDEX]) == \
        "X<|im_end|>"


def test_frame_spec_rejects_nonsense() -> None:
    with pytest.raises(CliptuneError, match="frames must be at least 1"):
        FrameSpec(num_frames=0)
    with pytest.raises(CliptuneError, match="min_pixels"):
        FrameSpec(min_pixels=100)
    with pytest.raises(CliptuneError, match="fps must be positive"):
        FrameSpec(fps=-1)

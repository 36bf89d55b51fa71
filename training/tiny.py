"""Offline stand-ins for tests and the CPU demo: a tiny Qwen2.5-VL (or Qwen2-VL) checkpoint and a sample export.

:func:`build_tiny_model` writes a random-init Qwen2.5-VL (a few layers, a small vision tower) with a byte-level BPE
tokenizer trained on the rubric's own texts, the Qwen special tokens and the Qwen2.5-VL chat template, saved with
``save_pretrained`` exactly like a real checkpoint, so the trainer loads it through the same ``AutoProcessor`` /
``AutoModelForImageTextToText.from_pretrained`` path as ``/models/Qwen2.5-VL-7B-Instruct``. Nothing is downloaded.

:func:`build_sample_export` writes the export format the trainer reads (``OUT/hf``, ``OUT/rubric.yaml``,
``OUT/export.json``) from the synthetic sample, standing in for ``curation.dataset.export`` in tests and the demo.

Example::

    build_sample_export("exports/sample", n_clips=48, random_state=0)
    build_tiny_model("models/tiny", load_rubric("exports/sample/rubric.yaml"))
    build_tiny_model("models/tiny-qwen2-vl", architecture="qwen2_vl")   # Qwen2-VL's vision tower
    AutoModelForImageTextToText.from_pretrained("models/tiny")   # the real loading path
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from curation.errors import RubricError
from curation.rubric import Rubric, load_rubric

QWEN_SPECIAL_TOKENS = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>",
    "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>",
    "<|image_pad|>", "<|video_pad|>",
)
SYSTEM_PROMPT = "You are a helpful assistant."
# The chat template of the Qwen2.5-VL instruct checkpoints.
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\n" + SYSTEM_PROMPT + "<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture {{ image_count.value }}: "
    "{% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
TINY_TEXT = {"hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4,
             "num_key_value_heads": 2}
TINY_VISION = {"depth": 2, "hidden_size": 64, "intermediate_size": 128, "num_heads": 4}
REPO_RUBRICS = Path(__file__).resolve().parent.parent / "rubrics"


def _corpus(rubric: Rubric, rng: np.random.Generator, n_renders: int = 400) -> list[str]:
    """Texts the tokenizer is trained on: what the model will read and write for this rubric."""
    from training.probes import load_probes

    texts = [rubric.prompt, rubric.instructions, rubric.description, SYSTEM_PROMPT, "user", "assistant", "system"]
    texts += [f.description for f in rubric.fields]
    texts += [example.output or rubric.render(example.fields) for example in rubric.examples]
    texts += [probe["question"] for probe in load_probes()]
    examples = [example.fields for example in rubric.examples]
    for _ in range(n_renders if examples else 0):
        # Vary the examples field by field so every choice, count and clock digit appears in context.
        fields = dict(examples[int(rng.integers(len(examples)))])
        for field in rubric.fields:
            if field.type in ("choice", "ordinal"):
                fields[field.name] = str(rng.choice(field.choices))
            elif field.type == "integer":
                low, high = int(field.min or 0), int(min(field.max if field.max is not None else 99, 99))
                fields[field.name] = int(rng.integers(low, high + 1))
            elif field.type == "time" and field.format == "hh:mm":
                fields[field.name] = f"{int(rng.integers(24)):02d}:{int(rng.integers(60)):02d}"
        try:
            texts.append(rubric.render(fields))
        except RubricError:  # a combination the rubric forbids: it is not text the model will see
            continue
    return [t for t in texts if t]


def build_tokenizer(rubric: Rubric, *, vocab_size: int = 512, random_state: int = 0):
    """A Qwen2 byte-level BPE tokenizer (Qwen's pre-tokenizer: digits one by one) trained on the rubric's texts."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX, Qwen2Tokenizer

    backend = Tokenizer(models.BPE())
    backend.normalizer = normalizers.NFC()
    backend.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    backend.train_from_iterator(_corpus(rubric, np.random.default_rng(random_state)), trainer)
    merges = [tuple(m) for m in json.loads(backend.to_str())["model"]["merges"]]
    tokenizer = Qwen2Tokenizer(vocab=backend.get_vocab(), merges=merges, eos_token="<|im_end|>",
                               pad_token="<|endoftext|>", unk_token=None)
    tokenizer.add_special_tokens({"additional_special_tokens": list(QWEN_SPECIAL_TOKENS)})
    return tokenizer


ARCHITECTURES = ("qwen2_5_vl", "qwen2_vl")


def _config(architecture: str, text: dict[str, Any], vision: dict[str, Any], ids: dict[str, int], vocab_size: int):
    """A Qwen2.5-VL or Qwen2-VL configuration of the given (tiny) sizes, with the Qwen special-token ids."""
    from transformers import Qwen2_5_VLConfig, Qwen2VLConfig

    half_head = text["hidden_size"] // text["num_attention_heads"] // 2
    # Multimodal RoPE splits each head's rotary half into (time, height, width) sections, as Qwen's 16/24/24.
    sections = [half_head // 4, (half_head - half_head // 4) // 2]
    sections.append(half_head - sum(sections))
    text_config = {
        **text, "vocab_size": vocab_size, "max_position_embeddings": 4096, "tie_word_embeddings": False,
        "rope_parameters": {"rope_type": "default", "mrope_section": sections, "rope_theta": 10000.0},
        "bos_token_id": ids["<|endoftext|>"], "eos_token_id": ids["<|im_end|>"], "pad_token_id": ids["<|endoftext|>"],
    }
    common = {"patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2}
    if architecture == "qwen2_5_vl":
        vision_config = {**vision, **common, "out_hidden_size": text["hidden_size"], "tokens_per_second": 2,
                         "window_size": 112, "fullatt_block_indexes": [vision["depth"] - 1]}
        config_class = Qwen2_5_VLConfig
    else:  # Qwen2-VL's vision tower: embed_dim wide, hidden_size is what it hands the language model
        vision_config = {"depth": vision["depth"], "embed_dim": vision["hidden_size"],
                         "mlp_ratio": max(1, vision["intermediate_size"] // vision["hidden_size"]),
                         "num_heads": vision["num_heads"], "hidden_size": text["hidden_size"], **common}
        config_class = Qwen2VLConfig
    return config_class(
        text_config=text_config, vision_config=vision_config,
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )


def build_tiny_model(
    out_dir: str | Path,
    rubric: Rubric | None = None,
    *,
    random_state: int = 0,
    min_pixels: int = 28 * 28,
    max_pixels: int = 112 * 112,
    text_config: dict[str, Any] | None = None,
    vision_config: dict[str, Any] | None = None,
    architecture: str = "qwen2_5_vl",
) -> Path:
    """Write a random-init Qwen2.5-VL (or, with ``architecture="qwen2_vl"``, Qwen2-VL) checkpoint — model,
    tokenizer, processor, chat template — to ``out_dir``.

    ``min_pixels`` / ``max_pixels`` set the processor's per-frame pixel budget (the processor's defaults would
    upscale a 160×120 frame to hundreds of tokens). Same ``random_state``, same weights.
    """
    import torch
    from transformers import (
        AutoModelForImageTextToText,
        Qwen2_5_VLProcessor,
        Qwen2VLProcessor,
    )
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    if architecture not in ARCHITECTURES:
        raise ValueError(f"architecture must be one of {', '.join(ARCHITECTURES)}, got {architecture!r}")
    rubric = rubric if rubric is not None else load_rubric(REPO_RUBRICS / "surveillance_alert.yaml")
    out = Path(out_dir)
    tokenizer = build_tokenizer(rubric, random_state=random_state)
    size = {"shortest_edge": min_pixels, "longest_edge": max_pixels}
    processor_class = Qwen2_5_VLProcessor if architecture == "qwen2_5_vl" else Qwen2VLProcessor
    processor = processor_class(
        image_processor=Qwen2VLImageProcessor(size=size),
        video_processor=Qwen2VLVideoProcessor(size=size, cap_pixels_per_frame=False),
        tokenizer=tokenizer,
        chat_template=CHAT_TEMPLATE,
    )
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in QWEN_SPECIAL_TOKENS}
    text = {**TINY_TEXT, **(text_config or {})}
    config = _config(architecture, text, {**TINY_VISION, **(vision_config or {})}, ids, len(tokenizer))
    torch.manual_seed(random_state)
    model = AutoModelForImageTextToText.from_config(config)
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    (out / "TINY_MODEL.md").write_text(
        f"Random-init {type(model).__name__} built offline by cliptune (training/tiny.py) for rubric {rubric.name} "
        f"{rubric.version}, random_state={random_state}. For tests and the CPU demo only.\n", encoding="utf-8")
    return out


def build_sample_export(
    out_dir: str | Path,
    *,
    n_clips: int = 48,
    random_state: int = 0,
    group_by: str = "camera",
    test_size: float = 0.25,
    oversample_rare: int = 0,
    sample_dir: str | Path | None = None,
) -> Path:
    """The export format the trainer reads, built from the synthetic sample (stands in for ``curation.dataset.export``).

    ``OUT/hf`` is a ``DatasetDict`` (train, test) saved with ``save_to_disk``; ``video`` is a path relative to OUT
    of an H.264 MP4 (MP4 sources are copied, WebM sources get an H.264 proxy). ``group_by="camera"`` splits by
    camera like the real exporter; ``group_by="clip"`` makes each clip its own group (a stratified random split).
    ``oversample_rare=k`` adds ``k`` repeats of every rare-event train clip, each with its own ``frame_offset``.
    An existing ``sample_dir`` (from ``generate_sample``) is reused instead of generating a new one.
    """
    import datasets

    from curation.dataset.split import stratified_group_split
    from curation.media.synthetic import generate_sample
    from curation.media.video import make_proxy, probe

    if group_by not in ("camera", "clip"):
        raise ValueError(f"group_by must be 'camera' or 'clip', got {group_by!r}")
    out = Path(out_dir)
    raw = Path(sample_dir) if sample_dir is not None else out / "source"
    if sample_dir is None:
        generate_sample(raw, n_clips=n_clips, random_state=random_state)
    rubric_path = REPO_RUBRICS / "surveillance_alert.yaml"
    rubric = load_rubric(rubric_path)
    truth = [json.loads(line) for line in (raw / "ground_truth.jsonl").read_text(encoding="utf-8").splitlines()]
    rows: list[dict[str, Any]] = []
    for clip_id, item in enumerate(truth, start=1):
        source = raw / "clips" / item["file"]
        relative = Path("media") / Path(item["file"]).with_suffix(".mp4")
        (out / relative).parent.mkdir(parents=True, exist_ok=True)
        if source.suffix == ".mp4":
            shutil.copyfile(source, out / relative)
        else:
            make_proxy(source, out / relative, max_height=480)
        info = probe(out / relative)
        rows.append({"clip_id": clip_id, "video": relative.as_posix(), "prompt": rubric.prompt.strip(),
                     "output": rubric.render(item["fields"]), "fields": json.dumps(item["fields"]),
                     "group": item["camera"] if group_by == "camera" else f"clip-{clip_id}", "split": "",
                     "repeat": 0, "frame_offset": 0.0, "duration_s": info.duration_s, "fps": info.fps})
    events = [json.loads(r["fields"])[rubric.stratify_fields[0]] for r in rows]
    held_out = stratified_group_split(events, [r["group"] for r in rows], test_size=test_size,
                                      random_state=random_state)
    rare = {value for field in rubric.fields for value in field.rare}
    train, test = [], []
    for row, is_test in zip(rows, held_out, strict=True):
        row["split"] = "test" if is_test else "train"
        (test if is_test else train).append(row)
    for row in list(train):
        if json.loads(row["fields"]).get(rubric.stratify_fields[0]) in rare:
            for repeat in range(1, oversample_rare + 1):
                # Shift sampling by a fraction of a second so a repeat shows the model different frames.
                train.append({**row, "repeat": repeat, "frame_offset": round(0.15 * repeat, 3)})
    features = datasets.Features({
        "clip_id": datasets.Value("int64"), "video": datasets.Value("string"), "prompt": datasets.Value("string"),
        "output": datasets.Value("string"), "fields": datasets.Value("string"), "group": datasets.Value("string"),
        "split": datasets.Value("string"), "repeat": datasets.Value("int32"), "frame_offset": datasets.Value("float32"),
        "duration_s": datasets.Value("float32"), "fps": datasets.Value("float32"),
    })
    splits = {name: datasets.Dataset.from_list(part, features=features) for name, part in
              (("train", train), ("test", test))}
    datasets.DatasetDict(splits).save_to_disk(str(out / "hf"))
    shutil.copyfile(rubric_path, out / "rubric.yaml")
    meta = {"rubric": {"name": rubric.name, "version": rubric.version},
            "dataset_version": f"sample-{n_clips}-{random_state}-{group_by}",
            "counts": {"train": len(train), "test": len(test)}, "group_by": group_by,
            "source": "training.tiny.build_sample_export"}
    (out / "export.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    return out

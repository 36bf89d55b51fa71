"""LoRA / QLoRA fine-tuning of a video VLM on an export, with transformers + peft.

The base model is a local checkpoint loaded through ``AutoProcessor`` and ``AutoModelForImageTextToText`` (the
Qwen2.5-VL / Qwen2-VL family first), or ``"tiny"``: a random-init Qwen2.5-VL built offline (:mod:`training.tiny`).
LoRA goes on the language model's linear layers, chosen by a regular expression because the vision blocks have
``gate_proj/up_proj/down_proj`` too; ``vision_lora`` adds the vision blocks. QLoRA (4-bit base, bitsandbytes) needs a
CUDA device. bf16 on GPU, float32 on CPU. The loss is computed from logits at labelled positions only (the answer),
which spares the vocabulary-sized logits of every prompt and video token. A frozen vision tower's features are
computed once per clip and reused every later epoch (:mod:`training.vision_cache`); ``packing`` puts a batch's clips
in one sequence (:mod:`training.packing`); the next step's clips are decoded in a background thread. Checkpoints
(:mod:`training.checkpoints`) let ``resume`` continue a run exactly where it stopped (same data order, same
optimizer state, same random state).

The run folder holds ``adapter/`` (peft), ``processor/``, ``run_card.json`` + ``run_card.md`` (base model, data
version, rubric version, hyper-parameters, metrics) and ``checkpoints/``; ``base-model/`` for the tiny model.

Example::

    card = train("exports/lobby-v1", "/models/Qwen2.5-VL-7B-Instruct", "runs/v1",
                 TrainConfig(rank=16, frames=FrameSpec(num_frames=8)))
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from curation.errors import CliptuneError
from training.checkpoints import epoch_order, latest_checkpoint, restore_checkpoint, save_checkpoint, seed_everything
from training.data import (
    IGNORE_INDEX,
    ClipDataset,
    Export,
    FrameSpec,
    check_videos,
    collate,
    configure_processor,
    load_export,
)
from training.packing import pack
from training.run_card import write_run_card
from training.vision_cache import VisionFeatureCache, inner_model

LANGUAGE_LORA = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"
VISION_LORA = r".*visual\.blocks\.\d+\.(attn\.qkv|attn\.proj|mlp\.(gate_proj|up_proj|down_proj|fc1|fc2))"
TINY = "tiny"


@dataclass
class TrainConfig:
    """Hyper-parameters of a run (scikit-learn style names where there is one). ``None`` means the default for the
    base model, filled in by :meth:`resolved`: a real checkpoint and the random-init tiny model need different ones."""

    method: str = "lora"  # lora | qlora
    rank: int = 16
    alpha: float | None = None  # 2 * rank
    dropout: float | None = None  # 0.05; 0 for tiny
    target_modules: str = LANGUAGE_LORA
    vision_lora: bool | None = None  # off; on for tiny
    modules_to_save: list[str] | None = None  # none; lm_head + embed_tokens for tiny
    epochs: float | None = None  # 3; 20 for tiny
    batch_size: int = 8
    grad_accum: int = 1
    learning_rate: float | None = None  # 2e-4; 6e-3 for tiny
    weight_decay: float = 0.0
    warmup_ratio: float = 0.05
    max_grad_norm: float = 1.0
    random_state: int = 0
    frames: FrameSpec | None = None  # 8 frames of at most 448 x 448; 112 x 112 for tiny
    gradient_checkpointing: bool = False
    save_every: int = 0  # steps between checkpoints; 0: at the end of each epoch
    shuffle_labels: bool = False  # control run: targets permuted across train clips
    max_steps: int | None = None
    packing: bool = False  # each micro-batch as one row of packed clips (no padding), not a padded batch
    cache_vision: bool | None = None  # reuse video features across epochs; on when the vision tower is frozen

    def __post_init__(self) -> None:
        if self.method not in ("lora", "qlora"):
            raise CliptuneError(f"method must be lora or qlora, got {self.method!r}")
        for name in ("rank", "batch_size", "grad_accum"):
            if getattr(self, name) < 1:
                raise CliptuneError(f"{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if any(value is not None and value <= 0 for value in (self.epochs, self.learning_rate)):
            raise CliptuneError("epochs and learning-rate must be positive")

    def resolved(self, tiny: bool = False) -> TrainConfig:
        """Every ``None`` replaced by the default for a real checkpoint, or for the random-init tiny model: there
        embeddings and output layer are trained in full (LoRA alone on random weights plateaus), the vision tower
        gets LoRA too, dropout is off and the learning rate is high."""
        defaults = {
            "alpha": 2.0 * self.rank,
            "epochs": 20.0 if tiny else 3.0,
            "dropout": 0.0 if tiny else 0.05,
            "vision_lora": tiny,
            "modules_to_save": ["lm_head", "embed_tokens"] if tiny else [],
            "learning_rate": 6e-3 if tiny else 2e-4,
            "frames": FrameSpec(num_frames=8, max_pixels=112 * 112) if tiny else FrameSpec(),
        }
        resolved = replace(self, **{k: v for k, v in defaults.items() if getattr(self, k) is None})
        # Only a frozen vision tower gives the same features every epoch (the tiny model's gets LoRA).
        trains_vision = (resolved.vision_lora or "visual" in resolved.target_modules
                         or any("visual" in name or "vision" in name for name in resolved.modules_to_save))
        if resolved.cache_vision is None:
            return replace(resolved, cache_vision=not trains_vision)
        if resolved.cache_vision and trains_vision:
            raise CliptuneError("cache-vision needs a frozen vision tower, but vision LoRA or modules_to_save trains "
                                "it; turn one off")
        return resolved

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self)))


def default_frames(base_model: str | Path, *, num_frames: int = 8, fps: float | None = None,
                   min_pixels: int | None = None, max_pixels: int | None = None) -> FrameSpec:
    """A FrameSpec whose unset pixel budget is the base model's default (448 x 448; 112 x 112 for tiny)."""
    default = TrainConfig().resolved(tiny=str(base_model) == TINY).frames
    return FrameSpec(num_frames=num_frames, fps=fps, min_pixels=min_pixels or default.min_pixels,
                     max_pixels=max_pixels or default.max_pixels)


def device_and_dtype() -> tuple[Any, Any]:
    import torch

    if torch.cuda.is_available():
        return torch.device("cuda"), torch.bfloat16
    return torch.device("cpu"), torch.float32


def check_base(path: str | Path, *, quantize: bool = False) -> None:
    """CliptuneError unless ``path`` is a local checkpoint folder (and QLoRA can run here, if asked)."""
    import importlib.util

    import torch

    if str(path) != TINY and not (Path(path) / "config.json").is_file():
        raise CliptuneError(f"{path}: not a local model checkpoint (no config.json); give a folder such as "
                            f"/models/Qwen2.5-VL-7B-Instruct or '{TINY}' — nothing is downloaded")
    if quantize and (not torch.cuda.is_available() or importlib.util.find_spec("bitsandbytes") is None):
        raise CliptuneError("QLoRA needs a CUDA GPU and the bitsandbytes package; use --method lora here")


def load_base(path: str | Path, *, quantize: bool = False, device: Any = None, dtype: Any = None):
    """(model, processor) from a local checkpoint folder; never downloads."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    path = Path(path)
    check_base(path, quantize=quantize)
    if device is None or dtype is None:
        device, dtype = device_and_dtype()
    kwargs: dict[str, Any] = {"local_files_only": True, "dtype": dtype}
    if quantize:
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16, llm_int8_skip_modules=["visual", "lm_head"])
        kwargs["device_map"] = {"": 0}
    try:
        processor = AutoProcessor.from_pretrained(path, local_files_only=True)
        model = AutoModelForImageTextToText.from_pretrained(path, attn_implementation="sdpa", **kwargs)
    except (OSError, ValueError, KeyError) as exc:
        raise CliptuneError(f"{path}: cannot load the model or processor ({str(exc).splitlines()[0]})") from None
    if not quantize:
        model.to(device)
    if processor.tokenizer.pad_token_id is None:
        processor.tokenizer.pad_token = processor.tokenizer.eos_token
    return model, processor


def add_lora(model: Any, config: TrainConfig):
    """Wrap ``model`` with LoRA adapters on the modules matching the config's regular expressions."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    config = config.resolved()  # a no-op for a config train() resolved already
    pattern = config.target_modules + (f"|{VISION_LORA}" if config.vision_lora else "")
    if config.method == "qlora":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=config.gradient_checkpointing)
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    lora = LoraConfig(r=config.rank, lora_alpha=config.alpha, lora_dropout=config.dropout,
                      target_modules=pattern, modules_to_save=config.modules_to_save or None, task_type="CAUSAL_LM")
    try:
        return get_peft_model(model, lora)
    except ValueError as exc:
        raise CliptuneError(f"LoRA target modules {pattern!r} match nothing in this model ({exc})") from None


def batch_to(batch: dict[str, Any], device: Any, dtype: Any) -> dict[str, Any]:
    return {k: (v.to(device, dtype) if k == "pixel_values_videos" else v.to(device)) for k, v in batch.items()
            if hasattr(v, "to")}


def answer_loss(model: Any, batch: dict[str, Any]):
    """Mean cross-entropy over the answer tokens, with logits computed at those positions only.

    Returns (loss, number of answer tokens). The causal shift: the hidden state at position t predicts token t+1.
    """
    import torch

    labels = batch["labels"]
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    wrapped = model.get_base_model() if hasattr(model, "get_base_model") else model
    hidden = wrapped.model(**inputs, use_cache=False).last_hidden_state
    targets = labels[:, 1:]
    chosen = targets != IGNORE_INDEX
    logits = wrapped.get_output_embeddings()(hidden[:, :-1][chosen])
    loss = torch.nn.functional.cross_entropy(logits.float(), targets[chosen])
    return loss, int(chosen.sum())


def _train_step(model: Any, micro_batches: list[list[tuple[int, dict[str, Any]]]], *, config: TrainConfig,
                cache: VisionFeatureCache | None, dataset: ClipDataset, rope_index: Any, pad_id: int, device: Any,
                dtype: Any, autocast: Any, state: dict[str, Any]) -> float:
    """Forward and backward over one step's micro-batches (gradients accumulate); returns the step's mean loss."""
    step_loss = 0.0
    for micro in micro_batches:
        examples = [example for _, example in micro]
        batch = batch_to(pack(examples, rope_index) if config.packing else collate(examples, pad_id), device, dtype)
        real = int(batch["input_ids"].numel() if config.packing else batch["attention_mask"].sum())
        state["tokens"] += real
        state["padding_tokens"] += batch["input_ids"].numel() - real
        with autocast:
            if cache is not None:  # the dataset index names the example: a repeat is its own row
                videos = [(i, e) for i, e in micro if "video_grid_thw" in e]
                keys = [i for i, _ in videos]
                batch = cache.apply(batch, keys, with_pixels=["pixel_values_videos" in e for _, e in videos])
                for key, example in videos:  # held as features now: the dataset need not keep or decode frames
                    if key in cache:
                        dataset.forget_pixels(key, example)
            loss, _ = answer_loss(model, batch)
        (loss / len(micro_batches)).backward()
        step_loss += loss.item() / len(micro_batches)
    return step_loss


def shuffled_outputs(outputs: list[str], seed: int) -> list[str]:
    """Targets permuted across clips (a derangement where possible): the shuffled-label control."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(outputs))
    for _ in range(100):
        if len(outputs) < 2 or not np.any(order == np.arange(len(outputs))):
            break
        order = rng.permutation(len(outputs))
    return [outputs[i] for i in order]


def prepare_base(base_model: str | Path, output: Path, export: Export, config: TrainConfig) -> tuple[Path, str]:
    """The base checkpoint's folder and kind: ``tiny`` is built (once) into ``output/base-model``."""
    if str(base_model) != TINY:
        return Path(base_model).resolve(), "local"
    from training.tiny import build_tiny_model

    target = output / "base-model"
    if not (target / "config.json").exists():
        build_tiny_model(target, export.rubric, random_state=config.random_state,
                         min_pixels=config.frames.min_pixels, max_pixels=config.frames.max_pixels)
    return target.resolve(), TINY


def train(
    export_path: str | Path,
    base_model: str | Path,
    output: str | Path,
    config: TrainConfig | None = None,
    *,
    resume: bool = False,
    progress: Callable[[dict[str, Any]], None] | None = None,
    stop_after: int | None = None,
    prefetch: bool | None = None,
) -> dict[str, Any]:
    """Fine-tune ``base_model`` on the export's train split; returns the run card (also written to ``output``).

    ``prefetch`` decodes the next step's clips in a background thread (the results are the same either way); by
    default it is on when the steps run on a GPU or leave a CPU core free (on a CPU whose cores all compute, the
    thread only competes with the step: measured 0.81x on 2 cores, and 1.20x with one core left free).
    ``progress`` is called after every optimizer step with {step, total, epoch, loss, seconds}. ``stop_after``
    stops after that many steps of this call, leaving a checkpoint (used to test ``resume``).
    """
    import torch
    from transformers import get_cosine_schedule_with_warmup

    config = config or TrainConfig()
    output = Path(output)
    export = load_export(export_path)
    config = config.resolved(tiny=str(base_model) == TINY)
    check_base(base_model, quantize=config.method == "qlora")  # before anything is written
    check_videos(export, "train")
    checkpoint = latest_checkpoint(output) if resume else None
    if resume and checkpoint is None:
        raise CliptuneError(f"{output}: no checkpoint to resume from; start without --resume")
    if not resume and ((output / "run_card.json").exists() or latest_checkpoint(output) is not None):
        raise CliptuneError(f"{output} already holds a run; pass --resume to continue it or choose another --output")
    if checkpoint is not None:
        saved = json.loads((output / "train_config.json").read_text(encoding="utf-8"))
        same_base = str(base_model) == TINY or saved["base_model"] == str(Path(base_model).resolve())
        if saved["hyper_parameters"] != config.to_dict() or not same_base:
            raise CliptuneError(f"{output}: --resume needs the same base model and settings as the run it "
                                f"continues (saved in {output / 'train_config.json'})")
    output.mkdir(parents=True, exist_ok=True)
    base_path, base_kind = prepare_base(base_model, output, export, config)
    settings = {"hyper_parameters": config.to_dict(), "base_model": str(base_path)}
    (output / "train_config.json").write_text(json.dumps(settings, indent=2), encoding="utf-8")
    seed_everything(config.random_state)
    device, dtype = device_and_dtype()
    model, processor = load_base(base_path, quantize=config.method == "qlora", device=device, dtype=dtype)
    configure_processor(processor, config.frames)
    model.config.use_cache = False
    model = add_lora(model, config)
    cache = VisionFeatureCache(model) if config.cache_vision else None
    rope_index = inner_model(model).get_rope_index if config.packing else None
    outputs = list(export.dataset["train"]["output"])
    if config.shuffle_labels:
        outputs = shuffled_outputs(outputs, config.random_state)
    dataset = ClipDataset(export, "train", processor, config.frames, outputs=outputs)
    steps_per_epoch = math.ceil(len(dataset) / (config.batch_size * config.grad_accum))
    total = config.max_steps or max(1, math.ceil(config.epochs * steps_per_epoch))
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=config.learning_rate, weight_decay=config.weight_decay)
    scheduler = get_cosine_schedule_with_warmup(optimizer, int(config.warmup_ratio * total), total)
    state: dict[str, Any] = {"step": 0, "losses": [], "seconds": 0.0, "tokens": 0, "padding_tokens": 0}
    if checkpoint is not None:
        state = {"padding_tokens": 0, **restore_checkpoint(checkpoint, model, optimizer, scheduler)}
    pad_id = processor.tokenizer.pad_token_id
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast(
        "cpu", enabled=False)
    save_every = config.save_every or steps_per_epoch
    steps_this_call = 0
    per_step = config.batch_size * config.grad_accum

    def fetch(step: int) -> list[list[tuple[int, dict[str, Any]]]]:
        """The step's micro-batches as (dataset index, encoded example): decoding happens here."""
        epoch, within = divmod(step, steps_per_epoch)
        indices = epoch_order(len(dataset), config.random_state, epoch)[within * per_step:(within + 1) * per_step]
        return [[(i, dataset[i]) for i in indices[start:start + config.batch_size]]
                for start in range(0, len(indices), config.batch_size)]

    # Decode the next step's clips in a thread while this step computes: on a GPU the CPU is otherwise idle, and
    # decoding would sit on the critical path (decord and the processor release the GIL for the heavy parts).
    if prefetch is None:
        prefetch = device.type == "cuda" or torch.get_num_threads() < (os.cpu_count() or 1)
    prefetcher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cliptune-prefetch") if prefetch else None
    starts = state["step"] < total and (stop_after is None or stop_after > 0)
    upcoming = prefetcher.submit(fetch, state["step"]) if prefetcher is not None and starts else None
    model.train()
    try:
        while state["step"] < total and (stop_after is None or steps_this_call < stop_after):
            started = time.perf_counter()
            epoch = state["step"] // steps_per_epoch
            micro_batches = upcoming.result() if upcoming is not None else fetch(state["step"])
            last = state["step"] + 1 >= total or (stop_after is not None and steps_this_call + 1 >= stop_after)
            if prefetcher is not None and not last:
                upcoming = prefetcher.submit(fetch, state["step"] + 1)
            step_loss = _train_step(model, micro_batches, config=config, cache=cache, dataset=dataset,
                                    rope_index=rope_index, pad_id=pad_id, device=device, dtype=dtype,
                                    autocast=autocast, state=state)
            if config.max_grad_norm:
                torch.nn.utils.clip_grad_norm_(parameters, config.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            state["step"] += 1
            steps_this_call += 1
            state["losses"].append(round(step_loss, 5))
            state["seconds"] += time.perf_counter() - started
            if progress is not None:
                progress({"step": state["step"], "total": total, "epoch": epoch + 1, "loss": step_loss,
                          "seconds": state["seconds"]})
            if state["step"] % save_every == 0 or state["step"] == total or steps_this_call == stop_after:
                save_checkpoint(output, model, optimizer, scheduler, state)
    finally:
        if prefetcher is not None:
            prefetcher.shutdown(wait=True, cancel_futures=True)
    if state["step"] < total:
        return {"stopped_at": state["step"], "total": total}
    model.save_pretrained(output / "adapter")
    processor.save_pretrained(output / "processor")
    losses = state["losses"]
    card = {
        "cliptune_run": 1,
        "base_model": str(base_path), "base_model_kind": base_kind,
        "export": str(export.root.resolve()), "dataset_version": export.dataset_version,
        "rubric": {"name": export.rubric.name, "version": export.rubric_version},
        "hyper_parameters": config.to_dict(),
        "data": {"train_rows": len(dataset), "train_clips": len(set(export.dataset["train"]["clip_id"])),
                 "test_rows": len(export.dataset["test"])},
        "metrics": {"train": {
            "steps": state["step"], "epochs": round(state["step"] / steps_per_epoch, 3),
            "first_loss": losses[0], "final_loss": float(np.mean(losses[-max(1, steps_per_epoch):])),
            "seconds": round(state["seconds"], 2), "tokens": state["tokens"],
            "padding_tokens": state["padding_tokens"],
            "vision_cache": None if cache is None else {"hits": cache.hits, "misses": cache.misses,
                                                        "clips_kept": len(cache)},
            "tokens_per_s": round(state["tokens"] / max(state["seconds"], 1e-9), 1),
            "trainable_parameters": sum(p.numel() for p in parameters)}},
        "warnings": [],
        "environment": _environment(device),
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    write_run_card(output, card)
    return card


def _environment(device: Any) -> dict[str, Any]:
    import peft
    import torch
    import transformers

    name = torch.cuda.get_device_name(0) if device.type == "cuda" else platform.processor() or platform.machine()
    return {"device": f"{device.type}: {name}", "torch": torch.__version__, "transformers": transformers.__version__,
            "peft": peft.__version__, "python": platform.python_version()}

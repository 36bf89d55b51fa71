"""GPU training benchmark: cliptune's LoRA step against plain transformers + peft, in the same run, on a
random-init model of a real size (speed and memory do not depend on the weights' values). Not collected by pytest.

    .venv/bin/python tests/bench/bench_train_gpu.py                    # Qwen2.5-VL-7B shape, 8 frames 448x448
    .venv/bin/python tests/bench/bench_train_gpu.py --json out.json
    .venv/bin/python tests/bench/bench_train_gpu.py --smoke            # a tiny shape on CPU: checks the script runs

Each variant runs ``--warmup`` then ``--steps`` optimizer steps on one synthetic clip (a video of 8 frames at
448x448 = 4 x 32 x 32 patches = 1024 video tokens, a ~100-token prompt, a ~24-token answer) and reports step time,
tokens/s (every token of the sequence), model TFLOP/s and peak allocated memory.

- ``plain``: ``get_peft_model`` (LoRA r=16 on the language model's linear layers), sdpa attention, bf16 weights,
  ``model(**batch, labels=labels).loss`` — logits over the whole vocabulary at every position.
- ``plain+gc``: the same with gradient checkpointing (``use_reentrant=False``).
- ``ours/...``: :func:`training.lora.add_lora` + :func:`training.lora.answer_loss` (logits at answer positions
  only), bf16 autocast, the trainer's own step, with CLIPS clips packed into one sequence (:mod:`training.packing`).
  ``ours/epoch1`` runs the vision tower (the first epoch); ``ours/cached`` takes the features from
  :mod:`training.vision_cache` (every later epoch: LoRA on the language model leaves the vision tower frozen);
  ``+gc`` adds gradient checkpointing. ``--ours`` lists them; the default measures the whole table in one call (a
  lent GPU's time is scarce), and a variant that runs out of memory is a row saying so, not the end of the run.

Model FLOPs per step (the same formula for every variant, so ratios compare like with like): language model
4 x N_lm x T (forward, and backward to the activations: the frozen weights need no gradient) + attention
4 x layers x T^2 x hidden (causal: half of 2 x 2 x T^2 x hidden, forward and backward) + the LoRA weight
gradients (negligible) + vision tower forward 2 x N_vision x patches (not counted where the features come from
the cache: that work is not done). T = tokens of one clip, N = parameters; packed clips attend only within
themselves, so attention counts T^2 per clip.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

QWEN25_VL_7B = {
    "text_config": {"vocab_size": 152064, "hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28,
                    "num_attention_heads": 28, "num_key_value_heads": 4, "max_position_embeddings": 128000,
                    "rms_norm_eps": 1e-6, "tie_word_embeddings": False, "bos_token_id": 151643,
                    "eos_token_id": 151645,
                    "rope_parameters": {"rope_type": "default", "mrope_section": [16, 24, 24], "rope_theta": 1e6}},
    "vision_config": {"depth": 32, "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16,
                      "out_hidden_size": 3584, "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2,
                      "window_size": 112, "fullatt_block_indexes": [7, 15, 23, 31], "tokens_per_second": 2,
                      "hidden_act": "silu"},
    "image_token_id": 151655, "video_token_id": 151656, "vision_start_token_id": 151652,
    "vision_end_token_id": 151653, "tie_word_embeddings": False,
}
SMOKE = {  # the same architecture, tiny, for --smoke on a CPU
    "text_config": {**QWEN25_VL_7B["text_config"], "hidden_size": 64, "intermediate_size": 128,
                    "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
                    "rope_parameters": {"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 1e6}},
    "vision_config": {**QWEN25_VL_7B["vision_config"], "depth": 2, "hidden_size": 32, "intermediate_size": 64,
                      "num_heads": 2, "out_hidden_size": 64, "fullatt_block_indexes": [1]},
}
SMOKE = {**QWEN25_VL_7B, **SMOKE}
GIB = 1024**3


def build_model(shape: dict, device, dtype):
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    config = Qwen2_5_VLConfig(**json.loads(json.dumps(shape)))
    config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # made in bf16 on the GPU: no float32 copy of 8 B parameters on the way
    try:
        with torch.device(device):
            model = Qwen2_5_VLForConditionalGeneration(config)
    finally:
        torch.set_default_dtype(default)
    model.config.use_cache = False
    return model


def make_batch(config, *, frames: int, size: int, prompt_tokens: int, answer_tokens: int, clips: int, device):
    """Synthetic inputs with the real layout: system + video placeholders + prompt, then the answer (labelled)."""
    import torch

    vision = config.vision_config
    grid = [frames // vision.temporal_patch_size, size // vision.patch_size, size // vision.patch_size]
    n_patches = grid[0] * grid[1] * grid[2]
    n_video = n_patches // vision.spatial_merge_size**2
    generator = torch.Generator().manual_seed(0)
    words = lambda n: torch.randint(1000, 100000, (n,), generator=generator)  # noqa: E731
    ids = torch.cat([words(12), torch.tensor([config.vision_start_token_id]),
                     torch.full((n_video,), config.video_token_id), torch.tensor([config.vision_end_token_id]),
                     words(prompt_tokens), words(answer_tokens)])
    labels = torch.full_like(ids, -100)
    labels[-answer_tokens:] = ids[-answer_tokens:]
    mm = (ids == config.video_token_id).long() * 2
    patch_dim = 3 * vision.temporal_patch_size * vision.patch_size**2
    batch = {
        "input_ids": ids.repeat(clips, 1), "attention_mask": torch.ones(clips, len(ids), dtype=torch.long),
        "mm_token_type_ids": mm.repeat(clips, 1), "labels": labels.repeat(clips, 1),
        "pixel_values_videos": torch.randn(clips * n_patches, patch_dim, generator=generator),
        "video_grid_thw": torch.tensor([grid] * clips), "second_per_grid_ts": torch.tensor([1.0] * clips),
    }
    return {k: v.to(device) for k, v in batch.items()}, n_patches


def model_flops(model, tokens: int, patches: int, clips: int, *, vision: bool = True) -> float:
    text = model.config.text_config
    n_vision = sum(p.numel() for p in model.model.visual.parameters())
    n_lm = sum(p.numel() for n, p in model.named_parameters() if "visual" not in n and "embed_tokens" not in n)
    attention = 4 * text.num_hidden_layers * tokens**2 * text.hidden_size
    return clips * (4 * n_lm * tokens + attention + (2 * n_vision * patches if vision else 0))


def packed_batch(model, batch: dict, clips: int) -> dict:
    """``clips`` copies of the batch's one clip, packed into one sequence as the trainer does."""
    from training.packing import pack

    one = {k: (v[0] if k in ("input_ids", "labels", "mm_token_type_ids") else v) for k, v in batch.items()
           if k != "attention_mask"}
    rows = pack([{k: v.cpu() for k, v in one.items()} for _ in range(clips)], model.model.get_rope_index)
    return {k: v.to(batch["input_ids"].device) for k, v in rows.items()}


def run_variant(name: str, model, batch: dict, *, step, steps: int, warmup: int, device, flops: float, clips: int):
    import torch

    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=1e-4)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    times = []
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    for index in range(warmup + steps):
        sync()
        started = time.perf_counter()
        loss = step(model, batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sync()
        if index >= warmup:
            times.append(time.perf_counter() - started)
    step_s = sorted(times)[len(times) // 2]  # median: robust to a stray slow step
    tokens = int(batch["attention_mask"].sum()) if "attention_mask" in batch else batch["input_ids"].numel()
    peak = round(torch.cuda.max_memory_allocated() / GIB, 2) if device.type == "cuda" else None  # JSON: no NaN
    del optimizer
    return {"variant": name, "clips_per_step": clips, "step_s": round(step_s, 4),
            "tokens_per_s": round(tokens / step_s, 1), "tflops": round(flops / step_s / 1e12, 2),
            "peak_gib": peak, "loss": round(loss.item(), 4)}


def plain_step(model, batch):
    return model(**batch).loss


def ours_step(model, batch):
    import torch

    from training.lora import answer_loss

    with torch.autocast(batch["input_ids"].device.type, dtype=torch.bfloat16,
                        enabled=batch["input_ids"].device.type == "cuda"):
        return answer_loss(model, batch)[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=448)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--ours", default="epoch1:1,cached:1,cached:4,cached+gc:4,cached+gc:8",
                        help="cliptune's variants, MODE:CLIPS separated by commas; MODE is epoch1 (vision tower "
                             "run) or cached (features from the cache), +gc for gradient checkpointing; CLIPS are "
                             "packed into one sequence")
    parser.add_argument("--skip-gc", action="store_true", help="skip the plain+gc variant (saves time)")
    parser.add_argument("--smoke", action="store_true", help="tiny shape on CPU, to check the script itself")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    import torch
    from peft import LoraConfig, get_peft_model

    from training.lora import LANGUAGE_LORA, TrainConfig, add_lora
    from training.vision_cache import VisionFeatureCache

    if not args.smoke and not torch.cuda.is_available():
        print("bench_train_gpu: no CUDA device here; run it on a GPU machine (or --smoke for a CPU check of the "
              "script). Nothing was measured.", file=sys.stderr)
        return 0  # a skip, not a failure: `make bench` runs every benchmark on whatever machine it is on
    device = torch.device("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    shape = SMOKE if args.smoke else QWEN25_VL_7B
    size, frames = (56, 4) if args.smoke else (args.size, args.frames)
    steps, warmup = (2, 1) if args.smoke else (args.steps, args.warmup)
    device_name = torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu"
    started = time.perf_counter()
    model = build_model(shape, device, dtype)
    print(f"built {sum(p.numel() for p in model.parameters()) / 1e9:.2f} B parameters on {device_name} "
          f"in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    results = []
    variants = [("plain", False), ("plain+gc", True)][: 1 if args.skip_gc else 2]
    for name, checkpointing in variants:
        batch, patches = make_batch(model.config, frames=frames, size=size, prompt_tokens=100, answer_tokens=24,
                                    clips=1, device=device)
        if checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            model.enable_input_require_grads()
        peft_model = get_peft_model(model, LoraConfig(r=args.rank, lora_alpha=2 * args.rank, lora_dropout=0.05,
                                                      target_modules=LANGUAGE_LORA, task_type="CAUSAL_LM"))
        flops = model_flops(model, batch["input_ids"].shape[1], patches, 1)
        results.append(run_variant(name, peft_model, batch, step=plain_step, steps=steps, warmup=warmup,
                                   device=device, flops=flops, clips=1))
        print(json.dumps(results[-1]), file=sys.stderr)
        model = peft_model.unload()
        if checkpointing:
            model.gradient_checkpointing_disable()
        del peft_model, batch
        gc.collect()
    batch, patches = make_batch(model.config, frames=frames, size=size, prompt_tokens=100, answer_tokens=24,
                                clips=1, device=device)
    tokens_per_clip = batch["input_ids"].shape[1]
    for spec in args.ours.split(","):
        mode, clips = spec.split(":")[0], int(spec.split(":")[1])
        checkpointing = mode.endswith("+gc")
        name = f"ours/{mode}"
        packed = packed_batch(model, batch, clips) if clips > 1 else batch
        ours = add_lora(model, TrainConfig(rank=args.rank, gradient_checkpointing=checkpointing))
        try:
            if mode.startswith("cached"):
                cache = VisionFeatureCache(ours, max_bytes=64 * GIB)
                keys = list(range(clips))  # the same clip packed `clips` times, cached as `clips` examples
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                    cache.apply(packed, keys)  # fills the cache: the first epoch's work, not timed here
                inputs = cache.apply({k: v for k, v in packed.items() if k != "pixel_values_videos"}, keys,
                                     with_pixels=[False] * clips)
                flops = model_flops(model, tokens_per_clip, patches, clips, vision=False)
            else:
                inputs, flops = packed, model_flops(model, tokens_per_clip, patches, clips)
            results.append(run_variant(name, ours, inputs, step=ours_step, steps=steps, warmup=warmup,
                                       device=device, flops=flops, clips=clips))
        except torch.OutOfMemoryError:  # one row of the table, not the end of a scarce GPU session
            results.append({"variant": name, "clips_per_step": clips, "error": "out of memory"})
        print(json.dumps(results[-1]), file=sys.stderr)
        model = ours.unload()
        if checkpointing:
            model.gradient_checkpointing_disable()
            model.disable_input_require_grads()
        del ours, packed
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    plain = results[0]
    print(f"\n{device_name}: {'tiny smoke shape' if args.smoke else 'Qwen2.5-VL-7B shape'}, {frames} frames at "
          f"{size}x{size}, LoRA r={args.rank}, {steps} steps (median)")
    print(f"{'variant':<16} {'clips':>5} {'step s':>8} {'tokens/s':>10} {'TFLOP/s':>8} {'peak GiB':>9} "
          f"{'x plain tok/s':>13}")
    for row in results:
        if "error" in row:
            print(f"{row['variant']:<16} {row['clips_per_step']:>5} {row['error']}")
            continue
        print(f"{row['variant']:<16} {row['clips_per_step']:>5} {row['step_s']:>8.3f} {row['tokens_per_s']:>10.0f} "
              f"{row['tflops']:>8.1f} {row['peak_gib'] if row['peak_gib'] is not None else '-':>9} "
              f"{row['tokens_per_s'] / plain['tokens_per_s']:>13.2f}")
    if not args.skip_gc and device.type == "cuda":
        gc_row = results[1]
        for ours_row in [row for row in results[2:] if "error" not in row]:
            print(f"targets, {ours_row['variant']}: tokens/s >= 2.5x plain: "
                  f"{ours_row['tokens_per_s'] / plain['tokens_per_s']:.2f}x; peak memory <= plain+gc "
                  f"({gc_row['peak_gib']} GiB): {ours_row['peak_gib']} GiB")
    if args.json:
        args.json.write_text(json.dumps({"device": device_name, "frames": frames, "size": size, "rank": args.rank,
                                         "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

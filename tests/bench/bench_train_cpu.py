"""The trainer's speed levers on this machine's CPU, tiny model, real sample clips: a whole `train()` run with the
plain padded batch, decoding on the training thread, against prefetching, packing and cached vision features, in
the same run. Not collected by pytest.

    .venv/bin/python tests/bench/bench_train_cpu.py            # 64 sample clips, 3 epochs, 16 frames at 112x112
    .venv/bin/python tests/bench/bench_train_cpu.py --json out.json

The vision tower is frozen here (LoRA on the language model only, the default for a real checkpoint), so the
cache applies. Time is the optimizer steps' wall time as the trainer records it, frame decoding included (the
first epoch decodes every clip; later epochs reuse what the dataset keeps). The GPU benchmark, with the real
model shape, is bench_train_gpu.py.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=64)
    parser.add_argument("--epochs", type=float, default=3.0)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    import torch

    from training.data import FrameSpec
    from training.lora import TrainConfig, train
    from training.tiny import build_sample_export

    torch.set_num_threads(args.threads)
    base = replace(TrainConfig(vision_lora=False, cache_vision=False).resolved(tiny=True), epochs=args.epochs,
                   frames=FrameSpec(num_frames=args.frames, max_pixels=112 * 112))
    # (config change, prefetch): the baseline decodes each step's clips on the training thread.
    variants = {"plain": ({}, False), "prefetch": ({}, True),
                "prefetch + cached vision": ({"cache_vision": True}, True),
                "prefetch + packing": ({"packing": True}, True),
                "prefetch + packing + cached vision": ({"packing": True, "cache_vision": True}, True)}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        export = build_sample_export(Path(tmp) / "export", n_clips=args.clips, random_state=0)
        for name, (change, prefetch) in variants.items():
            card = train(export, "tiny", Path(tmp) / name.replace(" ", ""), replace(base, **change),
                         prefetch=prefetch)
            metrics = card["metrics"]["train"]
            rows.append({"variant": name, "seconds": metrics["seconds"], "steps": metrics["steps"],
                         "final_loss": round(metrics["final_loss"], 4), "tokens_per_s": metrics["tokens_per_s"]})
            print(json.dumps(rows[-1]), file=sys.stderr)
    plain = rows[0]["seconds"]
    print(f"\ncpu, {args.threads} threads: tiny Qwen2.5-VL, frozen vision tower, {args.clips} sample clips, "
          f"{args.epochs:g} epochs, {args.frames} frames at 112x112")
    print(f"{'variant':<36} {'seconds':>8} {'tokens/s':>9} {'final loss':>10} {'x plain speed':>13}")
    for row in rows:
        print(f"{row['variant']:<36} {row['seconds']:>8.1f} {row['tokens_per_s']:>9.0f} {row['final_loss']:>10.4f} "
              f"{plain / row['seconds']:>13.2f}")
    if args.json:
        args.json.write_text(json.dumps({"device": "cpu", "threads": args.threads, "results": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`cliptune train` and `evaluate` (see :mod:`curation.cli.common`). torch is imported inside the commands.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from curation.cli.common import JsonOption, err, out, print_json, progress_bar


def train_command(
    export: Annotated[Path, typer.Argument(help="Export folder (made by `cliptune export`).")],
    base_model: Annotated[str, typer.Option(help="Local checkpoint folder (nothing is downloaded), or 'tiny': a "
                                                 "random-init Qwen2.5-VL built offline, for a CPU demo.")],
    output: Annotated[Path, typer.Option(help="Run folder: adapter, processor, run card, checkpoints.")],
    method: Annotated[str, typer.Option(help="lora, or qlora (4-bit base; needs CUDA and bitsandbytes).")] = "lora",
    rank: Annotated[int, typer.Option(help="LoRA rank.")] = 16,
    frames: Annotated[int, typer.Option(help="Frames per clip (uniformly; with --fps, at most this many).")] = 8,
    fps: Annotated[float | None, typer.Option(help="Take one frame every 1/fps seconds instead.")] = None,
    max_pixels: Annotated[int | None, typer.Option(help="Pixel budget per frame (default 448*448; tiny 112*112).")]
    = None,
    epochs: Annotated[float | None, typer.Option(help="Passes over the train split (default 3; tiny 20).")] = None,
    batch_size: Annotated[int, typer.Option(help="Clips per step (8 or more: tiny batches collapse).")] = 8,
    grad_accum: Annotated[int, typer.Option(help="Micro-batches per optimizer step.")] = 1,
    learning_rate: Annotated[float | None, typer.Option(help="Default 2e-4; 6e-3 for tiny.")] = None,
    vision_lora: Annotated[bool | None, typer.Option("--vision-lora/--no-vision-lora",
                                                     help="LoRA on the vision tower too.")] = None,
    gradient_checkpointing: Annotated[bool, typer.Option(help="Less memory, slower steps.")] = False,
    packing: Annotated[bool, typer.Option(help="Pack each batch's clips into one sequence (no padding).")] = False,
    cache_vision: Annotated[bool | None, typer.Option(
        "--cache-vision/--no-cache-vision",
        help="Compute a frozen vision tower's features once and reuse them every epoch (default: on when the "
             "vision tower is frozen).")] = None,
    save_every: Annotated[int, typer.Option(help="Checkpoint every N steps (0: every epoch).")] = 0,
    random_state: Annotated[int, typer.Option(help="Seed: model init (tiny), LoRA init, data order.")] = 0,
    shuffle_labels: Annotated[bool, typer.Option(help="Control run: train on targets shuffled across clips.")] = False,
    resume: Annotated[bool, typer.Option(help="Continue the run in --output from its last checkpoint.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Fine-tune a video VLM with LoRA on an export's train split; saves adapter, processor and run card."""
    from training.lora import TrainConfig, default_frames, train

    spec = default_frames(base_model, num_frames=frames, fps=fps, max_pixels=max_pixels)
    config = TrainConfig(method=method, rank=rank, frames=spec, epochs=epochs, batch_size=batch_size,
                         grad_accum=grad_accum, learning_rate=learning_rate, vision_lora=vision_lora,
                         gradient_checkpointing=gradient_checkpointing, save_every=save_every,
                         random_state=random_state, shuffle_labels=shuffle_labels, packing=packing,
                         cache_vision=cache_vision)
    with progress_bar("train", enabled=not as_json) as update:
        def callback(info: dict[str, Any]) -> None:
            update(info["step"], info["total"], f"epoch {info['epoch']} loss {info['loss']:.4f}")

        card = train(export, base_model, output, config, resume=resume, progress=callback if update else None)
    if as_json:
        print_json(card)
        return
    metrics = card["metrics"]["train"]
    out.print(f"trained {card['hyper_parameters']['method']} rank {card['hyper_parameters']['rank']} on "
              f"{card['data']['train_rows']} rows: {metrics['steps']} steps, loss {metrics['first_loss']:.3f} -> "
              f"{metrics['final_loss']:.3f}, {metrics['seconds']} s. Adapter and run card in {output}. "
              f"Next: cliptune evaluate {output}", highlight=False)


def evaluate_command(
    run: Annotated[Path, typer.Argument(help="Run folder (made by `cliptune train`).")],
    batch_size: Annotated[int, typer.Option(help="Clips per generation batch.")] = 8,
    forgetting_threshold: Annotated[float, typer.Option(help="Warn when general probe accuracy drops by more.")]
    = 0.05,
    probes: Annotated[bool, typer.Option("--probes/--no-probes", help="Run the forgetting check.")] = True,
    as_json: JsonOption = False,
) -> None:
    """Held-out metrics through the rubric, base vs fine-tuned, and the forgetting check."""
    from training.evaluate import evaluate_run

    report = evaluate_run(run, batch_size=batch_size, forgetting_threshold=forgetting_threshold, probes=probes)
    warning = (report.get("forgetting") or {}).get("warning")
    if warning:
        err.print(f"warning: {warning}", highlight=False, markup=False)
    if as_json:
        summary = {k: v for k, v in report.items() if k not in ("predictions", "probes")}
        summary["evaluation_file"] = str(run / "evaluation.json")
        print_json(summary)
        return
    table = Table(title=f"held-out ({report['n']} clips) — {run}")
    for column in ("metric", "base", "fine-tuned"):
        table.add_column(column, justify="right" if column != "metric" else "left")
    base, tuned = report["base"], report["fine_tuned"]
    table.add_row("exact match", f"{base['exact_match']:.3f}", f"{tuned['exact_match']:.3f}")
    table.add_row("format validity", f"{base['format_validity']:.3f}", f"{tuned['format_validity']:.3f}")
    for name, scores in tuned["fields"].items():
        table.add_row(f"{name} accuracy", f"{base['fields'][name]['accuracy']:.3f}", f"{scores['accuracy']:.3f}")
    forgetting = report.get("forgetting")
    if forgetting:
        table.add_row("general probes", f"{forgetting['before']:.3f}", f"{forgetting['after']:.3f}")
    out.print(table)


def register(app: typer.Typer) -> None:
    """Add ``train`` and ``evaluate`` to the ``cliptune`` command (the ``cliptune.commands`` entry point).

    Raises ImportError, which leaves the verbs out with a line in ``cliptune --help``, when the ``[train]`` extra is
    not installed: the commands import these packages when they run.
    """
    missing = [name for name in ("torch", "transformers", "peft") if importlib.util.find_spec(name) is None]
    if missing:
        raise ImportError(f"{', '.join(missing)} not installed (pip install 'cliptune[train]')")
    app.command("train")(train_command)
    app.command("evaluate")(evaluate_command)

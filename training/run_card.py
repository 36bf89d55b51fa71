"""The run card: what was trained on what, with which settings, and how it scored.

:func:`training.lora.train` writes it; :func:`training.evaluate.evaluate_run` adds the held-out and forgetting
results. ``run_card.json`` is for scripts, ``run_card.md`` for people; both are replaced atomically.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from curation.errors import CliptuneError


def read_run_card(run: str | Path) -> dict[str, Any]:
    path = Path(run) / "run_card.json"
    if not path.is_file():
        raise CliptuneError(f"{run}: not a finished training run (no run_card.json); train with `cliptune train`")
    return json.loads(path.read_text(encoding="utf-8"))


def write_run_card(run: str | Path, card: dict[str, Any]) -> None:
    """run_card.json and a markdown rendering for people, both replaced atomically."""
    run = Path(run)
    for name, text in (("run_card.json", json.dumps(card, indent=2, default=str)),
                       ("run_card.md", run_card_markdown(card))):
        partial = run / f".{name}.partial"
        partial.write_text(text + "\n", encoding="utf-8")
        partial.replace(run / name)


def run_card_markdown(card: dict[str, Any]) -> str:
    """The run card for people: what was trained on what, with which settings, and how it scored."""
    hp = card["hyper_parameters"]
    train_metrics = card["metrics"]["train"]
    lines = [
        f"# Run card — {card['rubric']['name']} on {card['dataset_version']}", "",
        f"- base model: `{card['base_model']}` ({card['base_model_kind']})",
        f"- export: `{card['export']}` — data version `{card['dataset_version']}`, rubric "
        f"`{card['rubric']['name']}` version `{card['rubric']['version']}`",
        f"- data: {card['data']['train_rows']} train rows ({card['data']['train_clips']} clips), "
        f"{card['data']['test_rows']} held-out",
        f"- method: {hp['method']}, rank {hp['rank']}, alpha {hp['alpha']}, dropout {hp['dropout']}, vision LoRA "
        f"{'on' if hp['vision_lora'] else 'off'}, fully trained: {hp['modules_to_save'] or 'none'}",
        f"- optimisation: {hp['epochs']} epochs, batch {hp['batch_size']} × {hp['grad_accum']}, learning rate "
        f"{hp['learning_rate']}, seed {hp['random_state']}" + (", **shuffled labels (control)**"
                                                               if hp["shuffle_labels"] else ""),
        f"- frames: {hp['frames']['num_frames']}" + (f" at {hp['frames']['fps']} fps" if hp["frames"]["fps"] else "")
        + f", {hp['frames']['min_pixels']}–{hp['frames']['max_pixels']} pixels per frame",
        "- speed: " + ", ".join(f"{name} {'on' if hp.get(key) else 'off'}" for name, key in (
            ("gradient checkpointing", "gradient_checkpointing"), ("packing", "packing"),
            ("cached vision features", "cache_vision"))),
        f"- training: {train_metrics['steps']} steps, loss {train_metrics['first_loss']:.3f} → "
        f"{train_metrics['final_loss']:.3f}, {train_metrics['seconds']} s, {train_metrics['tokens_per_s']} tokens/s",
        f"- environment: {card['environment']['device']}, torch {card['environment']['torch']}, transformers "
        f"{card['environment']['transformers']}, peft {card['environment']['peft']}",
    ]
    evaluation = card["metrics"].get("evaluation")
    if evaluation:
        models = [name for name in ("base", "fine_tuned") if name in evaluation]
        lines += ["", f"## Held-out evaluation ({evaluation['n']} clips)", "",
                  "| metric | " + " | ".join(m.replace("_", "-") for m in models) + " |",
                  "|---" * (1 + len(models)) + "|"]
        rows = [("exact match", lambda s: s["exact_match"]), ("format validity", lambda s: s["format_validity"])]
        rows += [(f"{name} accuracy", lambda s, name=name: s["fields"][name]["accuracy"])
                 for name in evaluation["fine_tuned"]["fields"]]
        for label, value in rows:
            lines.append(f"| {label} | " + " | ".join(f"{value(evaluation[m]):.3f}" for m in models) + " |")
    forgetting = card["metrics"].get("forgetting")
    if forgetting:
        lines += ["", "## Forgetting check", "",
                  f"General probe accuracy {forgetting['before']:.3f} → {forgetting['after']:.3f} "
                  f"(threshold {forgetting['threshold']:.2f})."]
    if card.get("warnings"):
        lines += ["", "## Warnings", ""] + [f"- **{w}**" for w in card["warnings"]]
    return "\n".join(lines)

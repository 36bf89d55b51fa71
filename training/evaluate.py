"""Held-out evaluation through the rubric, base model against fine-tuned, and the forgetting check.

Both models answer every held-out clip (greedy decoding, the same inputs); each answer is parsed back into fields
with the rubric. Reported per model: exact match (every field equal), format validity (the answer parses), per-field
accuracy (numbers, counts and times within the field's ``tolerance``; mean absolute error over valid answers too),
chrF for text fields, and a per-class breakdown of choice fields with the rare classes pooled separately. An answer
that does not parse counts as wrong for every field. The forgetting probe (:mod:`training.probes`) is scored before
and after; a drop beyond the threshold is a warning in the run card and on the command line.

Example::

    report = evaluate_run("runs/v1")
    report["fine_tuned"]["exact_match"], report["forgetting"]["warning"]
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from curation.errors import CliptuneError
from curation.review.text_similarity import chrf
from curation.rubric import Rubric, RubricField
from training.data import ClipDataset, Export, FrameSpec, clip_frames, collate, encode, load_export
from training.lora import batch_to, load_base
from training.probes import DEFAULT_THRESHOLD, forgetting_report, load_probes, probe_items, score_probes
from training.run_card import read_run_card, write_run_card

DAY_S = 24 * 3600


def generate(model: Any, processor: Any, examples: list[dict[str, Any]], *, batch_size: int = 8,
             max_new_tokens: int = 64) -> list[str]:
    """Greedy answers for encoded prompts (from :func:`training.data.encode` without an answer)."""
    import torch

    tokenizer = processor.tokenizer
    device = next(model.parameters()).device
    dtype = next(p for p in model.parameters() if p.is_floating_point()).dtype
    answers: list[str] = []
    model.eval()
    for start in range(0, len(examples), batch_size):
        batch = collate(examples[start:start + batch_size], tokenizer.pad_token_id, padding_side="left")
        batch = batch_to(batch, device, dtype)
        with torch.no_grad():
            generated = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False, temperature=None,
                                       top_p=None, top_k=None, pad_token_id=tokenizer.pad_token_id)
        new_tokens = generated[:, batch["input_ids"].shape[1]:]
        answers += [text.strip() for text in tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]
    return answers


def _agree(field: RubricField, predicted: Any, reference: Any) -> bool:
    if predicted is None or reference is None:
        return predicted is reference
    if field.type in ("integer", "number", "time"):
        difference = abs(field.to_number(predicted) - field.to_number(reference))
        if field.type == "time" and field.format == "hh:mm":
            difference = min(difference, DAY_S - difference)  # 23:59 and 00:00 are a minute apart
        return difference <= field.tolerance + 1e-9
    return predicted == reference


def score_outputs(rubric: Rubric, predictions: list[str], references: list[dict[str, Any]]) -> dict[str, Any]:
    """Exact match, format validity, per-field accuracy / MAE / chrF and per-class breakdown of ``predictions``."""
    n = len(predictions)
    if n != len(references) or n == 0:
        raise ValueError(f"need as many predictions as references (and at least one), got {n} and {len(references)}")
    parsed = [rubric.try_parse(text) for text in predictions]
    gold = [rubric.normalise(reference) for reference in references]
    result: dict[str, Any] = {
        "n": n,
        "format_validity": float(np.mean([p is not None for p in parsed])),
        "exact_match": float(np.mean([p == g for p, g in zip(parsed, gold, strict=True)])),
        "fields": {},
    }
    for field in rubric.fields:
        correct = [p is not None and _agree(field, p[field.name], g[field.name]) for p, g in zip(parsed, gold,
                                                                                               strict=True)]
        scores: dict[str, Any] = {"accuracy": float(np.mean(correct))}
        if field.type in ("integer", "number", "time"):
            errors = [abs(field.to_number(p[field.name]) - field.to_number(g[field.name]))
                      for p, g in zip(parsed, gold, strict=True)
                      if p is not None and p[field.name] is not None and g[field.name] is not None]
            scores["mae"] = float(np.mean(errors)) if errors else None
            scores["n_valid"] = len(errors)
        if field.type == "text":
            scores["chrf"] = float(np.mean([chrf(p[field.name] or "", g[field.name] or "") if p is not None else 0.0
                                            for p, g in zip(parsed, gold, strict=True)]))
        if field.type in ("choice", "ordinal"):
            scores["per_class"] = _per_class(field, parsed, gold, correct)
        result["fields"][field.name] = scores
    result["rare"] = _rare_summary(rubric, parsed, gold)
    return result


def _per_class(field: RubricField, parsed: list[dict | None], gold: list[dict], correct: list[bool]
               ) -> dict[str, dict[str, Any]]:
    classes: dict[str, dict[str, Any]] = {}
    for value in field.choices:
        support = [c for c, g in zip(correct, gold, strict=True) if g[field.name] == value]
        predicted = [g[field.name] == value for p, g in zip(parsed, gold, strict=True)
                     if p is not None and p[field.name] == value]
        classes[value] = {"n": len(support), "recall": float(np.mean(support)) if support else None,
                          "predicted": len(predicted), "precision": float(np.mean(predicted)) if predicted else None,
                          "rare": value in field.rare}
    return classes


def _rare_summary(rubric: Rubric, parsed: list[dict | None], gold: list[dict]) -> dict[str, Any]:
    """Exact match and field accuracy on clips whose reference is a rare event, and on the rest."""
    rare_fields = [f for f in rubric.fields if f.rare]
    if not rare_fields:
        return {}
    is_rare = [any(g[f.name] in f.rare for f in rare_fields) for g in gold]
    summary: dict[str, Any] = {}
    for name, wanted in (("rare", True), ("common", False)):
        chosen = [(p, g) for p, g, r in zip(parsed, gold, is_rare, strict=True) if r == wanted]
        summary[name] = {"n": len(chosen),
                         "exact_match": float(np.mean([p == g for p, g in chosen])) if chosen else None}
        for field in rare_fields:
            summary[name][f"{field.name}_accuracy"] = (float(np.mean([p is not None and p[field.name] == g[field.name]
                                                                      for p, g in chosen])) if chosen else None)
    return summary


def load_fine_tuned(run: str | Path, *, merge: bool = False) -> tuple[Any, Any]:
    """(model, processor) of a finished run: the base checkpoint with the saved adapter, merged if asked."""
    from peft import PeftModel
    from transformers import AutoProcessor

    card = read_run_card(run)
    model, _ = load_base(card["base_model"])
    processor = AutoProcessor.from_pretrained(Path(run) / "processor", local_files_only=True)
    model = PeftModel.from_pretrained(model, Path(run) / "adapter")
    return (model.merge_and_unload() if merge else model), processor


def heldout_examples(export: Export, processor: Any, spec: FrameSpec, limit: int | None = None) -> list[dict]:
    dataset = ClipDataset(export, "test", processor, spec, with_answers=False)
    return [dataset[i] for i in range(len(dataset) if limit is None else min(limit, len(dataset)))]


def evaluate_run(
    run: str | Path,
    *,
    batch_size: int = 8,
    max_new_tokens: int | None = None,
    compare_base: bool = True,
    probes: bool = True,
    probe_clips: int = 16,
    forgetting_threshold: float = DEFAULT_THRESHOLD,
    limit: int | None = None,
) -> dict[str, Any]:
    """Evaluate a finished run on the export's held-out split; writes ``evaluation.json`` and updates the run card.

    ``compare_base=False`` skips the base model (and the forgetting check, which needs it).
    """
    from peft import PeftModel
    from transformers import AutoProcessor

    run = Path(run)
    card = read_run_card(run)
    export = load_export(card["export"])
    if len(export.dataset["test"]) == 0:
        raise CliptuneError(f"{export.root}: the held-out split is empty; nothing to evaluate")
    spec = FrameSpec(**card["hyper_parameters"]["frames"])
    processor = AutoProcessor.from_pretrained(run / "processor", local_files_only=True)
    examples = heldout_examples(export, processor, spec, limit)
    test = export.dataset["test"].select(range(len(examples)))
    references = [json.loads(text) for text in test["fields"]]
    if max_new_tokens is None:
        longest = max(len(processor.tokenizer(t, add_special_tokens=False)["input_ids"]) for t in test["output"])
        max_new_tokens = int(longest * 1.5) + 8
    probe_set = _probe_set(export, test, spec, processor, probe_clips) if probes and compare_base else None
    # A QLoRA adapter is evaluated on the 4-bit base it was trained with.
    model, _ = load_base(card["base_model"], quantize=card["hyper_parameters"]["method"] == "qlora")
    report: dict[str, Any] = {"run": str(run), "n": len(examples), "dataset_version": export.dataset_version,
                              "rubric": card["rubric"]}
    predictions: dict[str, list[str]] = {}
    probe_scores: dict[str, dict[str, Any]] = {}
    for name in (("base", "fine_tuned") if compare_base else ("fine_tuned",)):
        if name == "fine_tuned":
            model = PeftModel.from_pretrained(model, run / "adapter")
        predictions[name] = generate(model, processor, examples, batch_size=batch_size, max_new_tokens=max_new_tokens)
        report[name] = score_outputs(export.rubric, predictions[name], references)
        if probe_set is not None:
            items, encoded = probe_set
            replies = generate(model, processor, encoded, batch_size=batch_size, max_new_tokens=16)
            probe_scores[name] = score_probes(items, replies)
    warnings = [w for w in card.get("warnings", []) if not w.startswith("general probe accuracy fell")]
    if probe_scores:
        report["forgetting"] = forgetting_report(probe_scores["base"], probe_scores["fine_tuned"],
                                                 forgetting_threshold)
        report["probes"] = probe_scores
        if report["forgetting"]["warning"]:
            warnings.append(report["forgetting"]["warning"])
    report["predictions"] = [
        {"clip_id": int(row["clip_id"]), "reference": row["output"], **{k: v[i] for k, v in predictions.items()}}
        for i, row in enumerate(test)]
    (run / "evaluation.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    card["metrics"]["evaluation"] = {k: _without_items(report[k]) for k in ("base", "fine_tuned") if k in report}
    card["metrics"]["evaluation"]["n"] = report["n"]
    if "forgetting" in report:
        card["metrics"]["forgetting"] = report["forgetting"]
    card["warnings"] = warnings
    write_run_card(run, card)
    return report


def _without_items(scores: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in scores.items() if k != "items"}


def _probe_set(export: Export, test: Any, spec: FrameSpec, processor: Any, probe_clips: int):
    """Probe items and their encoded prompts; clip probes on the first ``probe_clips`` held-out clips."""
    clips = {int(row["clip_id"]): clip_frames(export.root, row, spec) for row in test.select(
        range(min(probe_clips, len(test))))}
    durations = {int(row["clip_id"]): row["duration_s"] for row in test}
    items = probe_items(load_probes(), clips)
    encoded = [encode(processor, item.question, clips[item.clip_id] if item.clip_id is not None else None,
                      duration_s=durations.get(item.clip_id)) for item in items]
    return items, encoded

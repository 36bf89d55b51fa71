"""The forgetting probe: general questions scored before and after fine-tuning.

A fine-tuned model that writes perfect alerts but can no longer say that 7 plus 5 is 12, or that a clip is dark,
has forgotten general skills. The probe set ships with the package (``training/probes/*.jsonl``):

- ``text`` probes: plain questions with short answers that can be scored (``answers``: accepted answers);
- ``clip`` probes: general questions about a clip (is it dark? is it in colour?) asked on held-out clips, whose
  answers are measured from the decoded frames themselves, so they are right for any video, not only the sample.

An answer is correct when the normalised reply starts with an accepted answer (``"Yes, it is dark."`` counts as
``yes``). :func:`forgetting_report` compares the scores; a drop beyond ``threshold`` is a warning.

Example::

    report = forgetting_report({"accuracy": 0.80, "n": 40}, {"accuracy": 0.60, "n": 40}, threshold=0.05)
    report["warning"]   # 'general probe accuracy fell by 20.0 points (80.0% -> 60.0%) ...'
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from curation.errors import CliptuneError
from curation.review.text_similarity import normalise_text

PROBE_DIR = Path(__file__).resolve().parent / "probes"
DARK_LUMA = 110.0  # mean BT.601 luma (0-255) below which a scene counts as dark
COLOUR_SATURATION = 20.0  # mean HSV saturation (0-255) above which a video counts as in colour
DEFAULT_THRESHOLD = 0.05


@dataclass(frozen=True)
class ProbeItem:
    """One question to ask: text only (``clip_id`` None) or about a held-out clip."""

    id: str
    kind: str
    question: str
    answers: tuple[str, ...]
    clip_id: int | None = None


def load_probes(path: str | Path | None = None) -> list[dict[str, Any]]:
    """The probe definitions: every ``*.jsonl`` in the shipped probe folder, or one file / folder given."""
    root = Path(path) if path is not None else PROBE_DIR
    files = sorted(root.glob("*.jsonl")) if root.is_dir() else [root]
    probes: list[dict[str, Any]] = []
    for file in files:
        for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                probe = json.loads(line)
            except json.JSONDecodeError as exc:
                raise CliptuneError(f"{file} line {number}: not JSON ({exc.msg})") from None
            kind = probe.get("kind")
            incomplete = not probe.get("answers") if kind == "text" else probe.get("measure") not in MEASURES
            if kind in ("text", "clip") and incomplete:
                raise CliptuneError(f"{file} line {number}: a text probe needs 'answers', a clip probe a 'measure' "
                                    f"among {sorted(MEASURES)}")
            if kind not in ("text", "clip") or not probe.get("question") or not probe.get("id"):
                raise CliptuneError(f"{file} line {number}: a probe needs 'id', 'question' and kind text or clip")
            probes.append(probe)
    if not probes:
        raise CliptuneError(f"no probes in {root}")
    return probes


def _luma(frames: np.ndarray) -> float:
    return float((frames.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)).mean())


def _saturation(frames: np.ndarray) -> float:
    as_float = frames.astype(np.float32)
    high, low = as_float.max(axis=-1), as_float.min(axis=-1)
    # HSV saturation on 0-255, as OpenCV computes it, without a colour-space round trip per frame.
    return float(np.where(high > 0, 255.0 * (high - low) / np.maximum(high, 1e-6), 0.0).mean())


MEASURES = {
    "dark": lambda frames: "yes" if _luma(frames) < DARK_LUMA else "no",
    "colour": lambda frames: "yes" if _saturation(frames) > COLOUR_SATURATION else "no",
}


def clip_answer(measure: str, frames: np.ndarray) -> str:
    """The true answer of a clip probe, measured on the frames the model is shown (uint8, (k, H, W, 3))."""
    return MEASURES[measure](frames)


def probe_items(probes: list[dict[str, Any]], clips: dict[int, np.ndarray]) -> list[ProbeItem]:
    """Text probes once each, clip probes once per clip in ``clips`` ({clip_id: frames})."""
    items: list[ProbeItem] = []
    for probe in probes:
        if probe["kind"] == "text":
            items.append(ProbeItem(probe["id"], "text", probe["question"], tuple(probe["answers"])))
            continue
        for clip_id, frames in clips.items():
            answer = clip_answer(probe["measure"], frames)
            items.append(ProbeItem(f"{probe['id']}@{clip_id}", "clip", probe["question"], (answer,), clip_id))
    return items


def is_correct(reply: str, answers: tuple[str, ...] | list[str]) -> bool:
    """The reply, lower-cased and stripped of leading punctuation, starts with an accepted answer as a word."""
    text = normalise_text(reply).lstrip(" \"'*:.-")
    return any(re.match(re.escape(normalise_text(a)) + r"(?![\w])", text) for a in answers)


def score_probes(items: list[ProbeItem], replies: list[str]) -> dict[str, Any]:
    """Accuracy overall and per kind, and each item's reply (for the run card's reader)."""
    if len(items) != len(replies):
        raise ValueError(f"{len(items)} probes but {len(replies)} replies")
    correct = [is_correct(reply, item.answers) for item, reply in zip(items, replies, strict=True)]
    result: dict[str, Any] = {"n": len(items), "accuracy": float(np.mean(correct)) if correct else 0.0}
    for kind in ("text", "clip"):
        chosen = [c for c, item in zip(correct, items, strict=True) if item.kind == kind]
        result[f"{kind}_accuracy"] = float(np.mean(chosen)) if chosen else None
        result[f"{kind}_n"] = len(chosen)
    result["items"] = [{"id": item.id, "reply": reply[:200], "answers": list(item.answers), "correct": ok}
                       for item, reply, ok in zip(items, replies, correct, strict=True)]
    return result


def forgetting_report(before: dict[str, Any], after: dict[str, Any], threshold: float = DEFAULT_THRESHOLD
                      ) -> dict[str, Any]:
    """Change in probe accuracy (after − before, overall and per kind); a drop beyond ``threshold`` is a warning."""
    change = {key: (after[key] - before[key]) for key in ("accuracy", "text_accuracy", "clip_accuracy")
              if before.get(key) is not None and after.get(key) is not None}
    drop = -change.get("accuracy", 0.0)
    warning = None
    if drop > threshold:
        warning = (f"general probe accuracy fell by {100 * drop:.1f} points ({100 * before['accuracy']:.1f}% -> "
                   f"{100 * after['accuracy']:.1f}%, threshold {100 * threshold:.1f}): the fine-tuned model may have "
                   "forgotten general skills — fewer epochs, a lower rank or learning rate, or mixing in general "
                   "data may help")
    return {"before": before["accuracy"], "after": after["accuracy"], "change": change, "threshold": threshold,
            "warning": warning}

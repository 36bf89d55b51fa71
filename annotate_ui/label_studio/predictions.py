"""A model's answers as Label Studio predictions: read from JSONL, checked against the rubric, as results.

:func:`annotate_ui.label_studio.bridge.push` sends them (pre-annotations, shown under their model version).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from annotate_ui.label_studio.config import result_from_fields
from curation.errors import CliptuneError, RubricError
from curation.rubric import Rubric


def prediction_results(rubric: Rubric, predictions: dict[int, Any]) -> tuple[dict[int, list], list[dict[str, Any]]]:
    """Each predicted clip's Label Studio result, and ``{"clip", "error"}`` for answers the rubric cannot read."""
    results, failed = {}, []
    for clip_id, answer in predictions.items():
        try:
            fields = rubric.parse(answer) if isinstance(answer, str) else rubric.normalise(answer)
        except RubricError as exc:
            failed.append({"clip": clip_id, "error": str(exc)})
            continue
        results[clip_id] = result_from_fields(rubric, fields)
    return results, failed


def read_predictions(path: str | os.PathLike) -> dict[int, dict[str, Any] | str]:
    """A model's answers from JSONL: ``{"clip": <clip id>, "output": "text"}`` or ``{"clip": id, "fields": {...}}``."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (FileNotFoundError, UnicodeDecodeError) as exc:
        raise CliptuneError(f"{path}: cannot read predictions ({type(exc).__name__}); give UTF-8 JSONL") from None
    answers: dict[int, dict[str, Any] | str] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CliptuneError(f"{path} line {number}: not valid JSON ({exc.msg})") from None
        clip = record.get("clip") if isinstance(record, dict) else None
        answer = record.get("output", record.get("fields")) if isinstance(record, dict) else None
        if isinstance(clip, bool) or not isinstance(clip, int) or not isinstance(answer, str | dict):
            raise CliptuneError(f'{path} line {number}: expected {{"clip": <clip id>, "output": "..."}} or '
                                '{"clip": <clip id>, "fields": {...}}')
        answers[clip] = answer
    return answers

"""Train-only oversampling of rare events, capped, with a frame offset per repeat.

Two methods, both on train rows only (a held-out row is never repeated):

- ``share``: the rubric's ``rare`` values of one field are repeated until each reaches ``target_share`` of the
  train rows, each clip at most ``max_repeat`` extra times. A class needing 1.6 copies per clip gets one extra
  copy for 60 % of its clips (chosen with ``random_state``), so the share lands on target, not above it.
- ``repeat_factor`` (LVIS-style, for rubrics with several categorical fields): every class ``c`` of the rare and
  stratifying fields has a repeat factor ``r_c = max(1, sqrt(t / f_c))``, ``f_c`` its share of train rows and
  ``t = target_share``; a clip takes the largest factor of its classes, capped at ``1 + max_repeat``, and is
  repeated ``floor(r) - 1`` times plus once more with probability ``r - floor(r)``.

A repeat carries a ``frame_offset`` (seconds; pass it as ``start_s`` to frame sampling) so that it is not a
byte-identical sample: the k-th of n repeats shifts the frame grid by k/(n+1) of the spacing between frames.

Example::

    copies, report = plan_oversampling(rows, held_out, rubric, OversampleConfig(method="share", target_share=0.2))
    report["classes"]   # [{"field": "event", "value": "INTRUSION", "clips": 12, "copies": 14, ...}, ...]
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from curation.errors import CliptuneError
from curation.rubric import Rubric

METHODS = ("none", "auto", "share", "repeat_factor")


@dataclass(frozen=True)
class OversampleConfig:
    method: str = "none"  # none | auto | share | repeat_factor
    target_share: float = 0.2
    max_repeat: int = 3  # extra copies of one clip at most
    random_state: int = 0
    num_frames: int = 8  # frames the trainer samples per clip: sets the spacing the frame offsets divide

    def validated(self) -> OversampleConfig:
        method = self.method.replace("-", "_")
        if method not in METHODS:
            raise CliptuneError(f"--oversample {self.method}: choose one of {', '.join(METHODS)}")
        if not 0.0 < self.target_share < 1.0:
            raise CliptuneError(f"--target-share must be a share between 0 and 1 (e.g. 0.2), got {self.target_share}")
        if isinstance(self.max_repeat, bool) or not isinstance(self.max_repeat, int) or self.max_repeat < 0:
            raise CliptuneError(f"--max-repeat must be a whole number of extra copies, 0 or more, got "
                                f"{self.max_repeat}")
        if self.num_frames < 1:
            raise CliptuneError(f"num_frames must be at least 1, got {self.num_frames}")
        return OversampleConfig(method, float(self.target_share), self.max_repeat, self.random_state, self.num_frames)


def _allocate(multiplicity: np.ndarray, groups: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Whole extra copies per row for a real multiplicity per row; within each group the fractional part is
    spread over exactly round(frac * size) rows so the group's total matches its multiplicity."""
    copies = np.floor(multiplicity).astype(np.int64) - 1
    for group in np.unique(groups):
        rows = np.flatnonzero(groups == group)
        frac = float(multiplicity[rows[0]] - math.floor(multiplicity[rows[0]]))
        extra = int(round(frac * len(rows)))
        if extra:
            copies[rng.choice(rows, size=extra, replace=False)] += 1
    return np.maximum(copies, 0)


def share_repeats(
    labels: Sequence[Any], rare: Sequence[str], target_share: float = 0.2, max_repeat: int = 3,
    random_state: int = 0,
) -> np.ndarray:
    """Extra copies per row so each rare class reaches ``target_share`` of all rows (capped at ``max_repeat``).

    >>> share_repeats(["a"] * 8 + ["r"] * 2, rare=["r"], target_share=0.5).tolist()
    [0, 0, 0, 0, 0, 0, 0, 0, 3, 3]
    """
    values = np.asarray([str(v) for v in labels], dtype=object)
    n = len(values)
    counts = {c: int((values == c).sum()) for c in rare}
    boosted = [c for c in rare if counts[c] > 0]
    if n == 0 or not boosted:
        return np.zeros(n, dtype=np.int64)
    # The least fixed point of T = n + sum_c n_c (m_c(T) - 1), m_c(T) = clip(t T / n_c, 1, 1 + max_repeat):
    # monotone and bounded, so iterating from T = n converges (caps keep it finite when t * classes >= 1).
    total = float(n)
    for _ in range(10_000):
        mult = {c: min(1.0 + max_repeat, max(1.0, target_share * total / counts[c])) for c in boosted}
        new_total = n + sum(counts[c] * (mult[c] - 1.0) for c in boosted)
        if abs(new_total - total) < 1e-9:
            break
        total = new_total
    multiplicity = np.ones(n)
    for c in boosted:
        multiplicity[values == c] = mult[c]
    boosted_rows = np.isin(values, boosted)
    copies = np.zeros(n, dtype=np.int64)
    rng = np.random.default_rng(random_state)
    copies[boosted_rows] = _allocate(multiplicity[boosted_rows], values[boosted_rows], rng)
    return copies


def repeat_factor_repeats(
    labels: np.ndarray | Sequence[Sequence[Any]], threshold: float = 0.2, max_repeat: int = 3, random_state: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """(extra copies per row, repeat factor per row) by LVIS repeat-factor sampling over several fields.

    ``labels`` is (n rows, k fields); a class with share ``f`` of the rows has ``r = max(1, sqrt(threshold/f))``.
    """
    table = np.asarray(labels, dtype=object)
    if table.ndim == 1:
        table = table.reshape(-1, 1)
    n = table.shape[0]
    factor = np.ones(n)
    for column in range(table.shape[1]):
        values = np.asarray([str(v) for v in table[:, column]], dtype=object)
        classes, codes, counts = np.unique(values, return_inverse=True, return_counts=True)
        r = np.maximum(1.0, np.sqrt(threshold / (counts / max(n, 1))))
        factor = np.maximum(factor, r[codes])
    factor = np.minimum(factor, 1.0 + max_repeat)
    rng = np.random.default_rng(random_state)
    whole = np.floor(factor)
    copies = (whole - 1 + (rng.random(n) < factor - whole)).astype(np.int64)
    return np.maximum(copies, 0), factor


def frame_offsets(duration_s: float, n_repeats: int, num_frames: int = 8) -> list[float]:
    """Seconds to shift frame sampling for repeats 1..n: k/(n+1) of the spacing between ``num_frames`` frames.

    >>> frame_offsets(4.0, 3, num_frames=8)
    [0.125, 0.25, 0.375]
    """
    spacing = max(float(duration_s), 0.0) / max(num_frames, 1)
    return [round(spacing * k / (n_repeats + 1), 6) for k in range(1, n_repeats + 1)]


def _fields_for(rubric: Rubric, method: str) -> tuple[str, list[str]]:
    rare_fields = [f.name for f in rubric.fields if f.rare]
    categorical = [f.name for f in rubric.fields if f.rare or f.stratify]
    if method == "auto":
        if not rare_fields:
            return "none", []
        method = "share" if len(rare_fields) == 1 else "repeat_factor"
    if method == "share":
        if len(rare_fields) != 1:
            raise CliptuneError(
                f"--oversample share needs exactly one rubric field with 'rare' values, this rubric has "
                f"{len(rare_fields)} ({', '.join(rare_fields) or 'none'}); use repeat-factor for several fields"
            )
        return method, rare_fields
    if method == "repeat_factor" and not categorical:
        raise CliptuneError("--oversample repeat-factor needs rubric fields marked 'rare' or 'stratify'")
    return method, categorical


def plan_oversampling(
    rows: Sequence[dict[str, Any]], held_out: Sequence[bool], rubric: Rubric, config: OversampleConfig | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """(extra copies per row, report) for gold ``rows`` (field dicts); held-out rows always get 0 copies."""
    config = (config or OversampleConfig()).validated()
    held = np.asarray(held_out, dtype=bool)
    if held.shape != (len(rows),):
        raise ValueError(f"held_out must have one entry per row ({len(rows)}), got shape {held.shape}")
    copies = np.zeros(len(rows), dtype=np.int64)
    method, fields = _fields_for(rubric, config.method) if config.method != "none" else ("none", [])
    train = np.flatnonzero(~held)
    report: dict[str, Any] = {**asdict(config), "method": method, "fields": fields}
    if method != "none" and len(train):
        table = np.array([[str(rows[i].get(name)) for name in fields] for i in train], dtype=object)
        if method == "share":
            rare = rubric.field_map[fields[0]].rare
            copies[train] = share_repeats(table[:, 0], rare, config.target_share, config.max_repeat,
                                          config.random_state)
        else:
            copies[train], _ = repeat_factor_repeats(table, config.target_share, config.max_repeat,
                                                     config.random_state)
    assert not copies[held].any(), "a held-out row was oversampled"  # the promise, checked where it is kept
    report.update(_summary(rows, held, copies, fields, rubric, method))
    return copies, report


def _summary(rows: Sequence[dict[str, Any]], held: np.ndarray, copies: np.ndarray, fields: list[str],
             rubric: Rubric, method: str) -> dict[str, Any]:
    train = np.flatnonzero(~held)
    before = len(train)
    after = before + int(copies[train].sum())
    classes = []
    for name in fields:
        values = [str(rows[i].get(name)) for i in train]
        counted = Counter(values)
        for value in sorted(counted):
            index = [i for i, v in zip(train, values, strict=True) if v == value]
            extra = int(copies[index].sum())
            if method == "share" and value not in rubric.field_map[name].rare and not extra:
                continue
            classes.append({
                "field": name, "value": value, "clips": counted[value], "copies": extra,
                "repeat_per_clip": round((counted[value] + extra) / counted[value], 4),
                "share_before": round(counted[value] / before, 4) if before else 0.0,
                "share_after": round((counted[value] + extra) / after, 4) if after else 0.0,
                "clips_repeated": int((copies[index] > 0).sum()),
            })
    histogram = Counter(int(c) for c in copies[train])
    return {
        "train_rows_before": before, "train_rows_after": after, "held_out_repeated": int(copies[held].sum()),
        "clips_repeated": int((copies[train] > 0).sum()), "copies_per_clip": dict(sorted(histogram.items())),
        "classes": classes,
    }

"""Local shortcuts: does one place in the picture give a label away? A corner logo on every intruder clip does.

The maps of :mod:`curation.media.regions` (the still picture, its detail, where things move) are averaged over a
``grid`` of cells (8 x 6 by default: a cell is about 2 % of the picture). Each cell gives three features per clip,
each **compared within the clip's group** (camera, session) so that one camera being brighter or busier than
another hides nothing:

- ``colour``: the distance of the cell's still colour from the group's median colour for that cell;
- ``detail``: the cell's edge strength minus the group's median (signed: more or less detail than usual);
- ``motion``: the cell's movement minus the group's median (signed: a patch stiller than usual is covered);

each divided by the group's typical (median) absolute deviation for that cell, so cells and groups share a scale.
A group with fewer than ``min_group_clips`` clips has no median of its own: its clips are compared with the whole
project, and the summary says how many.

The features go through the same test as the whole-frame shortcuts (:mod:`curation.audit.shortcuts`): a one-feature
interval rule scored by held-out balanced accuracy on grouped folds, flagged at ``margin`` above chance with a
permutation p-value (max-statistic over every cell, feature and class) at most ``alpha``. Flagged cells that touch
make one finding, which names the place in words, its size (from a per-pixel map of how the class differs from
the rest) and how many clips of the class and of the rest carry it::

    event=INTRUSION: bottom-right corner, about 0.6 % of the picture: a static coloured mark on 11 of 12
    INTRUSION clips, 2 of 48 others (balanced accuracy 0.95 vs 0.50 chance, p = 0.001)

:func:`curation.audit.local_figure.local_shortcut_figure` draws a finding as a heat map over a sample frame.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from curation.audit.result import AuditInputs, AuditResult
from curation.audit.shortcuts import (
    ALPHA,
    CHANCE,
    MARGIN,
    MIN_CLASS_COUNT,
    N_PERMUTATIONS,
    N_SPLITS,
    check_settings,
    describe_rule,
    field_findings,
)
from curation.errors import CliptuneError

if TYPE_CHECKING:
    from curation.records.store import Project

GRID = (8, 6)  # columns, rows
MIN_GROUP_CLIPS = 4
STATS = ("colour", "detail", "motion")
# Smallest typical deviation a cell's scale may have (levels of the uint8 maps): a cell that never changes within
# a camera would otherwise turn a re-encoding's one-level wobble into a huge score.
SCALE_FLOOR = {"colour": 2.0, "detail": 0.5, "motion": 0.5}
WHAT = {("colour", True): "a static coloured mark", ("colour", False): "the usual colour where other clips differ",
        ("detail", True): "extra static detail (text, a logo, a pattern)",
        ("detail", False): "less detail than usual (blurred or covered)",
        ("motion", True): "more movement than usual",
        ("motion", False): "a still patch where people usually move (something covers it)"}


# -- per-clip cell values, compared within each group ------------------------------------------------------------


def _cells(image: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """Mean of ``image`` (h, w[, c]) over each grid cell: (rows, cols[, c])."""
    import cv2

    return cv2.resize(image.astype(np.float32), grid, interpolation=cv2.INTER_AREA)


def _pixel_deviation(stat: str, maps: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Per-pixel (or per-cell) deviation of clips' ``maps`` from a reference: colour distance, or signed."""
    if stat == "colour":
        return np.linalg.norm(maps - reference, axis=-1)
    return maps - reference


def _references(groups: np.ndarray, min_group_clips: int) -> tuple[np.ndarray, int]:
    """Reference group per clip: its own group, or "*" (the whole project) for clips of small groups."""
    names, counts = np.unique(groups, return_counts=True)
    small = set(names[counts < min_group_clips].tolist())
    reference = np.array(["*" if g in small else g for g in groups], dtype=object)
    return reference, int(sum(c for n, c in zip(names, counts, strict=True) if n in small))


def relit(stills: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Still pictures (n, h, w, 3) brought to their reference group's lighting: per clip and channel the gain and
    offset that best map the group's median picture onto the clip (least squares over all pixels) are undone.
    A camera's light changes with the time of day; a mark is a small part of the picture and barely moves the fit."""
    stills = stills.astype(np.float32)
    out = np.empty_like(stills)
    for name in np.unique(reference):
        members = reference == name
        pool = members if name != "*" else np.ones(len(reference), dtype=bool)
        median = np.median(stills[pool], axis=0).reshape(-1, 3)
        for index in np.flatnonzero(members):
            clip = stills[index].reshape(-1, 3)
            for channel in range(3):
                x, c = median[:, channel], clip[:, channel]
                gain, offset = _line(x, c)
                # Fitted again without the pixels that fit worst: a large mark would otherwise tilt the fit and
                # shift the whole picture, so that cells far from it look changed too.
                residual = np.abs(c - gain * x - offset)
                keep = residual <= max(3.0 * float(np.median(residual)), 3.0)
                gain, offset = _line(x[keep], c[keep])
                out[index, ..., channel] = ((c - offset) / gain).reshape(stills.shape[1:3])
    return out


def _line(x: np.ndarray, c: np.ndarray) -> tuple[float, float]:
    """Least-squares gain and offset with c ~ gain * x + offset (gain kept within 0.5-2; 1 on a flat picture)."""
    spread = float(x.var()) if len(x) > 1 else 0.0
    covariance = float(((x - x.mean()) * (c - c.mean())).mean()) if len(x) > 1 else 0.0
    gain = float(np.clip(covariance / spread, 0.5, 2.0)) if spread > 1 else 1.0
    return gain, float(c.mean() - gain * x.mean()) if len(x) else 0.0


def _deviations(stacked: dict[str, np.ndarray], reference: np.ndarray) -> dict[str, np.ndarray]:
    """Each stat's deviation from the clip's reference median, divided by the reference's typical deviation."""
    out = {}
    for stat, values in stacked.items():
        result = np.zeros(values.shape[:3] if stat == "colour" else values.shape, dtype=np.float64)
        for name in np.unique(reference):
            members = reference == name
            pool = members if name != "*" else np.ones(len(reference), dtype=bool)
            median = np.median(values[pool], axis=0)
            scale = np.maximum(np.median(np.abs(_pixel_deviation(stat, values[pool], median)), axis=0),
                               SCALE_FLOOR[stat])
            result[members] = _pixel_deviation(stat, values[members], median) / scale
        out[stat] = result
    return out


def region_columns(maps: list[dict[str, np.ndarray]], groups: np.ndarray, grid: tuple[int, int],
                   min_group_clips: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Numeric columns (the shortcut check's shape), one per cell and stat, and what was used to make them."""
    reference, pooled = _references(groups, min_group_clips)
    stills = relit(np.stack([m["still"] for m in maps]), reference)
    cells = {stat: np.stack([_cells(m[stat], grid) for m in maps]) for stat in STATS if stat != "colour"}
    cells["colour"] = np.stack([_cells(s, grid) for s in stills])
    deviations = _deviations(cells, reference)
    columns = []
    for stat in STATS:
        for row in range(grid[1]):
            for col in range(grid[0]):
                values = deviations[stat][:, row, col]
                if np.ptp(values) > 0:
                    columns.append({"name": f"{stat} r{row}c{col}", "kind": "numeric", "values": values,
                                    "stat": stat, "cell": (row, col)})
    return columns, {"reference": reference, "pooled_clips": pooled}


# -- describing a finding ------------------------------------------------------------------------------------------


def place_in_words(box: tuple[float, float, float, float]) -> str:
    """A box (x0, y0, x1, y1 as shares of the width and height) in words: "bottom-right corner", "top edge"..."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    side = "left" if cx < 0.3 else "right" if cx > 0.7 else ""
    level = "top" if cy < 0.3 else "bottom" if cy > 0.7 else ""
    if side and level:
        return f"{level}-{side} corner"
    if level:
        return f"{level} edge, middle"
    if side:
        return f"{side} edge, half-way down"
    return "centre of the picture"


def _components(cells: list[tuple[int, int]]) -> list[list[tuple[int, int]]]:
    """Groups of cells that touch (sides or corners)."""
    left, groups = set(cells), []
    while left:
        stack, group = [left.pop()], []
        while stack:
            r, c = stack.pop()
            group.append((r, c))
            for near in [(r + dr, c + dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1)]:
                if near in left:
                    left.remove(near)
                    stack.append(near)
        groups.append(sorted(group))
    return groups


def _heat(stat: str, high: bool, maps: list[dict[str, np.ndarray]], reference: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per-pixel: how much more the class deviates from its group's usual picture than the rest does."""
    if stat == "colour":
        stacked = relit(np.stack([m["still"] for m in maps]), reference)
    else:
        stacked = np.stack([m[stat] for m in maps]).astype(np.float32)
    deviation = np.zeros(stacked.shape[:3], dtype=np.float32)
    for name in np.unique(reference):
        members = reference == name
        pool = members if name != "*" else np.ones(len(reference), dtype=bool)
        deviation[members] = _pixel_deviation(stat, stacked[members], np.median(stacked[pool], axis=0))
    heat = deviation[y].mean(axis=0) - deviation[~y].mean(axis=0)
    return heat if high or stat == "colour" else -heat


def _extent(heat: np.ndarray, cells: list[tuple[int, int]], grid: tuple[int, int]) -> tuple[tuple, float]:
    """The marked area: pixels above half the peak, connected to the peak, near the flagged cells.
    Returns its box (shares of width and height) and its share of the picture."""
    import cv2

    h, w = heat.shape
    rows, cols = [r for r, _ in cells], [c for _, c in cells]
    y0, y1 = max(0, (min(rows) - 1) * h // grid[1]), min(h, (max(rows) + 2) * h // grid[1])
    x0, x1 = max(0, (min(cols) - 1) * w // grid[0]), min(w, (max(cols) + 2) * w // grid[0])
    window = np.zeros_like(heat)
    window[y0:y1, x0:x1] = heat[y0:y1, x0:x1]
    peak = np.unravel_index(np.argmax(window), window.shape)
    if window[peak] <= 0:  # the class does not stand out pixel by pixel: the cells themselves are the place
        return (x0 / w, y0 / h, x1 / w, y1 / h), len(cells) / (grid[0] * grid[1])
    _, labels = cv2.connectedComponents((window >= window[peak] / 2).astype(np.uint8), connectivity=8)
    ys, xs = np.nonzero(labels == labels[peak])
    box = (xs.min() / w, ys.min() / h, (xs.max() + 1) / w, (ys.max() + 1) / h)
    return box, len(xs) / (h * w)


def carriers_high(values: np.ndarray, carriers: np.ndarray) -> bool:
    return bool(carriers.any() and np.median(values[carriers]) > np.median(values))


def _overlap(a: list[float], b: list[float]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _percent(share: float) -> str:
    return f"{share * 100:.1f} %" if share < 0.1 else f"{share * 100:.0f} %"


def _finding(cluster: list[tuple[dict, np.ndarray, dict]], maps: list[dict[str, np.ndarray]], context: dict[str, Any],
             classes: np.ndarray, clip_ids: np.ndarray) -> tuple[dict[str, Any], np.ndarray]:
    """One finding from touching flagged cells of one class: the strongest cell's rule, the place, the heat map."""
    from curation.media.features import encode_png

    entry, _, column = max(cluster, key=lambda item: (item[0]["score"], -item[0]["p_value"]))
    cls, y = entry["value"], classes == entry["value"]
    rule, picked, bounds = describe_rule(column, y)
    # Which way the class differs: its carriers' values against everyone's (a rule may be a band or its outside).
    high = bool(carriers_high(column["values"], picked & y))
    heat = _heat(column["stat"], high, maps, context["reference"], y)
    cells = sorted({item[2]["cell"] for item in cluster})
    box, share = _extent(heat, cells, context["grid"])
    where, what = place_in_words(box), WHAT[(column["stat"], high)]
    carriers = picked & y
    sample = int(clip_ids[carriers][np.argmax(np.abs(column["values"][carriers]))]) if carriers.any() else None
    peak = max(float(heat.max()), 1e-6)
    finding = {
        "feature": "region", "field": entry["field"], "value": cls, "score": entry["score"], "chance": CHANCE,
        "p_value": entry["p_value"], "n_class": entry["n_class"], "n_rest": entry["n_rest"], "cv": entry["cv"],
        "flagged": True, "kind": "region", "where": where, "share": round(share, 4),
        "box": [round(v, 4) for v in box], "what": what, "cells": [list(c) for c in cells],
        "features": sorted({item[0]["feature"] for item in cluster}), "strongest": entry["feature"], "rule": rule,
        "carriers": {"class": int(carriers.sum()), "rest": int((picked & ~y).sum())}, "sample_clip": sample,
        "heat_png": encode_png(np.clip(np.maximum(heat, 0) / peak * 255, 0, 255).astype(np.uint8)),
    }
    finding["message"] = (
        f"{entry['field']}={cls}: {where}, about {_percent(share)} of the picture: {what} on "
        f"{finding['carriers']['class']} of {entry['n_class']} {cls} clips, {finding['carriers']['rest']} of "
        f"{entry['n_rest']} others (balanced accuracy {entry['score']:.2f} vs {CHANCE:.2f} chance, "
        f"p = {entry['p_value']:.3g}; compared within each group)")
    return finding, carriers


# -- the check -----------------------------------------------------------------------------------------------------


def check_local_shortcuts(
    project: Project,
    *,
    inputs: AuditInputs | None = None,
    fields: list[str] | None = None,
    grid: tuple[int, int] = GRID,
    margin: float = MARGIN,
    alpha: float = ALPHA,
    n_permutations: int = N_PERMUTATIONS,
    n_splits: int = N_SPLITS,
    min_class_count: int = MIN_CLASS_COUNT,
    min_group_clips: int = MIN_GROUP_CLIPS,
    random_state: int = 0,
    workers: int | None = None,
) -> AuditResult:
    """Find places in the picture whose look alone predicts a label; see the module docstring for the method.

    ``inputs`` gives the gold labels (default: read from ``project``, without the whole-frame features); the maps
    are extracted here if missing. Per-clip score: the share of findings the clip carries, 0 when none.
    """
    from curation.media.regions import extract_regions, load_regions

    check_settings(margin, alpha, n_permutations, n_splits, min_class_count)
    if min_group_clips < 2:
        raise CliptuneError(f"min_group_clips must be at least 2, got {min_group_clips}")
    if len(grid) != 2 or not all(isinstance(g, int) and 1 <= g <= 32 for g in grid) or grid[0] * grid[1] < 2:
        raise CliptuneError(f"grid must be (columns, rows), each a whole number from 1 to 32, got {grid}")
    inputs = inputs if inputs is not None else AuditInputs.from_project(project, features=False)
    if fields is None:
        fields, why = inputs.label_fields()
    else:
        unknown = [f for f in fields if f not in inputs.labels.columns]
        if unknown:
            raise CliptuneError(f"fields {unknown} are not in the rubric; it has {list(inputs.labels.columns)}")
        why = "as asked"
    report = extract_regions(project, workers=workers)
    maps_by_clip = load_regions(project)
    ids = [int(i) for i in inputs.labels.index if int(i) in maps_by_clip]
    summary: dict[str, Any] = {
        "fields": fields, "fields_chosen": why, "grid": list(grid), "clips_with_maps": len(maps_by_clip),
        "clips_labelled": len(ids), "margin": margin, "alpha": alpha, "n_permutations": n_permutations,
        "chance": CHANCE, "failed_clips": report.failed,
        "score": "held-out balanced accuracy of a one-cell rule, one class against the rest, within-group values",
    }
    empty = {"results": [], "skipped": []}
    if len(ids) < 2:
        summary.update(tested=0, flagged=0, note=f"{len(ids)} clip(s) have both a gold answer and readable media: "
                       "nothing to compare")
        return AuditResult("local_shortcuts", scores={}, flagged=[], summary=summary, details=empty)
    clip_ids = np.asarray(ids)
    maps = [maps_by_clip[i] for i in ids]
    groups = np.array([str(inputs.groups.get(i)) for i in ids], dtype=object)
    columns, context = region_columns(maps, groups, grid, min_group_clips)
    context["grid"] = grid
    summary.update(groups=len(set(groups.tolist())), compared_with_whole_project=context["pooled_clips"])
    settings = {"margin": margin, "alpha": alpha, "n_permutations": n_permutations, "n_splits": n_splits,
                "min_class_count": min_class_count, "random_state": random_state}
    rng = np.random.default_rng(random_state)
    by_name = {c["name"]: c for c in columns}
    results, skipped, flagged, folds = [], [], [], {}
    carriers: dict[int, int] = {}
    for field_name in fields:
        raw = inputs.labels.loc[ids, field_name]
        choices = inputs.rubric.field_map[field_name].choices or sorted(set(raw.dropna().astype(str)))
        outcome = field_findings(field_name, raw, choices, columns, groups, rng, settings, combined=False)
        results += outcome["results"]
        skipped += outcome["skipped"]
        folds.update(outcome["folds"])
        present = raw.notna().to_numpy()
        classes = raw.astype(str).to_numpy()
        per_class: dict[str, list] = {}
        for entry, mask in outcome["flagged"]:
            per_class.setdefault(entry["value"], []).append((entry, mask, by_name[entry["feature"]]))
        for items in per_class.values():
            cells = _components([item[2]["cell"] for item in items])
            made: list[tuple[dict[str, Any], np.ndarray]] = []
            for group in sorted(cells, key=lambda g: -max(i[0]["score"] for i in items if i[2]["cell"] in g)):
                cluster = [item for item in items if item[2]["cell"] in group]
                sub = [{**c, "values": c["values"][present]} for c in (item[2] for item in cluster)]
                cluster = [(e, m, s) for (e, m, _), s in zip(cluster, sub, strict=True)]
                finding, picked = _finding(cluster, [m for m, keep in zip(maps, present, strict=True) if keep],
                                           {**context, "reference": context["reference"][present]},
                                           classes[present], clip_ids[present])
                same = next((f for f, _ in made if _overlap(f["box"], finding["box"])), None)
                if same is not None:  # cells apart on the grid, one mark in the picture: one finding
                    same["features"] = sorted(set(same["features"]) | set(finding["features"]))
                    same["cells"] = sorted(same["cells"] + finding["cells"])
                    continue
                made.append((finding, picked))
            for finding, picked in made:
                flagged.append(finding)
                for clip_id in clip_ids[present][picked]:
                    carriers[int(clip_id)] = carriers.get(int(clip_id), 0) + 1
    for entry in results:  # the report reads cells by name; the grid cell is kept beside it
        entry["cell"] = list(by_name[entry["feature"]]["cell"])
    flagged.sort(key=lambda f: (-f["score"], f["field"], f["value"], f["where"]))
    results.sort(key=lambda e: (-e["score"], e["field"], e["value"], e["feature"]))
    scores = {int(i): carriers.get(int(i), 0) / len(flagged) if flagged else 0.0 for i in clip_ids}
    summary.update(tested=len(results), flagged=len(flagged), folds=folds, features=len(columns))
    return AuditResult("local_shortcuts", scores=scores, flagged=flagged, summary=summary,
                       details={"results": results, "skipped": skipped})

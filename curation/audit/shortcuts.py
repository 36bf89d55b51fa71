"""Shortcuts: can a nuisance feature alone predict a label? If every intruder is filmed at night, a model learns night.

For every class of every stratifying rubric field (one class against the rest) and every nuisance feature of
:mod:`curation.media.features`, a one-feature rule is fitted on training folds and scored on held-out folds:

- numeric feature: the best interval rule (predict the class inside, or outside, one interval of the feature),
  which covers a threshold ("darker than 0.2") as well as a band ("recorded between 20:00 and 05:30");
- categorical feature (camera, site, group): the best set of categories.

**Score**: balanced accuracy of the held-out predictions, the mean of the share of the class found and the share
of the rest left out. **Chance** is 0.5: any rule that ignores the feature (always, never, or at random) scores
0.5 in expectation whatever the class sizes. Plain accuracy is reported next to the *majority share* — the larger
side's **count** share, the accuracy of always answering the majority (cleanlab 2.9 divides the majority class's
index instead, which is not a share at all).

**Flagged** when the score beats chance by ``margin`` (default 0.2: balanced accuracy at least 0.70) *and* a
permutation test says it is not luck: the whole cross-validation is run again on ``n_permutations`` (999)
shuffles of the field's labels, and the p-value — (1 + shuffles on which *any* class and feature of the field
scored as high) / (1 + shuffles) — must be at most ``alpha`` (0.01). Taking the best of all features and classes
on every shuffle corrects for testing them all (Westfall and Young's max-statistic method): on labels drawn
independently of the features, a field is flagged at most once in a hundred audits.
One model over all nuisance features together (naive Bayes over quantile bins) is scored the same way
(feature "all").

**Folds**: grouped (scikit-learn's StratifiedGroupKFold on the clips' group key) so that clips of one camera or
session never sit on both sides of a fold; with fewer groups than folds, or the class in one group only, the
folds are stratified but not grouped, and the result says so.

Example::

    result = check_shortcuts(project)
    for finding in result.flagged:
        print(finding["message"])
    # brightness_mean alone predicts event=INTRUSION: balanced accuracy 1.00 vs 0.50 chance; 13 of 13 INTRUSION
    # clips have brightness_mean below 0.439, against 0 of 67 other clips
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from curation.audit.result import AuditInputs, AuditResult, inputs_of
from curation.errors import CliptuneError

if TYPE_CHECKING:
    import pandas as pd

    from curation.records.store import Project

MARGIN = 0.2
ALPHA = 0.01
N_PERMUTATIONS = 999
N_SPLITS = 5
MIN_CLASS_COUNT = 5
ALL_FEATURES = "all"
CHANCE = 0.5


# -- one-feature rules, vectorised over several label vectors (the observed one and its shuffles) ---------------


def _interval_rules(x: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Best interval rule on ``x`` for each row of ``labels`` (bool, rows x clips): (low, high, inside).

    The rule predicts the class for low < x < high (inside) or outside it. Balanced accuracy is 0.5 + half the sum
    of weights +1/P over the class and -1/N over the rest inside the chosen set, so the best interval is the
    maximum-sum run of those weights over the sorted distinct values, and the best outside rule the minimum-sum run.
    """
    rows = labels.shape[0]
    order = np.argsort(x, kind="stable")
    values, starts = np.unique(x[order], return_index=True)
    positives = labels.sum(axis=1, keepdims=True)
    negatives = labels.shape[1] - positives
    weights = np.where(labels[:, order], 1.0 / np.maximum(positives, 1), -1.0 / np.maximum(negatives, 1))
    sums = np.add.reduceat(weights, starts, axis=1)
    cumulative = np.concatenate([np.zeros((rows, 1)), np.cumsum(sums, axis=1)], axis=1)
    m = len(values)
    positions = np.arange(m + 1)

    gain = cumulative[:, 1:] - np.minimum.accumulate(cumulative[:, :-1], axis=1)
    end_in = gain.argmax(axis=1) + 1
    start_in = np.where(positions[None, :] < end_in[:, None], cumulative, np.inf).argmin(axis=1)
    loss = cumulative[:, 1:] - np.maximum.accumulate(cumulative[:, :-1], axis=1)
    end_out = loss.argmin(axis=1) + 1
    start_out = np.where(positions[None, :] < end_out[:, None], cumulative, -np.inf).argmax(axis=1)

    inside = gain.max(axis=1) >= -loss.min(axis=1)
    start = np.where(inside, start_in, start_out)
    end = np.where(inside, end_in, end_out)
    padded = np.concatenate([[-np.inf], values, [np.inf]])
    low = np.where(start == 0, -np.inf, (padded[start] + padded[start + 1]) / 2)
    high = np.where(end == m, np.inf, (padded[end] + padded[end + 1]) / 2)
    useless = np.maximum(gain.max(axis=1), -loss.min(axis=1)) <= 1e-12
    low[useless], high[useless], inside[useless] = np.inf, np.inf, True  # predicts nothing
    return low, high, inside


def _apply_intervals(x: np.ndarray, low: np.ndarray, high: np.ndarray, inside: np.ndarray) -> np.ndarray:
    within = (x[None, :] > low[:, None]) & (x[None, :] < high[:, None])
    return np.where(inside[:, None], within, ~within)


def _category_rules(codes: np.ndarray, labels: np.ndarray, n_categories: int) -> np.ndarray:
    """Categories predicted as the class, per row of ``labels``: those where the class outweighs the rest."""
    positives = labels.sum(axis=1, keepdims=True)
    negatives = labels.shape[1] - positives
    weights = np.where(labels, 1.0 / np.maximum(positives, 1), -1.0 / np.maximum(negatives, 1))
    onehot = np.zeros((len(codes), n_categories))
    onehot[np.arange(len(codes)), codes] = 1.0
    return weights @ onehot > 1e-12


def _held_out_predictions(column: dict[str, Any], labels: np.ndarray, folds: list) -> np.ndarray:
    """Held-out predictions (rows x clips) of the one-feature rule fitted on each fold's training part."""
    predictions = np.zeros(labels.shape, dtype=bool)
    for train, test in folds:
        if column["kind"] == "numeric":
            x = column["values"]
            low, high, inside = _interval_rules(x[train], labels[:, train])
            predictions[:, test] = _apply_intervals(x[test], low, high, inside)
        else:
            chosen = _category_rules(column["codes"][train], labels[:, train], len(column["categories"]))
            predictions[:, test] = chosen[:, column["codes"][test]]
    return predictions


def balanced_accuracy(labels: np.ndarray, predictions: np.ndarray) -> np.ndarray:
    """Balanced accuracy per row: (share of the class predicted + share of the rest not predicted) / 2."""
    labels = np.atleast_2d(labels)
    predictions = np.atleast_2d(predictions)
    found = (labels & predictions).sum(axis=1) / np.maximum(labels.sum(axis=1), 1)
    left_out = (~labels & ~predictions).sum(axis=1) / np.maximum((~labels).sum(axis=1), 1)
    return (found + left_out) / 2


# -- folds and the model over all features -----------------------------------------------------------------------


def make_folds(y: np.ndarray, groups: np.ndarray, n_splits: int, random_state: int) -> tuple[list, str, str]:
    """(folds, "grouped" | "stratified", why). Grouped when there are enough groups and the class spans two."""
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    n_splits = int(min(n_splits, y.sum(), (~y).sum()))
    n_groups = len(np.unique(groups))
    class_groups = len(np.unique(groups[y]))
    if n_groups >= n_splits and class_groups >= 2:
        splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=random_state)
        folds = list(splitter.split(np.zeros(len(y)), y, groups))
        if all(len(test) and len(train) for train, test in folds):
            return folds, "grouped", f"{n_splits} folds grouped by the clips' group key ({n_groups} groups)"
    reason = (f"only {n_groups} groups, fewer than the {n_splits} folds" if n_groups < n_splits
              else f"the class occurs in {class_groups} group only")
    splitter = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=random_state)
    folds = list(splitter.split(np.zeros(len(y)), y))
    return folds, "stratified", (f"{n_splits} stratified folds, not grouped: {reason}; a feature that identifies "
                                 "a group (camera, size, frame rate) may look predictive through that group")


def _bin_codes(train: np.ndarray, values: np.ndarray, n_bins: int) -> tuple[np.ndarray, int]:
    """Quantile bins of a numeric feature, edges from the training part only."""
    edges = np.unique(np.quantile(train, np.linspace(0, 1, n_bins + 1)[1:-1]))
    return np.searchsorted(edges, values, side="right"), len(edges) + 1


def _combined_predictions(columns: list[dict[str, Any]], labels: np.ndarray, folds: list,
                          n_bins: int = 6) -> np.ndarray:
    """Held-out predictions of a naive Bayes model over all features together (numeric ones in quantile bins):
    each feature adds the log ratio of its bin's share in the class and in the rest; the class is predicted
    when the sum is positive (equal priors, the balanced-accuracy choice). Vectorised over label rows."""
    predictions = np.zeros(labels.shape, dtype=bool)
    for train, test in folds:
        positives = labels[:, train].sum(axis=1, keepdims=True).astype(float)
        negatives = len(train) - positives
        total = np.zeros((labels.shape[0], len(test)))
        for column in columns:
            if column["kind"] == "numeric":
                codes, n_codes = _bin_codes(column["values"][train], column["values"], n_bins)
            else:
                codes, n_codes = column["codes"], len(column["categories"])
            onehot = np.zeros((len(train), n_codes))
            onehot[np.arange(len(train)), codes[train]] = 1.0
            in_class = labels[:, train] @ onehot
            in_rest = (~labels[:, train]) @ onehot
            ratio = (np.log((in_class + 0.5) / (positives + 0.5 * n_codes))
                     - np.log((in_rest + 0.5) / (negatives + 0.5 * n_codes)))
            ratio[(in_class + in_rest) == 0] = 0.0  # a category no training clip had says nothing
            total += ratio[:, codes[test]]
        predictions[:, test] = total > 0
    return predictions


# -- describing a finding ----------------------------------------------------------------------------------------


def _fmt(value: float, name: str = "") -> str:
    if name == "hour" or name.endswith("_hour"):  # a time of day reads better as one
        minutes = int(round(value * 60)) % (24 * 60)
        return f"{minutes // 60:02d}:{minutes % 60:02d}"
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"


def describe_rule(column: dict[str, Any], y: np.ndarray) -> tuple[str, np.ndarray, dict[str, Any]]:
    """The rule fitted on all clips: in words, which clips it picks, and its bounds (numeric) or categories."""
    name = column["name"]
    if column["kind"] == "categorical":
        chosen = _category_rules(column["codes"], y[None, :], len(column["categories"]))[0]
        picked = chosen[column["codes"]]
        names = [c for c, keep in zip(column["categories"], chosen, strict=True) if keep]
        text = " or ".join(names) if len(names) < 4 else "in {" + ", ".join(names) + "}"
        return f"have {name} {text}", picked, {"categories": names}
    low, high, inside = (a[0] for a in _interval_rules(column["values"], y[None, :]))
    picked = _apply_intervals(column["values"], np.array([low]), np.array([high]), np.array([inside]))[0]
    bounds = {"low": None if np.isinf(low) else float(low), "high": None if np.isinf(high) else float(high),
              "inside": bool(inside)}
    if np.isinf(low) and np.isinf(high):
        return f"have any {name}", picked, bounds
    lo, hi = (_fmt(v, name) if not np.isinf(v) else "" for v in (low, high))
    if inside:
        text = f"below {hi}" if np.isinf(low) else f"above {lo}" if np.isinf(high) else f"between {lo} and {hi}"
    else:
        text = f"above {hi}" if np.isinf(low) else f"below {lo}" if np.isinf(high) else f"below {lo} or above {hi}"
    return f"have {name} {text}", picked, bounds


def _by_class(column: dict[str, Any], classes: np.ndarray) -> dict[str, Any]:
    """The feature's values per class (numeric) or category counts per class, for the report's plot."""
    out: dict[str, Any] = {}
    for cls in sorted(set(classes.tolist())):
        mask = classes == cls
        if column["kind"] == "numeric":
            out[cls] = [round(float(v), 4) for v in column["values"][mask]]
        else:
            codes, counts = np.unique(column["codes"][mask], return_counts=True)
            out[cls] = {column["categories"][c]: int(n) for c, n in zip(codes, counts, strict=True)}
    return out


# -- the check ---------------------------------------------------------------------------------------------------


def _columns(table, numeric: list[str], categorical: list[str]) -> tuple[list[dict[str, Any]], list[dict]]:
    columns, skipped = [], []
    for name in numeric:
        values = table[name].to_numpy(dtype=float)
        present = values[~np.isnan(values)]
        if len(present) == 0 or np.ptp(present) == 0:
            skipped.append({"feature": name, "reason": "the same for every clip" if len(present) else "missing"})
            continue
        # A missing value (a file without a bitrate) takes the median: it should not look like a signal.
        columns.append({"name": name, "kind": "numeric", "values": np.where(np.isnan(values), np.median(present),
                                                                           values)})
    for name in categorical:
        categories, codes = np.unique(table[name].astype(str).to_numpy(), return_inverse=True)
        if len(categories) < 2:
            skipped.append({"feature": name, "reason": "the same for every clip"})
            continue
        columns.append({"name": name, "kind": "categorical", "codes": codes, "categories": categories.tolist()})
    return columns, skipped


def _subset(column: dict[str, Any], mask: np.ndarray) -> dict[str, Any]:
    key = "values" if column["kind"] == "numeric" else "codes"
    return {**column, key: column[key][mask]}


def _p_value(observed: float, shuffled: np.ndarray) -> float:
    return float((1 + np.sum(shuffled >= observed - 1e-12)) / (1 + len(shuffled)))


def _predict(sub: dict[str, Any] | None, subs: list[dict[str, Any]], labels: np.ndarray, folds: list) -> np.ndarray:
    """Held-out predictions of one feature's rule, or (``sub`` None) of the model over all features."""
    return _combined_predictions(subs, labels, folds) if sub is None else _held_out_predictions(sub, labels, folds)


def field_findings(field_name: str, raw: pd.Series, choices: list[str], columns: list[dict[str, Any]],
                   groups: np.ndarray, rng: np.random.Generator, settings: dict[str, Any], *,
                   combined: bool = True) -> dict[str, Any]:
    """Every class of one field against every feature; p-values corrected for testing them all at once.
    ``combined`` adds the model over all features (feature "all") to the candidates."""
    present = raw.notna().to_numpy()
    classes = raw.astype(str).to_numpy()[present]
    shuffles = np.stack([rng.permutation(classes) for _ in range(settings["n_permutations"])])
    # The largest score any (class, feature) reaches on each shuffle of the labels: a finding's p-value is the
    # share of shuffles where something scored as high, so testing many features does not breed false alarms.
    null_max = np.zeros(len(shuffles))
    results, skipped, folds_used, tested = [], [], {}, []
    candidates = [(c, c["name"]) for c in columns] + ([(None, ALL_FEATURES)] if columns and combined else [])
    subs = [_subset(c, present) for c in columns]
    for cls in choices:
        y = classes == cls
        count, rest = int(y.sum()), int((~y).sum())
        if count < settings["min_class_count"] or rest < settings["min_class_count"]:
            skipped.append({"field": field_name, "value": cls, "reason": f"{count} clips of {cls} and {rest} "
                            f"others: each side needs at least {settings['min_class_count']}"})
            continue
        folds, cv, cv_note = make_folds(y, groups[present], settings["n_splits"], settings["random_state"])
        folds_used[f"{field_name}={cls}"] = cv_note
        shuffled = shuffles == cls
        for (column, feature), sub in zip(candidates, subs + [None] * (len(candidates) - len(subs)), strict=True):
            held_out = _predict(sub, subs, y[None, :], folds)
            score = float(balanced_accuracy(y, held_out)[0])
            null_max = np.maximum(null_max, balanced_accuracy(shuffled, _predict(sub, subs, shuffled, folds)))
            entry = {"feature": feature, "field": field_name, "value": cls, "score": round(score, 4),
                     "chance": CHANCE, "accuracy": round(float((held_out[0] == y).mean()), 4),
                     "majority_share": round(max(count, rest) / (count + rest), 4), "p_value": None,
                     "n_class": count, "n_rest": rest, "cv": cv, "flagged": False}
            results.append(entry)
            tested.append((entry, score, column, sub, y, held_out[0]))
    flagged = []
    for entry, score, column, sub, y, held_out in tested:
        entry["p_value"] = round(_p_value(score, null_max), 5)
        entry["flagged"] = entry["score"] >= CHANCE + settings["margin"] and entry["p_value"] <= settings["alpha"]
        if not entry["flagged"]:
            continue
        cls = entry["value"]
        if column is None:
            singles = [r for r in results if r["value"] == cls and r["feature"] != ALL_FEATURES and r["score"] > CHANCE]
            entry["leans_on"] = [r["feature"] for r in sorted(singles, key=lambda r: -r["score"])[:3]]
            entry["message"] = (f"all nuisance features together predict {field_name}={cls}: balanced accuracy "
                                f"{score:.2f} vs {CHANCE:.2f} chance (strongest alone: "
                                f"{', '.join(entry['leans_on']) or 'none'})")
            picked = held_out
        else:
            rule, picked, bounds = describe_rule(sub, y)
            entry.update(kind=column["kind"], rule=rule, bounds=bounds, by_class=_by_class(sub, classes))
            entry["message"] = (f"{entry['feature']} alone predicts {field_name}={cls}: balanced accuracy {score:.2f} "
                                f"vs {CHANCE:.2f} chance; {int((picked & y).sum())} of {entry['n_class']} {cls} "
                                f"clips {rule}, against {int((picked & ~y).sum())} of {entry['n_rest']} other clips")
        mask = np.zeros(len(present), dtype=bool)
        mask[np.flatnonzero(present)[picked & y]] = True
        flagged.append((entry, mask))
    return {"results": results, "skipped": skipped, "folds": folds_used, "flagged": flagged}


def check_settings(margin: float, alpha: float, n_permutations: int, n_splits: int, min_class_count: int) -> None:
    """The test's settings, checked at the public boundary (this check and the local one share them)."""
    if not 0 < margin < 0.5:
        raise CliptuneError(f"margin must be between 0 and 0.5 (balanced accuracy above chance), got {margin}")
    if not 0 < alpha < 1:
        raise CliptuneError(f"alpha must be a probability between 0 and 1, got {alpha}")
    if n_permutations < 1 or n_splits < 2 or min_class_count < 2:
        raise CliptuneError("n_permutations must be at least 1, n_splits and min_class_count at least 2")


def check_shortcuts(
    source: Project | AuditInputs,
    *,
    fields: list[str] | None = None,
    margin: float = MARGIN,
    alpha: float = ALPHA,
    n_permutations: int = N_PERMUTATIONS,
    n_splits: int = N_SPLITS,
    min_class_count: int = MIN_CLASS_COUNT,
    random_state: int = 0,
    workers: int | None = None,
) -> AuditResult:
    """Find nuisance features that alone predict a label; see the module docstring for the method.

    Per-clip score: the share of flagged findings the clip carries (it has the flagged class and the flagged
    rule picks it), 0 when nothing is flagged.
    """
    check_settings(margin, alpha, n_permutations, n_splits, min_class_count)
    inputs = inputs_of(source, workers=workers)
    if inputs.features is None:
        raise CliptuneError("the shortcut check needs the feature table: build the inputs with features=True")
    if fields is None:
        fields, why = inputs.label_fields()
    else:
        unknown = [f for f in fields if f not in inputs.labels.columns]
        if unknown:
            raise CliptuneError(f"fields {unknown} are not in the rubric; it has {list(inputs.labels.columns)}")
        why = "as asked"
    table = inputs.features
    ids = table.index.intersection(inputs.labels.index)
    summary: dict[str, Any] = {
        "fields": fields, "fields_chosen": why, "clips_with_features": len(table), "clips_labelled": len(ids),
        "margin": margin, "alpha": alpha, "n_permutations": n_permutations, "chance": CHANCE,
        "score": "held-out balanced accuracy of a one-feature rule, one class against the rest",
        "failed_features": table.attrs.get("failed", []),
    }
    if len(ids) == 0:
        summary.update(tested=0, flagged=0, note="no clip has both a gold answer and features: nothing to test")
        return AuditResult("shortcuts", scores={}, flagged=[], summary=summary, details={"results": [],
                                                                                         "skipped": []})
    table = table.loc[ids]
    columns, skipped = _columns(table, table.attrs.get("numeric", []), table.attrs.get("categorical", []))
    groups = table["group"].astype(str).to_numpy() if "group" in table else np.arange(len(ids)).astype(str)
    rng = np.random.default_rng(random_state)
    results: list[dict[str, Any]] = []
    flagged: list[dict[str, Any]] = []
    carriers: dict[int, int] = {}
    cv_used: dict[str, str] = {}
    clip_ids = np.asarray(ids)
    settings = {"margin": margin, "alpha": alpha, "n_permutations": n_permutations, "n_splits": n_splits,
                "min_class_count": min_class_count, "random_state": random_state}
    for field_name in fields:
        raw = inputs.labels.loc[ids, field_name]
        choices = inputs.rubric.field_map[field_name].choices or sorted(set(raw.dropna().astype(str)))
        outcome = field_findings(field_name, raw, choices, columns, groups, rng, settings)
        results += outcome["results"]
        skipped += outcome["skipped"]
        cv_used.update(outcome["folds"])
        for entry, picked in outcome["flagged"]:
            flagged.append(entry)
            for clip_id in clip_ids[picked]:
                carriers[int(clip_id)] = carriers.get(int(clip_id), 0) + 1
    flagged.sort(key=lambda e: (-e["score"], e["field"], e["value"], e["feature"]))
    results.sort(key=lambda e: (-e["score"], e["field"], e["value"], e["feature"]))
    scores = {int(i): carriers.get(int(i), 0) / len(flagged) if flagged else 0.0 for i in clip_ids}
    summary.update(tested=len(results), flagged=len(flagged), folds=cv_used,
                   features=[c["name"] for c in columns] + ([ALL_FEATURES] if columns else []))
    return AuditResult("shortcuts", scores=scores, flagged=flagged, summary=summary,
                       details={"results": results, "skipped": skipped})

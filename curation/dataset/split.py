"""Held-out split that never leaks: stratified, group-aware, and stable under additions.

The core is :func:`stratified_group_split`, a plain function over arrays. Whole groups (camera, session,
patient, near-duplicate cluster) go to one side; class proportions follow the data; every class that occurs in
at least two groups gets at least one group on each side; and groups fixed by an earlier frozen split keep
their side, so adding clips later never moves a held-out clip into train.

Example::

    held_out = stratified_group_split(y, groups, test_size=0.2, random_state=0)   # bool array, True = held-out
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

UNASSIGNED, TRAIN, TEST = -1, 0, 1


def _encode(values: Any, name: str) -> tuple[np.ndarray, np.ndarray]:
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    uniques, codes = np.unique(array, return_inverse=True)
    return uniques, codes.astype(np.int64)


def _class_codes(y: Any, n: int) -> tuple[np.ndarray, int]:
    """Columns of class codes, offset so that several stratifying fields share one count vector."""
    array = np.asarray(y, dtype=object) if not isinstance(y, np.ndarray) else y
    if array.ndim == 1:
        array = array.reshape(-1, 1)
    if array.ndim != 2 or array.shape[0] != n:
        raise ValueError(f"y must have one row per clip ({n}); got shape {array.shape}")
    columns = []
    offset = 0
    for column in range(array.shape[1]):
        uniques, codes = _encode(array[:, column].astype(str) if array.dtype == object else array[:, column], "y")
        columns.append(codes + offset)
        offset += len(uniques)
    return np.stack(columns, axis=1), offset


def stratified_group_split(
    y: Sequence[Any] | np.ndarray,
    groups: Sequence[Any] | np.ndarray,
    test_size: float = 0.2,
    random_state: int | None = 0,
    fixed: Sequence[int] | np.ndarray | None = None,
    max_sweeps: int = 3,
) -> np.ndarray:
    """Boolean mask, True = held-out, with whole groups on one side and class proportions kept.

    Parameters
    ----------
    y : labels, shape (n,) or (n, n_fields) for several stratifying fields (multi-label stratification:
        every field's classes are balanced together).
    groups : group of each clip; a group never straddles the split.
    test_size : share of clips to hold out, in (0, 1).
    random_state : seed for the order in which equally sized groups are placed.
    fixed : optional per-clip side from an earlier frozen split (1 held-out, 0 train, -1 new). A group with a
        fixed clip goes wholly to that side; a group fixed to both sides is an error.

    Greedy assignment, largest groups first: each group goes to the side that brings the held-out class counts
    closer to ``test_size`` times the class totals (squared error relative to the target), which is the
    two-fold case of scikit-learn's StratifiedGroupKFold objective, computed on a groups × classes count table.
    Then classes still on one side are repaired by flipping free groups (see :func:`_cover_both_sides`).
    When every class lives in a single group, holding any group out would take a class wholly out of train:
    the result then holds nothing out, and the caller decides what to tell the user.
    """
    groups_array = np.asarray(groups)
    n = len(groups_array)
    if n == 0:
        raise ValueError("nothing to split: no clips")
    if not 0.0 < test_size < 1.0:
        raise ValueError(f"test_size must be a share between 0 and 1 (e.g. 0.2), got {test_size}")
    codes, n_classes = _class_codes(y, n)
    _, group_codes = _encode(groups_array, "groups")
    n_groups = int(group_codes.max()) + 1

    # groups x classes counts, and clips per group.
    counts = np.zeros((n_groups, n_classes), dtype=np.float64)
    for column in range(codes.shape[1]):
        flat = np.bincount(group_codes * n_classes + codes[:, column], minlength=n_groups * n_classes)
        counts += flat.reshape(n_groups, n_classes)
    sizes = np.bincount(group_codes, minlength=n_groups).astype(np.float64)
    totals = counts.sum(axis=0)
    target = totals * test_size
    weight = 1.0 / np.maximum(target, 1.0)

    side = np.full(n_groups, UNASSIGNED, dtype=np.int8)
    if fixed is not None:
        fixed_array = np.asarray(fixed, dtype=np.int64)
        if fixed_array.shape != (n,):
            raise ValueError(f"fixed must have one entry per clip ({n}); got shape {fixed_array.shape}")
        if not np.isin(fixed_array, (UNASSIGNED, TRAIN, TEST)).all():
            raise ValueError("fixed entries must be 1 (held-out), 0 (train) or -1 (new)")
        known = fixed_array >= 0
        in_test = np.bincount(group_codes[known], weights=fixed_array[known] == TEST, minlength=n_groups) > 0
        in_train = np.bincount(group_codes[known], weights=fixed_array[known] == TRAIN, minlength=n_groups) > 0
        if np.any(in_test & in_train):
            raise ValueError("a group has frozen clips on both sides; the earlier split leaked — fix it first")
        side[in_test] = TEST
        side[in_train] = TRAIN

    test_counts = counts[side == TEST].sum(axis=0)
    rng = np.random.default_rng(random_state)
    free = np.flatnonzero(side == UNASSIGNED)

    # Rare classes first: each class seen in >= 2 groups gets one group held out, the cheapest that fits.
    groups_per_class = (counts > 0).sum(axis=0)
    for cls in np.argsort(totals, kind="stable"):
        if groups_per_class[cls] < 2 or test_counts[cls] > 0:
            continue
        candidates = free[(side[free] == UNASSIGNED) & (counts[free, cls] > 0)]
        has_train = np.any((side == TRAIN) & (counts[:, cls] > 0))
        if len(candidates) == 0 or (len(candidates) < 2 and not has_train):
            continue
        gains = ((2 * (test_counts - target) + counts[candidates]) * counts[candidates] * weight).sum(axis=1)
        best = candidates[int(np.argmin(gains))]
        side[best] = TEST
        test_counts += counts[best]

    # ... and keeps one group in train, so the refinement below cannot pull every such group into held-out.
    for cls in np.argsort(totals, kind="stable"):
        if groups_per_class[cls] < 2 or np.any((side == TRAIN) & (counts[:, cls] > 0)):
            continue
        candidates = free[(side[free] == UNASSIGNED) & (counts[free, cls] > 0)]
        if len(candidates):
            side[candidates[int(np.argmax(counts[candidates, cls]))]] = TRAIN

    remaining = free[side[free] == UNASSIGNED]
    order = remaining[np.lexsort((rng.random(len(remaining)), -sizes[remaining]))]
    # Cost change of adding group g to the held-out side: sum_c w_c * ((t_c + g_c - T_c)^2 - (t_c - T_c)^2).
    weighted_counts = counts * weight
    squared_term = (counts * weighted_counts).sum(axis=1)
    deficit = (test_counts - target) * 2.0
    for g in order.tolist():
        if float(deficit @ weighted_counts[g]) + squared_term[g] < 0.0:
            side[g] = TEST
            deficit += 2.0 * counts[g]
    # Refinement sweeps: move a free group to the other side whenever that lowers the cost (coordinate
    # descent; the rare-class groups placed above stay where they are).
    movable = order[rng.permutation(len(order))]
    for _ in range(max_sweeps):
        moved = 0
        for g in movable.tolist():
            sign = -1.0 if side[g] == TEST else 1.0
            if sign * float(deficit @ weighted_counts[g]) + squared_term[g] < -1e-12:
                side[g] = TRAIN if side[g] == TEST else TEST
                deficit += sign * 2.0 * counts[g]
                moved += 1
        if moved == 0:
            break
    side[side == UNASSIGNED] = TRAIN
    _cover_both_sides(side, counts, free, target, weight)
    return side[group_codes] == TEST


def _cover_both_sides(
    side: np.ndarray, counts: np.ndarray, free: np.ndarray, target: np.ndarray, weight: np.ndarray,
    max_rounds: int = 100, exhaustive_groups: int = 14,
) -> None:
    """Repair, in place, classes that occur in two groups or more but ended on one side only.

    The greedy placement above can use up a class's groups for other classes; a few flips of free groups usually
    fix that. Each round flips the group (of a class still on one side) that leaves the fewest classes on one
    side. Where that gets stuck and at most ``exhaustive_groups`` free groups hold such classes, every assignment
    of those groups is tried, keeping the one with the fewest one-sided classes and then the best proportions.
    Some layouts have no fix at all (four groups and five classes can tie every choice); proportions may move a
    little in exchange for coverage.
    """
    present = counts > 0
    spread = present.sum(axis=0) >= 2
    movable = np.zeros(len(side), dtype=bool)
    movable[free] = True

    def one_sided(sides: np.ndarray) -> np.ndarray:
        held = present[sides == TEST].any(axis=0)
        kept = present[sides == TRAIN].any(axis=0)
        return spread & ~(held & kept)

    violated = one_sided(side)
    for _ in range(max_rounds):
        if not violated.any():
            return
        best_count, best_group = int(violated.sum()), -1
        for cls in np.flatnonzero(violated):
            for group in np.flatnonzero(present[:, cls] & movable):
                side[group] = TRAIN if side[group] == TEST else TEST
                count = int(one_sided(side).sum())
                side[group] = TRAIN if side[group] == TEST else TEST
                if count < best_count:
                    best_count, best_group = count, group
        if best_group < 0:
            break
        side[best_group] = TRAIN if side[best_group] == TEST else TEST
        violated = one_sided(side)
    if not violated.any():
        return
    involved = np.flatnonzero(movable & present[:, spread].any(axis=1))
    if len(involved) > exhaustive_groups:
        return
    # Every assignment of the involved groups at once: rows of bits, 1 = held out.
    bits = (np.arange(2 ** len(involved))[:, None] >> np.arange(len(involved))) & 1
    rest = np.ones(len(side), dtype=bool)
    rest[involved] = False
    base_held = present[rest & (side == TEST)].any(axis=0)
    base_kept = present[rest & (side == TRAIN)].any(axis=0)
    held = base_held | ((bits @ present[involved]) > 0)
    kept = base_kept | (((1 - bits) @ present[involved]) > 0)
    n_one_sided = (spread & ~(held & kept)).sum(axis=1)
    test_counts = counts[rest & (side == TEST)].sum(axis=0) + bits @ counts[involved]
    cost = (((test_counts - target) ** 2) * weight).sum(axis=1)
    best = np.lexsort((cost, n_one_sided))[0]
    if n_one_sided[best] < violated.sum():
        side[involved] = np.where(bits[best] == 1, TEST, TRAIN)


def split_report(y: Any, groups: Any, held_out: np.ndarray) -> dict[str, Any]:
    """Counts per side and class, the largest class-proportion deviation, and groups straddling the split."""
    labels = np.asarray(y, dtype=object)
    if labels.ndim == 1:
        labels = labels.reshape(-1, 1)
    held_out = np.asarray(held_out, dtype=bool)
    groups_array = np.asarray(groups)
    _, group_codes = _encode(groups_array, "groups")
    in_test = np.bincount(group_codes, weights=held_out) > 0
    in_train = np.bincount(group_codes, weights=~held_out) > 0
    per_field = []
    worst = 0.0
    for column in range(labels.shape[1]):
        values = labels[:, column].astype(str)
        classes, codes = np.unique(values, return_inverse=True)
        all_counts = np.bincount(codes, minlength=len(classes))
        test_counts = np.bincount(codes[held_out], minlength=len(classes))
        train_counts = all_counts - test_counts
        n_test, n_train = max(int(held_out.sum()), 1), max(int((~held_out).sum()), 1)
        share_all = all_counts / len(values)
        deviation = max(
            np.abs(test_counts / n_test - share_all).max(), np.abs(train_counts / n_train - share_all).max()
        )
        worst = max(worst, float(deviation))
        per_field.append(
            {
                str(c): {"train": int(a - b), "test": int(b)}
                for c, a, b in zip(classes, all_counts, test_counts, strict=True)
            }
        )
    return {
        "train": int((~held_out).sum()),
        "test": int(held_out.sum()),
        "test_share": round(float(held_out.mean()), 6),
        "per_class": per_field[0] if len(per_field) == 1 else per_field,
        "max_proportion_deviation": round(worst, 6),
        "groups_straddling": int(np.sum(in_test & in_train)),
    }

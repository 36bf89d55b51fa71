"""The held-out split core: groups never straddle, frozen clips never move, rare classes on both sides."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from curation.dataset.split import split_report, stratified_group_split


@st.composite
def labelled_groups(draw):
    n = draw(st.integers(2, 300))
    n_groups = draw(st.integers(1, max(1, n // 2)))
    n_classes = draw(st.integers(1, 6))
    seed = draw(st.integers(0, 2**31))
    rng = np.random.default_rng(seed)
    groups = rng.integers(0, n_groups, n)
    y = rng.integers(0, n_classes, n)
    return y, groups, draw(st.floats(0.05, 0.5)), seed


@settings(max_examples=200, deadline=None)
@given(labelled_groups())
def test_no_group_straddles_and_rare_classes_reach_both_sides(case) -> None:
    y, groups, test_size, seed = case
    held_out = stratified_group_split(y, groups, test_size=test_size, random_state=seed)
    assert held_out.dtype == bool and held_out.shape == y.shape
    assert split_report(y, groups, held_out)["groups_straddling"] == 0
    # Every class found in two groups or more reaches both sides — wherever that is possible at all: with few
    # groups some layouts have no such assignment (4 groups, 5 classes can tie every choice), checked by brute force.
    assume(len(np.unique(groups)) > 12 or coverable(y, groups))
    for cls in np.unique(y):
        class_groups = np.unique(groups[y == cls])
        if len(class_groups) >= 2:
            sides = {bool(held_out[groups == g][0]) for g in class_groups}
            assert sides == {True, False}, f"class {cls} in {len(class_groups)} groups is on one side only"


def coverable(y: np.ndarray, groups: np.ndarray) -> bool:
    """Whether some assignment of groups to sides puts every class of two or more groups on both sides."""
    names = list(np.unique(groups))
    spread = [[names.index(g) for g in np.unique(groups[y == c])] for c in np.unique(y)]
    spread = [s for s in spread if len(s) >= 2]
    return any(all(len({bits[i] for i in s}) == 2 for s in spread)
               for bits in itertools.product((0, 1), repeat=len(names)))


def test_an_impossible_layout_still_splits() -> None:
    # The counterexample hypothesis found: no assignment of these 4 groups covers all 5 classes.
    y = np.array([3, 4, 3, 3, 2, 2, 4, 1, 4, 3, 0, 1, 4])
    groups = np.array([3, 2, 2, 1, 1, 0, 0, 0, 0, 3, 2, 3, 2])
    assert not coverable(y, groups)
    held_out = stratified_group_split(y, groups, test_size=0.5, random_state=0)
    assert 0 < held_out.sum() < len(y) and split_report(y, groups, held_out)["groups_straddling"] == 0


@settings(max_examples=100, deadline=None)
@given(labelled_groups(), st.integers(1, 200))
def test_frozen_clips_never_move_when_clips_are_added(case, n_new) -> None:
    y, groups, test_size, seed = case
    first = stratified_group_split(y, groups, test_size=test_size, random_state=seed)
    rng = np.random.default_rng(seed + 1)
    # New clips: some join existing groups, some form new groups.
    new_groups = np.where(
        rng.random(n_new) < 0.5, rng.choice(groups, n_new), groups.max() + 1 + rng.integers(0, 20, n_new)
    )
    all_groups = np.concatenate([groups, new_groups])
    all_y = np.concatenate([y, rng.integers(0, y.max() + 2, n_new)])
    fixed = np.concatenate([first.astype(int), -np.ones(n_new, int)])
    second = stratified_group_split(all_y, all_groups, test_size=test_size, random_state=seed + 7, fixed=fixed)
    assert np.array_equal(second[: len(y)], first)
    assert split_report(all_y, all_groups, second)["groups_straddling"] == 0


def test_proportions_on_realistic_data() -> None:
    rng = np.random.default_rng(0)
    n, n_groups = 20_000, 1_000
    groups = rng.integers(0, n_groups, n)
    shares = np.array([0.6, 0.25, 0.1, 0.04, 0.01])
    y = rng.choice(len(shares), n, p=shares)
    held_out = stratified_group_split(y, groups, test_size=0.15, random_state=3)
    report = split_report(y, groups, held_out)
    assert abs(report["test_share"] - 0.15) < 0.01
    assert report["max_proportion_deviation"] < 0.01 and report["groups_straddling"] == 0
    # Several stratifying fields at once: both stay balanced.
    second_field = rng.choice(3, n, p=[0.7, 0.2, 0.1])
    both = stratified_group_split(np.stack([y, second_field], axis=1), groups, test_size=0.15, random_state=3)
    for field in (y, second_field):
        assert split_report(field, groups, both)["max_proportion_deviation"] < 0.015


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="test_size must be a share"):
        stratified_group_split([0, 1], [0, 1], test_size=20)
    with pytest.raises(ValueError, match="one row per clip"):
        stratified_group_split([0, 1, 1], [0, 1], test_size=0.2)
    with pytest.raises(ValueError, match="frozen clips on both sides"):
        stratified_group_split([0, 1], [5, 5], fixed=[1, 0])
    with pytest.raises(ValueError, match="nothing to split"):
        stratified_group_split([], [])



def test_one_class_per_group_holds_nothing_out() -> None:
    # Four cameras, each filming one kind of event: holding any camera out would take a class wholly out of
    # train, so the core holds nothing out and the ledger turns that into an error that says why.
    y = np.repeat(["a", "b", "c", "d"], [10, 12, 9, 11])
    groups = np.repeat(["cam1", "cam2", "cam3", "cam4"], [10, 12, 9, 11])
    assert not stratified_group_split(y, groups, test_size=0.25, random_state=0).any()

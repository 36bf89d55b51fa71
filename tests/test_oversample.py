"""Train-only oversampling: rare classes reach their target share under a cap; held-out rows are never repeated."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from curation.dataset.oversample import (
    OversampleConfig,
    frame_offsets,
    plan_oversampling,
    repeat_factor_repeats,
    share_repeats,
)
from curation.errors import CliptuneError
from curation.rubric import load_rubric, rubric_from_dict

RUBRICS = Path(__file__).resolve().parent.parent / "rubrics"
SURVEILLANCE = load_rubric(RUBRICS / "surveillance_alert.yaml")


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 400), st.lists(st.integers(0, 60), min_size=1, max_size=3), st.floats(0.02, 0.3),
       st.integers(0, 5), st.integers(0, 2**16))
def test_share_reaches_target_under_the_cap(n_common, rare_counts, target, max_repeat, seed) -> None:
    names = [f"rare{i}" for i in range(len(rare_counts))]
    labels = ["common"] * n_common + [name for name, n in zip(names, rare_counts, strict=True) for _ in range(n)]
    copies = share_repeats(labels, names, target_share=target, max_repeat=max_repeat, random_state=seed)
    labels_array = np.array(labels)
    assert copies.min() >= 0 and copies.max() <= max_repeat
    assert not copies[labels_array == "common"].any()
    total = len(labels) + copies.sum()
    for name, count in zip(names, rare_counts, strict=True):
        if count == 0:
            continue
        rows = copies[labels_array == name]
        assert rows.max() - rows.min() <= 1  # copies spread evenly over a class's clips
        share = (count + rows.sum()) / total
        # Whole copies: the class may miss by half a copy, and the total by half a copy per rare class.
        tolerance = (1.0 + target * len(names)) / total + 1e-9
        if not rows.any():
            assert max_repeat == 0 or share >= target - tolerance  # common enough already (or no copies allowed)
        elif rows.min() == max_repeat:
            assert share <= target + tolerance  # the cap stops it short, never past the target
        else:
            assert abs(share - target) <= tolerance


def test_cap_stops_short_of_target() -> None:
    copies = share_repeats(["a"] * 97 + ["r"] * 3, ["r"], target_share=0.3, max_repeat=2)
    assert copies[-3:].tolist() == [2, 2, 2] and copies[:97].sum() == 0  # 9 of 103 rows, not 30 %


def test_repeat_factor_follows_lvis_rule() -> None:
    # Field 1: "x" is 10 % of rows; field 2: "p" is 2.5 %.
    labels = [["x" if i < 4 else "y", "p" if i == 39 else "q"] for i in range(40)]
    copies, factor = repeat_factor_repeats(labels, threshold=0.2, max_repeat=5, random_state=0)
    assert factor[0] == pytest.approx(math.sqrt(0.2 / 0.1))
    assert factor[39] == pytest.approx(math.sqrt(0.2 / 0.025))
    assert factor[10] == 1.0 and copies[10:39].sum() == 0
    assert copies[39] in (math.floor(factor[39]) - 1, math.floor(factor[39]))
    capped, factor_capped = repeat_factor_repeats(labels, threshold=0.2, max_repeat=1)
    assert factor_capped.max() == 2.0 and capped.max() <= 1


@st.composite
def rows_and_split(draw):
    n = draw(st.integers(1, 120))
    events = draw(st.lists(st.sampled_from(SURVEILLANCE.field_map["event"].choices), min_size=n, max_size=n))
    held_out = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    return [{"event": e, "persons": 1} for e in events], held_out


@settings(max_examples=100, deadline=None)
@given(rows_and_split(), st.sampled_from(["auto", "share", "repeat_factor"]), st.integers(0, 4))
def test_held_out_rows_are_never_repeated(case, method, max_repeat) -> None:
    rows, held_out = case
    copies, report = plan_oversampling(rows, held_out, SURVEILLANCE,
                                       OversampleConfig(method=method, target_share=0.3, max_repeat=max_repeat))
    assert not copies[np.array(held_out, bool)].any() and report["held_out_repeated"] == 0
    assert report["train_rows_after"] == report["train_rows_before"] + int(copies.sum())
    assert copies.max(initial=0) <= max_repeat
    assert sum(report["copies_per_clip"].values()) == held_out.count(False)


def test_report_says_what_was_repeated() -> None:
    rows = [{"event": "NORMAL_ENTRY"}] * 16 + [{"event": "INTRUSION"}] * 2 + [{"event": "TAILGATING"}] * 2
    held_out = [False] * 15 + [True] + [False, True, False, False]
    copies, report = plan_oversampling(rows, held_out, SURVEILLANCE,
                                       OversampleConfig(method="auto", target_share=0.2, max_repeat=3))
    assert report["method"] == "share" and report["fields"] == ["event"]
    by_value = {c["value"]: c for c in report["classes"]}
    assert by_value["INTRUSION"]["clips"] == 1 and by_value["INTRUSION"]["copies"] == 3  # capped at 3
    assert by_value["TAILGATING"]["copies"] == int(copies[18:].sum()) > 0
    assert copies[17] == 0 and copies[15] == 0  # held-out rare and common rows
    assert report["copies_per_clip"][0] == 15


def test_frame_offsets_shift_within_one_frame_spacing() -> None:
    offsets = frame_offsets(4.0, 3, num_frames=8)
    assert offsets == sorted(set(offsets)) and 0 < offsets[0] and offsets[-1] < 4.0 / 8
    assert frame_offsets(4.0, 0) == []


def test_bad_configuration_is_refused() -> None:
    with pytest.raises(CliptuneError, match="choose one of"):
        OversampleConfig(method="smote").validated()
    with pytest.raises(CliptuneError, match="target-share"):
        OversampleConfig(method="share", target_share=1.5).validated()
    with pytest.raises(CliptuneError, match="max-repeat"):
        OversampleConfig(method="share", max_repeat=-1).validated()
    data = yaml.safe_load((RUBRICS / "surveillance_alert.yaml").read_text())
    data["fields"].insert(1, {"name": "light", "type": "choice", "choices": ["day", "night"], "rare": ["night"]})
    data["output"]["template"] += " ({light})"
    data["examples"] = []
    two_rare = rubric_from_dict(data)
    rows = [{"event": "NORMAL_ENTRY", "light": "day"}] * 9 + [{"event": "INTRUSION", "light": "night"}]
    with pytest.raises(CliptuneError, match="exactly one rubric field"):
        plan_oversampling(rows, [False] * 10, two_rare, OversampleConfig(method="share"))
    copies, report = plan_oversampling(rows, [False] * 10, two_rare, OversampleConfig(method="auto", target_share=0.5))
    assert report["method"] == "repeat_factor" and set(report["fields"]) == {"event", "light"}
    assert copies[-1] > 0 and copies[:9].sum() == 0
    with pytest.raises(ValueError, match="one entry per row"):
        plan_oversampling(rows, [False], two_rare)

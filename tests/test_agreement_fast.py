"""Alpha from per-clip statistics equals alpha computed per resample, the way `cliptune agree` used to.

The reference (tests/agreement_reference.py) calls krippendorff_alpha on the resampled coders × units table once
per round. Resample by resample, the statistics must give the same alpha (1e-9) and NaN on exactly the same
rounds; the rounded report rows must be identical; point values must match the krippendorff package.
"""

from __future__ import annotations

import json
import tracemalloc

import krippendorff
import numpy as np
import pytest
from agreement_reference import reference_alphas, reference_field_agreement
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import insert

from curation.records.annotations import add_annotation
from curation.records.store import Clip, Project
from curation.records.users import add_user
from curation.review import field_statistics
from curation.review.field_agreement import agreement_report, field_agreement
from curation.review.field_statistics import (
    FieldStatistics,
    alpha_with_interval,
    bootstrap_alphas,
    clip_statistics,
)
from curation.rubric import RubricField, parse_rubric_text

FIELDS = {
    "choice": RubricField(name="event", type="choice", choices=["none", "entry", "tailgating", "intrusion"]),
    "ordinal": RubricField(name="severity", type="ordinal", choices=["low", "medium", "high", "critical", "extreme"]),
    "integer": RubricField(name="persons", type="integer", min=0, max=20, tolerance=0),
    "number": RubricField(name="minutes", type="number", decimals=1, tolerance=1.5),
    "time": RubricField(name="time", type="time", format="hh:mm:ss", tolerance=2),
}
ANNOTATORS = [f"a{i}" for i in range(6)]


def _clock(seconds: int) -> str:
    return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def random_answers(kind: str, n_clips: int, seed: int, *, missing: float = 0.1) -> dict[int, dict[str, object]]:
    """Clips with 1-5 answers from 6 annotators, copying a latent value 70 % of the time, some missing (None)."""
    rng = np.random.default_rng(seed)
    field = FIELDS[kind]
    answers = {}
    for clip in rng.permutation(n_clips) * 3 + 11:  # ids neither dense nor in insertion order
        truth = int(rng.integers(0, 1000))
        chosen = rng.choice(len(ANNOTATORS), int(rng.integers(1, 6)), replace=False)
        by_user = {}
        for j in chosen:
            guess = truth if rng.random() < 0.7 else int(rng.integers(0, 1000))
            if rng.random() < missing:
                value = None
            elif kind in ("choice", "ordinal"):
                value = field.choices[guess % len(field.choices)]
            elif kind == "integer":
                value = guess % 7
            elif kind == "number":
                value = round(guess / 7 + 40_000, 1)  # far from zero: the moments must not cancel
            else:
                value = _clock(80_000 + guess % 6000)
            by_user[ANNOTATORS[j]] = value
        answers[int(clip)] = by_user
    return answers


def assert_same_alphas(field: RubricField, answers: dict, n_boot: int, random_state: int = 0) -> None:
    units = {c: a for c, a in answers.items() if len(a) >= 2}
    expected_point, expected_boots, _ = reference_alphas(field, units, n_boot, random_state, min_items=1)
    [(point, boots)] = bootstrap_alphas([FieldStatistics.from_answers(field, units)], n_boot, random_state)
    if not units:  # nothing to resample: every round is undefined
        assert np.isnan(point) and np.isnan(boots).all() and len(boots) == n_boot
        return
    assert np.isnan(point) == np.isnan(expected_point)
    if not np.isnan(point):
        assert point == pytest.approx(expected_point, abs=1e-9)
    assert len(boots) == len(expected_boots)
    assert np.array_equal(np.isnan(boots), np.isnan(expected_boots)), (boots, expected_boots)
    finite = ~np.isnan(boots)
    np.testing.assert_allclose(boots[finite], expected_boots[finite], rtol=0, atol=1e-9)


@pytest.mark.parametrize("kind", sorted(FIELDS))
def test_report_rows_equal_the_per_resample_loop(kind: str) -> None:
    for seed, n_clips in ((0, 60), (1, 400)):
        answers = random_answers(kind, n_clips, seed)
        assert field_agreement(FIELDS[kind], answers, n_boot=300, random_state=seed) == reference_field_agreement(
            FIELDS[kind], answers, n_boot=300, random_state=seed)
        assert_same_alphas(FIELDS[kind], answers, n_boot=300, random_state=seed)


values = {
    "choice": st.sampled_from([None, "none", "entry", "tailgating"]),
    "ordinal": st.sampled_from([None, "low", "medium", "high", "extreme"]),
    "integer": st.one_of(st.none(), st.integers(0, 3)),
    "number": st.one_of(st.none(), st.sampled_from([0.5, 1.0, 2.5, 86_399.9, 1e6])),
    "time": st.one_of(st.none(), st.sampled_from(["00:00:00", "00:00:01", "23:59:59", "12:00:00"])),
}


@st.composite
def field_and_answers(draw: st.DrawFn) -> tuple[RubricField, dict[int, dict[str, object]]]:
    kind = draw(st.sampled_from(sorted(FIELDS)))
    n_clips = draw(st.integers(1, 25))
    answers = {}
    for clip in draw(st.lists(st.integers(1, 10_000), min_size=n_clips, max_size=n_clips, unique=True)):
        users = draw(st.lists(st.sampled_from(ANNOTATORS[:5]), min_size=1, max_size=5, unique=True))
        answers[clip] = {user: draw(values[kind]) for user in users}
    return FIELDS[kind], answers


@settings(max_examples=150, deadline=None)
@given(field_and_answers(), st.integers(0, 2**31))
def test_every_resample_equals_the_reference(case: tuple[RubricField, dict], seed: int) -> None:
    # Few values, few clips: single categories, constant clips, clips with one answer or only None values, and
    # resamples without any pairable value all come up, and each must be NaN exactly where the reference is.
    field, answers = case
    assert_same_alphas(field, answers, n_boot=25, random_state=seed)


@pytest.mark.parametrize("kind", sorted(FIELDS))
def test_degenerate_resamples_are_nan_where_the_reference_is(kind: str) -> None:
    field = FIELDS[kind]
    same = {"choice": "entry", "ordinal": "high", "integer": 2, "number": 7.5, "time": "10:00:00"}[kind]
    other = {"choice": "none", "ordinal": "low", "integer": 3, "number": 9.0, "time": "10:00:05"}[kind]
    # Every clip agrees on one value: alpha is 0/0 everywhere, so no value and no interval.
    agreeing = {c: {"a0": same, "a1": same, "a2": same} for c in range(30)}
    assert field_agreement(field, agreeing, n_boot=200)["value"] is None
    assert field_agreement(field, agreeing, n_boot=200)["ci"] == [None, None]
    assert_same_alphas(field, agreeing, n_boot=200)
    # One clip in six carries the only other value: about a third of the resamples miss it and are undefined.
    mostly = {c: {"a0": same, "a1": same} for c in range(5)} | {5: {"a0": same, "a1": other}}
    [(point, boots)] = bootstrap_alphas([FieldStatistics.from_answers(field, mostly)], 300, 0)
    assert np.isfinite(point) and 0.2 < np.isnan(boots).mean() < 0.5
    assert_same_alphas(field, mostly, n_boot=300)
    # Clips agreeing within themselves on different values: every resample drawing two values is defined.
    constant = {c: {"a0": v, "a1": v} for c, v in enumerate([same] * 5 + [other])}
    assert_same_alphas(field, constant, n_boot=300)


def test_only_one_category_ever_used_and_single_answers() -> None:
    field = FIELDS["choice"]
    answers = {c: {"a0": "entry", "a1": "entry"} for c in range(20)} | {c: {"a0": "none"} for c in range(20, 40)}
    row = field_agreement(field, answers, n_boot=100)
    assert row == reference_field_agreement(field, answers, n_boot=100)
    assert row["n_items"] == 20 and row["value"] is None and row["fleiss_kappa"] is None
    assert row["percent_agreement"] == 1.0


def test_label_outside_the_choices_leaves_resamples_holding_it_undefined() -> None:
    field = FIELDS["choice"]
    answers = random_answers("choice", 40, 3, missing=0.0)
    clip = sorted(answers)[7]
    answers[clip] = {"a0": "entry", "a1": "not a choice"}
    row = field_agreement(field, answers, n_boot=300)
    assert row == reference_field_agreement(field, answers, n_boot=300)
    assert row["value"] is None and row["ci"][0] is not None  # resamples without that clip still have alpha
    assert_same_alphas(field, answers, n_boot=300)


@pytest.mark.parametrize("kind", sorted(FIELDS))
def test_point_values_equal_the_krippendorff_package(kind: str) -> None:
    field = FIELDS[kind]
    answers = {c: a for c, a in random_answers(kind, 300, 5).items() if len(a) >= 2}
    clip_ids = sorted(answers)
    if kind in ("choice", "ordinal"):
        number = {label: float(i) for i, label in enumerate(field.choices)}.get
    else:
        number = field.to_number
    table = np.array([[np.nan if answers[c].get(u) is None else number(answers[c][u]) for c in clip_ids]
                      for u in ANNOTATORS])
    level = {"choice": "nominal", "ordinal": "ordinal"}.get(kind, "interval")
    domain = np.arange(len(field.choices), dtype=float) if kind == "ordinal" else None
    theirs = krippendorff.alpha(reliability_data=table, level_of_measurement=level, value_domain=domain)
    [(ours, _)] = bootstrap_alphas([FieldStatistics.from_answers(field, answers)], 0, 0)
    assert ours == pytest.approx(theirs, abs=1e-9)


def test_rows_are_plain_and_updates_give_the_same_statistics() -> None:
    field = FIELDS["time"]
    answers = random_answers("time", 200, 7)
    whole = FieldStatistics.from_answers(field, answers)
    built = FieldStatistics(field)
    for clip in reversed(list(answers)):
        row = json.loads(json.dumps(clip_statistics(field, answers[clip])))  # survives a JSON store
        built.update(clip, row)
    assert np.array_equal(built.arrays()[0], whole.arrays()[0])
    np.testing.assert_array_equal(built.arrays()[1], whole.arrays()[1])
    first = sorted(answers)[0]
    assert built.row(first) == clip_statistics(field, answers[first])
    # A changed clip and a withdrawn one: the same as building from the changed answers.
    changed = dict(answers)
    changed[first] = {"a0": "00:00:00", "a1": "23:00:00", "a2": None}
    del changed[sorted(answers)[1]]
    built.update(first, clip_statistics(field, changed[first]))
    built.remove(sorted(answers)[1])
    units = {c: a for c, a in changed.items() if len(a) >= 2}
    assert alpha_with_interval(built, n_boot=200) == {k: reference_field_agreement(field, units, n_boot=200)[k]
                                                      for k in ("value", "ci")}
    with pytest.raises(ValueError, match="clip_statistics"):
        built.update(5, {"answers": 2})
    with pytest.raises(ValueError, match="text fields"):
        FieldStatistics(RubricField(name="note", type="text"))


def test_resample_blocks_draw_the_same_rounds(monkeypatch: pytest.MonkeyPatch) -> None:
    field = FIELDS["ordinal"]
    answers = random_answers("ordinal", 50, 2)
    whole = bootstrap_alphas([FieldStatistics.from_answers(field, answers)], 100, 0)[0][1]
    monkeypatch.setattr(field_statistics, "_CHUNK_BYTES", 8 * 50 * 7)  # blocks of 7 rounds
    blocked = bootstrap_alphas([FieldStatistics.from_answers(field, answers)], 100, 0)[0][1]
    np.testing.assert_array_equal(whole, blocked)


def test_memory_stays_bounded_for_many_clips() -> None:
    field = FIELDS["integer"]
    rng = np.random.default_rng(0)
    n = 100_000
    table = np.zeros((n, 9))
    table[:, :3] = (3, 3, 1)
    values = rng.integers(0, 5, (n, 3)).astype(float)
    table[:, 4:] = np.column_stack([np.full(n, 3), values.sum(1), ((values - values.mean(1, keepdims=True)) ** 2)
                                    .sum(1), values.min(1), values.max(1)])
    stats = FieldStatistics(field)
    stats._ids, stats._table = np.arange(n), table
    tracemalloc.start()
    try:
        [(point, boots)] = bootstrap_alphas([stats], 200, 0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert np.isfinite(point) and np.isfinite(boots).all()
    assert peak < 200 << 20, f"peak {peak / 2**20:.0f} MiB"  # 200 rounds × 100,000 clips dense would be 160 MiB


RUBRIC = """
name: fast_agreement
prompt: Judge the clip.
fields:
  - {name: event, type: choice, choices: [none, entry, tailgating]}
  - {name: severity, type: ordinal, choices: [low, medium, high]}
  - {name: persons, type: integer, min: 0, max: 20}
  - {name: time, type: time, format: "hh:mm:ss", required: false}
  - {name: note, type: text}
output:
  template: "{event} {severity} {persons} {time} {note}"
"""


def test_report_shares_draws_across_fields_and_equals_field_agreement(tmp_path) -> None:
    project = Project.init(tmp_path / "p", parse_rubric_text(RUBRIC))
    with project.write() as session:
        session.execute(insert(Clip), [{"root": "/nowhere", "path": f"c{i}.mp4", "sha256": f"{i:064x}",
                                        "source_sha256": f"{i:064x}", "duration_s": 4.0, "fps": 8.0, "width": 64,
                                        "height": 64, "n_frames": 32, "group_key": "g"} for i in range(30)])
    for name in ANNOTATORS[:3]:
        add_user(project, name, "annotator")
    rng = np.random.default_rng(4)
    for clip in range(1, 31):
        for user in ANNOTATORS[: 2 + clip % 2]:
            fields = {"event": ["none", "entry", "tailgating"][rng.integers(0, 2 + (clip % 3 == 0))],
                      "severity": ["low", "medium", "high"][rng.integers(0, 3)], "persons": int(rng.integers(0, 3)),
                      "time": None if clip % 5 == 0 else _clock(int(rng.integers(0, 9))), "note": "fine"}
            add_annotation(project, clip, user, fields=fields, source="import")
    report = agreement_report(project, n_boot=150)
    answers: dict[int, dict[str, dict]] = {}
    for clip in range(1, 31):
        answers[clip] = {}
    from curation.records.annotations import current_annotations

    for record in current_annotations(project):
        answers[record.clip_id][record.user] = record.fields
    for field in project.rubric.fields:
        per_clip = {c: {u: f[field.name] for u, f in by.items() if f.get(field.name) is not None}
                    for c, by in answers.items()}
        assert report["fields"][field.name] == field_agreement(field, per_clip, n_boot=150), field.name
        if field.type != "text":
            assert report["fields"][field.name] == reference_field_agreement(field, per_clip, n_boot=150)
    assert report["fields"]["time"]["n_items"] < report["fields"]["event"]["n_items"] == 30
    assert list(report["fields"]) == [f.name for f in project.rubric.fields]

"""Agreement statistics: published worked examples, equality with reference packages, errors, bootstrap."""

from __future__ import annotations

import doctest
import functools
import itertools
import warnings
from unittest import mock

import krippendorff
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import cohen_kappa_score
from statsmodels.stats.inter_rater import aggregate_raters
from statsmodels.stats.inter_rater import fleiss_kappa as sm_fleiss_kappa

from curation.review import agreement
from curation.review.agreement import (
    LEVELS,
    bootstrap_ci,
    cohen_kappa,
    fleiss_kappa,
    gwet_ac1,
    krippendorff_alpha,
    percent_agreement,
    scott_pi,
)

nan = np.nan

# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", worked example: 4 observers × 12 units, values
# 1-5, missing data. Printed there: nominal .743 (= 113/152), ordinal .815, interval .849, ratio .797. The same
# matrix and values are in the krippendorff package's doctests and tests (pln-fing-udelar/fast-krippendorff).
KRIPPENDORFF_2011 = [
    [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
    [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
]

# Wikipedia "Krippendorff's alpha", computational example: 3 coders × 15 units; nominal .691, interval .811
# (the krippendorff package asserts 0.691358 and 0.810845).
WIKIPEDIA_ALPHA = [
    [None, None, None, None, None, 3, 4, 1, 2, 1, 1, 3, 3, None, 3],
    [1, None, 2, 1, 3, 3, 4, 3, None, None, None, None, None, None, None],
    [None, None, 2, 1, 3, 4, 4, None, 2, 1, 1, 3, 3, None, 4],
]

# irrCAC's data sets (Gwet 2014, Handbook of Inter-Rater Reliability, 4th ed.), units × raters, with the values
# irrCAC's tests assert (afergadis/irrCAC test/unit/irrCAC/raw/test_gwet.py, test_fleiss.py; 3 decimals, and 5 in
# the raw.py doctest for raw_4raters): (percent agreement pa, Gwet's AC1, generalised Fleiss' kappa).
IRRCAC = {
    "raw_4raters": (  # Handbook p. 120
        [
            [1, 1, None, 1], [2, 2, 3, 2], [3, 3, 3, 3], [3, 3, 3, 3], [2, 2, 2, 2], [1, 2, 3, 4],
            [4, 4, 4, 4], [1, 1, 2, 1], [2, 2, 2, 2], [None, 5, 5, 5], [None, None, 1, 1], [None, None, 3, None],
        ],
        (0.81818, 0.77544, 0.76117),
    ),
    "raw_5observers": (
        [
            [1, 1, 2, None, 2], [1, 1, 0, 1, None], [2, 3, 3, 3, None], [None, 0, 0, None, 0], [0, 0, 0, None, 0],
            [0, 0, 0, None, 0], [1, 0, 2, None, 1], [1, None, 2, 0, None], [2, 2, 2, None, 2], [2, 1, 1, 1, None],
            [None, 1, 0, 0, None], [0, 0, 0, 0, None], [1, 2, 2, 2, None], [3, 3, 2, 2, 3], [1, 1, 1, None, 1],
        ],
        (0.616, 0.497, 0.458),
    ),
    "raw_g1g2": (
        [
            ["a", "a", None, "a"], ["b", "b", "c", "b"], ["c", "c", "c", "c"], ["c", "c", "c", "c"],
            ["b", "b", "b", "b"], ["a", "b", "c", "d"], ["d", "d", "d", "d"], ["a", "a", "b", "a"],
            ["b", "b", "b", "b"], [None, "e", "e", "e"], [None, None, "a", "a"], [None, None, "c", None],
            ["b", "b", "c", "b"], ["b", "a", "c", "b"],
        ],
        (0.744, 0.685, 0.657),
    ),
    "raw_gender": (
        [list(row) for row in zip(*(s.split() for s in (
            "a a a a a b b b c a a a a a b", "a a a a b a b c c a a a a b a",
            "a b b c a a b b c a b b c a a", "c c c c a a b b c c c c c a a",
        )), strict=True)],
        (0.456, 0.208, 0.129),
    ),
    "raw_ben_gerry": (
        [list(pair) for pair in zip("aabbdcccedda", ["b", "a", "b", "b", "b", "c", "c", "c", "e", None, "d", "d"],
                                    strict=True)],
        (0.727, 0.661, 0.649),
    ),
}  # fmt: skip

# Fleiss (1971) diagnoses: 30 patients × 6 psychiatrists, 5 categories; kappa .430 in the paper, 0.4302445 from
# R irr::kappam.fleiss (statsmodels' test_inter_rater.py).
FLEISS_1971 = np.array([
    [4, 4, 4, 4, 4, 4], [2, 2, 2, 5, 5, 5], [2, 3, 3, 3, 3, 5], [5, 5, 5, 5, 5, 5], [2, 2, 2, 4, 4, 4],
    [1, 1, 3, 3, 3, 3], [3, 3, 3, 3, 5, 5], [1, 1, 3, 3, 3, 4], [1, 1, 4, 4, 4, 4], [5, 5, 5, 5, 5, 5],
    [1, 4, 4, 4, 4, 4], [1, 2, 4, 4, 4, 4], [2, 2, 2, 3, 3, 3], [1, 4, 4, 4, 4, 4], [2, 2, 4, 4, 4, 5],
    [3, 3, 3, 3, 3, 5], [1, 1, 1, 4, 5, 5], [1, 1, 1, 1, 1, 2], [2, 2, 4, 4, 4, 4], [1, 3, 3, 5, 5, 5],
    [5, 5, 5, 5, 5, 5], [2, 4, 4, 4, 4, 4], [2, 2, 4, 5, 5, 5], [1, 1, 4, 4, 4, 4], [1, 4, 4, 4, 4, 5],
    [2, 2, 2, 2, 2, 4], [1, 1, 1, 1, 5, 5], [2, 2, 4, 4, 4, 4], [1, 3, 3, 3, 3, 3], [5, 5, 5, 5, 5, 5],
])  # fmt: skip

# Wikipedia "Fleiss' kappa" worked example: 10 subjects, 14 raters, counts per category 1-5; kappa 0.210.
WIKIPEDIA_FLEISS_COUNTS = [
    [0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
    [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7],
]  # fmt: skip


def _from_table(table: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Expand a contingency table (rows: rater a's label, columns: rater b's) into two label sequences."""
    cells = [(i, j) for i, row in enumerate(table) for j, count in enumerate(row) for _ in range(count)]
    return np.array([i for i, _ in cells]), np.array([j for _, j in cells])


def _as_float(data: list) -> np.ndarray:
    return np.array([[nan if v is None else v for v in row] for row in data], dtype=float)


# --- published worked examples ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("level", "printed"), [("nominal", 0.743), ("ordinal", 0.815), ("interval", 0.849),
                                                ("ratio", 0.797)])  # fmt: skip
def test_krippendorff_2011_worked_example(level: str, printed: float) -> None:
    assert round(krippendorff_alpha(KRIPPENDORFF_2011, level=level), 3) == printed


def test_krippendorff_2011_nominal_is_exactly_113_over_152() -> None:
    assert krippendorff_alpha(_as_float(KRIPPENDORFF_2011), level="nominal") == pytest.approx(113 / 152, abs=1e-15)


def test_krippendorff_ordinal_string_labels_follow_value_domain() -> None:
    words = ["very low", "low", "mid", "high", "very high"]
    data = [[None if v is None else words[v - 1] for v in row] for row in KRIPPENDORFF_2011]
    assert round(krippendorff_alpha(data, level="ordinal", value_domain=words), 3) == 0.815
    assert round(krippendorff_alpha(data, level="nominal"), 3) == 0.743


def test_krippendorff_wikipedia_example() -> None:
    assert round(krippendorff_alpha(WIKIPEDIA_ALPHA, level="nominal"), 6) == 0.691358
    assert round(krippendorff_alpha(WIKIPEDIA_ALPHA, level="interval"), 6) == 0.810845


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
@pytest.mark.parametrize("name", list(IRRCAC))
def test_irrcac_gwet_fleiss_and_percent_agreement(name: str, sparse: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if sparse:  # the table layout used when units × categories would be too large to hold densely
        monkeypatch.setattr(agreement, "_DENSE_LIMIT", 0)
    ratings, (pa, ac1, kappa) = IRRCAC[name]
    digits = len(str(pa).split(".")[1])
    assert round(percent_agreement(ratings), digits) == pa
    assert round(gwet_ac1(ratings), digits) == ac1
    assert round(fleiss_kappa(ratings), digits) == kappa


def test_fleiss_1971_diagnoses() -> None:
    assert round(fleiss_kappa(FLEISS_1971), 7) == 0.4302445


def test_fleiss_wikipedia_example() -> None:
    ratings = [np.repeat(np.arange(1, 6), counts) for counts in WIKIPEDIA_FLEISS_COUNTS]
    assert round(fleiss_kappa(ratings), 3) == 0.210


def test_cohen_wikipedia_example() -> None:
    # Wikipedia "Cohen's kappa": 50 proposals, yes/yes 20, yes/no 5, no/yes 10, no/no 15: kappa = 0.4.
    a, b = _from_table([[20, 5], [10, 15]])
    assert cohen_kappa(a, b) == pytest.approx(0.4, abs=1e-12)


def test_cohen_sas_and_r_irr_examples() -> None:
    # statsmodels' test_inter_rater.py: a SAS printout for table10 (simple 0.4842, weighted with scores 0, 1, 2 =
    # linear 0.4701) and R irr::kappa2 on raters 2 and 3 of the anxiety data (unweighted, "equal", "squared").
    a, b = _from_table([[0, 4, 1], [0, 8, 0], [0, 1, 5]])
    assert round(cohen_kappa(a, b), 4) == 0.4842
    assert round(cohen_kappa(a, b, weights="linear"), 4) == 0.4701
    anxiety = np.array([
        3, 3, 3, 4, 5, 5, 2, 3, 5, 2, 2, 6, 1, 5, 2, 2, 1, 2, 4, 3, 3, 6, 4, 6, 2, 4, 2, 4, 3, 3,
        2, 3, 3, 3, 2, 2, 1, 3, 3, 4, 2, 1, 4, 4, 3, 2, 1, 6, 1, 1, 1, 2, 3, 3, 1, 1, 3, 3, 2, 2,
    ]).reshape(20, 3, order="F")  # fmt: skip
    second, third = anxiety[:, 1], anxiety[:, 2]
    assert round(cohen_kappa(second, third), 9) == -0.006289308
    assert round(cohen_kappa(second, third, weights="linear"), 7) == 0.1459075
    assert round(cohen_kappa(second, third, weights="quadratic"), 7) == 0.2520325


def test_scott_pi_gwet_handbook_tables() -> None:
    # irrCAC test/unit/irrCAC/table/test_scott.py (Gwet 2014): 3x3 abstractors .796, 4x4 diagnosis .430.
    assert round(scott_pi(*_from_table([[13, 0, 0], [0, 20, 7], [0, 4, 56]])), 3) == 0.796
    diagnosis = [[40, 4, 4, 17], [6, 25, 2, 13], [4, 1, 21, 12], [15, 5, 9, 45]]
    assert round(scott_pi(*_from_table(diagnosis)), 3) == 0.430


def test_kappa_paradox_ac1_stays_high_on_a_rare_event() -> None:
    # 100 clips, 96 agreed "no", the 4 disagreements hold the only "yes" labels: raters agree 96 % of the time, yet
    # kappa is below zero because chance agreement on the majority class is ~96 % too. AC1 does not collapse.
    a, b = _from_table([[96, 2], [2, 0]])
    pairs = np.column_stack([a, b])
    assert percent_agreement(pairs) == pytest.approx(0.96)
    assert cohen_kappa(a, b) < 0 and fleiss_kappa(pairs) < 0 and krippendorff_alpha(pairs.T) < 0
    assert gwet_ac1(pairs) > 0.95


def test_docstring_examples() -> None:
    assert doctest.testmod(agreement).failed == 0


# --- equality with the reference packages -------------------------------------------------------------------------


@st.composite
def reliability_data(draw: st.DrawFn, values: st.SearchStrategy, max_coders: int = 6) -> list[list]:
    n_coders, n_units = draw(st.integers(2, max_coders)), draw(st.integers(1, 25))
    cell = st.one_of(st.none(), values)
    return [draw(st.lists(cell, min_size=n_units, max_size=n_units)) for _ in range(n_coders)]


def _reference_alpha(data: list[list], level: str, value_domain: list | None = None) -> float:
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            array = np.array([[nan if v is None else v for v in row] for row in data])  # strings: NaN becomes "nan"
            return float(krippendorff.alpha(array, level_of_measurement=level, value_domain=value_domain))
    except ValueError:  # no pairable unit, or a single value: ours reports NaN
        return nan


def _assert_same(ours: float, reference: float) -> None:
    if np.isnan(reference):
        assert np.isnan(ours)
    else:
        assert ours == pytest.approx(reference, rel=1e-9, abs=1e-9)


LEVEL_VALUES = {
    "nominal": st.integers(1, 5),
    "ordinal": st.integers(1, 5),
    "interval": st.sampled_from([-3.5, 0.0, 0.5, 1.0, 2.25, 7.0, 1e3]),
    "ratio": st.sampled_from([0.0, 0.5, 1.0, 2.25, 3.0, 7.0, 12.0]),
}


@pytest.mark.parametrize("level", LEVELS)
@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_krippendorff_matches_package(level: str, data: st.DataObject) -> None:
    table = data.draw(reliability_data(LEVEL_VALUES[level], max_coders=12 if level == "ratio" else 6))
    domain = [0, 1, 2, 3, 4, 5, 6] if level == "ordinal" else None  # includes values nobody used
    sparse = data.draw(st.booleans())  # also the path for tables too large to hold densely
    with mock.patch.object(agreement, "_DENSE_LIMIT", 0 if sparse else agreement._DENSE_LIMIT):
        ours = krippendorff_alpha(table, level=level, value_domain=domain)
    _assert_same(ours, _reference_alpha(table, level, domain))


@settings(max_examples=100, deadline=None)
@given(table=reliability_data(st.sampled_from(["pos", "neg", "neutral"])))
def test_krippendorff_string_labels_match_package(table: list[list]) -> None:
    _assert_same(krippendorff_alpha(table), _reference_alpha(table, "nominal"))


@settings(max_examples=100, deadline=None)
@given(
    ratings=st.integers(1, 25).flatmap(
        lambda n: st.lists(st.lists(st.integers(0, 4), min_size=n, max_size=n), min_size=2, max_size=6)
    )
)
def test_fleiss_matches_statsmodels_without_missing(ratings: list[list[int]]) -> None:
    units = np.array(ratings).T  # units × raters
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        reference = sm_fleiss_kappa(aggregate_raters(units)[0], method="fleiss")
    _assert_same(fleiss_kappa(units), reference)
    if units.shape[1] == 2:  # Fleiss' kappa for two raters is Scott's pi
        _assert_same(scott_pi(units[:, 0], units[:, 1]), reference)


@settings(max_examples=100, deadline=None)
@given(
    pairs=st.lists(st.tuples(st.one_of(st.none(), st.integers(0, 5)), st.one_of(st.none(), st.integers(0, 5))),
                   min_size=1, max_size=40),
    weights=st.sampled_from([None, "linear", "quadratic"]),
    extra_labels=st.one_of(st.none(), st.permutations(list(range(8)))),
)  # fmt: skip
def test_cohen_matches_sklearn(pairs: list[tuple], weights: str | None, extra_labels: list[int] | None) -> None:
    a, b = [p[0] for p in pairs], [p[1] for p in pairs]
    complete = [(x, y) for x, y in pairs if x is not None and y is not None]
    ours = cohen_kappa(a, b, weights=weights, labels=extra_labels)
    if not complete:
        assert np.isnan(ours)
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = cohen_kappa_score(*zip(*complete, strict=True), weights=weights, labels=extra_labels)
    _assert_same(ours, reference)


@settings(max_examples=100, deadline=None)
@given(table=reliability_data(st.integers(0, 3)), seed=st.integers(0, 2**16))
def test_nominal_statistics_ignore_label_names_and_order(table: list[list], seed: int) -> None:
    rng = np.random.default_rng(seed)
    units = np.array(table, dtype=object).T
    renamed = np.vectorize(lambda v: None if v is None else "abcd"[3 - v], otypes=[object])(units)
    shuffled = renamed[rng.permutation(len(units))][:, rng.permutation(units.shape[1])]
    for statistic in (percent_agreement, fleiss_kappa, gwet_ac1):
        _assert_same(statistic(shuffled), statistic(units))
    _assert_same(krippendorff_alpha(shuffled.T), krippendorff_alpha(units.T))


@settings(max_examples=100, deadline=None)
@given(table=reliability_data(st.integers(0, 3)))
def test_percent_agreement_matches_brute_force(table: list[list]) -> None:
    shares = []
    for unit in zip(*table, strict=True):
        rated = [v for v in unit if v is not None]
        pairs = list(itertools.combinations(rated, 2))
        if pairs:
            shares.append(sum(x == y for x, y in pairs) / len(pairs))
    expected = float(np.mean(shares)) if shares else nan
    _assert_same(percent_agreement(np.array(table, dtype=object).T), expected)


# --- undefined statistics and input errors ------------------------------------------------------------------------


def test_undefined_statistics_are_nan() -> None:
    no_pairs = [[1, None], [None, 2]]  # units × raters: no unit rated twice
    for statistic in (percent_agreement, fleiss_kappa, gwet_ac1):
        assert np.isnan(statistic(no_pairs))
    assert np.isnan(krippendorff_alpha(no_pairs))
    one_category = [[1, 1], [1, 1], [1, None]]
    assert np.isnan(fleiss_kappa(one_category)) and np.isnan(gwet_ac1(one_category))
    assert np.isnan(krippendorff_alpha(np.array(one_category, dtype=object).T))
    assert percent_agreement(one_category) == 1.0
    assert gwet_ac1(one_category, categories=[1, 2]) == 1.0  # a known unused category makes AC1 defined
    assert np.isnan(cohen_kappa([1, None], [None, 2])) and np.isnan(cohen_kappa(["x", "x"], ["x", "x"]))
    assert np.isnan(scott_pi([1, None], [None, 2]))
    all_missing = [[None, None], [nan, None]]
    for statistic in (percent_agreement, fleiss_kappa, gwet_ac1, krippendorff_alpha):
        assert np.isnan(statistic(all_missing))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: krippendorff_alpha(KRIPPENDORFF_2011, level="nominl"), "level must be one of"),
        (lambda: krippendorff_alpha([[1, 2, 3], [1, 2]]), "rows of different lengths"),
        (lambda: krippendorff_alpha([1, 2, 3]), "2-D table"),
        (lambda: fleiss_kappa([]), "non-empty"),
        (lambda: krippendorff_alpha([["a", "b"], ["a", "a"]], level="interval"), "numeric ratings"),
        (lambda: krippendorff_alpha([["a", "b"], ["a", "a"]], level="ordinal"), "ordered value_domain"),
        (lambda: krippendorff_alpha([[1, 2], [1, 3]], level="ordinal", value_domain=[1, 2]), "outside value_domain"),
        (lambda: krippendorff_alpha([[1, 2], [1, 2]], value_domain=["a", "b"]), "same type"),
        (lambda: krippendorff_alpha([[1, 2], [1, 2]], value_domain=[1, 2, 2]), "distinct"),
        (lambda: fleiss_kappa([["a", 1], ["b", 2]]), "mixes strings and numbers"),
        (lambda: krippendorff_alpha([[1.0, np.inf], [1.0, 2.0]], level="interval"), "infinite"),
        (lambda: cohen_kappa([1, 2, 3], [1, 2]), "same items"),
        (lambda: cohen_kappa([1, 2], [1, 2], weights="cubic"), "weights must be"),
        (lambda: cohen_kappa([1, 2], [1, 3], labels=[1, 2]), "outside value_domain/labels"),
        (lambda: bootstrap_ci(fleiss_kappa, FLEISS_1971, n_boot=0), "n_boot"),
        (lambda: bootstrap_ci(fleiss_kappa, FLEISS_1971, confidence=95), "confidence"),
        (lambda: bootstrap_ci(fleiss_kappa, FLEISS_1971, axis=2), "out of range"),
        (lambda: bootstrap_ci(fleiss_kappa, FLEISS_1971, axis="rows"), "axis must be"),
        (lambda: bootstrap_ci(cohen_kappa, FLEISS_1971), "data=\\(a, b\\)"),
    ],
)
def test_clear_errors(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


# --- bootstrap ----------------------------------------------------------------------------------------------------


def _synthetic(n_units: int = 150, n_coders: int = 4, seed: int = 3) -> np.ndarray:
    """Coders × units: each coder copies a latent 1-5 score 75 % of the time; 15 % missing."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(1, 6, n_units)
    data = np.where(rng.random((n_coders, n_units)) < 0.75, truth, rng.integers(1, 6, (n_coders, n_units)))
    return np.where(rng.random(data.shape) < 0.15, nan, data)


def test_bootstrap_interval_brackets_the_estimate_and_is_reproducible() -> None:
    data = _synthetic()
    estimate = krippendorff_alpha(data, level="interval")
    low, high = bootstrap_ci(krippendorff_alpha, data, n_boot=300, level="interval")
    assert low < estimate < high and high - low < 0.3
    assert bootstrap_ci(krippendorff_alpha, data, n_boot=300, level="interval") == (low, high)
    assert bootstrap_ci(krippendorff_alpha, data, n_boot=300, level="interval", random_state=1) != (low, high)
    narrow = bootstrap_ci(krippendorff_alpha, data, n_boot=300, level="interval", confidence=0.5)
    assert low < narrow[0] < narrow[1] < high


def test_bootstrap_finds_the_units_axis_for_each_statistic() -> None:
    data = _synthetic()
    units = data.T
    partial = functools.partial(krippendorff_alpha, level="ordinal")
    checks = [
        (partial, data, {}, krippendorff_alpha(data, level="ordinal")),
        (fleiss_kappa, units, {}, fleiss_kappa(units)),
        (gwet_ac1, units, {"categories": [1, 2, 3, 4, 5, 6]}, gwet_ac1(units, categories=[1, 2, 3, 4, 5, 6])),
        (percent_agreement, units, {}, percent_agreement(units)),
        (cohen_kappa, (units[:, 0], units[:, 1]), {"weights": "quadratic"},
         cohen_kappa(units[:, 0], units[:, 1], weights="quadratic")),
        (scott_pi, (list(units[:, 0]), list(units[:, 1])), {}, scott_pi(units[:, 0], units[:, 1])),
    ]  # fmt: skip
    for statistic, sample, kwargs, estimate in checks:
        low, high = bootstrap_ci(statistic, sample, n_boot=200, **kwargs)
        assert low < estimate < high, statistic
    low, high = bootstrap_ci(lambda d: fleiss_kappa(d.T), data, n_boot=200, axis=1)  # any callable, axis given
    assert low < fleiss_kappa(units) < high


def test_bootstrap_skips_undefined_resamples() -> None:
    # Three units: resamples drawing one unit three times have a single category, so kappa is NaN there.
    low, high = bootstrap_ci(fleiss_kappa, [[1, 1], [2, 2], [1, 2]], n_boot=200)
    assert np.isfinite(low) and np.isfinite(high) and low <= high
    assert all(np.isnan(bootstrap_ci(fleiss_kappa, [[1, 1], [1, 1]], n_boot=20)))

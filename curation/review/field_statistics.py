"""Krippendorff's alpha of one rubric field from per-clip sufficient statistics, with a bootstrap interval.

Alpha is 1 - (n - 1) D_o / D_e, and both disagreements are sums over clips: the observed one sums each clip's
value pairs / (m - 1), the expected one needs only the marginal counts (nominal, ordinal) or the sums of values
and squared values (interval: sum_ck n_c n_k (c - k)^2 = 2 n sum v^2 - 2 (sum v)^2). So each clip reduces to a
small row (:func:`clip_statistics`) and a bootstrap resample of clips is a weighted sum of rows, the weights being
how often each clip was drawn: a thousand resamples are a few matrix products instead of a thousand alphas.
The draws are those :func:`curation.review.field_agreement.field_agreement` always made (one
``rng.integers(0, n, n)`` per round over the clips in ascending id order), so intervals do not move.

A row is plain JSON, so a cache can keep one per clip and recompute only clips whose answers changed::

    stats = FieldStatistics.from_answers(rubric_field, {7: {"ana": "yes", "ben": "no"}, ...})
    stats.update(8, clip_statistics(rubric_field, {"ana": "no", "ben": "no"}))
    alpha_with_interval(stats, n_boot=1000, random_state=0)   # {"value": 0.61, "ci": [0.52, 0.70]}

Row keys: ``answers`` (answers given; a clip with two or more is a unit of the statistics), ``pairs`` and
``agreeing_pairs`` (answer pairs, and those that agree by the field's rule), ``invalid`` (a value alpha cannot
take: a label outside the choices, an infinite number; any resample holding such a clip has no alpha), then
``counts`` (answers per choice, rubric order) for choice and ordinal fields, or for integer, number and time fields
``m`` (numeric values), ``total`` (their sum), ``squares`` (sum of squared deviations from their mean, which keeps
times of day far from zero exact), ``low`` and ``high`` (None without values).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from itertools import combinations
from typing import Any

import numpy as np

from curation.review.consensus import values_agree
from curation.rubric import RubricField

# Fewer clips than this with two answers or more: a bootstrap over clips says nothing, so no interval is given.
MIN_ITEMS_FOR_INTERVAL = 5
LEVELS = {"choice": "nominal", "ordinal": "ordinal", "integer": "interval", "number": "interval", "time": "interval"}
# Resample weights are built this many bytes at a time: 1,000 rounds over 100,000 clips stay near 64 MB.
_CHUNK_BYTES = 64 << 20
_COMMON = ("answers", "pairs", "agreeing_pairs", "invalid")
_MOMENTS = ("m", "total", "squares", "low", "high")


def coded(rubric_field: RubricField, value: Any) -> Any:
    """The value as alpha sees it: the label for choice fields, a number otherwise; None if missing."""
    if value is None:
        return None
    if rubric_field.type == "choice":
        return str(value)
    return rubric_field.to_number(value)


def percentile_interval(values: Sequence[float] | np.ndarray, confidence: float = 0.95) -> list[float | None]:
    """Percentile interval of bootstrap estimates, undefined ones (None, NaN) left out; none from under ten."""
    finite = np.asarray([v for v in values if v is not None and np.isfinite(v)])
    if len(finite) < 10:
        return [None, None]
    tail = (1 - confidence) / 2 * 100
    return [round(float(np.percentile(finite, tail)), 4), round(float(np.percentile(finite, 100 - tail)), 4)]


def _level(rubric_field: RubricField) -> str:
    if rubric_field.type not in LEVELS:
        raise ValueError(f"field {rubric_field.name!r} is {rubric_field.type}: alpha needs a choice, ordinal, "
                         "integer, number or time field (text fields have a similarity agreement instead)")
    return LEVELS[rubric_field.type]


def clip_statistics(rubric_field: RubricField, answers: dict[str, Any]) -> dict[str, Any]:
    """One clip's row for ``rubric_field`` from its answers {annotator: value} (see the module docstring)."""
    level = _level(rubric_field)
    values = list(answers.values())
    agreeing = [values_agree(rubric_field, a, b) for a, b in combinations(values, 2)]
    row: dict[str, Any] = {"answers": len(values), "pairs": len(agreeing), "agreeing_pairs": sum(agreeing),
                           "invalid": False}
    numbers = [coded(rubric_field, v) for v in values]
    if level != "interval":
        counts = [0] * len(rubric_field.choices)
        for number in numbers:
            if number is None:
                continue
            # Ordinal values are already ranks; a label outside the choices is what alpha refuses.
            index = int(number) if level == "ordinal" else _index(rubric_field.choices, number)
            if index is None:
                row["invalid"] = True
            else:
                counts[index] += 1
        return row | {"counts": counts}
    present = [x for x in numbers if x is not None and not np.isnan(x)]  # NaN counts as missing, as in alpha
    finite = [x for x in present if np.isfinite(x)]
    row["invalid"] = len(finite) < len(present)
    if not finite:
        return row | {"m": 0, "total": 0.0, "squares": 0.0, "low": None, "high": None}
    low, high = min(finite), max(finite)
    mean = sum(finite) / len(finite)
    squares = 0.0 if low == high else float(sum((x - mean) ** 2 for x in finite))
    return row | {"m": len(finite), "total": float(sum(finite)), "squares": squares, "low": low, "high": high}


def _index(choices: list[str], label: str) -> int | None:
    try:
        return choices.index(label)
    except ValueError:
        return None


class FieldStatistics:
    """Rows of one field keyed by clip id, held as arrays in ascending clip-id order (the bootstrap's order).

    :meth:`update` and :meth:`remove` are cheap (they queue); the arrays are brought up to date in one merge
    when they are next read.
    """

    def __init__(self, rubric_field: RubricField) -> None:
        self.rubric_field = rubric_field
        self.level = _level(rubric_field)
        self.columns = _COMMON + (tuple(f"count_{i}" for i in range(len(rubric_field.choices)))
                                  if self.level != "interval" else _MOMENTS)
        self._ids = np.empty(0, dtype=np.int64)
        self._table = np.empty((0, len(self.columns)))
        self._pending: dict[int, np.ndarray | None] = {}

    @classmethod
    def from_answers(cls, rubric_field: RubricField, answers: dict[int, dict[str, Any]]) -> FieldStatistics:
        """Statistics of every clip in ``answers`` ({clip id: {annotator: value}})."""
        stats = cls(rubric_field)
        ids = sorted(answers)
        stats._ids = np.asarray(ids, dtype=np.int64)
        stats._table = np.array([stats._vector(clip_statistics(rubric_field, answers[c])) for c in ids],
                                dtype=np.float64).reshape(len(ids), len(stats.columns))
        return stats

    @classmethod
    def from_vectors(cls, rubric_field: RubricField, rows: dict[int, list[float | None]]) -> FieldStatistics:
        """Statistics from stored flat rows {clip id: :meth:`vector` of a :func:`clip_statistics` row}, in one go."""
        stats = cls(rubric_field)
        ids = sorted(rows)
        stats._ids = np.asarray(ids, dtype=np.int64)
        stats._table = np.array([rows[c] for c in ids], dtype=np.float64).reshape(len(ids), len(stats.columns))
        return stats

    def vector(self, row: dict[str, Any]) -> list[float | None]:
        """A :func:`clip_statistics` row as a flat list in :attr:`columns` order (None where a bound is missing):
        the compact form to store."""
        # whole numbers as ints: most figures are counts, and ints are shorter to store and quicker to read back
        return [None if np.isnan(value) else int(value) if value.is_integer() else float(value)
                for value in self._vector(row)]

    def update(self, clip_id: int, row: dict[str, Any]) -> None:
        """Set the row of one clip (new or changed answers), as :func:`clip_statistics` returns it."""
        self._pending[int(clip_id)] = self._vector(row)

    def update_vector(self, clip_id: int, vector: list[float | None]) -> None:
        """Set the row of one clip from its stored flat form (:meth:`vector`)."""
        self._pending[int(clip_id)] = np.array(vector, dtype=np.float64)

    def remove(self, clip_id: int) -> None:
        """Forget a clip (all its answers withdrawn); unknown ids are ignored."""
        self._pending[int(clip_id)] = None

    def row(self, clip_id: int) -> dict[str, Any]:
        """The stored row of one clip, as :func:`clip_statistics` returned it."""
        ids, table = self.arrays()
        at = int(np.searchsorted(ids, clip_id))
        if at == len(ids) or ids[at] != clip_id:
            raise KeyError(f"no statistics for clip {clip_id}")
        vector = table[at]
        row: dict[str, Any] = {name: int(vector[i]) for i, name in enumerate(_COMMON)}
        row["invalid"] = bool(row["invalid"])
        if self.level != "interval":
            return row | {"counts": [int(c) for c in vector[len(_COMMON):]]}
        m, total, squares, low, high = vector[len(_COMMON):]
        return row | {"m": int(m), "total": float(total), "squares": float(squares),
                      "low": None if np.isnan(low) else float(low), "high": None if np.isnan(high) else float(high)}

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(clip ids ascending, rows as a clips × :attr:`columns` float table)."""
        if self._pending:
            changed = np.fromiter(self._pending, dtype=np.int64, count=len(self._pending))
            keep = ~np.isin(self._ids, changed)
            added = [(c, v) for c, v in self._pending.items() if v is not None]
            ids = np.concatenate([self._ids[keep], np.array([c for c, _ in added], dtype=np.int64)])
            table = np.concatenate([self._table[keep], np.array([v for _, v in added]).reshape(-1, self._width)])
            order = np.argsort(ids, kind="stable")
            self._ids, self._table, self._pending = ids[order], table[order], {}
        return self._ids, self._table

    def __len__(self) -> int:
        return len(self.arrays()[0])

    @property
    def _width(self) -> int:
        return len(self.columns)

    def _vector(self, row: dict[str, Any]) -> np.ndarray:
        tail = ("counts",) if self.level != "interval" else _MOMENTS
        if set(row) != set(_COMMON + tail):
            raise ValueError(f"a {self.rubric_field.type} row has the keys {sorted(_COMMON + tail)}, got "
                             f"{sorted(row)}; make it with clip_statistics()")
        if self.level != "interval":
            if len(row["counts"]) != len(self.rubric_field.choices):
                raise ValueError(f"counts has {len(row['counts'])} entries; field {self.rubric_field.name!r} has "
                                 f"{len(self.rubric_field.choices)} choices (was the row made under another rubric?)")
            rest = list(row["counts"])
        else:
            rest = [row[k] if row[k] is not None else np.nan for k in _MOMENTS]
        return np.array([float(row[k]) for k in _COMMON] + rest, dtype=np.float64)

    def units(self) -> np.ndarray:
        """Rows of the clips alpha counts (two answers or more), ascending clip id."""
        _, table = self.arrays()
        return table[table[:, 0] >= 2]


# -- alpha from rows: a design matrix per field, then alphas of weighted sums --------------------------------


class _Design:
    """Per-unit features whose weighted sums give alpha; ``alphas`` turns the sums of each resample into alpha."""

    def __init__(self, stats: FieldStatistics) -> None:
        units = stats.units()
        self.level, self.n_units = stats.level, len(units)
        invalid = units[:, 3:4]
        body = units[:, len(_COMMON):]
        if self.level == "interval":
            self._interval(body, invalid)
        else:
            self._categorical(body, invalid)

    def _categorical(self, counts: np.ndarray, invalid: np.ndarray) -> None:
        m = counts.sum(axis=1)
        pairable = m >= 2
        self.k = counts.shape[1]
        marginals = counts * pairable[:, None]
        scale = np.divide(1.0, m - 1, out=np.zeros_like(m), where=pairable)
        if self.level == "nominal":
            # Disagreeing ordered pairs per clip: m^2 - sum_c n_c^2, over m - 1.
            extra = ((m * m - (counts * counts).sum(axis=1)) * scale)[:, None]
            self.pairs: list[tuple[int, int]] = []
        else:
            # Ordinal distances depend on each resample's marginals: keep the coincidences o_ck (c < k).
            occurring = [(c, k) for c, k in combinations(range(self.k), 2)
                         if np.any(marginals[:, c] * marginals[:, k])]
            self.pairs = occurring
            extra = np.column_stack([counts[:, c] * counts[:, k] * scale for c, k in occurring]) \
                if occurring else np.zeros((len(counts), 0))
        self.features = np.hstack([marginals, extra, invalid])

    def _interval(self, moments: np.ndarray, invalid: np.ndarray) -> None:
        m, total, squares, low, high = moments.T
        pairable = m >= 2
        mean = np.divide(total, m, out=np.zeros_like(m), where=m > 0)
        # Centred on the grand mean of the whole data: sums of (v - centre) and (v - centre)^2 then carry little
        # cancellation, resample after resample (their grand means sit close to this one; see _interval_alphas).
        self.weight = m * pairable
        centre = float((self.weight * mean).sum() / self.weight.sum()) if self.weight.any() else 0.0
        self.shift = mean - centre
        self.squares = squares * pairable
        within = 2 * m * np.divide(squares, m - 1, out=np.zeros_like(m), where=pairable)
        self.constant = np.where(pairable & (low == high), low, np.nan)  # the one value of a constant clip
        varied = pairable & (high > low)
        self.features = np.column_stack([self.weight, self.weight * self.shift,
                                         self.squares + self.weight * self.shift ** 2, within, varied, invalid[:, 0]])
        self.pairable = pairable

    def alphas(self, sums: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """Alpha per resample from ``sums`` (resamples × features) and the resample weights (resamples × units)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            alpha = self._interval_alphas(sums, weights) if self.level == "interval" else self._categorical_alphas(sums)
        alpha[sums[:, -1] > 0] = np.nan  # a value alpha refuses: today's alpha raised, and the resample had none
        return alpha

    def _categorical_alphas(self, sums: np.ndarray) -> np.ndarray:
        n_c = sums[:, : self.k]
        n = n_c.sum(axis=1)
        if self.level == "nominal":
            observed, expected = sums[:, self.k], n * n - (n_c * n_c).sum(axis=1)
        else:
            # Mid-ranks t_c = sum_{g<c} n_g + n_c / 2 on this resample's marginals; distance (t_c - t_k)^2.
            rank = np.cumsum(n_c, axis=1) - n_c / 2
            centred = rank - ((n_c * rank).sum(axis=1) / n)[:, None]
            expected = 2 * n * (n_c * centred * centred).sum(axis=1)
            first, second = (np.array(side, dtype=np.int64) for side in zip(*self.pairs, strict=True)) \
                if self.pairs else (np.empty(0, np.int64), np.empty(0, np.int64))
            gaps = rank[:, first] - rank[:, second]
            observed = 2 * (sums[:, self.k : self.k + len(self.pairs)] * gaps * gaps).sum(axis=1)
        alpha = 1 - (n - 1) * observed / expected
        alpha[np.count_nonzero(n_c, axis=1) < 2] = np.nan  # one category or no pairable value: 0/0
        return alpha

    def _interval_alphas(self, sums: np.ndarray, weights: np.ndarray) -> np.ndarray:
        n, shifted, squares, observed, varied = sums[:, :5].T
        spread = n * squares - shifted * shifted  # n sum (v - mean)^2 of the resample, the mean in closed form
        # A resample whose mean sits far from the centre (tiny data, far-off values) loses digits to cancellation
        # in that difference: recompute those few about their own mean.
        for r in np.flatnonzero(n * squares > 1e4 * np.abs(spread)):
            mean = shifted[r] / n[r]
            spread[r] = n[r] * (weights[r] @ (self.squares + self.weight * (self.shift - mean) ** 2))
        alpha = 1 - (n - 1) * observed / (2 * spread)
        alpha[n == 0] = np.nan
        # No clip with differing values drawn: alpha is undefined exactly when every drawn clip holds one value.
        for r in np.flatnonzero((varied == 0) & (n > 0)):
            drawn = self.constant[(weights[r] > 0) & self.pairable]
            if drawn.min() == drawn.max():
                alpha[r] = np.nan
        return alpha


def _multiplicities(n_units: int, n_boot: int, random_state: int | None) -> Iterator[np.ndarray]:
    """Resample weights, a block of rounds at a time: the draws of ``rng.integers(0, n, n)`` per round, counted."""
    rng = np.random.default_rng(random_state)
    rows = max(1, min(n_boot, _CHUNK_BYTES // (8 * n_units)))
    block = np.empty((rows, n_units))
    for start in range(0, n_boot, rows):
        size = min(rows, n_boot - start)
        for r in range(size):
            block[r] = np.bincount(rng.integers(0, n_units, n_units), minlength=n_units)
        yield block[:size]


def _check(n_boot: int, confidence: float) -> None:
    if not (isinstance(n_boot, int | np.integer) and n_boot >= 0):
        raise ValueError(f"n_boot must be zero or more, got {n_boot!r}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, e.g. 0.95; got {confidence!r}")


def bootstrap_alphas(
    statistics: Sequence[FieldStatistics], n_boot: int = 1000, random_state: int | None = 0
) -> list[tuple[float, np.ndarray]]:
    """(alpha of all units, alpha of each of ``n_boot`` resamples, NaN where undefined) per field.

    Fields with the same number of units get the same draws (the generator is seeded afresh per field, as
    before), so they share one set of resample weights.
    """
    _check(n_boot, 0.95)
    designs = [_Design(stats) for stats in statistics]
    boots = [np.full(n_boot, np.nan) for _ in designs]
    points = []
    for design in designs:
        ones = np.ones((1, design.n_units))
        points.append(float(design.alphas(ones @ design.features, ones)[0]) if design.n_units else float("nan"))
    for n_units in {d.n_units for d in designs if d.n_units}:
        group = [i for i, d in enumerate(designs) if d.n_units == n_units]
        start = 0
        for weights in _multiplicities(n_units, n_boot, random_state):
            for i in group:
                boots[i][start : start + len(weights)] = designs[i].alphas(weights @ designs[i].features, weights)
            start += len(weights)
    return list(zip(points, boots, strict=True))


def alphas_with_intervals(
    statistics: Sequence[FieldStatistics],
    n_boot: int = 1000,
    random_state: int | None = 0,
    confidence: float = 0.95,
) -> list[dict[str, Any]]:
    """:func:`alpha_with_interval` for several fields at once, sharing resample weights where possible."""
    _check(n_boot, confidence)
    # Resampling a handful of clips says nothing: no bootstrap (and no interval) below MIN_ITEMS_FOR_INTERVAL.
    few = [len(stats.units()) < MIN_ITEMS_FOR_INTERVAL for stats in statistics]
    results: list[dict[str, Any]] = [{} for _ in statistics]
    for rounds, members in ((0, np.flatnonzero(few)), (n_boot, np.flatnonzero(~np.array(few, dtype=bool)))):
        figures = bootstrap_alphas([statistics[i] for i in members], rounds, random_state)
        for i, (point, boots) in zip(members, figures, strict=True):
            results[i] = {"value": round(point, 4) if np.isfinite(point) else None,
                          "ci": percentile_interval(boots, confidence)}
    return results


def alpha_with_interval(
    statistics: FieldStatistics, n_boot: int = 1000, random_state: int | None = 0, confidence: float = 0.95
) -> dict[str, Any]:
    """{"value": alpha rounded to 4 places or None, "ci": percentile bootstrap interval or [None, None]}."""
    return alphas_with_intervals([statistics], n_boot, random_state, confidence)[0]


def choice_agreement(statistics: FieldStatistics) -> dict[str, float]:
    """Fleiss' kappa, Gwet's AC1 and percent agreement of a choice field from its counts (NaN where undefined).

    The same figures as :mod:`curation.review.agreement` gives on the units × raters table (categories: the
    labels used). Not for fields with invalid labels (those count categories outside the choices).
    """
    units = statistics.units()
    counts = units[:, len(_COMMON):]
    rated = counts.sum(axis=1)
    nan = float("nan")
    if not rated.any():
        return {"fleiss_kappa": nan, "gwet_ac1": nan, "percent_agreement": nan}
    pairable = rated >= 2
    agreeing = ((counts * counts).sum(axis=1) - rated)[pairable]
    pa = float(np.mean(agreeing / (rated[pairable] * (rated[pairable] - 1)))) if pairable.any() else nan
    inverse = np.divide(1.0, rated, out=np.zeros_like(rated), where=rated > 0)
    used = counts.sum(axis=0) > 0
    shares = ((counts * inverse[:, None]).sum(axis=0) / np.count_nonzero(rated))[used]
    q = int(used.sum())
    fleiss = nan if np.count_nonzero(shares) < 2 else float((pa - shares @ shares) / (1 - shares @ shares))
    chance = shares @ (1 - shares) / (q - 1) if q >= 2 else nan
    gwet = nan if q < 2 else float((pa - chance) / (1 - chance))
    return {"fleiss_kappa": fleiss, "gwet_ac1": gwet, "percent_agreement": pa}

"""Agreement between annotators: Krippendorff's alpha, Fleiss' and Cohen's kappa, Scott's pi, Gwet's AC1.

Plain numpy-vectorised functions. A missing rating is ``None`` or NaN (in a numpy string array, the text
``"nan"``, which is what numpy makes of NaN). Labels may be strings or numbers.

Orientation follows the reference packages: :func:`krippendorff_alpha` takes coders × units (as the
``krippendorff`` package); :func:`fleiss_kappa`, :func:`gwet_ac1` and :func:`percent_agreement` take
units × raters (as statsmodels and irrCAC); :func:`cohen_kappa` and :func:`scott_pi` take two label sequences.

Malformed input (ragged or wrongly shaped tables, unknown level, labels outside the given domain) raises
``ValueError`` saying what to fix. Well-formed data for which a statistic is undefined -- no unit rated twice,
a single category, no variation -- gives NaN instead: bootstrap resamples and per-field dashboards meet such
data routinely, and NaN lets them skip it or show "n/a" rather than crash.

Example::

    alpha = krippendorff_alpha([[1, 2, None], [1, 2, 2]], level="nominal")   # coders × units
    low, high = bootstrap_ci(krippendorff_alpha, data, level="interval")
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np

Level = Literal["nominal", "ordinal", "interval", "ratio"]
LEVELS: tuple[str, ...] = ("nominal", "ordinal", "interval", "ratio")
ArrayLike = Sequence[Any] | np.ndarray

# Above this many values × units cells the counts go into a scipy sparse table instead of a dense one, so that
# interval data with thousands of distinct values does not allocate gigabytes.
_DENSE_LIMIT = 1 << 22
_NUMERIC_KINDS = ("integer", "floating", "mixed-integer-float", "boolean", "decimal", "empty")


def _table(data: ArrayLike, name: str, ndim: int | None = 2) -> np.ndarray:
    """The input as an ndarray: float64 with NaN for numbers, otherwise the labels as given (object)."""
    if isinstance(data, np.ndarray):
        array = data
    else:
        try:
            array = np.asarray(data)
        except ValueError:
            raise ValueError(f"{name} has rows of different lengths; pad missing ratings with None or NaN") from None
        if array.dtype.kind in "OUS":
            array = np.array(data, dtype=object)  # np.asarray would turn NaN among strings into the text "nan"
    if (array.ndim != ndim if ndim else array.ndim == 0) or array.size == 0:
        layout = {2: "a non-empty rectangular 2-D table", 1: "a non-empty flat sequence"}.get(ndim, "a non-empty array")
        raise ValueError(f"{name} must be {layout} of ratings (None or NaN for missing); got shape {array.shape}")
    return array.astype(np.float64) if array.dtype.kind in "biu" else array


def _missing(array: np.ndarray) -> np.ndarray:
    if array.dtype.kind == "f":
        return np.isnan(array)
    if array.dtype.kind in "US":
        return array == "nan"
    import pandas as pd  # lazy: only object (label) tables need it, and its isna is vectorised in C

    return np.asarray(pd.isna(array), dtype=bool)


def _integer_codes(array: np.ndarray, missing: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Codes by one bincount for integer-valued float tables of narrow range (label ids, the common case).

    Works on the whole table, so it avoids np.unique's sort and the gather / scatter of the present ratings.
    """
    low, high = np.fmin.reduce(array, axis=None), np.fmax.reduce(array, axis=None)
    if not (np.isfinite(low) and np.isfinite(high)) or high - low > 4 * array.size:
        return None
    span = int(high - low) + 1
    shifted = array - low
    shifted[missing] = span  # missing ratings go to an extra bin
    codes = shifted.astype(np.int64)
    if not np.array_equal(codes, shifted):
        return None
    seen = np.bincount(codes.ravel(), minlength=span + 1)[:span] > 0
    return np.append(np.cumsum(seen) - 1, -1)[codes], np.flatnonzero(seen) + low


def _encode(array: np.ndarray, domain: ArrayLike | None, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes (-1 = missing) of the same shape, and the values they stand for (sorted, or domain order)."""
    missing = _missing(array)
    if domain is None and array.dtype.kind == "f" and (fast := _integer_codes(array, missing)) is not None:
        return fast
    present = array[~missing]
    if array.dtype == object:
        from pandas.api.types import infer_dtype

        kind = infer_dtype(present, skipna=False)
        if kind in _NUMERIC_KINDS:
            present = present.astype(np.float64)
        elif kind != "string":
            raise ValueError(f"{name} mixes strings and numbers ({kind}); use one type of label per field")
    numeric = present.dtype.kind == "f"
    if numeric and np.isinf(present).any():
        raise ValueError(f"{name} contains infinite values; ratings must be finite (None or NaN for missing)")
    codes = np.full(array.shape, -1, dtype=np.int64)
    rated = ~missing
    if domain is not None:
        listed = domain.tolist() if isinstance(domain, np.ndarray) else list(domain)
        if numeric != all(isinstance(v, int | float | np.number) for v in listed):
            raise ValueError(f"value_domain/labels must be of the same type (numbers or strings) as {name}")
        values = np.array(listed, dtype=np.float64 if numeric else object)
        if values.ndim != 1 or len(set(listed)) != len(listed):
            raise ValueError("value_domain/labels must be a flat sequence of distinct values")
        order = np.argsort(values, kind="stable")
        position = np.minimum(np.searchsorted(values[order], present), len(values) - 1)
        found = values[order][position] == present
        if not found.all():
            raise ValueError(f"{name} has values outside value_domain/labels, e.g. {present[~found][:3].tolist()}")
        codes[rated] = order[position]
        return codes, values
    values, inverse = np.unique(present, return_inverse=True)
    codes[rated] = inverse
    return codes, values


def _count_table(codes: np.ndarray, n_values: int, unit_axis: int) -> Any:
    """Values × units counts n_cu: dense floats, or a scipy CSC array when dense would be too large.

    Values-major so that per-unit sums run over contiguous rows: no BLAS call, whose threads cost more than
    they save on these tall, thin products.
    """
    n_units = codes.shape[unit_axis]
    unit = np.expand_dims(np.arange(n_units), 1 - unit_axis)
    if n_values * n_units <= _DENSE_LIMIT:
        keys = np.where(codes < 0, n_values, codes)  # missing ratings land past the table
        keys *= n_units
        keys += unit
        counts = np.bincount(keys.ravel(), minlength=(n_values + 1) * n_units)[: n_values * n_units]
        return counts.reshape(n_values, n_units).astype(np.float64)
    from scipy import sparse

    rated = codes >= 0
    unit = np.broadcast_to(unit, codes.shape)[rated]
    table = sparse.csc_array((np.ones(unit.size), (codes[rated], unit)), shape=(n_values, n_units))
    table.sum_duplicates()
    return table


def _ratio_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    total = a + b
    return np.divide(a - b, total, out=np.zeros(np.broadcast(a, b).shape), where=total != 0) ** 2


def _ratio_within(codes: np.ndarray, values: np.ndarray, rated_per_unit: np.ndarray) -> np.ndarray:
    """Per unit, sum over ordered pairs of its ratings of the ratio distance (which has no closed form)."""
    present = codes >= 0
    x = values[np.maximum(codes, 0)]
    if len(codes) > 8:
        # Many coders who each rate a few units: move each unit's ratings to the top rows and keep only as many
        # rows as the busiest unit has ratings, so the loop below runs over ratings, not coders.
        top = np.argsort(~present, axis=0, kind="stable")[: int(rated_per_unit.max())]
        x, present = np.take_along_axis(x, top, 0), np.take_along_axis(present, top, 0)
    within = np.zeros(codes.shape[1])
    for i in range(len(x)):  # loops over coder pairs; each step covers all units
        for j in range(i + 1, len(x)):
            within += _ratio_distance(x[i], x[j]) * (present[i] & present[j])
    return 2 * within


def _expected(level: str, n_c: np.ndarray, position: np.ndarray) -> float:
    """sum_{c,k} n_c n_k delta_ck, without a values × values matrix where a closed form exists."""
    n = n_c.sum()
    if level == "nominal":
        return float(n * n - (n_c * n_c).sum())
    if level == "ratio":
        total, step = 0.0, max(1, _DENSE_LIMIT // len(n_c))  # chunks bound memory for many distinct values
        for start in range(0, len(n_c), step):
            block = _ratio_distance(position[start : start + step, None], position[None, :])
            total += n_c[start : start + step] @ block @ n_c
        return float(total)
    # sum_{c,k} n_c n_k (x_c - x_k)^2 = 2 n sum_c n_c (x_c - mean)^2
    centred = position - (n_c * position).sum() / n
    return float(2 * n * (n_c * centred * centred).sum())


def krippendorff_alpha(
    reliability_data: ArrayLike, level: Level = "nominal", value_domain: ArrayLike | None = None
) -> float:
    """Krippendorff's alpha for coders × units reliability data with missing values.

    ``level`` picks the difference function: "nominal", "ordinal" (Krippendorff's rank metric on the marginal
    frequencies n_g, ranks in sorted order or in ``value_domain`` order, which string labels need), "interval" or
    "ratio". Units with fewer than two ratings drop out. Works from the units × values counts n_uc: with the
    coincidences o_ck = sum_u n_uc (n_uk - [c == k]) / (m_u - 1), alpha = 1 - (n - 1) sum o_ck d_ck / sum n_c n_k d_ck,
    and the sums are taken in closed form per unit, so time is linear in the number of ratings.
    NaN when no unit has two ratings or all pairable ratings are equal (alpha is 0/0 there).

    >>> round(krippendorff_alpha([[1, 2, 3, 3], [1, 2, 3, 4], [None, 2, 3, 4]], level="nominal"), 4)
    0.7727
    """
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}, got {level!r}")
    codes, values = _encode(_table(reliability_data, "reliability_data"), value_domain, "reliability_data")
    if level != "nominal" and values.dtype.kind != "f" and (level != "ordinal" or value_domain is None):
        need = "an ordered value_domain" if level == "ordinal" else "numeric ratings"
        raise ValueError(f"level={level!r} on string labels needs {need}; or use level='nominal'")
    table = _count_table(codes, len(values), unit_axis=1)
    m = table.sum(axis=0)
    pairable = m >= 2
    n_c = (table * pairable).sum(axis=1)  # pairable values: the coincidence matrix's marginals
    if np.count_nonzero(n_c) < 2:
        return float("nan")
    if level == "nominal":
        within = m * m - (table * table).sum(axis=0)  # sum_{c != k} n_uc n_uk
        position = np.arange(len(values), dtype=np.float64)
    elif level == "ratio":
        position = values
        within = _ratio_within(codes, position, m)
    else:
        # Ordinal distance is the squared difference of mid-ranks t_c = sum_{g<c} n_g + n_c / 2.
        position = np.cumsum(n_c) - n_c / 2 if level == "ordinal" else values
        # Centred values keep m * second - first**2 free of cancellation when the values sit far from zero.
        centred = position - (n_c * position).sum() / n_c.sum()
        first, second = (table * centred[:, None]).sum(axis=0), (table * (centred * centred)[:, None]).sum(axis=0)
        within = 2 * (m * second - first * first)  # sum_{c,k} n_uc n_uk (x_c - x_k)^2
    observed = (np.divide(within, m - 1, out=np.zeros_like(m), where=pairable)).sum()
    used = n_c > 0
    return float(1 - observed * (n_c.sum() - 1) / _expected(level, n_c[used], position[used]))


def _rating_counts(ratings: ArrayLike, categories: ArrayLike | None = None) -> tuple[Any, np.ndarray, int]:
    """Categories × units counts of a units × raters table, ratings per unit, and the number of categories."""
    codes, values = _encode(_table(ratings, "ratings"), categories, "ratings")
    table = _count_table(codes, len(values), unit_axis=0)
    return table, table.sum(axis=0), len(values)


def _pair_agreement(table: Any, rated: np.ndarray) -> float:
    """Mean over units with two or more ratings of the share of agreeing rating pairs."""
    pairable = rated >= 2
    if not pairable.any():
        return float("nan")
    agreeing = ((table * table).sum(axis=0) - rated)[pairable]  # sum_k n_uk (n_uk - 1)
    return float(np.mean(agreeing / (rated[pairable] * (rated[pairable] - 1))))


def _mean_shares(table: Any, rated: np.ndarray) -> np.ndarray:
    """pi_k: category shares within each unit, averaged over units with at least one rating (Gwet 2014)."""
    inverse = np.divide(1.0, rated, out=np.zeros_like(rated), where=rated > 0)
    return (table * inverse).sum(axis=1) / np.count_nonzero(rated)


def percent_agreement(ratings: ArrayLike) -> float:
    """Share of agreeing rating pairs, averaged over units (rows) with at least two ratings.

    >>> percent_agreement([["a", "a", "b"], ["b", "b", None]])
    0.6666666666666666
    """
    table, rated, _ = _rating_counts(ratings)
    return _pair_agreement(table, rated)


def fleiss_kappa(ratings: ArrayLike) -> float:
    """Fleiss' kappa for a units × raters table of labels, in Gwet's generalised form for missing ratings.

    p_a averages the pair agreement over units with two or more ratings; the category shares pi_k average each
    unit's shares over units with at least one rating (irrCAC's ``fleiss.kappa.raw``). Without missing
    ratings this is Fleiss (1971) exactly. NaN when a single category is used or no unit has two ratings.

    >>> round(fleiss_kappa([[1, 1, 2], [2, 2, 2], [1, 1, 1], [1, 2, 2]]), 4)
    0.3333
    """
    table, rated, _ = _rating_counts(ratings)
    pa = _pair_agreement(table, rated)
    shares = _mean_shares(table, rated)
    if np.count_nonzero(shares) < 2:
        return float("nan")
    pe = shares @ shares
    return float((pa - pe) / (1 - pe))


def gwet_ac1(ratings: ArrayLike, categories: ArrayLike | None = None) -> float:
    """Gwet's AC1 (Gwet 2008) for a units × raters table of labels, missing ratings allowed.

    Same p_a and pi_k as :func:`fleiss_kappa`; chance agreement p_e = sum_k pi_k (1 - pi_k) / (q - 1) with q the
    number of categories: those observed, or ``categories`` when given (unused categories lower p_e). Matches
    irrCAC's ``gwet.ac1.raw``. Unlike kappa it stays high when agreement is high on a rare category. NaN when
    q < 2 (irrCAC returns about 1 there) or no unit has two ratings.

    >>> round(gwet_ac1([[1, 1, 2], [2, 2, 2], [1, 1, 1], [1, 2, 2]]), 4)
    0.3333
    """
    table, rated, q = _rating_counts(ratings, categories)
    pa = _pair_agreement(table, rated)
    if q < 2:
        return float("nan")
    shares = _mean_shares(table, rated)
    pe = shares @ (1 - shares) / (q - 1)
    return float((pa - pe) / (1 - pe))


def _confusion(a: ArrayLike, b: ArrayLike, labels: ArrayLike | None) -> np.ndarray:
    """q × q table of (a, b) label pairs; pairs with a missing side drop out."""
    first, second = _table(a, "a", ndim=1), _table(b, "b", ndim=1)
    if len(first) != len(second):
        raise ValueError(f"a and b must rate the same items: got {len(first)} and {len(second)} labels")
    kinds = {first.dtype.kind, second.dtype.kind}
    common = np.float64 if kinds == {"f"} else np.result_type(first, second) if kinds <= set("US") else object
    both = np.empty((len(first), 2), dtype=common)
    both[:, 0], both[:, 1] = first, second
    codes, values = _encode(both, labels, "a and b")
    codes = codes[(codes >= 0).all(axis=1)]
    if labels is None:  # as sklearn: only labels seen in complete pairs set the weight spacing
        used, codes = np.unique(codes, return_inverse=True)
        codes, q = codes.reshape(-1, 2), len(used)
    else:
        q = len(values)
    return np.bincount(codes[:, 0] * q + codes[:, 1], minlength=q * q).reshape(q, q).astype(np.float64)


def cohen_kappa(
    a: ArrayLike,
    b: ArrayLike,
    weights: Literal["linear", "quadratic"] | None = None,
    labels: ArrayLike | None = None,
) -> float:
    """Cohen's kappa between two raters, optionally weighted; equals sklearn's ``cohen_kappa_score``.

    Weighted kappa depends on the label order: ``labels`` gives it, else the sorted labels of the complete pairs.
    Unlike sklearn, labels outside ``labels`` raise instead of being dropped silently. NaN when undefined.

    >>> a = ["yes"] * 25 + ["no"] * 25                           # Wikipedia's 50-proposal example
    >>> b = ["yes"] * 20 + ["no"] * 5 + ["yes"] * 10 + ["no"] * 15
    >>> round(cohen_kappa(a, b), 10)
    0.4
    """
    if weights not in (None, "linear", "quadratic"):
        raise ValueError(f"weights must be None, 'linear' or 'quadratic', got {weights!r}")
    confusion = _confusion(a, b, labels)
    n = confusion.sum()
    if n == 0:
        return float("nan")
    index = np.arange(len(confusion))
    spacing = np.abs(index[:, None] - index[None, :]).astype(np.float64)
    weight = {None: spacing > 0, "linear": spacing, "quadratic": spacing**2}[weights]
    expected = weight @ confusion.sum(axis=0) @ confusion.sum(axis=1) / n
    return float(1 - (weight * confusion).sum() / expected) if expected > 0 else float("nan")


def scott_pi(a: ArrayLike, b: ArrayLike) -> float:
    """Scott's pi between two raters: like Cohen's kappa, but chance agreement from the pooled label shares.

    >>> a = ["yes"] * 25 + ["no"] * 25
    >>> b = ["yes"] * 20 + ["no"] * 5 + ["yes"] * 10 + ["no"] * 15
    >>> round(scott_pi(a, b), 4)
    0.3939
    """
    confusion = _confusion(a, b, None)
    n = confusion.sum()
    shares = (confusion.sum(axis=0) + confusion.sum(axis=1)) / (2 * n) if n else np.zeros(1)
    if np.count_nonzero(shares) < 2:
        return float("nan")
    pe = shares @ shares
    return float((np.trace(confusion) / n - pe) / (1 - pe))


_PAIRED = (cohen_kappa, scott_pi)


def bootstrap_ci(
    statistic: Callable[..., float],
    data: ArrayLike | tuple[ArrayLike, ArrayLike],
    n_boot: int = 1000,
    random_state: int | np.random.Generator | None = 0,
    confidence: float = 0.95,
    axis: int | Literal["units"] = "units",
    **stat_kwargs: Any,
) -> tuple[float, float]:
    """Percentile bootstrap interval for any statistic here, resampling units with replacement.

    ``axis="units"`` finds the units axis from the statistic: columns for :func:`krippendorff_alpha` (coders ×
    units), the pair ``(a, b)`` resampled together for :func:`cohen_kappa` and :func:`scott_pi`, rows otherwise.
    For another callable give the units axis of ``data`` as an int. ``stat_kwargs`` go to the statistic.
    Resamples where the statistic is undefined (NaN) are skipped; (NaN, NaN) if all are.

    >>> bootstrap_ci(fleiss_kappa, [[1, 1], [2, 2], [1, 2], [2, 2]] * 5, n_boot=200)  # doctest: +ELLIPSIS
    (0.04..., 0.88...)
    """
    if not (isinstance(n_boot, int | np.integer) and n_boot >= 1):
        raise ValueError(f"n_boot must be a positive integer, got {n_boot!r}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, e.g. 0.95; got {confidence!r}")
    base = statistic.func if isinstance(statistic, functools.partial) else statistic
    paired = axis == "units" and base in _PAIRED
    if axis == "units":
        axis = 1 if base is krippendorff_alpha else 0
    elif not isinstance(axis, int | np.integer):
        raise ValueError(f"axis must be 'units' or the int axis of data that indexes units, got {axis!r}")
    if paired:
        if not (isinstance(data, tuple | list) and len(data) == 2):
            raise ValueError(f"{base.__name__} needs data=(a, b), the two raters' label sequences")
        arrays = [_table(part, name, ndim=1) for part, name in zip(data, "ab", strict=True)]
        if len(arrays[0]) != len(arrays[1]):
            raise ValueError(f"a and b must rate the same items: got {len(arrays[0])} and {len(arrays[1])} labels")
    else:
        arrays = [_table(data, "data", ndim=None)]
        if not -arrays[0].ndim <= axis < arrays[0].ndim:
            raise ValueError(f"axis {axis} is out of range for data of shape {arrays[0].shape}")
    n_units = arrays[0].shape[axis]
    rng = np.random.default_rng(random_state)
    estimates = np.empty(n_boot)
    for i in range(n_boot):  # the loop is over resamples; each statistic call is vectorised
        index = rng.integers(0, n_units, n_units)
        estimates[i] = statistic(*(np.take(array, index, axis=axis) for array in arrays), **stat_kwargs)
    estimates = estimates[~np.isnan(estimates)]
    if not estimates.size:
        return float("nan"), float("nan")
    tail = (1 - confidence) / 2
    low, high = np.quantile(estimates, [tail, 1 - tail])
    return float(low), float(high)

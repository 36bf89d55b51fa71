"""Per-field agreement as `cliptune agree` computed it before per-clip statistics: one alpha per resample.

The reference for tests/test_agreement_fast.py and the baseline of tests/bench/bench_agreement.py. It builds the
coders × units table and calls :func:`curation.review.agreement.krippendorff_alpha` on the resampled columns,
1,000 times for 1,000 bootstrap rounds, exactly as ``field_agreement`` did.
"""

from __future__ import annotations

from itertools import combinations
from typing import Any

import numpy as np

from curation.review import agreement
from curation.review.consensus import values_agree
from curation.rubric import RubricField

LEVELS = {"choice": "nominal", "ordinal": "ordinal", "integer": "interval", "number": "interval", "time": "interval"}


def _coded(rubric_field: RubricField, value: Any) -> Any:
    if value is None:
        return None
    if rubric_field.type == "choice":
        return str(value)
    return rubric_field.to_number(value)


def _interval(values: list[float], confidence: float = 0.95) -> list[float | None]:
    finite = np.asarray([v for v in values if v is not None and np.isfinite(v)])
    if len(finite) < 10:
        return [None, None]
    tail = (1 - confidence) / 2 * 100
    return [round(float(np.percentile(finite, tail)), 4), round(float(np.percentile(finite, 100 - tail)), 4)]


def _rounded(value: float) -> float | None:
    return round(value, 4) if np.isfinite(value) else None


def reference_alphas(
    rubric_field: RubricField,
    answers: dict[int, dict[str, Any]],
    n_boot: int = 1000,
    random_state: int | None = 0,
    min_items: int = 5,
) -> tuple[float, np.ndarray, list[list[Any]]]:
    """(alpha of all clips, alpha per resample with NaN where undefined, the coders × units table).

    ``field_agreement`` drew no resamples below 5 clips; tests lower ``min_items`` to compare tiny resamples.
    """
    units = {clip: by_user for clip, by_user in answers.items() if len(by_user) >= 2}
    annotators = sorted({user for by_user in units.values() for user in by_user})
    clip_ids = sorted(units)
    data = [[_coded(rubric_field, units[c].get(user)) for c in clip_ids] for user in annotators]
    coded = np.array(data, dtype=object)
    level = LEVELS[rubric_field.type]
    domain = ([float(i) for i in range(len(rubric_field.choices))] if rubric_field.type == "ordinal"
              else list(rubric_field.choices) if rubric_field.type == "choice" else None)

    def alpha(columns: np.ndarray) -> float:
        try:
            return float(agreement.krippendorff_alpha(coded[:, columns], level=level, value_domain=domain))
        except ValueError:
            return float("nan")

    if not clip_ids:
        return float("nan"), np.empty(0), data
    value = alpha(np.arange(len(clip_ids)))
    rng = np.random.default_rng(random_state)
    rounds = n_boot if len(clip_ids) >= min_items else 0
    boots = np.array([alpha(rng.integers(0, len(clip_ids), len(clip_ids))) for _ in range(rounds)])
    return value, boots, data


def reference_field_agreement(
    rubric_field: RubricField, answers: dict[int, dict[str, Any]], *, n_boot: int = 1000, random_state: int | None = 0
) -> dict[str, Any]:
    """``field_agreement`` as it was, for every field type but text."""
    units = {clip: by_user for clip, by_user in answers.items() if len(by_user) >= 2}
    annotators = sorted({user for by_user in units.values() for user in by_user})
    pairs = [values_agree(rubric_field, a, b)
             for by_user in units.values() for a, b in combinations(by_user.values(), 2)]
    result: dict[str, Any] = {
        "n_items": len(units),
        "n_annotators": len(annotators),
        "pairwise_agreement": round(float(np.mean(pairs)), 4) if pairs else None,
    }
    result.update(metric="krippendorff_alpha", level=LEVELS[rubric_field.type], value=None, ci=[None, None])
    if not units:
        return result
    value, boots, data = reference_alphas(rubric_field, units, n_boot, random_state)
    result.update(value=_rounded(value), ci=_interval(list(boots)))
    if rubric_field.type == "choice":
        ratings = np.array(data, dtype=object).T
        for name, statistic in (("fleiss_kappa", agreement.fleiss_kappa), ("gwet_ac1", agreement.gwet_ac1),
                                ("percent_agreement", agreement.percent_agreement)):
            try:
                result[name] = _rounded(float(statistic(ratings)))
            except ValueError:
                result[name] = None
    return result

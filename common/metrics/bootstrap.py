"""Percentile bootstrap confidence intervals, NaN-aware (wraps ``scipy.stats.bootstrap``)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import stats

__all__ = ["bootstrap_ci"]


def bootstrap_ci(
    values,
    statistic: Callable = np.median,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int | None = 0,
) -> tuple[float, float, float]:
    """Estimate and percentile-bootstrap interval of ``statistic`` over the non-NaN ``values``.

    Args:
        values: 1D array-like; NaN entries (e.g. volume bias of empty ground truth) are dropped first.
        statistic: reduces a 1D sample to a number; called as ``statistic(sample, axis=-1)`` when it accepts
            ``axis`` (NumPy reductions do), which is much faster.
        n_resamples: bootstrap resamples.
        confidence: two-sided confidence level in (0, 1).
        seed: seed of the resampling generator (same seed, same interval).

    Returns:
        ``(estimate, low, high)``: ``statistic`` of the data and the ``(1 - confidence) / 2`` and
        ``(1 + confidence) / 2`` percentiles of its bootstrap distribution. All NaN for no data; NaN bounds for a
        single value. Constant data give a zero-width interval.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    data = np.asarray(values, dtype=np.float64).reshape(-1)
    if np.isinf(data).any():
        raise ValueError("values contain Inf")
    data = data[~np.isnan(data)]
    if data.size == 0:
        return float("nan"), float("nan"), float("nan")
    estimate = float(statistic(data))
    if data.size == 1:
        return estimate, float("nan"), float("nan")
    if np.all(data == data[0]):
        return estimate, estimate, estimate
    result = stats.bootstrap(
        (data,),
        statistic,
        n_resamples=n_resamples,
        confidence_level=confidence,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    return estimate, float(result.confidence_interval.low), float(result.confidence_interval.high)

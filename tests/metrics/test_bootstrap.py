"""Percentile bootstrap: degenerate cases, NaN handling, reproducibility, and agreement with analytic intervals."""

import numpy as np
import pytest
from scipy import stats

from common.metrics import bootstrap_ci


def test_constant_data_gives_zero_width_interval():
    assert bootstrap_ci([0.3] * 10) == (0.3, 0.3, 0.3)


def test_empty_and_single_value():
    assert all(np.isnan(v) for v in bootstrap_ci([np.nan, np.nan]))
    estimate, low, high = bootstrap_ci([np.nan, 2.0])
    assert estimate == 2.0 and np.isnan(low) and np.isnan(high)


def test_nan_values_are_dropped_and_seed_reproduces():
    data = np.array([1.0, np.nan, 2.0, 4.0, np.nan, 8.0, 3.0])
    result = bootstrap_ci(data, n_resamples=500, seed=7)
    assert result == bootstrap_ci(data[~np.isnan(data)], n_resamples=500, seed=7)
    assert result[0] == 3.0  # median of 1, 2, 3, 4, 8
    assert result[1] <= result[0] <= result[2]
    assert 1.0 <= result[1] and result[2] <= 8.0


def test_mean_interval_close_to_analytic_normal_interval():
    x = np.random.default_rng(0).normal(loc=1.0, scale=2.0, size=400)
    estimate, low, high = bootstrap_ci(x, np.mean, n_resamples=4000, seed=1)
    half = stats.norm.ppf(0.975) * x.std(ddof=1) / np.sqrt(x.size)
    assert estimate == pytest.approx(x.mean())
    assert low == pytest.approx(x.mean() - half, abs=0.1 * half)
    assert high == pytest.approx(x.mean() + half, abs=0.1 * half)


def test_coverage_of_the_mean():
    rng = np.random.default_rng(5)
    hits = 0
    for _ in range(100):
        _, low, high = bootstrap_ci(rng.normal(size=50), np.mean, n_resamples=400, seed=int(rng.integers(1 << 31)))
        hits += low <= 0.0 <= high
    assert 85 <= hits <= 100  # nominal 95%; binomial sd about 2.2


def test_custom_statistic_without_axis_and_bad_arguments():
    estimate, low, high = bootstrap_ci([1.0, 2.0, 3.0, 10.0], lambda v: float(np.max(v) - np.min(v)), n_resamples=200)
    assert estimate == 9.0 and 0.0 <= low <= high <= 9.0
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_ci([1.0, 2.0], confidence=95)
    with pytest.raises(ValueError, match="Inf"):
        bootstrap_ci([1.0, np.inf])


# --- found by mutation testing (tests/MUTANTS.md) ---------------------------------------------------------------

SAMPLE = np.random.default_rng(11).normal(size=40)


def test_same_interval_as_scipy_percentile_bootstrap_with_the_seeded_generator():
    for confidence, n_resamples, seed in ((0.95, 300, 0), (0.8, 150, 5)):
        reference = stats.bootstrap(
            (SAMPLE,),
            np.mean,
            n_resamples=n_resamples,
            confidence_level=confidence,
            method="percentile",
            rng=np.random.default_rng(seed),
        ).confidence_interval
        estimate, low, high = bootstrap_ci(SAMPLE, np.mean, n_resamples=n_resamples, confidence=confidence, seed=seed)
        assert estimate == SAMPLE.mean()
        assert (low, high) == (reference.low, reference.high)


def test_defaults_are_2000_resamples_95_percent_and_seed_0():
    assert bootstrap_ci(SAMPLE, np.mean) == bootstrap_ci(SAMPLE, np.mean, n_resamples=2000, confidence=0.95, seed=0)
    assert bootstrap_ci(SAMPLE, np.mean) != bootstrap_ci(SAMPLE, np.mean, seed=1)
    assert bootstrap_ci(SAMPLE) == bootstrap_ci(SAMPLE, np.median)


def test_same_seed_same_interval_other_seed_other_interval():
    first = bootstrap_ci(SAMPLE, np.mean, n_resamples=200, seed=3)
    assert bootstrap_ci(SAMPLE, np.mean, n_resamples=200, seed=3) == first
    assert bootstrap_ci(SAMPLE, np.mean, n_resamples=200, seed=4) != first


def test_values_of_any_shape_are_flattened():
    grid = SAMPLE.reshape(5, 8)
    assert bootstrap_ci(grid, np.mean, n_resamples=100) == bootstrap_ci(SAMPLE, np.mean, n_resamples=100)


def test_one_resample_is_allowed_and_the_argument_bounds_are_exclusive():
    estimate, low, high = bootstrap_ci([1.0, 2.0, 3.0, 5.0], np.mean, n_resamples=1)
    assert estimate == 2.75 and low == high  # a single resample: both percentiles are that resample's mean
    with pytest.raises(ValueError, match="n_resamples must be >= 1, got 0"):
        bootstrap_ci([1.0, 2.0], n_resamples=0)
    for confidence in (0.0, 1.0, 1.5, -0.5):
        with pytest.raises(ValueError, match=rf"confidence must be in \(0, 1\), got {confidence}"):
            bootstrap_ci([1.0, 2.0], confidence=confidence)
    with pytest.raises(ValueError, match="^values contain Inf$"):
        bootstrap_ci([1.0, -np.inf])


def test_constant_data_are_not_resampled(monkeypatch):
    from common.metrics import bootstrap as module

    def fail(*args, **kwargs):
        raise AssertionError("constant data must not be resampled")

    monkeypatch.setattr(module.stats, "bootstrap", fail)
    assert bootstrap_ci([2.5, 2.5, np.nan, 2.5]) == (2.5, 2.5, 2.5)
    with pytest.raises(AssertionError, match="must not be resampled"):
        bootstrap_ci([2.5, 2.6])

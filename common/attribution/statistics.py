"""Correlation statistics on region rank profiles (OSCAR; Achara et al., 2025).

Inputs are ``(R,)`` profiles (median ranks per region, :func:`..regions.median_rank_profile`) of the
test model ``ts``, the sensitive-attribute model ``sa`` and the balanced baseline ``ba``, or the
``(N, R)`` per-image ranks they come from. All randomness is ``numpy.random.default_rng(seed)``.

Definitions, matching OSCAR's analysis code:

* permutation p-value, two-sided: ``(1 + #{|r_b| >= |r|}) / (B + 1)`` where ``r_b`` correlates a
  permutation of the first argument (a fresh ``default_rng(seed)`` per test, one
  ``rng.permutation`` per draw) with the second;
* partial correlation ``r(x, y | z)``: Pearson r of the residuals of ``x`` and ``y`` after an
  ordinary least-squares fit on ``[1, z]``; its permutation test permutes the residual of ``x``;
* deviation-based (semi-partial) correlation: Pearson r of the residual of ``x`` on ``[1, z]``
  (the test model's deviation from the baseline) with the raw ``y``;
* image bootstrap: resample images (rows) with replacement, recompute the three median profiles,
  recompute the statistic; percentile interval;
* localisation score per region: product of the standardised (``ddof=1``) residuals of ``ts`` and
  ``sa`` after regressing each on ``[1, ba]``.

OSCAR also analyses a second setting (its "ushort" runs) in which the roles of the two reference
models are exchanged: the statistics are computed as ``f(ts, ba, sa)``, conditioning on ``sa``. The
functions here are symmetric in that respect; pass the profiles in the order wanted.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = [
    "deviation_correlation",
    "deviation_correlation_test",
    "localisation_scores",
    "partial_correlation",
    "partial_correlation_bootstrap",
    "partial_correlation_test",
    "pearson_permutation_test",
    "profile_correlations",
    "residualise",
    "top_regions",
]


def _profile(x, name="x") -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1 or len(x) < 3:
        raise ValueError(f"{name} must be a 1-D profile with at least 3 regions, got {x.shape}")
    return x


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.corrcoef(x, y)[0, 1])


def _permutation_p(x: np.ndarray, y: np.ndarray, r: float, num_permutations: int, seed: int) -> float:
    rng = np.random.default_rng(seed)
    sims = np.array([_pearson(rng.permutation(x), y) for _ in range(num_permutations)])
    return float((1 + np.sum(np.abs(sims) >= abs(r))) / (num_permutations + 1))


def pearson_permutation_test(x, y, num_permutations: int = 10000, seed: int = 42) -> tuple[float, float]:
    """Pearson r of two ``(R,)`` profiles and its two-sided permutation p-value (permuting ``x``)."""
    x, y = _profile(x, "x"), _profile(y, "y")
    r = _pearson(x, y)
    return r, _permutation_p(x, y, r, num_permutations, seed)


def profile_correlations(ts, sa, ba, num_permutations: int = 10000, seed: int = 42) -> dict[str, dict[str, float]]:
    """Pairwise Pearson r with permutation p-values of the three ``(R,)`` profiles.

    Returns:
        ``{"ts_sa": {"r", "p"}, "ts_ba": {...}, "sa_ba": {...}}``; the first-named profile is the
        permuted one, each test starting from ``default_rng(seed)``.
    """
    ts, sa, ba = _profile(ts, "ts"), _profile(sa, "sa"), _profile(ba, "ba")
    out = {}
    for key, (x, y) in {"ts_sa": (ts, sa), "ts_ba": (ts, ba), "sa_ba": (sa, ba)}.items():
        r, p = pearson_permutation_test(x, y, num_permutations, seed)
        out[key] = {"r": r, "p": p}
    return out


def residualise(y, z) -> np.ndarray:
    """Residual of ``(R,)`` ``y`` after the least-squares fit ``y ~ 1 + z``."""
    y, z = _profile(y, "y"), _profile(z, "z")
    design = np.column_stack([np.ones_like(z), z])
    return y - design @ np.linalg.lstsq(design, y, rcond=None)[0]


def partial_correlation(x, y, z) -> float:
    """Partial correlation ``r(x, y | z)`` of three ``(R,)`` profiles.

    ``(r_xy - r_xz r_yz) / sqrt((1 - r_xz^2)(1 - r_yz^2))``, equal to the Pearson r of the
    residuals of ``x`` and ``y`` on ``[1, z]`` (OSCAR's residual form).
    """
    x, y, z = _profile(x, "x"), _profile(y, "y"), _profile(z, "z")
    c = np.corrcoef(np.stack([x, y, z]))
    rxy, rxz, ryz = c[0, 1], c[0, 2], c[1, 2]
    return float((rxy - rxz * ryz) / np.sqrt((1.0 - rxz**2) * (1.0 - ryz**2)))


def partial_correlation_test(x, y, z, num_permutations: int = 10000, seed: int = 42) -> tuple[float, float]:
    """``r(x, y | z)`` and its two-sided p-value from permuting the residual of ``x`` on ``[1, z]``."""
    rx, ry = residualise(x, z), residualise(y, z)
    r = _pearson(rx, ry)
    return r, _permutation_p(rx, ry, r, num_permutations, seed)


def deviation_correlation(x, y, z) -> float:
    """Deviation-based (semi-partial) correlation: Pearson r of ``residualise(x, z)`` with raw ``y``.

    With ``x = ts``, ``y = sa``, ``z = ba`` it asks whether the test model's departure from the
    baseline ranking follows the sensitive-attribute model's ranking (OSCAR's
    "(TS-BA) <-> SA" statistic). Unlike :func:`partial_correlation`, ``y`` is not residualised.
    """
    return _pearson(residualise(x, z), _profile(y, "y"))


def deviation_correlation_test(x, y, z, num_permutations: int = 10000, seed: int = 42) -> tuple[float, float]:
    """:func:`deviation_correlation` and its two-sided p-value from permuting ``residualise(x, z)``."""
    rx, y = residualise(x, z), _profile(y, "y")
    r = _pearson(rx, y)
    return r, _permutation_p(rx, y, r, num_permutations, seed)


def partial_correlation_bootstrap(
    ranks_ts,
    ranks_sa,
    ranks_ba,
    num_bootstrap: int = 2000,
    seed: int = 42,
    level: float = 0.95,
    statistic: Callable[[np.ndarray, np.ndarray, np.ndarray], float] = partial_correlation,
) -> tuple[float, float, float]:
    """Image-level bootstrap of ``statistic(ts, sa, ba)`` on median rank profiles.

    Args:
        ranks_ts, ranks_sa, ranks_ba: ``(N, R)`` per-image ranks of the same ``N`` images.
        num_bootstrap: resamples; each draws ``N`` image indices with ``rng.integers(0, N, N)``
            (the same indices for the three models) and recomputes the median profiles.
        seed: seed of ``default_rng``.
        level: central coverage of the percentile interval.
        statistic: ``f(x, y, z) -> float``; :func:`partial_correlation` or
            :func:`deviation_correlation`.

    Returns:
        ``(estimate, low, high)``: the statistic on the full-sample medians and the
        ``(1 - level) / 2`` and ``(1 + level) / 2`` percentiles (numpy linear interpolation) of the
        bootstrap distribution.
    """
    a, b, c = (np.asarray(m, dtype=np.float64) for m in (ranks_ts, ranks_sa, ranks_ba))
    if a.ndim != 2 or a.shape != b.shape or a.shape != c.shape:
        raise ValueError(f"expected three (N, R) arrays of equal shape, got {a.shape}, {b.shape}, {c.shape}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    rng = np.random.default_rng(seed)
    n = a.shape[0]
    stats = np.empty(num_bootstrap)
    for i in range(num_bootstrap):
        idx = rng.integers(0, n, n)
        stats[i] = statistic(np.median(a[idx], axis=0), np.median(b[idx], axis=0), np.median(c[idx], axis=0))
    estimate = statistic(np.median(a, axis=0), np.median(b, axis=0), np.median(c, axis=0))
    low, high = np.percentile(stats, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    return float(estimate), float(low), float(high)


def localisation_scores(ts, sa, ba) -> np.ndarray:
    """Per-region localisation score: ``u_r * v_r`` for the standardised residuals
    ``u = z(residualise(ts, ba))``, ``v = z(residualise(sa, ba))`` (``ddof=1``).

    Their mean is ``(R-1)/R`` times the partial correlation, so regions with large positive scores
    are those driving ``r(ts, sa | ba)``. A region scores high when TS and SA deviate from the
    baseline in the same direction, either both ranked higher (more attributed) or both lower.

    Returns:
        ``(R,)`` float64 scores.
    """
    u, v = residualise(ts, ba), residualise(sa, ba)
    u = (u - u.mean()) / (u.std(ddof=1) + 1e-12)
    v = (v - v.mean()) / (v.std(ddof=1) + 1e-12)
    return u * v


def top_regions(scores, k: int) -> np.ndarray:
    """Indices of the ``k`` highest ``(R,)`` scores, highest first; ties keep the lower index first."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 1 or not 0 <= k <= len(scores):
        raise ValueError(f"need 1-D scores and 0 <= k <= R, got {scores.shape} and k={k}")
    return np.argsort(-scores, kind="stable")[:k]

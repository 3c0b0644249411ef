"""Cross-seed statistics of a study's per-seed summaries: claim verdicts and ranking agreement.

:func:`claim_interval` and :func:`verdicts` decide a declared claim (an estimand, a margin and the paper's side
of it) from one value per seed. Each seed's value varies for two reasons: its training (data, initialisation) and
the finite test set it is scored on. The interval is a random-effects one with the seeds as studies (DerSimonian
and Laird 1986, equal weights because every seed has a test set of the same size): the variance of one seed's value
is ``max(s^2, v)``, where ``s^2`` is the variance of the values over seeds and ``v`` the mean over seeds of the
within-run sampling variance (a bootstrap over each run's test units, :mod:`common.study.within`); the mean over
``S`` seeds has variance ``max(s^2, v) / S`` and its 95% interval uses Student's t with ``S - 1`` degrees of
freedom (the small-sample correction of Hartung and Knapp 2001). Every seed draws its own test set, so ``s^2``
already holds the sampling part; the within-run variance is a floor, so that three seeds agreeing by chance (or a
value that moves in coarse steps) cannot give an interval narrower than one run's own test set allows. The
training part alone is ``max(s^2 - v, 0)``; :mod:`common.study.power` uses the split to project the half-width to
other test-set sizes. With three seeds the interval is wide (t = 4.30): a claim is **supported** only when the
whole interval lies on the paper's side of the margin, **refuted** when it lies wholly on the other side, and
**inconclusive** otherwise. The primary claims of a study are decided together with Holm's step-down correction
of the one-sided tests behind those intervals.

:func:`ranking_agreement` asks whether an ordering of settings (e.g. six down-sampling operators by their
group-L volume bias) is above seed noise: Kendall's coefficient of concordance W over seeds, with a permutation
p-value (the chance that independent random orderings per seed agree as well), and the spread between the
settings' medians beside the typical spread of one setting over seeds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

__all__ = ["claim_interval", "holm", "kendall_w", "page_trend", "ranking_agreement", "verdicts"]

ALPHA = 0.05  # two-sided level of the published intervals (one-sided tests at ALPHA / 2 each way)


def claim_interval(values, margin: float, direction: str = ">", alpha: float = ALPHA, within_sds=None) -> dict:
    """Random-effects t-interval of the mean of ``values`` (one per seed; ``None`` left out) and the one-sided
    tests against ``margin`` (see the module docstring).

    ``direction`` is the paper's side: ``">"`` (the estimand exceeds ``margin``) or ``"<"``. ``within_sds``: the
    within-run (test-set) standard deviation of each seed's value (``None`` entries left out; omitted: no floor).
    Returns ``{"n", "mean", "ci95": [lo, hi], "p_support", "p_refute", "sd_seeds", "sd_within", "sd_training"}``:
    ``p_support`` tests "the estimand is on the other side" (small: evidence for the paper), ``p_refute`` tests
    "it is on the paper's side"; ``sd_within`` is the root mean within-run variance, ``sd_training`` the root of
    ``max(sd_seeds^2 - sd_within^2, 0)``. Fewer than 2 values: no interval, both p-values 1. Zero variance: the
    interval is the point, p 0 on the side the mean lies.
    """
    from scipy import stats as st

    if direction not in (">", "<"):
        raise ValueError(f"direction must be '>' or '<', got {direction!r}")
    x = np.asarray([v for v in values if v is not None], dtype=np.float64)
    w = np.asarray([v for v in (within_sds or []) if v is not None], dtype=np.float64)
    n = int(x.size)
    within_var = float(np.mean(w**2)) if w.size else None
    out = {"n": n, "mean": float(x.mean()) if n else None, "ci95": [None, None], "p_support": 1.0, "p_refute": 1.0,
           "sd_seeds": None, "sd_within": None if within_var is None else math.sqrt(within_var),
           "sd_training": None}  # fmt: skip
    if n < 2:
        return out
    mean, sd = float(x.mean()), float(x.std(ddof=1))
    out["sd_seeds"] = sd
    var = sd**2 if within_var is None else max(sd**2, within_var)
    if within_var is not None:
        out["sd_training"] = math.sqrt(max(sd**2 - within_var, 0.0))
    sign = 1.0 if direction == ">" else -1.0
    if var == 0.0:
        out["ci95"] = [mean, mean]
        if sign * (mean - margin) > 0:
            out["p_support"] = 0.0
        elif sign * (mean - margin) < 0:
            out["p_refute"] = 0.0
        return out
    se = math.sqrt(var / n)
    half = float(st.t.ppf(1 - alpha / 2, n - 1)) * se
    t = sign * (mean - margin) / se  # positive: on the paper's side
    out["ci95"] = [float(mean - half), float(mean + half)]
    out["p_support"] = float(st.t.sf(t, n - 1))
    out["p_refute"] = float(st.t.cdf(t, n - 1))
    return out


def holm(p_values) -> list[float]:
    """Holm's step-down adjusted p-values, in the input order (statsmodels ``multipletests``)."""
    from statsmodels.stats.multitest import multipletests

    p = list(p_values)
    return [float(v) for v in multipletests(p, method="holm")[1]] if p else []


def verdicts(intervals, primary, alpha: float = ALPHA) -> list[str]:
    """``supported`` / ``refuted`` / ``inconclusive`` per claim from :func:`claim_interval` results.

    A claim is supported when its one-sided support test rejects at ``alpha / 2`` (its 95% interval lies wholly on
    the paper's side), refuted when the refute test does; for the ``primary`` claims both tests are first
    Holm-adjusted across the primary claims.
    """
    intervals, primary = list(intervals), [bool(p) for p in primary]
    sup = [iv["p_support"] for iv in intervals]
    ref = [iv["p_refute"] for iv in intervals]
    idx = [i for i, p in enumerate(primary) if p]
    for i, a in zip(idx, holm([sup[i] for i in idx])):
        sup[i] = a
    for i, a in zip(idx, holm([ref[i] for i in idx])):
        ref[i] = a
    out = []
    for s, r in zip(sup, ref):
        out.append("supported" if s < alpha / 2 else "refuted" if r < alpha / 2 else "inconclusive")
    return out


def kendall_w(ranks: np.ndarray) -> np.ndarray:
    """Kendall's W of ``ranks`` ``(..., m raters, n items)`` holding 1..n per rater (no ties): 1 = every rater
    orders the items the same way, about 0 = no agreement."""
    ranks = np.asarray(ranks, dtype=np.float64)
    m, n = ranks.shape[-2:]
    totals = ranks.sum(axis=-2)
    s = ((totals - totals.mean(axis=-1, keepdims=True)) ** 2).sum(axis=-1)
    return 12.0 * s / (m**2 * (n**3 - n))


def ranking_agreement(
    values: Mapping[str, Mapping[str, float | None]], draws: int = 100_000, seed: int = 0
) -> dict | None:
    """Whether the ordering of items by ``values[seed][item]`` (e.g. |bias|) agrees over seeds.

    Items missing in any seed are left out; needs at least 2 seeds and 3 items, else ``None``. Returns
    ``{"items", "seeds", "kendall_w", "p_value", "draws", "median_range", "seed_range"}``: ``p_value`` is the
    fraction of ``draws`` sets of independent uniformly random per-seed orderings (NumPy generator ``seed``) whose
    W is at least the observed one; ``median_range`` is max - min of the items' medians over seeds,
    ``seed_range`` the median over items of each item's max - min over seeds (same units as ``values``).
    """
    seeds = list(values)
    items = [k for k in next(iter(values.values()), {}) if all(values[s].get(k) is not None for s in seeds)]
    if len(seeds) < 2 or len(items) < 3:
        return None
    table = np.array([[values[s][k] for k in items] for s in seeds], dtype=np.float64)  # (m, n)
    ranks = table.argsort(axis=1).argsort(axis=1) + 1
    observed = float(kendall_w(ranks))
    rng = np.random.default_rng(seed)
    random_ranks = rng.permuted(np.broadcast_to(np.arange(1, len(items) + 1), (draws, *table.shape)), axis=-1)
    p_value = float((kendall_w(random_ranks) >= observed - 1e-12).mean())
    return {
        "items": items,
        "seeds": seeds,
        "kendall_w": observed,
        "p_value": p_value,
        "draws": int(draws),
        "median_range": float(np.ptp(np.median(table, axis=0))),
        "seed_range": float(np.median(np.ptp(table, axis=0))),
    }


def page_trend(values: Mapping[str, Mapping[str, float | None]], levels) -> dict | None:
    """Page's test for an increasing trend of ``values[seed][level]`` over ``levels`` (in that order), seeds as
    blocks (SciPy's ``page_trend_test``; exact for small designs). Seeds missing a level are left out; needs 2 seeds
    and 3 levels, else ``None``. Returns ``{"L", "p_value", "seeds", "levels"}``."""
    from scipy.stats import page_trend_test

    levels = list(levels)
    seeds = [s for s, row in values.items() if all(row.get(k) is not None for k in levels)]
    if len(seeds) < 2 or len(levels) < 3:
        return None
    result = page_trend_test(np.array([[values[s][k] for k in levels] for s in seeds], dtype=np.float64))
    return {"L": float(result.statistic), "p_value": float(result.pvalue), "seeds": seeds, "levels": levels}

"""Between-group comparisons of an audit: group means (site-adjusted with a control), disparity summaries with
stratified bootstrap intervals, between-group tests and their family-wise correction.

Group means. Per metric the per-case values ``y`` (``(n,)``, NaN rows dropped) are fitted by least squares on
one indicator per group plus, with a control attribute (e.g. the site), one indicator per stratum but the first:
``y ~ group + site``. A group's mean is its coefficient plus the stratum effects averaged over the cohort's
strata mix, i.e. the group's mean had it the cohort's site mix; without a control it is the plain group mean.
Either way it is linear in ``y`` (``means = W.T @ y``), which makes the bootstrap cheap.

Bootstrap. Cases are resampled with replacement within each (group, stratum) cell, so every resample keeps the
design; intervals are the 2.5 and 97.5 percentiles of the resampled statistic.

Tests. Differences in Dice and volume bias between the groups: the Wald F test that all group coefficients are
equal in the fit above, with the HC2 heteroscedasticity-consistent covariance (``statsmodels``; for two groups
and no control the statistic is Welch's t squared). The AUC difference between predicted and manual volumes:
a paired permutation test (``scipy.stats.permutation_test``) that swaps each case's predicted and manual
volume. The gap in expected calibration error (probability predictions): a permutation test of the range of the
group means, group labels permuted within strata (:func:`gap_permutation_test`). All p-values of a report are
corrected together (``statsmodels`` ``multipletests``, Holm by default).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "CORRECTIONS",
    "adjusted_means",
    "auc_difference_test",
    "correct",
    "disparity_summary",
    "gap_permutation_test",
    "group_difference_test",
    "stratified_auc",
    "trend",
]

CORRECTIONS = {"holm": "Holm", "fdr_bh": "Benjamini-Hochberg"}  # multipletests method -> name in the report


def _design(groups: np.ndarray, order: Sequence[str], strata: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Design ``X`` ``(n, k + s - 1)`` (group indicators, stratum indicators but the first) and the contrast
    ``L`` ``(k, p)`` that maps coefficients to the group means at the cohort's strata mix."""
    g = (groups[:, None] == np.asarray(order)[None]).astype(np.float64)
    k = len(order)
    if strata is None:
        return g, np.eye(k)
    levels = sorted(set(strata.tolist()))
    s = (strata[:, None] == np.asarray(levels[1:])[None]).astype(np.float64)
    s = s[:, s.any(axis=0)]
    contrast = np.hstack([np.eye(k), np.tile(s.mean(axis=0), (k, 1))])
    return np.hstack([g, s]), contrast


def adjusted_means(y, groups, order: Sequence[str], strata=None) -> tuple[np.ndarray, np.ndarray, np.ndarray] | str:
    """Group means of ``y`` (site-adjusted when ``strata`` is given).

    Args:
        y: ``(n,)`` finite values; groups: ``(n,)`` group names; order: the ``k`` groups to compare (each present);
        strata: ``(n,)`` stratum names or None.

    Returns:
        ``(means (k,), weights W (n, k), cells (n,))`` with ``means = W.T @ y`` and ``cells`` the (group, stratum)
        cell index of each case; or a sentence saying why the means are not defined (group and stratum confounded).
    """
    y = np.asarray(y, dtype=np.float64)
    groups = np.asarray(groups, dtype=object)
    strata = None if strata is None else np.asarray(strata, dtype=object)
    x, contrast = _design(groups, order, strata)
    if np.linalg.matrix_rank(x) < x.shape[1]:
        return "group and stratum are confounded (a group's strata determine it), so no adjusted mean exists"
    weights = x @ np.linalg.solve(x.T @ x, contrast.T)
    keys = list(zip(groups.tolist(), strata.tolist() if strata is not None else [None] * len(y)))
    index = {key: i for i, key in enumerate(dict.fromkeys(keys))}
    return weights.T @ y, weights, np.asarray([index[key] for key in keys])


def _resample(cells: np.ndarray, n_resamples: int, seed: int) -> np.ndarray:
    """``(B, n)`` indices resampled with replacement within each cell, each cell's cases keeping their places."""
    rng = np.random.default_rng(seed)
    out = np.empty((n_resamples, cells.size), dtype=np.int64)
    for cell in np.unique(cells):
        members = np.flatnonzero(cells == cell)
        out[:, members] = members[rng.integers(0, members.size, size=(n_resamples, members.size))]
    return out


def _interval(estimate: float, replicates: np.ndarray) -> dict[str, float | None]:
    finite = replicates[np.isfinite(replicates)]
    if not np.isfinite(estimate):
        return {"estimate": None, "ci_low": None, "ci_high": None}
    if finite.size < replicates.size or finite.size == 0:
        return {"estimate": float(estimate), "ci_low": None, "ci_high": None}
    low, high = np.quantile(finite, [0.025, 0.975])
    return {"estimate": float(estimate), "ci_low": float(low), "ci_high": float(high)}


def disparity_summary(
    values: dict[str, np.ndarray],
    groups,
    order: Sequence[str],
    strata=None,
    n_resamples: int = 2000,
    seed: int = 0,
) -> dict[str, Any]:
    """Disparity of one structure across the ``order`` groups, per metric.

    Args:
        values: metric -> ``(n,)`` per-case values (NaN where undefined): ``dice``, ``sensitivity``,
            ``fp_rate`` (false-positive voxels / manual voxels), ``volume_bias`` (fractions) and optionally ``ece``
            (expected calibration error, lower is better like ``fp_rate``).
        groups, order, strata: as :func:`adjusted_means`.

    Returns:
        Per metric ``{"n": {group: cases}, "means": {group: mean}, ...}``: for ``dice`` and ``sensitivity`` (higher is
        better) the ``worst`` and ``best`` group, ``gap`` = best - worst and ``ratio`` = worst / best, and for
        ``dice`` also ``equity_scaled`` = mean / (1 + sd of the group means) (population sd; the mean is over
        the groups' cases); for ``fp_rate`` and ``ece`` (lower is better) ``worst`` (highest), ``best`` and
        ``gap``; for
        ``volume_bias`` the ``highest`` and ``lowest`` group and ``gap`` = highest - lowest. Each of gap, ratio
        and equity_scaled is ``{"estimate", "ci_low", "ci_high"}`` (stratified bootstrap 95% interval);
        ``{"error": ...}`` instead where fewer than two groups have values or the means are not defined.
    """
    groups = np.asarray(groups, dtype=object)
    strata = None if strata is None else np.asarray(strata, dtype=object)
    out: dict[str, Any] = {}
    for k, (metric, y) in enumerate(values.items()):
        y = np.asarray(y, dtype=np.float64)
        keep = np.isfinite(y) & np.isin(groups, list(order))
        present = [g for g in order if (groups[keep] == g).sum() > 0]
        counts = {g: int((groups[keep] == g).sum()) for g in order}
        if len(present) < 2:
            out[metric] = {"n": counts, "error": "fewer than two groups have values"}
            continue
        fit = adjusted_means(y[keep], groups[keep], present, None if strata is None else strata[keep])
        if isinstance(fit, str):
            out[metric] = {"n": counts, "error": fit}
            continue
        means, weights, cells = fit
        boot = y[keep][_resample(cells, n_resamples, seed + k)] @ weights  # (B, k)
        sizes = np.asarray([counts[g] for g in present], dtype=np.float64)
        entry: dict[str, Any] = {"n": counts, "means": dict(zip(present, means.tolist()))}
        if metric == "volume_bias":
            hi, lo = int(np.argmax(means)), int(np.argmin(means))
            entry.update(highest=present[hi], lowest=present[lo])
            entry["gap"] = _interval(means[hi] - means[lo], boot.max(axis=1) - boot.min(axis=1))
        elif metric in ("fp_rate", "ece"):
            worst, best = int(np.argmax(means)), int(np.argmin(means))
            entry.update(worst=present[worst], best=present[best])
            entry["gap"] = _interval(means[worst] - means[best], boot.max(axis=1) - boot.min(axis=1))
        else:
            worst, best = int(np.argmin(means)), int(np.argmax(means))
            entry.update(worst=present[worst], best=present[best])
            entry["gap"] = _interval(means[best] - means[worst], boot.max(axis=1) - boot.min(axis=1))
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = means[worst] / means[best] if means[best] else np.nan
                entry["ratio"] = _interval(ratio, boot.min(axis=1) / boot.max(axis=1))
            if metric == "dice":
                overall = (boot @ sizes) / sizes.sum()
                entry["equity_scaled"] = _interval(
                    float(means @ sizes / sizes.sum() / (1 + means.std())), overall / (1 + boot.std(axis=1))
                )
        out[metric] = entry
    return out


def group_difference_test(y, groups, order: Sequence[str], strata=None) -> dict[str, Any]:
    """Wald F test that the ``order`` groups share one mean of ``y`` (stratum-adjusted), HC2 covariance.

    Returns ``{"statistic": F, "df": [numerator, denominator], "p": p, "n": cases}``; ``p`` is None when fewer
    than two groups have values or group and stratum are confounded. Cases that fit their own value exactly
    (leverage 1, e.g. the only case of a stratum) carry no information on the groups and are left out first.
    """
    import statsmodels.api as sm

    y = np.asarray(y, dtype=np.float64)
    groups = np.asarray(groups, dtype=object)
    strata = None if strata is None else np.asarray(strata, dtype=object)
    keep = np.isfinite(y) & np.isin(groups, list(order))
    out: dict[str, Any] = {"statistic": None, "df": None, "p": None, "n": int(keep.sum())}
    for _ in range(2):  # a second pass once the leverage-1 cases are out
        present = [g for g in order if (groups[keep] == g).sum() > 0]
        if len(present) < 2:
            return out
        x, _contrast = _design(groups[keep], present, None if strata is None else strata[keep])
        if np.linalg.matrix_rank(x) < x.shape[1]:
            return out
        leverage = np.einsum("ij,ji->i", x, np.linalg.pinv(x))
        if (leverage < 1 - 1e-9).all():
            break
        keep[np.flatnonzero(keep)[leverage >= 1 - 1e-9]] = False
    k = len(present)
    r = np.zeros((k - 1, x.shape[1]))
    r[:, 0] = -1.0
    r[np.arange(k - 1), np.arange(1, k)] = 1.0
    yk = y[keep]
    out["n"] = int(yk.size)
    fit = sm.OLS(yk, x).fit()
    if fit.df_resid < 1:
        return out
    if np.allclose(fit.resid, 0.0, atol=1e-12 * max(1.0, np.abs(yk).max())):  # no noise: F is 0 or infinite
        differ = not np.allclose(r @ fit.params, 0.0, atol=1e-12)
        out.update(statistic=float("inf") if differ else 0.0, df=[k - 1, int(fit.df_resid)], p=0.0 if differ else 1.0)
        return out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        test = fit.get_robustcov_results(cov_type="HC2").f_test(r)
    out.update(
        statistic=float(np.squeeze(test.fvalue)),
        df=[int(test.df_num), int(test.df_denom)],
        p=float(np.squeeze(test.pvalue)),
    )
    return out


def gap_permutation_test(
    y, groups, order: Sequence[str], strata=None, n_resamples: int = 2000, seed: int = 0
) -> dict[str, Any]:
    """Permutation test that the ``order`` groups share one mean of ``y`` (e.g. the per-case expected calibration
    error), with the gap between the highest and lowest group mean as statistic.

    The means are those of :func:`adjusted_means` (at the cohort's strata mix). Group labels are permuted among
    the cases within each stratum, which keeps every (group, stratum) cell's size and so the weights ``W``: a
    permuted gap is the range of ``W.T @ y[perm]``. The p-value counts the permuted gaps at least as large as the
    observed one, ``(1 + count) / (1 + n_resamples)`` (Phipson and Smyth 2010, "Permutation p-values should never
    be zero"). No parametric form is assumed, which suits a bounded, skewed per-case error.

    Returns ``{"statistic": gap, "p": p, "n": cases, "n_resamples"}``; ``statistic`` and ``p`` are None when fewer
    than two groups have values or group and stratum are confounded.
    """
    y = np.asarray(y, dtype=np.float64)
    groups = np.asarray(groups, dtype=object)
    strata_all = None if strata is None else np.asarray(strata, dtype=object)
    keep = np.isfinite(y) & np.isin(groups, list(order))
    out: dict[str, Any] = {"statistic": None, "p": None, "n": int(keep.sum()), "n_resamples": n_resamples}
    present = [g for g in order if (groups[keep] == g).sum() > 0]
    if len(present) < 2:
        return out
    s = None if strata_all is None else strata_all[keep]
    fit = adjusted_means(y[keep], groups[keep], present, s)
    if isinstance(fit, str):
        return out
    means, weights, _cells = fit
    yk = y[keep]
    observed = float(means.max() - means.min())
    rng = np.random.default_rng(seed)
    layers = np.zeros(yk.size, dtype=int) if s is None else np.unique(s.astype(str), return_inverse=True)[1]
    perms = np.tile(np.arange(yk.size), (n_resamples, 1))
    for layer in np.unique(layers):
        members = np.flatnonzero(layers == layer)
        perms[:, members] = rng.permuted(np.tile(members, (n_resamples, 1)), axis=1)
    permuted = yk[perms] @ weights  # (B, k)
    gaps = permuted.max(axis=1) - permuted.min(axis=1)
    tolerance = 1e-12 * max(1.0, abs(observed))  # equal gaps that differ by rounding count as reached
    count = int(np.count_nonzero(gaps >= observed - tolerance))
    out.update(statistic=observed, p=(1 + count) / (1 + n_resamples))
    return out


def stratified_auc(scores, positive, strata=None) -> np.ndarray:
    """AUC of ranking the ``positive`` cases above the others by ``scores``, pairs taken within strata only.

    ``scores``: ``(..., n)`` (leading axes are batches); ``positive``: ``(n,)`` bools; ``strata``: ``(n,)`` or None
    (one stratum: the Mann-Whitney AUC, ties counted 1/2, as :func:`common.metrics.group_auc`). With strata it is
    the pooled within-stratum AUC: the sum of each stratum's Mann-Whitney U over the sum of its positive x negative
    pairs. NaN when no stratum holds both kinds.
    """
    from scipy.stats import rankdata

    scores = np.asarray(scores, dtype=np.float64)
    positive = np.asarray(positive, dtype=bool)
    strata = np.zeros(positive.size, dtype=int) if strata is None else np.asarray(strata, dtype=object)
    u = np.zeros(scores.shape[:-1])
    pairs = 0
    for stratum in dict.fromkeys(strata.tolist()):
        m = strata == stratum
        pos = positive[m]
        n1, n0 = int(pos.sum()), int((~pos).sum())
        if n1 == 0 or n0 == 0:
            continue
        ranks = rankdata(scores[..., m], axis=-1)
        u = u + ranks[..., pos].sum(axis=-1) - n1 * (n1 + 1) / 2
        pairs += n1 * n0
    return u / pairs if pairs else np.full(scores.shape[:-1], np.nan)


def auc_difference_test(
    predicted, manual, positive, strata=None, n_resamples: int = 2000, seed: int = 0
) -> dict[str, Any]:
    """Paired permutation test of AUC(predicted) - AUC(manual) = 0 (two-sided), swapping each case's volumes.

    Args: ``predicted``, ``manual``: ``(n,)`` volumes; ``positive``, ``strata`` as :func:`stratified_auc`.
    Returns ``{"statistic": AUC difference, "p": p}``.
    """
    from scipy.stats import permutation_test

    def statistic(p, m, axis=-1):
        return stratified_auc(np.moveaxis(p, axis, -1), positive, strata) - stratified_auc(
            np.moveaxis(m, axis, -1), positive, strata
        )

    predicted, manual = np.asarray(predicted, np.float64), np.asarray(manual, np.float64)
    observed = float(statistic(predicted, manual))
    if not np.isfinite(observed):
        return {"statistic": None, "p": None}
    if np.array_equal(predicted, manual):
        return {"statistic": 0.0, "p": 1.0}
    result = permutation_test(
        (predicted, manual),
        statistic,
        permutation_type="samples",
        vectorized=True,
        n_resamples=n_resamples,
        alternative="two-sided",
        rng=np.random.default_rng(seed),
    )
    return {"statistic": observed, "p": float(min(1.0, result.pvalue))}


def correct(pvalues: Sequence[float], method: str = "holm") -> list[float]:
    """Family-wise (``holm``) or false-discovery-rate (``fdr_bh``) corrected p-values (``multipletests``)."""
    from statsmodels.stats.multitest import multipletests

    if method not in CORRECTIONS:
        raise ValueError(f"correction must be one of {sorted(CORRECTIONS)}, got {method!r}")
    if not len(pvalues):
        return []
    return [float(p) for p in multipletests(np.asarray(pvalues, dtype=np.float64), method=method)[1]]


def trend(x, y, strata=None) -> dict[str, Any]:
    """Least-squares slope of ``y`` on ``x`` within strata (``y ~ x + stratum``, ``statsmodels`` OLS), 95% t
    interval: the ``{"slope", "ci_low", "ci_high", "intercept", "r", "n"}`` of
    :func:`common.audit.measure.fit_trend` with ``intercept`` that of the first stratum and ``r`` None."""
    import statsmodels.api as sm

    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    strata = np.asarray(strata, dtype=object)
    keep = np.isfinite(x) & np.isfinite(y)
    out: dict[str, Any] = {"slope": None, "ci_low": None, "ci_high": None, "intercept": None, "r": None}
    out["n"] = int(keep.sum())
    x, y, strata = x[keep], y[keep], strata[keep]
    levels = sorted(set(strata.tolist()))
    design = np.column_stack([np.ones_like(x), x, *[(strata == s).astype(float) for s in levels[1:]]])
    if x.size < design.shape[1] + 1 or np.linalg.matrix_rank(design) < design.shape[1]:
        return out
    fit = sm.OLS(y, design).fit()
    low, high = fit.conf_int(0.05)[1]
    out.update(slope=float(fit.params[1]), intercept=float(fit.params[0]))
    if np.isfinite(low) and np.isfinite(high):
        out.update(ci_low=float(low), ci_high=float(high))
    elif np.allclose(fit.resid, 0.0):
        out.update(ci_low=out["slope"], ci_high=out["slope"])
    return out

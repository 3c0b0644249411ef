"""Cross-seed statistics of a study's per-seed summaries.

:func:`ranking_agreement` asks whether an ordering of settings (e.g. six down-sampling operators by their
group-L volume bias) is above seed noise: Kendall's coefficient of concordance W over seeds, with a permutation
p-value (the chance that independent random orderings per seed agree as well), and the spread between the
settings' medians beside the typical spread of one setting over seeds.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

__all__ = ["kendall_w", "ranking_agreement"]


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



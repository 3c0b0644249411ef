import numpy as np
import pytest
from scipy import stats

from common.attribution.statistics import (
    deviation_correlation,
    deviation_correlation_test,
    localisation_scores,
    partial_correlation,
    partial_correlation_bootstrap,
    partial_correlation_test,
    pearson_permutation_test,
    profile_correlations,
    residualise,
    top_regions,
)


def _orthonormal(r, k, seed=0):
    """k centred, mutually orthogonal unit vectors of length r (columns of a QR factor)."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((r, k))
    a -= a.mean(axis=0)
    q, _ = np.linalg.qr(a)
    return q.T  # still centred: span of centred columns


def test_identical_profiles_give_r_one_and_smallest_p():
    rng = np.random.default_rng(1)
    sa = rng.standard_normal(64)
    ba = rng.standard_normal(64)
    res = profile_correlations(sa.copy(), sa, ba, num_permutations=999, seed=0)
    assert res["ts_sa"]["r"] == pytest.approx(1.0)
    assert res["ts_sa"]["p"] == pytest.approx(1 / 1000)
    assert partial_correlation(sa.copy(), sa, ba) == pytest.approx(1.0)
    # the other two pairs are the same independent pair, seen from either side
    assert res["ts_ba"]["r"] == pytest.approx(res["sa_ba"]["r"])
    assert abs(res["ts_ba"]["r"]) < 0.35


def test_profile_correlations_pairs_are_not_swapped():
    e1, e2, e3 = _orthonormal(30, 3)
    ts, sa, ba = e1 + e2, e1 + 0.2 * e3, e2 - e3
    res = profile_correlations(ts, sa, ba, num_permutations=99, seed=0)
    assert res["ts_sa"]["r"] == pytest.approx(np.corrcoef(ts, sa)[0, 1])
    assert res["ts_ba"]["r"] == pytest.approx(np.corrcoef(ts, ba)[0, 1])
    assert res["sa_ba"]["r"] == pytest.approx(np.corrcoef(sa, ba)[0, 1])
    assert len({round(v["r"], 6) for v in res.values()}) == 3


def test_partial_correlation_hand_case():
    # z = e1, x = 2 e1 + e2, y = -e1 + e2 + e3: residuals e2 and e2 + e3 -> r = 1/sqrt(2)
    e1, e2, e3 = _orthonormal(20, 3, seed=4)
    x, y, z = 2 * e1 + e2, -e1 + e2 + e3, e1
    assert partial_correlation(x, y, z) == pytest.approx(1 / np.sqrt(2))
    # conditioning on a different variable gives a different answer (argument order matters)
    # residuals of x and z on y: r(x, z | y) = (r_xz - r_xy r_zy) / ...
    assert partial_correlation(x, z, y) != pytest.approx(partial_correlation(x, y, z))
    # the deviation statistic keeps y raw: corr(e2, -e1 + e2 + e3) = 1/sqrt(3)
    assert deviation_correlation(x, y, z) == pytest.approx(1 / np.sqrt(3))


def test_partial_correlation_matches_lstsq_residuals():
    rng = np.random.default_rng(7)
    for _ in range(5):
        z = rng.standard_normal(40)
        x = 0.8 * z + rng.standard_normal(40)
        y = -0.5 * z + 0.3 * x + rng.standard_normal(40)
        design = np.column_stack([np.ones(40), z])
        rx = x - design @ np.linalg.lstsq(design, x, rcond=None)[0]
        ry = y - design @ np.linalg.lstsq(design, y, rcond=None)[0]
        np.testing.assert_allclose(residualise(x, z), rx, atol=1e-12)
        assert partial_correlation(x, y, z) == pytest.approx(np.corrcoef(rx, ry)[0, 1], abs=1e-12)
        assert partial_correlation_test(x, y, z, num_permutations=9)[0] == pytest.approx(
            partial_correlation(x, y, z), abs=1e-12
        )


def test_ts_as_baseline_plus_shortcut_has_known_partial_correlation():
    e_ba, e_sa, e_noise = _orthonormal(64, 3, seed=2)
    ba, sa = 10 + e_ba, 10 + e_sa
    ts = ba + sa + 0.5 * e_noise  # residual on ba: e_sa + 0.5 e_noise
    assert partial_correlation(ts, sa, ba) == pytest.approx(1 / np.sqrt(1.25))
    assert np.corrcoef(ts, sa)[0, 1] == pytest.approx(1 / np.sqrt(2.25))
    # without noise TS is exactly baseline + shortcut: r(TS, SA | BA) = 1
    assert partial_correlation(ba + sa, sa, ba) == pytest.approx(1.0)


def test_permutation_p_is_small_for_r_one_and_uniform_under_independence():
    rng = np.random.default_rng(11)
    x = rng.standard_normal(64)
    assert pearson_permutation_test(x, 3 * x + 1, num_permutations=499, seed=1) == pytest.approx((1.0, 1 / 500))
    ps = np.array(
        [
            pearson_permutation_test(rng.standard_normal(20), rng.standard_normal(20), num_permutations=99, seed=s)[1]
            for s in range(300)
        ]
    )
    assert stats.kstest(ps, "uniform").pvalue > 0.01
    assert 0.01 <= np.mean(ps <= 0.05) <= 0.1


def test_permutation_p_is_seeded():
    rng = np.random.default_rng(5)
    x, y = rng.standard_normal(16), rng.standard_normal(16)
    y = y + 0.5 * x
    a = pearson_permutation_test(x, y, num_permutations=199, seed=3)
    assert pearson_permutation_test(x, y, num_permutations=199, seed=3) == a
    assert deviation_correlation_test(x, y, rng.standard_normal(16), num_permutations=19, seed=0)[1] >= 1 / 20


def _rank_sets(n=30, r=16, seed=0):
    rng = np.random.default_rng(seed)
    shared, base = rng.standard_normal(r), rng.standard_normal(r)

    def ranks(a, b):
        s = a * shared + b * base + rng.standard_normal((n, r))
        return stats.rankdata(-s, axis=1)

    return ranks(1.0, 1.0), ranks(1.2, 0.0), ranks(0.0, 1.2)


def test_bootstrap_interval_contains_estimate_and_is_reproducible():
    ts, sa, ba = _rank_sets()
    est, lo, hi = partial_correlation_bootstrap(ts, sa, ba, num_bootstrap=300, seed=9)
    assert est == pytest.approx(partial_correlation(np.median(ts, 0), np.median(sa, 0), np.median(ba, 0)))
    assert lo <= est <= hi and lo < hi
    assert partial_correlation_bootstrap(ts, sa, ba, num_bootstrap=300, seed=9) == (est, lo, hi)
    assert partial_correlation_bootstrap(ts, sa, ba, num_bootstrap=300, seed=10) != (est, lo, hi)
    _, lo90, hi90 = partial_correlation_bootstrap(ts, sa, ba, num_bootstrap=300, seed=9, level=0.9)
    assert lo <= lo90 <= hi90 <= hi
    # swapping SA and BA asks a different question
    assert partial_correlation_bootstrap(ts, ba, sa, num_bootstrap=10, seed=9)[0] != pytest.approx(est)


def test_bootstrap_with_deviation_statistic():
    ts, sa, ba = _rank_sets(seed=3)
    est, lo, hi = partial_correlation_bootstrap(ts, sa, ba, 200, seed=1, statistic=deviation_correlation)
    assert est == pytest.approx(deviation_correlation(np.median(ts, 0), np.median(sa, 0), np.median(ba, 0)))
    assert lo <= est <= hi


def test_localisation_peaks_where_ts_and_sa_agree_beyond_ba():
    rng = np.random.default_rng(8)
    r = 25
    ba = rng.standard_normal(r)
    ts = ba + 0.1 * rng.standard_normal(r)
    sa = 0.1 * rng.standard_normal(r)
    ts[13] += 2.0
    sa[13] += 2.0
    ts[4] += 2.0  # TS alone deviates here: not a shortcut region
    scores = localisation_scores(ts, sa, ba)
    assert np.argmax(scores) == 13
    assert top_regions(scores, 1)[0] == 13
    assert scores[13] > 3 * np.abs(np.delete(scores, 13)).max()
    # mean score = (R - 1) / R * partial correlation
    assert scores.mean() == pytest.approx((r - 1) / r * partial_correlation(ts, sa, ba))
    # conditioning on SA instead of BA loses the peak
    assert np.argmax(localisation_scores(ts, ba, sa)) != 13


def test_top_regions_order_and_ties():
    s = np.array([0.5, 2.0, -1.0, 2.0, 1.0])
    np.testing.assert_array_equal(top_regions(s, 3), [1, 3, 4])
    assert top_regions(s, 0).size == 0
    with pytest.raises(ValueError):
        top_regions(s, 6)

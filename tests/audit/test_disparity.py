"""``common.audit.disparity``: adjusted means, gaps, tests and corrections against hand-computed values and SciPy."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import stats

from common.audit.disparity import (
    adjusted_means,
    auc_difference_test,
    correct,
    disparity_summary,
    group_difference_test,
    stratified_auc,
    trend,
)
from common.metrics import group_auc


def test_group_means_without_control_are_plain_means():
    y = [0.9, 0.8, 0.7, 0.5, 0.6]
    means, weights, _cells = adjusted_means(y, list("aaabb"), ["a", "b"])
    assert means == pytest.approx([0.8, 0.55])
    assert weights.sum(axis=0) == pytest.approx([1.0, 1.0])


def test_site_adjusted_means_by_hand():
    # additive by construction: group b is 1 higher, site y is 2 higher; a is mostly at y, b mostly at x
    groups = list("aaaabbbb")
    sites = list("xyyyxxxy")
    y = np.array([1.0, 3.0, 3.0, 3.0, 2.0, 2.0, 2.0, 4.0])
    share_y = 4 / 8
    means, _w, _c = adjusted_means(y, groups, ["a", "b"], sites)
    assert means == pytest.approx([1 + 2 * share_y, 2 + 2 * share_y])
    raw = [y[:4].mean(), y[4:].mean()]  # 2.5 and 2.5: the site mix hides the group difference
    assert raw == pytest.approx([2.5, 2.5])
    d = disparity_summary({"volume_bias": y}, groups, ["a", "b"], sites, n_resamples=200)
    assert d["volume_bias"]["highest"] == "b" and d["volume_bias"]["lowest"] == "a"
    assert d["volume_bias"]["gap"] == pytest.approx({"estimate": 1.0, "ci_low": 1.0, "ci_high": 1.0})
    test = group_difference_test(y, groups, ["a", "b"], sites)
    assert test["p"] == 0.0 and test["statistic"] == float("inf")  # exact fit, a real difference
    unadjusted = group_difference_test(y, groups, ["a", "b"])
    assert unadjusted["statistic"] == pytest.approx(0.0) and unadjusted["p"] == pytest.approx(1.0)


def test_confounded_group_and_site_named():
    fit = adjusted_means([1.0, 2.0, 3.0, 4.0], list("aabb"), ["a", "b"], list("xxyy"))
    assert isinstance(fit, str) and "confounded" in fit
    d = disparity_summary({"dice": [0.9, 0.8, 0.7, 0.6]}, list("aabb"), ["a", "b"], list("xxyy"), n_resamples=50)
    assert "confounded" in d["dice"]["error"]
    assert group_difference_test([0.9, 0.8, 0.7, 0.6], list("aabb"), ["a", "b"], list("xxyy"))["p"] is None


def test_two_group_test_is_welch():
    rng = np.random.default_rng(1)
    a, b = rng.normal(0.8, 0.05, 7), rng.normal(0.7, 0.15, 5)
    y = np.concatenate([a, b])
    test = group_difference_test(y, ["a"] * 7 + ["b"] * 5, ["a", "b"])
    welch = stats.ttest_ind(a, b, equal_var=False)
    assert test["statistic"] == pytest.approx(welch.statistic**2)
    assert test["df"] == [1, 10]
    assert 0 < test["p"] < 1


def test_three_groups_and_leverage_one_case_left_out():
    # the only case of site z fits its own site term exactly; it carries nothing on the groups
    y = np.array([1.0, 1.2, 0.9, 2.0, 2.2, 2.1, 3.1, 2.9, 3.0, 9.0])
    groups = ["a"] * 3 + ["b"] * 3 + ["c"] * 3 + ["a"]
    sites = ["x"] * 9 + ["z"]
    with_z = group_difference_test(y, groups, ["a", "b", "c"], sites)
    without = group_difference_test(y[:9], groups[:9], ["a", "b", "c"])
    assert with_z["n"] == 9
    assert with_z["statistic"] == pytest.approx(without["statistic"])
    assert with_z["df"] == [2, 6]


def test_dice_disparity_by_hand():
    dice = [0.9, 0.9, 0.8, 0.6, 0.7, 0.5]
    d = disparity_summary({"dice": dice}, list("aaabbb"), ["a", "b"], n_resamples=500)["dice"]
    assert d["means"] == pytest.approx({"a": 0.8667, "b": 0.6}, abs=1e-4)
    assert (d["worst"], d["best"]) == ("b", "a")
    assert d["gap"]["estimate"] == pytest.approx(0.8 + 0.2 / 3 - 0.6)
    assert d["ratio"]["estimate"] == pytest.approx(0.6 / (2.6 / 3))
    sd = np.std([2.6 / 3, 0.6])  # population sd of the two group means
    assert d["equity_scaled"]["estimate"] == pytest.approx(np.mean(dice) / (1 + sd))
    for key in ("gap", "ratio", "equity_scaled"):
        assert d[key]["ci_low"] <= d[key]["estimate"] <= d[key]["ci_high"]
    assert 0 < d["gap"]["ci_low"] < d["gap"]["ci_high"] < 0.5


def test_false_positive_worst_is_highest():
    d = disparity_summary({"fp_rate": [0.1, 0.2, 0.5, 0.7]}, list("aabb"), ["a", "b"], n_resamples=100)["fp_rate"]
    assert (d["worst"], d["best"]) == ("b", "a")
    assert d["gap"]["estimate"] == pytest.approx(0.45)
    assert "ratio" not in d


def test_nan_values_and_single_group_left():
    d = disparity_summary({"dice": [0.9, np.nan, np.nan, np.nan]}, list("aabb"), ["a", "b"], n_resamples=10)
    assert d["dice"]["error"] == "fewer than two groups have values"
    assert d["dice"]["n"] == {"a": 1, "b": 0}


def test_stratified_auc_matches_group_auc_and_hand_count():
    scores = [3.0, 1.0, 2.0, 5.0, 4.0, 6.0, 2.0, 8.0, 1.0]
    groups = np.array(list("aaaaabbbb"))
    assert stratified_auc(scores, groups == "b") == pytest.approx(group_auc(scores, groups, "b"))
    # two strata; pairs only within each: x: pos {5} vs neg {1, 2} -> 2 of 2; y: pos {1, 3} vs neg {2} -> 1 of 2
    s = stratified_auc([5.0, 1.0, 2.0, 1.0, 3.0, 2.0], np.array([1, 0, 0, 1, 1, 0], bool), list("xxxyyy"))
    assert s == pytest.approx(3 / 4)
    batch = stratified_auc(np.array([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]]), np.array([0, 0, 1], bool))
    assert batch.tolist() == [1.0, 0.0]


def test_auc_difference_permutation_p_by_enumeration():
    predicted = np.array([1.0, 2.0, 3.0, 6.0, 5.0, 4.0])
    manual = np.array([4.0, 5.0, 6.0, 1.0, 2.0, 3.0])
    positive = np.array([0, 0, 0, 1, 1, 1], bool)
    test = auc_difference_test(predicted, manual, positive, n_resamples=5000)
    assert test["statistic"] == pytest.approx(1.0 - 0.0)
    # every one of the 2^6 swaps, by hand: the share with |difference| >= the observed one
    observed = abs(test["statistic"])
    hits = 0
    for swap in itertools.product([False, True], repeat=6):
        swap = np.array(swap)
        p, m = np.where(swap, manual, predicted), np.where(swap, predicted, manual)
        hits += abs(stratified_auc(p, positive) - stratified_auc(m, positive)) >= observed - 1e-12
    assert test["p"] == pytest.approx(hits / 64)
    assert auc_difference_test(manual, manual, positive) == {"statistic": 0.0, "p": 1.0}


def test_corrections_by_hand():
    p = [0.01, 0.04, 0.03]
    # Holm: sorted 0.01 x 3 = 0.03, 0.03 x 2 = 0.06, 0.04 x 1 -> 0.06 (monotone)
    assert correct(p) == pytest.approx([0.03, 0.06, 0.06])
    # Benjamini-Hochberg: 0.01 x 3/1, 0.03 x 3/2 = 0.045, 0.04 x 3/3 -> min from the top: 0.04, 0.04
    assert correct(p, "fdr_bh") == pytest.approx([0.03, 0.04, 0.04])
    assert correct([]) == []
    with pytest.raises(ValueError, match="correction must be one of"):
        correct(p, "bonferonni")


def test_trend_within_strata():
    # slope 0.1 in both sites, site y offset by 0.5: a pooled line would be steeper (y has the larger x)
    x = np.array([1.0, 2.0, 3.0, 3.0, 4.0, 5.0])
    strata = list("xxxyyy")
    y = 0.1 * x + np.where(np.array(strata) == "y", 0.5, 0.0)
    t = trend(x, y, strata)
    assert t["slope"] == pytest.approx(0.1)
    assert t["ci_low"] == pytest.approx(0.1) and t["ci_high"] == pytest.approx(0.1)
    assert t["n"] == 6
    assert stats.linregress(x, y).slope > 0.2

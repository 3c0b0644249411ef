"""Kendall's W and the cross-seed ranking agreement, against values computed by hand."""

import numpy as np
import pytest

from common.study.stats import kendall_w, ranking_agreement


def test_kendall_w_by_hand():
    # two raters, three items: rank totals 2, 5, 5 (mean 4), S = 4 + 1 + 1 = 6, W = 12 * 6 / (4 * 24) = 0.75
    assert kendall_w(np.array([[1, 2, 3], [1, 3, 2]])) == pytest.approx(0.75)
    assert kendall_w(np.array([[1, 2, 3, 4]] * 3)) == pytest.approx(1.0)
    # perfectly opposed pair: every total equals the mean
    assert kendall_w(np.array([[1, 2, 3, 4], [4, 3, 2, 1]])) == pytest.approx(0.0)


def test_kendall_w_broadcasts_over_leading_axes():
    ranks = np.array([[[1, 2, 3], [1, 3, 2]], [[1, 2, 3], [1, 2, 3]]])
    np.testing.assert_allclose(kendall_w(ranks), [0.75, 1.0])


def test_ranking_agreement_identical_orderings():
    values = {"0": {"a": 0.1, "b": 0.3, "c": 0.2, "d": 0.5}, "1": {"a": 1.1, "b": 1.3, "c": 1.2, "d": 1.5}}
    out = ranking_agreement(values, draws=20_000)
    assert out["kendall_w"] == pytest.approx(1.0)
    # two seeds, four items: the second seed matches the first by chance with probability 1 / 4! = 0.0417
    assert out["p_value"] == pytest.approx(1 / 24, abs=0.005)
    assert out["items"] == ["a", "b", "c", "d"] and out["seeds"] == ["0", "1"]
    # medians over seeds: 0.6, 0.8, 0.7, 1.0 -> range 0.4; each item's seed range is 1.0
    assert out["median_range"] == pytest.approx(0.4) and out["seed_range"] == pytest.approx(1.0)


def test_ranking_agreement_opposed_orderings_are_not_significant():
    values = {"0": {"a": 1, "b": 2, "c": 3}, "1": {"a": 3, "b": 2, "c": 1}}
    out = ranking_agreement(values, draws=20_000)
    assert out["kendall_w"] == pytest.approx(0.0) and out["p_value"] == pytest.approx(1.0)


def test_ranking_agreement_drops_missing_items_and_needs_enough():
    values = {"0": {"a": 1, "b": 2, "c": 3, "d": None}, "1": {"a": 1, "b": 2, "c": 3, "d": 4}}
    assert ranking_agreement(values)["items"] == ["a", "b", "c"]
    assert ranking_agreement({"0": {"a": 1, "b": 2, "c": 3}}) is None
    assert ranking_agreement({"0": {"a": 1, "b": 2}, "1": {"a": 2, "b": 1}}) is None


def test_claim_interval_by_hand_and_its_one_sided_tests():
    from scipy import stats as st

    from common.study.stats import claim_interval

    out = claim_interval([1.0, 2.0, 3.0, None], margin=0.0, direction=">")
    half = st.t.ppf(0.975, 2) * 1.0 / 3**0.5  # sd 1
    assert out["n"] == 3 and out["mean"] == 2.0
    assert out["ci95"] == pytest.approx([2.0 - half, 2.0 + half])
    t = 2.0 / (1.0 / 3**0.5)
    assert out["p_support"] == pytest.approx(st.t.sf(t, 2)) and out["p_refute"] == pytest.approx(st.t.cdf(t, 2))
    # the paper's side flips the tests, not the interval
    other = claim_interval([1.0, 2.0, 3.0], margin=0.0, direction="<")
    assert other["ci95"] == out["ci95"]
    assert other["p_support"] == pytest.approx(out["p_refute"]) and other["p_refute"] == pytest.approx(out["p_support"])


def test_claim_interval_degenerate_cases():
    from common.study.stats import claim_interval

    assert claim_interval([0.7], 0.5)["ci95"] == [None, None] and claim_interval([0.7], 0.5)["p_support"] == 1.0
    same = claim_interval([1.0, 1.0, 1.0], 0.9, ">")
    assert same["ci95"] == [1.0, 1.0] and same["p_support"] == 0.0 and same["p_refute"] == 1.0
    on_margin = claim_interval([0.9, 0.9], 0.9, ">")
    assert on_margin["p_support"] == 1.0 and on_margin["p_refute"] == 1.0


def test_holm_by_hand():
    from common.study.stats import holm

    # sorted 0.01, 0.03, 0.04 -> 3 x 0.01, 2 x 0.03, max(0.06, 1 x 0.04)
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])
    assert holm([]) == []


def test_verdicts_correct_the_primary_claims_only():
    from common.study.stats import verdicts

    iv = {"p_support": 0.02, "p_refute": 0.98}
    # alone, p 0.02 < 0.025 supports; two primary claims at 0.02 each become 0.04 after Holm
    assert verdicts([iv], [True]) == ["supported"]
    assert verdicts([iv, iv], [True, True]) == ["inconclusive", "inconclusive"]
    assert verdicts([iv, iv], [True, False]) == ["supported", "supported"]
    assert verdicts([{"p_support": 0.9, "p_refute": 0.001}], [True]) == ["refuted"]


def test_page_trend_by_hand_and_its_direction():
    from common.study.stats import page_trend

    # 3 seeds, each increasing over 4 levels: ranks 1..4 in every block, L = 3 * (1 + 4 + 9 + 16) = 90, the maximum;
    # exact p = (1 / 4!)^3
    rising = {s: {"a": 0.1 * i, "b": 0.2 + i, "c": 3.0, "d": 4.0 + i} for i, s in enumerate("012")}
    out = page_trend(rising, ["a", "b", "c", "d"])
    assert out["L"] == 90.0 and out["p_value"] == pytest.approx((1 / 24) ** 3)
    falling = page_trend(rising, ["d", "c", "b", "a"])
    assert falling["L"] == 3 * (4 + 6 + 6 + 4) and falling["p_value"] > 0.99  # the other direction: no trend
    assert page_trend({"0": {"a": 1, "b": 2, "c": 3}, "1": {"a": 1, "b": None, "c": 3}}, "abc") is None

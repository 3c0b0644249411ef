"""Group AUC: hand cases (perfect, reversed, ties), no folding, and agreement with sklearn."""

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from common.metrics import group_auc


def test_hand_cases():
    assert group_auc([1.0, 2.0, 3.0, 4.0], ["H", "H", "L", "L"], "L") == 1.0
    assert group_auc([1.0, 2.0, 3.0, 4.0], ["L", "L", "H", "H"], "L") == 0.0  # reversed, not folded to 1
    assert group_auc([5.0, 5.0, 5.0, 5.0], ["H", "L", "H", "L"], "L") == 0.5  # all tied
    # pairs (pos, neg): (2 vs 1) win, (2 vs 3) loss, (3 vs 1) win, (3 vs 3) tie -> (1 + 0 + 1 + 0.5) / 4
    assert group_auc([1.0, 2.0, 3.0, 3.0], [0, 1, 0, 1], 1) == pytest.approx(0.625)


def test_reversed_ordering_is_below_half():
    rng = np.random.default_rng(3)
    groups = np.repeat(["H", "L"], 20)
    scores = np.where(groups == "L", rng.normal(1.0, 1.0, 40), rng.normal(0.0, 1.0, 40))
    auc = group_auc(scores, groups, "L")
    assert auc > 0.5
    assert group_auc(-scores, groups, "L") == pytest.approx(1.0 - auc)
    assert group_auc(scores, groups, "H") == pytest.approx(1.0 - auc)


@pytest.mark.parametrize("seed", range(4))
def test_matches_sklearn_with_ties_and_several_groups(seed):
    rng = np.random.default_rng(seed)
    groups = rng.integers(0, 3, size=60)
    scores = rng.integers(0, 6, size=60).astype(float) + groups * 0.5  # many ties
    assert group_auc(scores, groups, 2) == pytest.approx(roc_auc_score(groups == 2, scores), abs=1e-12)


def test_bad_input():
    with pytest.raises(ValueError, match="needs samples in and outside group 'L'"):
        group_auc([1.0, 2.0], ["H", "H"], "L")
    with pytest.raises(ValueError, match="finite"):
        group_auc([1.0, np.nan], ["H", "L"], "L")
    with pytest.raises(ValueError, match="differ in length"):
        group_auc([1.0, 2.0, 3.0], ["H", "L"], "L")


# --- found by mutation testing (tests/MUTANTS.md) ---------------------------------------------------------------


def test_any_array_shape_is_flattened():
    scores = np.array([[1.0, 2.0, 3.5], [3.0, 4.0, 0.5]])
    groups = np.array([["H", "H", "L"], ["L", "L", "H"]])
    flat = group_auc(scores.ravel(), groups.ravel(), "L")
    assert group_auc(scores, groups, "L") == flat
    assert group_auc(scores.T, groups.T, "L") == group_auc(scores.T.ravel(), groups.T.ravel(), "L")
    assert flat == pytest.approx(group_auc([1, 2, 3.5, 3, 4, 0.5], list("HHLLLH"), "L"))


def test_error_messages_count_the_bad_values_and_list_the_groups():
    with pytest.raises(ValueError, match=r"scores must be finite; got 2 NaN/Inf value\(s\)"):
        group_auc([1.0, np.nan, np.inf, 2.0, 3.0], ["H", "L", "H", "L", "L"], "L")
    # groups are listed sorted as text (any label type sorts): 10 before 9
    with pytest.raises(ValueError, match=r"0 of 3 are in it \(groups present: \[10, 9\]\)"):
        group_auc([1.0, 2.0, 3.0], [9, 10, 9], 3)
    with pytest.raises(ValueError, match=r"2 of 2 are in it \(groups present: \[10\]\)"):
        group_auc([1.0, 2.0], [10, 10], 10)


# --- binary_auroc / binary_average_precision: the project's one AUROC/AP path (MONAI) -----------------------------


def test_binary_auroc_and_ap_hand_cases_with_ties():
    from common.metrics.auc import binary_auroc, binary_average_precision

    # pairs (pos, neg): 0.9>0.5, 0.9>0.1, 0.5=0.5 (1/2), 0.5>0.1 -> 3.5 / 4
    scores, positive = [0.9, 0.5, 0.5, 0.1], [1, 1, 0, 0]
    assert binary_auroc(scores, positive) == 0.875
    # thresholds 0.9: P=1, R=1/2; 0.5 (tie enters together): P=2/3, R=1 -> 1/2 * 1 + 1/2 * 2/3
    assert binary_average_precision(scores, positive) == pytest.approx(1 / 2 + 1 / 3, abs=1e-15)
    # asymmetric: one positive ranked last -> AUROC 0, AP = 1/4
    assert binary_auroc([4.0, 3.0, 2.0, 1.0], [0, 0, 0, 1]) == 0.0
    assert binary_average_precision([4.0, 3.0, 2.0, 1.0], [0, 0, 0, 1]) == 0.25


def test_binary_degenerate_cases():
    from common.metrics.auc import binary_auroc, binary_average_precision

    assert math.isnan(binary_auroc([0.2, 0.4], [0, 0])) and math.isnan(binary_auroc([0.2, 0.4], [1, 1]))
    assert math.isnan(binary_auroc([], []))
    assert math.isnan(binary_average_precision([0.2, 0.4], [0, 0]))
    assert binary_average_precision([0.2, 0.4], [1, 1]) == 1.0  # every threshold has precision 1 (sklearn agrees)
    with pytest.raises(ValueError, match="finite"):
        binary_auroc([0.1, np.nan], [0, 1])
    with pytest.raises(ValueError, match="differ in length"):
        binary_average_precision([0.1, 0.2, 0.3], [0, 1])


@pytest.mark.parametrize("seed", range(6))
def test_binary_auroc_and_ap_match_sklearn_on_ties(seed):
    from sklearn.metrics import average_precision_score

    from common.metrics.auc import binary_auroc, binary_average_precision

    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 5, size=50).astype(float)  # many ties
    positive = rng.random(50) < 0.3 + 0.1 * seed
    assert binary_auroc(scores, positive) == pytest.approx(roc_auc_score(positive, scores), abs=1e-14)
    assert binary_average_precision(scores, positive) == pytest.approx(
        average_precision_score(positive, scores), abs=1e-14
    )

"""ROC AUC and average precision of a score ranking a binary outcome, and the group-classification AUC.

Every AUROC and AP of the project goes through :func:`binary_auroc` and :func:`binary_average_precision`,
thin wrappers of MONAI's ``compute_roc_auc`` and ``compute_average_precision`` that check the input and return
NaN (instead of a warning) when only one class is present.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from monai.metrics import compute_average_precision, compute_roc_auc

__all__ = ["binary_auroc", "binary_average_precision", "group_auc"]


def _binary_inputs(scores, positive) -> tuple[torch.Tensor, torch.Tensor]:
    """Checked ``(N,)`` float64 scores and 0/1 int64 labels, as MONAI takes them."""
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    y = np.asarray(positive).astype(bool).reshape(-1)
    if s.shape != y.shape:
        raise ValueError(f"scores ({s.size}) and positive ({y.size}) differ in length")
    if not np.isfinite(s).all():
        raise ValueError(f"scores must be finite; got {int((~np.isfinite(s)).sum())} NaN/Inf value(s)")
    return torch.from_numpy(s), torch.from_numpy(y.astype(np.int64))


def binary_auroc(scores, positive) -> float:
    """ROC AUC of ranking ``positive`` samples above the others by ``scores`` (higher = more likely positive).

    The Mann-Whitney probability ``P(s_pos > s_neg) + P(s_pos == s_neg) / 2`` (ties count 1/2; MONAI's
    ``compute_roc_auc``). ``scores``: ``(N,)`` finite numbers; ``positive``: ``(N,)`` bools or 0/1.
    NaN when all or none of the samples are positive.
    """
    inputs = _binary_inputs(scores, positive)
    if not inputs[1].any() or inputs[1].all():
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(compute_roc_auc(*inputs))


def binary_average_precision(scores, positive) -> float:
    """Average precision of ranking ``positive`` samples first by ``scores`` (higher = more likely positive).

    ``AP = sum_k (R_k - R_{k-1}) P_k`` over the distinct score thresholds in decreasing order (tied scores enter
    together), ``P_k``/``R_k`` the precision and recall at threshold ``k``: scikit-learn's definition, computed by
    MONAI's ``compute_average_precision``. Arguments as :func:`binary_auroc`. NaN without a positive sample;
    1.0 when every sample is positive (precision is 1 at every threshold; scikit-learn's value, where MONAI
    returns NaN).
    """
    inputs = _binary_inputs(scores, positive)
    if not inputs[1].any():
        return float("nan")
    if inputs[1].all():
        return 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(compute_average_precision(*inputs))


def group_auc(scores, groups, positive) -> float:
    """ROC AUC of telling group ``positive`` from all other samples by ``scores``, higher score meaning ``positive``.

    The AUC is taken over all thresholds with tied scores counted 1/2 (:func:`binary_auroc`). It is **not** folded
    to ``max(AUC, 1 - AUC)``: a score that orders the groups the wrong way round gives an AUC below 0.5 (0.0 for a
    perfectly reversed ordering). To orient by a reference, e.g. ground-truth volumes, pass the same ``positive``
    group for both the reference and the predicted scores.

    Args:
        scores: ``(N,)`` finite numbers.
        groups: ``(N,)`` group labels of any comparable type (str, int ...).
        positive: the label of the positive group.

    Raises:
        ValueError: mismatched lengths, non-finite scores, or no sample in / outside the positive group.
    """
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    groups = np.asarray(groups).reshape(-1)
    if scores.shape != groups.shape:
        raise ValueError(f"scores ({scores.size}) and groups ({groups.size}) differ in length")
    if not np.isfinite(scores).all():
        raise ValueError(f"scores must be finite; got {int((~np.isfinite(scores)).sum())} NaN/Inf value(s)")
    is_positive = groups == positive
    n_pos = int(is_positive.sum())
    if n_pos == 0 or n_pos == groups.size:
        raise ValueError(
            f"group AUC needs samples in and outside group {positive!r}: {n_pos} of {groups.size} are in it "
            f"(groups present: {sorted(set(groups.tolist()), key=str)})"
        )
    return binary_auroc(scores, is_positive)

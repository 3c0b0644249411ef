"""Group-classification ROC AUC: how well a score (e.g. a structure's volume) tells one group from the others."""

from __future__ import annotations

import warnings

import numpy as np
import torch
from monai.metrics import compute_roc_auc

__all__ = ["group_auc"]


def group_auc(scores, groups, positive) -> float:
    """ROC AUC of telling group ``positive`` from all other samples by ``scores``, higher score meaning ``positive``.

    The AUC is taken over all thresholds with tied scores counted 1/2, i.e. the Mann-Whitney probability
    ``P(s_pos > s_neg) + P(s_pos == s_neg) / 2`` (computed by MONAI's ``compute_roc_auc``). It is **not** folded
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
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(compute_roc_auc(torch.from_numpy(scores), torch.from_numpy(is_positive.astype(np.int64))))

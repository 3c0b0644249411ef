"""What super-resolution does to a downstream grey-matter segmentation: area bias and Dice, by group.

The segmenter is fixed and deliberately simple, so that it is fitted once and never sees a super-resolved image:
an intensity classifier of T1 brain tissue. :func:`fit_tissue_thresholds` runs a three-class 1D k-means
(CSF < grey matter < white matter) on the foreground voxels (intensity > ``foreground``) of high-resolution
*training* images and returns the two class boundaries (midpoints between neighbouring centres);
:func:`segment_grey_matter` labels ``foreground < x``, ``t_csf_gm <= x < t_gm_wm`` as grey matter.

:class:`GreyMatterAreaMetric` (a MONAI ``CumulativeIterationMetric``) segments a super-resolved image and the true
high-resolution image with the same thresholds and buffers, per image, the grey-matter area bias
``(A_sr - A_hr) / A_hr`` (a fraction; positive: the SR image has more grey matter) and the Dice of the two
grey-matter masks; :meth:`GreyMatterAreaMetric.aggregate` gives ``{"gm_area_bias": {group: median},
"gm_dice": {group: median}}`` (medians over the group's images).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch

from common.metrics.grouped import GroupedScoresMetric

DOWNSTREAM_NAMES: tuple[str, ...] = ("gm_area_bias", "gm_dice")


def fit_tissue_thresholds(
    images: Iterable[np.ndarray | torch.Tensor], foreground: float = 0.05, iterations: int = 100
) -> tuple[float, float]:
    """Boundaries ``(t_csf_gm, t_gm_wm)`` of a three-class 1D k-means of the foreground intensities of ``images``.

    Deterministic: centres start at the 1/6, 1/2 and 5/6 quantiles. Raises ``ValueError`` without foreground.
    """
    values = np.concatenate([np.asarray(x, dtype=np.float64).ravel() for x in images])
    values = values[values > foreground]
    if values.size < 3:
        raise ValueError(f"fit_tissue_thresholds: fewer than 3 voxels above the foreground level {foreground}.")
    centres = np.quantile(values, [1 / 6, 1 / 2, 5 / 6])
    for _ in range(iterations):
        labels = np.argmin(np.abs(values[:, None] - centres[None]), axis=1)
        new = np.array([values[labels == k].mean() if np.any(labels == k) else centres[k] for k in range(3)])
        if np.allclose(new, centres):
            break
        centres = np.sort(new)
    return float((centres[0] + centres[1]) / 2), float((centres[1] + centres[2]) / 2)


def segment_grey_matter(img: torch.Tensor, thresholds: Sequence[float], foreground: float = 0.05) -> torch.Tensor:
    """Boolean grey-matter mask of ``img`` (any shape): ``x > foreground`` and ``t_csf_gm <= x < t_gm_wm``."""
    low, high = float(thresholds[0]), float(thresholds[1])
    return (img > foreground) & (img >= low) & (img < high)


class GreyMatterAreaMetric(GroupedScoresMetric):
    """Grey-matter area bias and Dice of the segmentation of ``y_pred`` against that of ``y``, per image, by group.

    Args:
        thresholds: ``(t_csf_gm, t_gm_wm)`` from :func:`fit_tissue_thresholds` on high-resolution training images.
        foreground: intensity below which a voxel is background.

    Call as ``metric(y_pred, y, groups=[...])`` with batch-first ``(B, C, *spatial)`` tensors in the training
    images' intensity scale (predictions are not clipped: the thresholds decide).
    """

    names = DOWNSTREAM_NAMES
    statistic = "median"

    def __init__(self, thresholds: Sequence[float], foreground: float = 0.05) -> None:
        super().__init__()
        if len(thresholds) != 2 or not thresholds[0] < thresholds[1]:
            raise ValueError(f"GreyMatterAreaMetric: thresholds must be (t_csf_gm < t_gm_wm), got {thresholds}.")
        self.thresholds = (float(thresholds[0]), float(thresholds[1]))
        self.foreground = foreground

    def _scores(self, y_pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``(B, 2)``: area bias and Dice per image (NaN bias / Dice 1 when the target has no grey matter)."""
        if y_pred.shape[:2] != y.shape[:2]:
            raise ValueError("GreyMatterAreaMetric needs targets y with the batch and channel sizes of y_pred.")
        region = tuple(slice(0, min(a, b)) for a, b in zip(y_pred.shape[2:], y.shape[2:]))
        pred = segment_grey_matter(y_pred.detach()[(..., *region)], self.thresholds, self.foreground).flatten(1)
        true = segment_grey_matter(y.detach()[(..., *region)], self.thresholds, self.foreground).flatten(1)
        a_pred, a_true = pred.sum(1).double(), true.sum(1).double()
        overlap = (pred & true).sum(1).double()
        bias = torch.where(a_true > 0, (a_pred - a_true) / a_true.clamp_min(1), torch.full_like(a_true, float("nan")))
        total = a_pred + a_true
        dice = torch.where(total > 0, 2 * overlap / total.clamp_min(1), torch.ones_like(total))
        return torch.stack([bias, dice], dim=1)

"""Super-resolution image quality per image, aggregated by group (degradation kind), in MONAI's cumulative style.

:class:`SRQualityMetric` is a ``monai.metrics.CumulativeIterationMetric``: each call scores a batch of
super-resolved images against their targets and buffers one row ``(psnr, ssim, nrmse, hfen)`` per image together
with the image's group label; :meth:`SRQualityMetric.aggregate` gives ``{metric: {group: mean}}`` (float64 means,
groups in order of first appearance) and :meth:`SRQualityMetric.per_sample` the buffered rows. The buffer is the
only copy of the scores.

- PSNR: MONAI ``PSNRMetric`` with ``max_val`` = ``data_range`` (dB).
- SSIM: MONAI ``SSIMMetric`` (11 x 11 Gaussian window, sigma 1.5, k1 0.01, k2 0.03).
- NRMSE, HFEN: ``NRMSEMetric``, ``HFENMetric`` of :mod:`common.metrics.image_quality`.

Predictions are clipped to ``[0, data_range]`` first (``clip=True``); when prediction and target sizes differ, both
are cropped to their common top-left region.
"""

from __future__ import annotations

import torch
from monai.metrics import PSNRMetric, SSIMMetric

from common.metrics.grouped import GroupedScoresMetric
from common.metrics.image_quality import HFENMetric, NRMSEMetric

SR_METRIC_NAMES: tuple[str, ...] = ("psnr", "ssim", "nrmse", "hfen")


class SRQualityMetric(GroupedScoresMetric):
    """PSNR / SSIM / NRMSE / HFEN of 2D images, per image, aggregated by group (means).

    Args:
        data_range: intensity range of the images (PSNR ``max_val``, SSIM ``data_range``, clip upper bound).
        clip: clip predictions to ``[0, data_range]`` before scoring.

    Call as ``metric(y_pred, y, groups=["gaussian", ...])`` with batch-first ``(B, C, H, W)`` tensors and one group
    label per image (default: ``"all"``).
    """

    names = SR_METRIC_NAMES
    statistic = "mean"

    def __init__(self, data_range: float = 1.0, clip: bool = True) -> None:
        super().__init__()
        self.data_range = float(data_range)
        self.clip = clip
        self._psnr = PSNRMetric(max_val=self.data_range)
        self._ssim = SSIMMetric(
            spatial_dims=2, data_range=self.data_range, win_size=11, kernel_sigma=1.5, k1=0.01, k2=0.03
        )
        self._nrmse = NRMSEMetric()
        self._hfen = HFENMetric()

    def _scores(self, y_pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``(B, 4)`` in the order of ``SR_METRIC_NAMES``."""
        if y_pred.ndim != 4 or y.ndim != 4 or y_pred.shape[:2] != y.shape[:2]:
            raise ValueError(
                f"SRQualityMetric expects (B, C, H, W) predictions and targets with the same B and C, got "
                f"{tuple(y_pred.shape)} and {tuple(y.shape)}."
            )
        pred, target = y_pred.detach().float(), y.detach().float()
        if self.clip:
            pred = pred.clamp(0.0, self.data_range)
        region = tuple(slice(0, min(a, b)) for a, b in zip(pred.shape[2:], target.shape[2:]))
        pred, target = pred[(..., *region)], target[(..., *region)]
        scores = []
        for metric in (self._psnr, self._ssim, self._nrmse, self._hfen):  # the order of SR_METRIC_NAMES
            scores.append(metric(pred, target).reshape(-1))
            metric.reset()
        return torch.stack(scores, dim=1)

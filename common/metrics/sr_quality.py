"""Super-resolution image quality per image, aggregated by group (degradation kind), in MONAI's cumulative style.

:class:`SRQualityMetric` is a ``monai.metrics.CumulativeIterationMetric``: each call scores a batch of
super-resolved images against their targets and buffers one row ``(psnr, ssim, nrmse, hfen)`` per image together
with the image's group label; :meth:`SRQualityMetric.aggregate` gives ``{metric: {group: mean}}`` (float64 means,
groups in order of first appearance) and :meth:`SRQualityMetric.per_sample` the buffered rows. The buffer is the
only copy of the scores.

- PSNR: MONAI ``PSNRMetric`` with ``max_val`` = ``data_range`` (dB).
- SSIM: MONAI ``SSIMMetric`` (11 x 11 Gaussian window, sigma 1.5, k1 0.01, k2 0.03).
- NRMSE, HFEN: :mod:`common.metrics.image_quality`.

Predictions are clipped to ``[0, data_range]`` first (``clip=True``); when prediction and target sizes differ, both
are cropped to their common top-left region.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from monai.metrics import CumulativeIterationMetric, PSNRMetric, SSIMMetric

from common.metrics.image_quality import hfen, nrmse

SR_METRIC_NAMES: tuple[str, ...] = ("psnr", "ssim", "nrmse", "hfen")


class SRQualityMetric(CumulativeIterationMetric):
    """PSNR / SSIM / NRMSE / HFEN of 2D images, per image, aggregated by group.

    Args:
        data_range: intensity range of the images (PSNR ``max_val``, SSIM ``data_range``, clip upper bound).
        clip: clip predictions to ``[0, data_range]`` before scoring.

    Call as ``metric(y_pred, y, groups=["gaussian", ...])`` with batch-first ``(B, C, H, W)`` tensors and one group
    label per image (default: ``"all"``).
    """

    def __init__(self, data_range: float = 1.0, clip: bool = True) -> None:
        super().__init__()
        self.data_range = float(data_range)
        self.clip = clip
        self._psnr = PSNRMetric(max_val=self.data_range)
        self._ssim = SSIMMetric(
            spatial_dims=2, data_range=self.data_range, win_size=11, kernel_sigma=1.5, k1=0.01, k2=0.03
        )
        self._groups: list[str] = []

    def reset(self) -> None:
        super().reset()
        self._groups = []

    def _compute_tensor(
        self, y_pred: torch.Tensor, y: torch.Tensor | None = None, groups: Sequence[str] | None = None
    ) -> torch.Tensor:
        """Scores of a batch, shape ``(B, 4)`` in the order of ``SR_METRIC_NAMES``; records the groups."""
        if y is None:
            raise ValueError("SRQualityMetric needs the target images y.")
        if y_pred.ndim != 4 or y.ndim != 4 or y_pred.shape[:2] != y.shape[:2]:
            raise ValueError(
                f"SRQualityMetric expects (B, C, H, W) predictions and targets with the same B and C, got "
                f"{tuple(y_pred.shape)} and {tuple(y.shape)}."
            )
        groups = ["all"] * y_pred.shape[0] if groups is None else [str(g) for g in groups]
        if len(groups) != y_pred.shape[0]:
            raise ValueError(f"SRQualityMetric: {len(groups)} group labels for a batch of {y_pred.shape[0]} images.")
        pred, target = y_pred.detach().float(), y.detach().float()
        if self.clip:
            pred = pred.clamp(0.0, self.data_range)
        region = tuple(slice(0, min(a, b)) for a, b in zip(pred.shape[2:], target.shape[2:]))
        pred, target = pred[(..., *region)], target[(..., *region)]
        psnr = self._psnr(pred, target).reshape(-1)
        ssim = self._ssim(pred, target).reshape(-1)
        self._psnr.reset()
        self._ssim.reset()
        scores = torch.stack([psnr, ssim, nrmse(pred, target).reshape(-1), hfen(pred, target).reshape(-1)], dim=1)
        self._groups.extend(groups)
        return scores

    @property
    def groups(self) -> list[str]:
        """The group label of every buffered image, in call order."""
        return list(self._groups)

    def aggregate(self) -> dict[str, dict[str, float]]:  # type: ignore[override]
        """``{metric: {group: mean over the group's images}}`` (float64 means; empty when nothing was scored)."""
        if not self._groups:
            return {name: {} for name in SR_METRIC_NAMES}
        scores = self.get_buffer().to(torch.float64)
        order = list(dict.fromkeys(self._groups))
        labels = torch.tensor([order.index(g) for g in self._groups])
        return {
            name: {g: float(scores[labels == i, j].mean()) for i, g in enumerate(order)}
            for j, name in enumerate(SR_METRIC_NAMES)
        }

    def per_sample(self) -> list[dict[str, Any]]:
        """One ``{"group", "psnr", "ssim", "nrmse", "hfen"}`` per buffered image, in call order."""
        if not self._groups:
            return []
        rows = self.get_buffer().tolist()
        return [{"group": g, **dict(zip(SR_METRIC_NAMES, row))} for g, row in zip(self._groups, rows)]

    def counts(self) -> dict[str, int]:
        """Images per group."""
        return {g: self._groups.count(g) for g in dict.fromkeys(self._groups)}

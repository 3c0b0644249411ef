"""Flip decomposition of foreground errors and the label-free flip-risk score (Achara et al. 2026).

For the ground-truth foreground pixels of a multi-class segmentation each pixel is
*correct* (prediction equals the label), a *flip* (predicted foreground, but
another class) or a *miss* (predicted background); the three fractions sum to 1.

Flip-risk needs no label: at pixels predicted foreground, the foreground class
probabilities are renormalised to sum to 1, their entropy is divided by
``log(number of foreground classes)`` so it lies in [0, 1], and averaged per image.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from monai.metrics import CumulativeIterationMetric


def _as_index(x: torch.Tensor) -> torch.Tensor:
    """``(B, C, *spatial)`` one-hot/probabilities (C > 1) or ``(B, 1, *spatial)`` labels -> ``(B, *spatial)`` indices."""
    x = torch.as_tensor(x)
    if x.ndim < 3:
        raise ValueError(f"expected a batch (B, C, *spatial), got shape {tuple(x.shape)}")
    if x.shape[1] > 1:
        return x.argmax(1)
    x = x[:, 0]
    return x.round().long() if x.is_floating_point() else x  # integer label maps are compared as they are


def _counts_torch(p: torch.Tensor, g: torch.Tensor, background: int) -> tuple[torch.Tensor, ...]:
    """Ground-truth foreground, correct and missed pixels per row of ``(B, N)`` label indices."""
    fg = g != background
    return tuple(m.sum(1) for m in (fg, fg & (p == g), fg & (p == background)))


def _counts_numpy(p: torch.Tensor, g: torch.Tensor, background: int) -> tuple[torch.Tensor, ...]:
    """:func:`_counts_torch` for CPU tensors, computed by NumPy (zero-copy views)."""
    p, g = p.numpy(), g.numpy()
    fg = g != background
    return tuple(
        torch.from_numpy(np.count_nonzero(m, axis=1).astype(np.int64))
        for m in (fg, fg & (p == g), fg & (p == background))
    )


def flip_counts(pred: torch.Tensor, gt: torch.Tensor, background: int = 0) -> torch.Tensor:
    """Per-image pixel counts ``(B, 4)``: correct, flip, miss and ground-truth foreground pixels.

    ``pred`` and ``gt`` are ``(B, C, *spatial)`` one-hot / probabilities, or ``(B, 1, *spatial)`` label maps.
    """
    p = _as_index(pred)
    g = _as_index(gt).to(p.device)
    if p.shape != g.shape:
        raise ValueError(f"prediction {tuple(p.shape)} and ground truth {tuple(g.shape)} differ in shape")
    counts = _counts_numpy if p.device.type == "cpu" else _counts_torch  # NumPy is several times faster on CPU
    total, correct, miss = counts(p.detach().flatten(1), g.detach().flatten(1), background)
    # where g is foreground, p == g and p == background exclude each other: the rest are flips
    return torch.stack([correct, total - correct - miss, miss, total], 1).float()


def flip_fractions(counts: torch.Tensor | Sequence[Sequence[float]]) -> dict:
    """Correct / flip / miss fractions from per-image counts ``(B, 4)`` of :func:`flip_counts`.

    ``counts`` rows are ``[correct, flip, miss, foreground]`` pixel counts (a tensor or nested lists).

    Returns the dictionary of :func:`flip_decomposition` (``global`` pools pixels, ``per_image`` averages images).
    """
    counts = torch.as_tensor(counts, dtype=torch.float64).reshape(-1, 4)
    total = counts[:, 3].sum()
    nan = float("nan")
    pooled = {
        k: (counts[:, i].sum() / total).item() if total > 0 else nan for i, k in enumerate(("correct", "flip", "miss"))
    }
    has_fg = counts[:, 3] > 0
    per = counts[has_fg, :3] / counts[has_fg, 3:4]
    per_image = {k: per[:, i].mean().item() if has_fg.any() else nan for i, k in enumerate(("correct", "flip", "miss"))}
    return {"global": pooled, "per_image": per_image, "num_images": int(has_fg.sum())}


def flip_decomposition(pred: torch.Tensor, gt: torch.Tensor, background: int = 0) -> dict:
    """Correct / flip / miss fractions of ground-truth foreground pixels.

    Returns ``{"global": {...}, "per_image": {...}, "num_images": n}``: ``global`` pools the pixels of all
    images, ``per_image`` averages each image's fractions over the ``n`` images that have foreground.
    Each triple sums to 1 (NaN when no image has foreground).
    """
    return flip_fractions(flip_counts(pred, gt, background))


def flip_risk(probs: torch.Tensor, background: int = 0, eps: float = 1e-12) -> torch.Tensor:
    """Per-image flip-risk in [0, 1] from class probabilities ``(B, C, *spatial)`` with ``C >= 3``.

    Images without any pixel predicted foreground get 0.
    """
    probs = torch.as_tensor(probs).float()
    if probs.ndim < 3 or probs.shape[1] < 3:
        raise ValueError(f"flip_risk needs probabilities (B, C>=3, *spatial), got shape {tuple(probs.shape)}")
    fg_classes = [c for c in range(probs.shape[1]) if c != background]
    fg_prob = probs[:, fg_classes]
    q = fg_prob / fg_prob.sum(1, keepdim=True).clamp_min(eps)
    entropy = -(q * q.clamp_min(eps).log()).sum(1) / math.log(len(fg_classes))
    predicted_fg = probs.argmax(1) != background
    dims = tuple(range(1, entropy.ndim))
    n = predicted_fg.sum(dims)
    total = (entropy * predicted_fg).sum(dims)
    return torch.where(n > 0, total / n.clamp_min(1), torch.zeros_like(total)).clamp(0.0, 1.0)


class FlipMetric(CumulativeIterationMetric):
    """Cumulative flip decomposition: call per batch with ``(y_pred, y)``, then :meth:`aggregate`.

    ``y_pred``/``y`` as in :func:`flip_counts` (lists of channel-first images are stacked). Each call returns
    the batch's per-image ``(correct, flip, miss)`` fractions ``(B, 3)`` (NaN without foreground).
    ``aggregate()`` returns the dictionary of :func:`flip_decomposition` over everything seen since ``reset``.
    """

    def __init__(self, background: int = 0) -> None:
        super().__init__()
        self.background = background

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if y is None:
            raise ValueError("FlipMetric needs ground truth y")
        # The base class hands over the whole batch; it is stored as per-image counts.
        return flip_counts(y_pred, y, self.background)

    def __call__(self, y_pred, y=None, **kwargs):  # type: ignore[override]
        if isinstance(y_pred, (list, tuple)):
            y_pred = torch.stack([torch.as_tensor(t) for t in y_pred])
        if isinstance(y, (list, tuple)):
            y = torch.stack([torch.as_tensor(t) for t in y])
        counts = self._compute_tensor(y_pred, y)
        self.extend(counts)
        fg = counts[:, 3:4]
        return torch.where(fg > 0, counts[:, :3] / fg.clamp_min(1), torch.full_like(counts[:, :3], float("nan")))

    def aggregate(self) -> dict:  # type: ignore[override]
        data = self.get_buffer()
        if data is None or (isinstance(data, torch.Tensor) and data.numel() == 0):
            raise ValueError("FlipMetric.aggregate called before any data")
        return flip_fractions(data)

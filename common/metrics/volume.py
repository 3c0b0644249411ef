"""Structure volumes and the normalised signed volume bias ``(Vol(pred) - Vol(gt)) / Vol(gt)``.

Inputs are batch-first segmentations in either form:

- label map ``(B, 1, *spatial)`` of integer class indices ``0 .. num_classes - 1`` (float tensors holding integers
  are accepted);
- one-hot (or soft, giving a probabilistic volume) ``(B, C, *spatial)`` with ``C > 1``.

A single-channel input is always read as a label map, so a binary mask ``(B, 1, ...)`` gives classes 0 and 1.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["label_volumes", "volume_bias"]


def _as_tensor(y, name: str) -> torch.Tensor:
    y = torch.as_tensor(y)
    if y.ndim < 3:
        raise ValueError(f"{name} must be (B, C, *spatial) with at least one spatial dim, got shape {tuple(y.shape)}")
    return y


def _voxel_volume(spacing, batch: int, spatial_dims: int) -> torch.Tensor:
    """Voxel volume per sample ``(B,)`` in float64 from a scalar, a per-axis sequence or a ``(B, spatial_dims)`` array."""
    if spacing is None:
        return torch.ones(batch, dtype=torch.float64)
    s = torch.as_tensor(np.asarray(spacing, dtype=np.float64))
    if s.ndim == 0:
        s = s.repeat(spatial_dims)
    if s.shape[-1] != spatial_dims or s.ndim > 2 or (s.ndim == 2 and s.shape[0] != batch):
        raise ValueError(
            f"spacing must be a scalar, ({spatial_dims},) or ({batch}, {spatial_dims}); got {tuple(s.shape)}"
        )
    if (s <= 0).any() or not torch.isfinite(s).all():
        raise ValueError(f"spacing must be finite and positive, got {s.tolist()}")
    vol = s.prod(dim=-1)
    return vol.expand(batch) if vol.ndim == 0 else vol


def _spacing_from_meta(y) -> np.ndarray | None:
    """Voxel size of a MetaTensor: ``(B, spatial_dims)`` for a batch, ``(spatial_dims,)`` otherwise; else None."""
    if not hasattr(y, "pixdim") or not hasattr(y, "is_batch"):
        return None
    pixdim = y.pixdim
    if y.is_batch and isinstance(pixdim, list | tuple):
        return np.stack([np.asarray(p, dtype=np.float64) for p in pixdim])
    return np.asarray(pixdim, dtype=np.float64)


def label_volumes(y, num_classes: int | None = None, spacing=None) -> torch.Tensor:
    """Volume of every class in every sample: ``(B, C)`` float64, in voxels or, with ``spacing``, in mm^3.

    Args:
        y: label map ``(B, 1, *spatial)`` or one-hot ``(B, C, *spatial)``, tensor or array.
        num_classes: number of classes for a label map (default ``max label + 1``); ignored for one-hot input.
        spacing: voxel size in mm: scalar, per axis ``(spatial_dims,)`` or per sample ``(B, spatial_dims)``.
            Default: the ``pixdim`` of a ``MetaTensor`` input, else 1.

    Raises:
        ValueError: negative, non-integer or ``>= num_classes`` labels; bad spacing.
    """
    y = _as_tensor(y, "y")
    batch, channels, spatial_dims = y.shape[0], y.shape[1], y.ndim - 2
    if spacing is None:
        spacing = _spacing_from_meta(y)
    voxel = _voxel_volume(spacing, batch, spatial_dims)
    y = y.as_tensor() if hasattr(y, "as_tensor") else y
    if channels > 1:
        counts = y.reshape(batch, channels, -1).sum(dim=-1, dtype=torch.float64)
    else:
        labels = y.reshape(batch, -1)
        if labels.dtype == torch.bool:
            labels = labels.to(torch.uint8)
        elif labels.is_floating_point():
            as_int = labels.to(torch.int32)
            if not torch.equal(as_int.to(labels.dtype), labels):
                raise ValueError("label map holds non-integer values; pass one-hot input for soft volumes")
            labels = as_int
        min_label, max_label = (int(v) for v in torch.aminmax(labels)) if labels.numel() else (0, -1)
        if min_label < 0:
            raise ValueError(f"label map holds negative labels (min {min_label})")
        if num_classes is None:
            num_classes = max_label + 1
        elif max_label >= num_classes:
            raise ValueError(f"label map holds label {max_label} but num_classes is {num_classes}")
        # bincount works on any integer dtype: no widening copy of uint8 maps
        counts = torch.stack([torch.bincount(sample, minlength=num_classes) for sample in labels])
        counts = counts.to(torch.float64)
    return counts.cpu() * voxel[:, None]


def volume_bias(
    pred, gt, include_background: bool = False, spacing=None, num_classes: int | None = None
) -> torch.Tensor:
    """Normalised signed volume bias ``(Vol(pred) - Vol(gt)) / Vol(gt)`` per sample and class: ``(B, C)`` float64.

    ``> 0`` is over-, ``< 0`` under-segmentation. Where ``gt`` has no voxel of a class the value is **NaN** (also when
    ``pred`` has some), so NaN-aware reductions skip it. ``spacing`` (see :func:`label_volumes`) scales both
    volumes alike and so cancels in the ratio; it is accepted so the same arguments work for both functions.

    Args:
        pred, gt: label maps ``(B, 1, *spatial)`` or one-hot ``(B, C, *spatial)``; the forms may differ.
        include_background: keep class 0.
        spacing: voxel size in mm (scalar, per axis, or per sample).
        num_classes: number of classes when both inputs are label maps (default: largest label in either + 1).
    """
    pred, gt = _as_tensor(pred, "pred"), _as_tensor(gt, "gt")
    if pred.shape[0] != gt.shape[0] or pred.shape[2:] != gt.shape[2:]:
        raise ValueError(f"pred {tuple(pred.shape)} and gt {tuple(gt.shape)} differ in batch or spatial shape")
    one_hot_channels = {y.shape[1] for y in (pred, gt) if y.shape[1] > 1}
    if len(one_hot_channels) > 1:
        raise ValueError(f"pred and gt have different numbers of one-hot channels: {sorted(one_hot_channels)}")
    if one_hot_channels:
        num_classes = one_hot_channels.pop()
    elif num_classes is None:
        num_classes = int(max(pred.max(), gt.max())) + 1 if pred.numel() else 1  # one pass each
    spacing = 1.0 if spacing is None else spacing  # cancels; skips reading MetaTensor pixdim
    v_pred = label_volumes(pred, num_classes, spacing)
    v_gt = label_volumes(gt, num_classes, spacing)
    bias = torch.where(v_gt > 0, (v_pred - v_gt) / v_gt.clamp_min(torch.finfo(torch.float64).tiny), torch.nan)
    return bias if include_background else bias[:, 1:]

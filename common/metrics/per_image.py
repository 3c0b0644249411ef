"""Per-image segmentation scores shared by the evaluators' handlers: Dice per structure and flip counts."""

from __future__ import annotations

import torch

__all__ = ["dice_and_flip_counts"]


def _label_map(x) -> torch.Tensor:
    x = torch.as_tensor(x)
    x = x.as_subclass(torch.Tensor) if type(x) is not torch.Tensor else x
    return x.round().long() if x.is_floating_point() else x.long()


def dice_and_flip_counts(pred, label, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Dice of every foreground class and the flip counts of every image of a batch.

    Args:
        pred, label: label maps ``(B, 1, *spatial)`` of class indices ``0 .. num_classes - 1`` (float maps holding
            integers are rounded).
        num_classes: number of classes including the background 0.

    Returns:
        ``dice`` ``(B, num_classes - 1)`` float32: MONAI ``compute_dice`` of classes ``1 ..`` (``ignore_empty``: NaN
        where the class is absent from ``label``); ``counts`` ``(B, 4)`` float32: correct, flip, miss and
        ground-truth foreground pixels (:func:`common.metrics.flip.flip_counts`).
    """
    from monai.metrics import compute_dice
    from monai.networks.utils import one_hot

    from common.metrics.flip import flip_counts

    p, y = _label_map(pred), _label_map(label)
    if p.ndim < 3 or p.shape[1] != 1 or p.shape != y.shape:
        raise ValueError(
            f"expected label maps (B, 1, *spatial) of one shape, got {tuple(p.shape)} and {tuple(y.shape)}"
        )
    dice = compute_dice(one_hot(p, num_classes), one_hot(y, num_classes), include_background=False, ignore_empty=True)
    return dice, flip_counts(p, y)

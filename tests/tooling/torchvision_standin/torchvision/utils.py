"""``make_grid`` and ``save_image`` with torchvision's signatures, in plain torch + Pillow."""

from __future__ import annotations

import math
import os
from typing import BinaryIO

import torch

__all__ = ["make_grid", "save_image"]


def _normalize_(img: torch.Tensor, value_range: tuple[float, float] | None) -> None:
    """Scale ``img`` in place to [0, 1] from ``value_range`` (default: its own min and max)."""
    low, high = (float(img.min()), float(img.max())) if value_range is None else value_range
    img.clamp_(min=low, max=high)
    img.sub_(low).div_(max(high - low, 1e-5))


def make_grid(
    tensor: torch.Tensor | list[torch.Tensor],
    nrow: int = 8,
    padding: int = 2,
    normalize: bool = False,
    value_range: tuple[float, float] | None = None,
    scale_each: bool = False,
    pad_value: float = 0.0,
) -> torch.Tensor:
    """Tile a batch of images ``(B, C, H, W)`` (or a list of ``(C, H, W)``) into one ``(C', H', W')`` image.

    ``nrow`` images per row, ``padding`` pixels of ``pad_value`` around and between
    tiles; 1-channel input is repeated to 3 channels when B > 1, as torchvision does.
    """
    if isinstance(tensor, (list, tuple)):
        tensor = torch.stack(list(tensor), dim=0)
    if not torch.is_tensor(tensor):
        raise TypeError(f"tensor or list of tensors expected, got {type(tensor)}")
    if tensor.dim() == 2:  # (H, W) -> (1, H, W)
        tensor = tensor.unsqueeze(0)
    if tensor.dim() == 3:  # (C, H, W) -> (1, C, H, W)
        if tensor.size(0) == 1:
            tensor = torch.cat((tensor, tensor, tensor), 0)
        tensor = tensor.unsqueeze(0)
    if tensor.dim() == 4 and tensor.size(1) == 1:
        tensor = torch.cat((tensor, tensor, tensor), 1)
    if tensor.dim() != 4:
        raise ValueError(f"make_grid expects (B, C, H, W), (C, H, W) or (H, W), got shape {tuple(tensor.shape)}")

    if normalize:
        tensor = tensor.clone()
        if scale_each:
            for img in tensor:
                _normalize_(img, value_range)
        else:
            _normalize_(tensor, value_range)

    if tensor.size(0) == 1:
        return tensor.squeeze(0)

    nmaps = tensor.size(0)
    xmaps = min(nrow, nmaps)
    ymaps = int(math.ceil(float(nmaps) / xmaps))
    height, width = int(tensor.size(2) + padding), int(tensor.size(3) + padding)
    grid = tensor.new_full((tensor.size(1), height * ymaps + padding, width * xmaps + padding), pad_value)
    k = 0
    for y in range(ymaps):
        for x in range(xmaps):
            if k >= nmaps:
                break
            grid[:, y * height + padding : (y + 1) * height, x * width + padding : (x + 1) * width] = tensor[k]
            k += 1
    return grid


def save_image(
    tensor: torch.Tensor | list[torch.Tensor],
    fp: str | os.PathLike | BinaryIO,
    format: str | None = None,
    **kwargs,
) -> None:
    """Write ``make_grid(tensor, **kwargs)`` (values in [0, 1]) as an 8-bit image file with Pillow."""
    from PIL import Image

    grid = make_grid(tensor, **kwargs)
    ndarr = grid.mul(255).add_(0.5).clamp_(0, 255).permute(1, 2, 0).to("cpu", torch.uint8).numpy()
    if ndarr.shape[2] == 1:
        ndarr = ndarr[:, :, 0]
    Image.fromarray(ndarr).save(fp, format=format)

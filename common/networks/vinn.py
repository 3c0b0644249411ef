"""VINN: a voxel-size independent U-Net with network-integrated interpolation (Henschel et al. 2022).

The network is :class:`~common.networks.unet.SegUNet` (same blocks, depth and
parameter count) with one change: the feature maps of the input block, computed
at the image's native voxel size, are resampled to a fixed *internal* voxel size
before the encoder/decoder, and the decoder output is resampled back onto the
exact native grid before it is concatenated with the input-block features and
classified by the 1x1 head::

    x (native) -> input_block -> f ------------------------------------+
                                 | resample x native/internal          |
                                 v                                     v
                           encoder_decoder (internal grid) -> resample to native -> cat -> head

Resampling is (bi/tri)linear with ``align_corners=False``. The native voxel size
comes with the call (``forward(x, spacing)``) or from ``x``'s MetaTensor affine.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from common.networks.unet import SegUNet

__all__ = ["VINN", "internal_size"]


def internal_size(native_size: Sequence[int], native_spacing: Sequence[float], internal_spacing: Sequence[float]):
    """Grid size at the internal voxel size: ``n * native_spacing / internal_spacing`` rounded half up (>= 1)."""
    return tuple(
        max(1, math.floor(n * float(s) / float(t) + 0.5))
        for n, s, t in zip(native_size, native_spacing, internal_spacing)
    )


class VINN(SegUNet):
    """SegUNet with network-integrated resampling to ``internal_spacing`` (mm) around its encoder/decoder.

    Args:
        spatial_dims, in_channels, out_channels, channels, downsample, **kwargs: as :class:`SegUNet`.
        internal_spacing: voxel size (mm) of the encoder/decoder grid, a float or one per spatial dim;
            the high resolution of the training data.

    ``forward(x, spacing=None)``: ``x`` is ``(B, in_channels, *native)``; ``spacing`` is the native voxel
    size in mm, ``(B, spatial_dims)``, ``(spatial_dims,)`` or a float; ``None`` reads it from ``x``'s
    MetaTensor affine, or, for a plain tensor, takes the internal spacing (no resampling). Returns
    ``(B, out_channels, *native)`` logits. Samples with different voxel sizes in one batch are resampled
    and passed through the encoder/decoder group by group.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        channels: Sequence[int],
        internal_spacing: float | Sequence[float],
        downsample: str = "maxpool",
        **kwargs,
    ) -> None:
        super().__init__(spatial_dims, in_channels, out_channels, channels, downsample=downsample, **kwargs)
        spacing = torch.as_tensor(internal_spacing, dtype=torch.float32).flatten()
        if spacing.numel() == 1:
            spacing = spacing.repeat(spatial_dims)
        if spacing.numel() != spatial_dims or bool((spacing <= 0).any()):
            raise ValueError(f"internal_spacing must be positive, one value or {spatial_dims}, got {internal_spacing}")
        self.spatial_dims = spatial_dims
        self.register_buffer("internal_spacing", spacing, persistent=False)
        self.interp_mode = "bilinear" if spatial_dims == 2 else "trilinear"

    def _native_spacing(self, x: torch.Tensor, spacing) -> torch.Tensor:
        """Native voxel sizes as a ``(B, spatial_dims)`` float tensor."""
        b, sd = x.shape[0], self.spatial_dims
        if spacing is None:
            affine = getattr(x, "affine", None)
            if affine is None:
                return self.internal_spacing.expand(b, sd).cpu()
            affine = torch.as_tensor(affine, dtype=torch.float64)
            affine = affine if affine.ndim == 3 else affine[None].expand(b, -1, -1)
            return torch.linalg.norm(affine[:, :sd, :sd], dim=1).float().cpu()
        s = torch.as_tensor(spacing, dtype=torch.float32).detach().cpu()
        if s.ndim == 0:
            s = s.repeat(sd)
        if s.ndim == 1:
            s = s[None].expand(b, -1)
        if s.shape != (b, sd) or bool((s <= 0).any()):
            raise ValueError(f"spacing must be positive with shape ({b}, {sd}), got {tuple(s.shape)}: {s.tolist()}")
        return s

    def _resample(self, t: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        if tuple(t.shape[2:]) == tuple(size):
            return t
        return F.interpolate(t, size=tuple(size), mode=self.interp_mode, align_corners=False)

    def internal_grid(self, native_size: Sequence[int], native_spacing: Sequence[float]) -> tuple[int, ...]:
        """The encoder/decoder grid for one image of ``native_size`` voxels at ``native_spacing`` mm."""
        return internal_size(native_size, native_spacing, self.internal_spacing.tolist())

    def forward(self, x: torch.Tensor, spacing=None) -> torch.Tensor:
        native = tuple(x.shape[2:])
        spacing = self._native_spacing(x, spacing)
        x = x.as_tensor() if hasattr(x, "as_tensor") else x
        features = self.input_block(x)
        keys = [tuple(round(v, 5) for v in s.tolist()) for s in spacing]
        decoded = None
        for key in dict.fromkeys(keys):
            rows = [i for i, k in enumerate(keys) if k == key]
            f = features if len(rows) == len(keys) else features[rows]
            inner = self._resample(f, self.internal_grid(native, key))
            back = self._resample(self.encoder_decoder(inner), native)
            if len(rows) == len(keys):
                decoded = back
            else:
                if decoded is None:
                    decoded = back.new_zeros((x.shape[0], *back.shape[1:]))
                decoded[rows] = back
        return self.head(torch.cat([features, decoded], dim=1))

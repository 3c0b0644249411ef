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
        self.internal_spacing = spacing  # a plain attribute, not a buffer: no state_dict entry, scripted or not
        self.internal_spacing_mm: list[float] = spacing.tolist()
        self.interp_mode = "bilinear" if spatial_dims == 2 else "trilinear"

    @torch.jit.unused
    def _native_spacing(self, x: torch.Tensor, spacing: torch.Tensor | None) -> torch.Tensor:
        """Native voxel sizes as a ``(B, spatial_dims)`` float tensor (eager mode: MetaTensor affine, floats)."""
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

    def _spacing_tensor(self, x: torch.Tensor, spacing: torch.Tensor | None) -> torch.Tensor:
        """TorchScript mode: ``spacing`` ``(B, sd)``, ``(sd,)`` or ``None`` (the internal spacing) as ``(B, sd)``."""
        b = x.shape[0]
        if spacing is None:
            return self.internal_spacing.expand(b, self.spatial_dims).cpu()
        return spacing.to(torch.float32).reshape(-1, self.spatial_dims).expand(b, self.spatial_dims).cpu()

    def _resample(self, t: torch.Tensor, size: list[int]) -> torch.Tensor:
        if list(t.shape[2:]) == list(size):  # in eager mode shape[2:] is a torch.Size, which never equals a list
            return t
        return F.interpolate(t, size=size, mode=self.interp_mode, align_corners=False)

    def _grid(self, native: list[int], spacing: torch.Tensor) -> list[int]:
        """The encoder/decoder grid for ``native`` voxels at ``spacing`` ``(spatial_dims,)`` float64 mm."""
        size: list[int] = []
        for d in range(len(native)):
            size.append(max(1, int(math.floor(native[d] * float(spacing[d]) / self.internal_spacing_mm[d] + 0.5))))
        return size

    def internal_grid(self, native_size: Sequence[int], native_spacing: Sequence[float]) -> tuple[int, ...]:
        """The encoder/decoder grid for one image of ``native_size`` voxels at ``native_spacing`` mm."""
        return internal_size(native_size, native_spacing, self.internal_spacing_mm)

    def forward(self, x: torch.Tensor, spacing: torch.Tensor | None = None) -> torch.Tensor:
        if torch.jit.is_scripting():
            spacing = self._spacing_tensor(x, spacing)
        else:
            spacing = self._native_spacing(x, spacing)
            x = x.as_tensor() if hasattr(x, "as_tensor") else x
        native: list[int] = list(x.shape[2:])
        features = self.input_block(x)
        # voxel sizes equal to 5 decimals share one pass through the encoder/decoder
        keys = torch.round(spacing.to(torch.float64) * 1e5) / 1e5
        groups = torch.unique(keys, dim=0)
        if groups.shape[0] == 1:
            grid = self._grid(native, groups[0])
            decoded = self._resample(self.encoder_decoder(self._resample(features, grid)), native)
        else:
            decoded = torch.zeros_like(features)
            for g in range(groups.shape[0]):
                rows = torch.nonzero((keys == groups[g][None]).all(dim=1)).flatten().to(features.device)
                grid = self._grid(native, groups[g])
                inner = self._resample(features.index_select(0, rows), grid)
                decoded[rows] = self._resample(self.encoder_decoder(inner), native)
        return self.head(torch.cat([features, decoded], dim=1))

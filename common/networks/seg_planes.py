"""2.5D segmentation: one 2D network per anatomical plane on thick slices, logits aggregated per plane weight.

:class:`MultiPlaneSegmenter` holds a 2D :class:`~common.networks.unet.SegUNet` (or
:class:`~common.networks.vinn.VINN`) per plane. It is called two ways:

- **slices** ``(B, thickness, H, W)`` with ``plane=`` and the in-plane ``spacing`` ``(B, 2)``
  (training; see :func:`common.data.seg_slices.prepare_slice_batch`);
- **volume** ``(B, 1, X, Y, Z)`` in RAS voxel order (evaluation and inference; a MONAI
  ``SimpleInferer`` suffices): every plane's network segments all thick slices of the
  volume and the logits are summed with weights axial 0.4, coronal 0.4, sagittal 0.2
  (normalised over the planes present). The voxel size comes from ``spacing``
  ``(B, 3)`` or the MetaTensor affine. Output ``(B, out_channels, X, Y, Z)`` logits on
  the input grid.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from common.data.seg_slices import PLANE_AXES, PLANE_WEIGHTS, planes_of, thick_slices
from common.networks.unet import SegUNet
from common.networks.vinn import VINN

__all__ = ["MultiPlaneSegmenter"]


class MultiPlaneSegmenter(nn.Module):
    """One 2D segmentation network per plane; see the module docstring.

    Args:
        planes: ``"axial"``, ``"coronal"``, ``"sagittal"``, ``"all"`` or a list of them.
        thickness: neighbouring slices stacked as input channels (odd).
        out_channels: classes including background.
        channels: feature channels per U-Net level.
        downsample: internal down-sampling operator (``common.networks.downsample`` names).
        internal_spacing: ``None`` for a plain U-Net; a voxel size in mm for VINN networks.
        weights: per-plane logit weights (default axial 0.4, coronal 0.4, sagittal 0.2).
        slice_batch: slices per forward pass in volume mode.
    """

    def __init__(
        self,
        planes: str | Sequence[str] = "axial",
        thickness: int = 1,
        out_channels: int = 4,
        channels: Sequence[int] = (16, 32, 64),
        downsample: str = "maxpool",
        internal_spacing: float | None = None,
        weights: Mapping[str, float] | None = None,
        slice_batch: int = 32,
    ) -> None:
        super().__init__()
        self.planes = planes_of(planes)
        self.thickness = int(thickness)
        self.out_channels = int(out_channels)
        self.slice_batch = int(slice_batch)
        self.is_vinn = internal_spacing is not None
        weights = dict(PLANE_WEIGHTS if weights is None else weights)
        total = sum(float(weights[p]) for p in self.planes)
        self.weights = {p: float(weights[p]) / total for p in self.planes}
        nets = {}
        for p in self.planes:
            if self.is_vinn:
                nets[p] = VINN(2, self.thickness, out_channels, channels, internal_spacing, downsample=downsample)
            else:
                nets[p] = SegUNet(2, self.thickness, out_channels, channels, downsample=downsample)
        self.nets = nn.ModuleDict(nets)

    def _run2d(self, x: torch.Tensor, plane: str, spacing: torch.Tensor | None) -> torch.Tensor:
        net = self.nets[plane]
        if self.is_vinn:
            return net(x, spacing)
        k = 2**net.encoder_decoder.depth
        h, w = x.shape[2:]
        pad = [0, (-w) % k, 0, (-h) % k]
        if any(pad):
            x = F.pad(x, pad)
        return net(x)[..., :h, :w]

    def forward(self, x: torch.Tensor, spacing=None, plane: str | None = None) -> torch.Tensor:
        if x.ndim == 4:
            plane = plane or (self.planes[0] if len(self.planes) == 1 else None)
            if plane not in self.nets:
                raise ValueError(f"2D input needs plane= one of {list(self.nets)}, got {plane!r}")
            if spacing is None and hasattr(x, "affine"):
                from common.data.seg_slices import slice_spacing

                spacing = slice_spacing(x)
            x = x.as_tensor() if hasattr(x, "as_tensor") else x
            return self._run2d(x, plane, spacing)
        if x.ndim != 5 or x.shape[1] != 1:
            raise ValueError(
                f"expected slices (B, {self.thickness}, H, W) or a volume (B, 1, X, Y, Z), got {tuple(x.shape)}"
            )
        return self.segment_volume(x, spacing)

    def segment_volume(self, x: torch.Tensor, spacing=None) -> torch.Tensor:
        """Weighted per-plane logits ``(B, out_channels, X, Y, Z)`` of volumes ``(B, 1, X, Y, Z)``."""
        b = x.shape[0]
        if spacing is None:
            affine = getattr(x, "affine", None)
            if affine is None:
                spacing = torch.ones(b, 3)
            else:
                affine = torch.as_tensor(affine, dtype=torch.float64)
                affine = affine if affine.ndim == 3 else affine[None].expand(b, -1, -1)
                spacing = torch.linalg.norm(affine[:, :3, :3], dim=1).float()
        spacing = torch.as_tensor(spacing, dtype=torch.float32).reshape(b, 3).cpu()
        x = x.as_tensor() if hasattr(x, "as_tensor") else x
        out = x.new_zeros((b, self.out_channels, *x.shape[2:]))
        for i in range(b):
            for plane in self.planes:
                axis = PLANE_AXES[plane]
                slabs = thick_slices(x[i], plane, self.thickness)  # (S, T, H, W)
                sp = spacing[i][[a for a in range(3) if a != axis]]
                logits = torch.cat(
                    [
                        self._run2d(
                            slabs[j : j + self.slice_batch],
                            plane,
                            sp[None].expand(len(slabs[j : j + self.slice_batch]), -1),
                        )
                        for j in range(0, len(slabs), self.slice_batch)
                    ]
                )  # (S, K, H, W)
                out[i] += self.weights[plane] * logits.movedim(0, axis + 1)
        return out

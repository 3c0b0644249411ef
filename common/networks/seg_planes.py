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

The module itself compiles with ``torch.jit.script`` (and so exports with MONAI's ``ckpt_export``), for
every down-sampling operator and for VINN. A scripted module takes plain tensors: ``spacing`` is a tensor
in mm or ``None`` (1 mm for a volume, the internal voxel size for VINN slices); reading the voxel size from
a MetaTensor's affine, and spacings given as floats, are eager-mode conveniences.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from common.data.seg_slices import PLANE_AXES, PLANE_WEIGHTS, planes_of, slice_spacing, thick_slices_along
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
        self.axes: dict[str, int] = {p: PLANE_AXES[p] for p in self.planes}
        self.pad_multiple = 1 if self.is_vinn else 2 ** (len(channels) - 1)  # VINN sizes its own internal grid

    @torch.jit.unused
    def _eager_inputs(self, x: torch.Tensor, spacing: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Eager mode: the voxel size of a MetaTensor from its affine (if ``spacing`` is ``None``), a plain tensor."""
        if spacing is None and hasattr(x, "affine"):
            if x.ndim == 4:
                spacing = slice_spacing(x)
            else:
                affine = torch.as_tensor(x.affine, dtype=torch.float64)
                affine = affine if affine.ndim == 3 else affine[None].expand(x.shape[0], -1, -1)
                spacing = torch.linalg.norm(affine[:, :3, :3], dim=1).float()
        if spacing is not None and x.ndim == 5:
            spacing = torch.as_tensor(spacing, dtype=torch.float32).reshape(x.shape[0], 3)
        return (x.as_tensor() if hasattr(x, "as_tensor") else x), spacing

    def _run2d(self, x: torch.Tensor, plane: str, spacing: torch.Tensor | None) -> torch.Tensor:
        """Logits of slices ``x`` ``(B, thickness, H, W)`` by ``plane``'s network (U-Net inputs padded to 2**depth)."""
        h, w = x.shape[2], x.shape[3]
        m = self.pad_multiple
        ph, pw = (m - h % m) % m, (m - w % m) % m
        if ph > 0 or pw > 0:
            x = F.pad(x, [0, pw, 0, ph])
        for name, net in self.nets.items():
            if name == plane:
                return net(x, spacing)[:, :, :h, :w]
        raise ValueError(f"2D input needs plane= one of {self.planes}, got {plane}")

    def forward(self, x: torch.Tensor, spacing: torch.Tensor | None = None, plane: str | None = None) -> torch.Tensor:
        if not torch.jit.is_scripting():
            x, spacing = self._eager_inputs(x, spacing)
        if x.dim() == 4:
            if plane is None:
                if len(self.planes) != 1:
                    raise ValueError(f"2D input needs plane= one of {self.planes}, got None")
                plane = self.planes[0]
            return self._run2d(x, plane, spacing)
        if x.dim() != 5 or x.shape[1] != 1:
            raise ValueError(f"expected slices (B, {self.thickness}, H, W) or a volume (B, 1, X, Y, Z), got {x.shape}")
        return self.segment_volume(x, spacing)

    def segment_volume(self, x: torch.Tensor, spacing: torch.Tensor | None = None) -> torch.Tensor:
        """Weighted per-plane logits ``(B, out_channels, X, Y, Z)`` of volumes ``(B, 1, X, Y, Z)``."""
        if not torch.jit.is_scripting():
            x, spacing = self._eager_inputs(x, spacing)
        b = x.shape[0]
        sp = torch.ones(b, 3) if spacing is None else spacing.to(torch.float32).reshape(b, 3).cpu()
        out = x.new_zeros([b, self.out_channels, x.shape[2], x.shape[3], x.shape[4]])
        for i in range(b):
            for plane in self.planes:
                axis = self.axes[plane]
                slabs = thick_slices_along(x[i], axis, self.thickness)  # (S, T, H, W)
                sp2 = torch.cat([sp[i, :axis], sp[i, axis + 1 :]])
                chunks: list[torch.Tensor] = []
                for j in range(0, slabs.shape[0], self.slice_batch):
                    chunk = slabs[j : j + self.slice_batch]
                    chunks.append(self._run2d(chunk, plane, sp2[None].expand(chunk.shape[0], 2)))
                out[i] += self.weights[plane] * torch.cat(chunks).movedim(0, axis + 1)  # (S, K, H, W) -> on the grid
        return out

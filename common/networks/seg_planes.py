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

``torch.jit.script`` (and so MONAI's ``ckpt_export``) compiles the volume mode, ``forward(x, spacing=None)``
with a plain tensor (``spacing`` ``(B, 3)`` mm; ``None`` means 1 mm, as for a plain tensor in eager mode),
through a TorchScript twin that shares the modules and parameters (same ``state_dict`` keys).
The ``maxpool``, ``avgpool`` and ``strided_conv`` operators script; the others do not yet.
"""

from __future__ import annotations

import math
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

    def __prepare_scriptable__(self) -> nn.Module:
        """The TorchScript twin of the volume mode (called by ``torch.jit.script``)."""
        return _ScriptMultiPlaneSegmenter(self)

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


def _match_size_2d(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """TorchScript version of :func:`common.networks.unet.match_size` for 2D: crop, then replicate-pad at the end."""
    if x.shape[2] == h and x.shape[3] == w:
        return x
    x = x[:, :, :h, :w]
    ph, pw = max(h - x.shape[2], 0), max(w - x.shape[3], 0)
    if ph > 0 or pw > 0:
        x = F.pad(x, [0, pw, 0, ph], mode="replicate")
    return x


class _ScriptUpBlock(nn.Module):
    """TorchScript forward of :class:`common.networks.unet.UpBlock` (2D), sharing its ``up`` and ``conv``."""

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.up = block.up
        self.conv = block.conv
        self.deconv = block.upsample == "deconv"

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.up(x)
        h, w = skip.shape[2], skip.shape[3]
        if self.deconv:
            x = _match_size_2d(x, h, w)
        else:
            x = F.interpolate(x, size=[h, w], mode="bilinear", align_corners=False)
        return self.conv(torch.cat([skip, x], dim=1))


class _ScriptEncoderDecoder(nn.Module):
    """TorchScript forward of :class:`common.networks.unet.EncoderDecoder`, sharing its levels."""

    def __init__(self, encoder_decoder: nn.Module) -> None:
        super().__init__()
        self.down = encoder_decoder.down
        self.up = nn.ModuleList([_ScriptUpBlock(b) for b in encoder_decoder.up])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = [x]
        for level in self.down:
            skips.append(level(skips[-1]))
        x = skips.pop()
        for level in self.up:
            x = level(x, skips.pop())
        return x


class _ScriptPlaneNet(nn.Module):
    """TorchScript forward of one plane's 2D SegUNet / VINN as :meth:`MultiPlaneSegmenter._run2d` calls it."""

    def __init__(self, net: nn.Module, axis: int, weight: float) -> None:
        super().__init__()
        self.input_block = net.input_block
        self.encoder_decoder = _ScriptEncoderDecoder(net.encoder_decoder)
        self.head = net.head
        self.axis = axis
        self.weight = weight
        self.multiple = 2**net.encoder_decoder.depth
        self.is_vinn = isinstance(net, VINN)
        self.internal_spacing: list[float] = net.internal_spacing.tolist() if self.is_vinn else [1.0, 1.0]

    def forward(self, x: torch.Tensor, spacing: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[2], x.shape[3]
        if not self.is_vinn:  # pad to a multiple of 2**depth, as _run2d
            ph, pw = (
                (self.multiple - h % self.multiple) % self.multiple,
                (self.multiple - w % self.multiple) % self.multiple,
            )
            if ph > 0 or pw > 0:
                x = F.pad(x, [0, pw, 0, ph])
            f = self.input_block(x)
            return self.head(torch.cat([f, self.encoder_decoder(f)], dim=1))[:, :, :h, :w]
        f = self.input_block(x)
        key = torch.round(spacing.to(torch.float64) * 1e5) / 1e5
        decoded = torch.zeros_like(f)
        for u in torch.unique(key, dim=0):
            rows = torch.nonzero((key == u[None]).all(dim=1)).flatten()
            sub = f.index_select(0, rows)
            gh = max(1, int(math.floor(h * float(u[0]) / self.internal_spacing[0] + 0.5)))
            gw = max(1, int(math.floor(w * float(u[1]) / self.internal_spacing[1] + 0.5)))
            if gh != h or gw != w:
                sub = F.interpolate(sub, size=[gh, gw], mode="bilinear", align_corners=False)
            sub = self.encoder_decoder(sub)
            if gh != h or gw != w:
                sub = F.interpolate(sub, size=[h, w], mode="bilinear", align_corners=False)
            decoded[rows] = sub
        return self.head(torch.cat([f, decoded], dim=1))


class _ScriptMultiPlaneSegmenter(nn.Module):
    """TorchScript twin of :meth:`MultiPlaneSegmenter.segment_volume`: ``(B, 1, X, Y, Z)`` -> logits on that grid."""

    def __init__(self, seg: MultiPlaneSegmenter) -> None:
        super().__init__()
        self.nets = nn.ModuleDict({p: _ScriptPlaneNet(seg.nets[p], PLANE_AXES[p], seg.weights[p]) for p in seg.planes})
        self.thickness = seg.thickness
        self.out_channels = seg.out_channels
        self.slice_batch = seg.slice_batch

    def forward(self, x: torch.Tensor, spacing: torch.Tensor | None = None) -> torch.Tensor:
        if x.dim() != 5 or x.shape[1] != 1:
            raise ValueError("expected a volume (B, 1, X, Y, Z)")
        b = x.shape[0]
        sp = torch.ones(b, 3) if spacing is None else spacing.to(torch.float32).reshape(b, 3).cpu()
        out = x.new_zeros([b, self.out_channels, x.shape[2], x.shape[3], x.shape[4]])
        half = self.thickness // 2
        for i in range(b):
            for net in self.nets.values():
                v = x[i].movedim(net.axis + 1, 1)  # (1, S, H, W), as thick_slices
                if half > 0:
                    v = F.pad(v, [0, 0, 0, 0, half, half])
                slabs = v.unfold(1, self.thickness, 1).permute(1, 0, 4, 2, 3)
                slabs = slabs.reshape(slabs.shape[0], -1, slabs.shape[3], slabs.shape[4])
                sp2 = torch.cat([sp[i, : net.axis], sp[i, net.axis + 1 :]])
                chunks: list[torch.Tensor] = []
                for j in range(0, slabs.shape[0], self.slice_batch):
                    chunk = slabs[j : j + self.slice_batch]
                    chunks.append(net(chunk, sp2[None].expand(chunk.shape[0], 2)))
                out[i] += net.weight * torch.cat(chunks).movedim(0, net.axis + 1)
        return out

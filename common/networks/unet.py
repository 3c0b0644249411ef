"""A U-Net whose internal down-sampling operator is a parameter, split into reusable parts.

``SegUNet`` is three modules::

    inp = input_block(x)                       # conv block at the input's own resolution
    dec = encoder_decoder(inp)                 # U-Net encoder/decoder, same spatial size and channels as ``inp``
    logits = head(torch.cat([inp, dec], 1))    # 1x1 conv classifier

so a resolution-independent network (VINN) is the same module with interpolation inserted around
``encoder_decoder`` (features to the internal resolution and back), with exactly the same blocks, depth and
parameters. ``encoder_decoder`` accepts any spatial size of at least ``2 ** depth`` per axis: after each
up-sampling step the result is padded (replicate) or cropped to the size of its skip connection.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.networks.layers.factories import Conv
from monai.networks.nets.basic_unet import TwoConv
from torch import nn

from common.networks.pooling import DOWNSAMPLE_NAMES
from common.networks.pooling import downsample as make_downsample

__all__ = ["ConvBlock", "EncoderDecoder", "SegUNet", "UpBlock", "match_size"]

UPSAMPLE_MODES = ("deconv", "interp")


class ConvBlock(TwoConv):
    """Two ``conv3 -> norm -> dropout -> act`` layers (MONAI's ``TwoConv``): ``(B, in, *n) -> (B, out, *n)``."""


def match_size(x: torch.Tensor, size: list[int]) -> torch.Tensor:
    """Pad (replicate, at the end) or crop (at the end) the spatial axes of ``x`` (B, C, *n) to ``size``."""
    size = [int(n) for n in size]
    if list(x.shape[2:]) == size:
        return x
    for d in range(len(size)):
        if x.shape[d + 2] > size[d]:
            x = x.narrow(d + 2, 0, size[d])
    pad: list[int] = []
    for d in range(len(size) - 1, -1, -1):
        pad += [0, max(size[d] - x.shape[d + 2], 0)]
    if max(pad) > 0:
        x = F.pad(x, pad, mode="replicate") if len(size) <= 3 else F.pad(x, pad)
    return x


class UpBlock(nn.Module):
    """Up-sample by 2, concatenate the skip connection, conv block: ``(B, in, *n), (B, skip, *m) -> (B, out, *m)``.

    ``upsample="deconv"``: transposed conv (kernel 2, stride 2, ``in -> skip`` channels), then pad/crop to ``m``.
    ``upsample="interp"``: 1x1 conv ``in -> skip`` then linear interpolation to ``m`` (``align_corners=False``).
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        skip_channels: int,
        out_channels: int,
        act: str | tuple,
        norm: str | tuple,
        bias: bool = True,
        dropout: float | tuple = 0.0,
        upsample: str = "deconv",
    ) -> None:
        super().__init__()
        if upsample not in UPSAMPLE_MODES:
            raise ValueError(f"upsample must be one of {UPSAMPLE_MODES}, got {upsample!r}")
        self.upsample = upsample
        if upsample == "deconv":
            self.up = Conv[Conv.CONVTRANS, spatial_dims](in_channels, skip_channels, kernel_size=2, stride=2)
        else:
            self.up = Conv[Conv.CONV, spatial_dims](in_channels, skip_channels, kernel_size=1)
        self.interp_mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[spatial_dims]
        self.conv = ConvBlock(spatial_dims, 2 * skip_channels, out_channels, act, norm, bias, dropout)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.up(x)
        if self.upsample == "deconv":
            x = match_size(x, skip.shape[2:])
        else:
            x = F.interpolate(x, size=skip.shape[2:], mode=self.interp_mode, align_corners=False)
        return self.conv(torch.cat([skip, x], dim=1))


class EncoderDecoder(nn.Module):
    """U-Net encoder/decoder on features: ``(B, channels[0], *n) -> (B, channels[0], *n)``.

    Level ``i = 1 .. depth`` (``depth = len(channels) - 1``): ``downsample`` operator on ``channels[i-1]`` then a
    conv block to ``channels[i]``; the decoder mirrors it with :class:`UpBlock` and skip connections, the top skip
    being the input itself. Every spatial size must be at least ``2 ** depth``.
    """

    def __init__(
        self,
        spatial_dims: int,
        channels: Sequence[int] = (16, 32, 64, 128),
        downsample: str = "maxpool",
        act: str | tuple = ("LeakyReLU", {"negative_slope": 0.1, "inplace": True}),
        norm: str | tuple = ("instance", {"affine": True}),
        bias: bool = True,
        dropout: float | tuple = 0.0,
        upsample: str = "deconv",
        blur_filter_size: int = 3,
    ) -> None:
        super().__init__()
        channels = tuple(int(c) for c in channels)
        if len(channels) < 2:
            raise ValueError(f"channels needs at least two levels, got {channels}")
        if downsample not in DOWNSAMPLE_NAMES:
            raise ValueError(f"unknown downsample operator {downsample!r}; choose one of {DOWNSAMPLE_NAMES}")
        self.spatial_dims = spatial_dims
        self.channels = channels
        self.depth = len(channels) - 1
        self.min_size = 2**self.depth
        self.down = nn.ModuleList(
            nn.Sequential(
                make_downsample(downsample, spatial_dims, channels[i - 1], blur_filter_size),
                ConvBlock(spatial_dims, channels[i - 1], channels[i], act, norm, bias, dropout),
            )
            for i in range(1, self.depth + 1)
        )
        self.up = nn.ModuleList(
            UpBlock(spatial_dims, channels[i], channels[i - 1], channels[i - 1], act, norm, bias, dropout, upsample)
            for i in range(self.depth, 0, -1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != self.spatial_dims + 2 or x.shape[1] != self.channels[0]:
            raise ValueError(
                f"EncoderDecoder expects (B, {self.channels[0]}, {self.spatial_dims} spatial dims), got {x.shape}"
            )
        if min(x.shape[2:]) < self.min_size:
            raise ValueError(f"spatial size {x.shape[2:]} is smaller than 2**depth = {self.min_size}")
        skips = [x]
        for level in self.down:
            skips.append(level(skips[-1]))
        x = skips.pop()
        for level in self.up:
            x = level(x, skips.pop())
        return x


class SegUNet(nn.Module):
    """U-Net segmentation network with a selectable down-sampling operator: ``(B, in, *n) -> (B, out, *n)`` logits.

    ``forward(x) = head(cat([input_block(x), encoder_decoder(input_block(x))], 1))`` where

    - ``input_block``: :class:`ConvBlock` ``in_channels -> channels[0]`` at the input's resolution;
    - ``encoder_decoder``: :class:`EncoderDecoder` over ``channels`` with ``downsample`` (one of
      ``DOWNSAMPLE_NAMES``), returning ``channels[0]`` features at the size it was given;
    - ``head``: 1x1 conv ``2 * channels[0] -> out_channels``.

    For the parameter-free operators (all but ``strided_conv``) the parameter count does not depend on
    ``downsample``. Spatial sizes must be at least ``2 ** (len(channels) - 1)``; multiples of it avoid padding.

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels (e.g. 1, or 7 for a thick 2.5D slice).
        out_channels: number of classes including background.
        channels: features per level; ``len(channels) - 1`` down-sampling steps.
        downsample: internal down-sampling operator name.
        act, norm, bias, dropout: as MONAI's ``BasicUNet``.
        upsample: ``deconv`` (transposed conv) or ``interp`` (1x1 conv + linear interpolation).
        blur_filter_size: binomial filter length of the ``blurpool`` operator.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        channels: Sequence[int] = (16, 32, 64, 128),
        downsample: str = "maxpool",
        act: str | tuple = ("LeakyReLU", {"negative_slope": 0.1, "inplace": True}),
        norm: str | tuple = ("instance", {"affine": True}),
        bias: bool = True,
        dropout: float | tuple = 0.0,
        upsample: str = "deconv",
        blur_filter_size: int = 3,
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.downsample = downsample
        self.input_block = ConvBlock(spatial_dims, in_channels, channels[0], act, norm, bias, dropout)
        self.encoder_decoder = EncoderDecoder(
            spatial_dims, channels, downsample, act, norm, bias, dropout, upsample, blur_filter_size
        )
        self.head = Conv[Conv.CONV, spatial_dims](2 * channels[0], out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor, spacing: torch.Tensor | None = None) -> torch.Tensor:
        """Logits of ``x``; ``spacing`` is ignored (a plain U-Net does not know voxel sizes; see VINN)."""
        if x.dim() != self.spatial_dims + 2 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"SegUNet expects (B, {self.in_channels}, {self.spatial_dims} spatial dims), got {x.shape}"
            )
        inp = self.input_block(x)
        return self.head(torch.cat([inp, self.encoder_decoder(inp)], dim=1))

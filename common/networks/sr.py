"""Single-image super-resolution networks of the degradation-bias study: SRCNN, SRDenseNet, RRDBNet.

Every network maps a low-resolution image ``(B, C, *spatial)`` to ``(B, C, *(scale * spatial))``.
With ``residual=True`` (the default) it predicts the correction to the interpolated input
(bicubic in 2D, trilinear in 3D): ``out = upsample(x) + body(x)``, which makes small networks
train in a few hundred steps. ``sr_network(name, ...)`` builds one by name for configs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from monai.inferers import Inferer, SliceInferer
from monai.networks.layers.factories import Conv
from torch import nn

SR_NETWORK_NAMES = ("srcnn", "srdensenet", "rrdbnet")


def interpolate_up(x: torch.Tensor, scale: int) -> torch.Tensor:
    """Bicubic (2D) or trilinear (3D) up-sampling by an integer ``scale`` (``align_corners=False``)."""
    mode = "bicubic" if x.ndim == 4 else "trilinear"
    return F.interpolate(x, scale_factor=float(scale), mode=mode, align_corners=False)  # float: scriptable


def _check_scale(scale: int) -> int:
    if int(scale) != scale or scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale!r}")
    return int(scale)


class SRCNN(nn.Module):
    """SRCNN (Dong et al. 2015): three convolutions (9-5-5, 64 and 32 filters) on the interpolated input.

    Args:
        spatial_dims: 2 or 3.
        scale: integer up-sampling factor.
        in_channels: image channels (input and output).
        features: filters of the first two layers (``(64, 32)`` in the paper).
        kernel_sizes: the three kernel sizes (``(9, 5, 5)``).
        residual: add the interpolated input to the output.
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        scale: int = 2,
        in_channels: int = 1,
        features: tuple[int, int] = (64, 32),
        kernel_sizes: tuple[int, int, int] = (9, 5, 5),
        residual: bool = True,
    ) -> None:
        super().__init__()
        self.scale = _check_scale(scale)
        self.residual = residual
        conv = Conv[Conv.CONV, spatial_dims]
        (f1, f2), (k1, k2, k3) = features, kernel_sizes
        self.body = nn.Sequential(
            conv(in_channels, f1, k1, padding=k1 // 2, padding_mode="replicate"),
            nn.ReLU(inplace=True),
            conv(f1, f2, k2, padding=k2 // 2, padding_mode="replicate"),
            nn.ReLU(inplace=True),
            conv(f2, in_channels, k3, padding=k3 // 2, padding_mode="replicate"),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        up = interpolate_up(x, self.scale)
        out = self.body(up)
        return up + out if self.residual else out


class _DenseBlock(nn.Module):
    """``num_layers`` 3x3 convolutions, each fed the concatenation of the block input and all earlier outputs.

    Output: the concatenation of the layers' outputs, ``num_layers * growth_rate`` channels.
    """

    def __init__(self, spatial_dims: int, in_channels: int, growth_rate: int, num_layers: int, slope: float) -> None:
        super().__init__()
        conv = Conv[Conv.CONV, spatial_dims]
        self.layers = nn.ModuleList(
            nn.Sequential(conv(in_channels + i * growth_rate, growth_rate, 3, padding=1), nn.LeakyReLU(slope, True))
            for i in range(num_layers)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [x]
        for layer in self.layers:
            feats.append(layer(torch.cat(feats, 1)))
        return torch.cat(feats[1:], 1)


class SRDenseNet(nn.Module):
    """SRDenseNet (Tong et al. 2017) as configured in the degradation-bias study.

    Low-level 3x3 convolution, ``num_blocks`` dense blocks of ``num_layers`` convolutions with growth rate
    ``growth_rate``, dense skip connections (the low-level features and every block's output are
    concatenated), a 1x1 bottleneck to ``bottleneck_channels``, transposed-convolution up-sampling to the
    high-resolution grid, and a 3x3 reconstruction layer with tanh. All other activations are
    LeakyReLU(``slope``). Defaults are the study's: 5 blocks x 5 layers, growth 5, LeakyReLU 0.2.
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        scale: int = 2,
        in_channels: int = 1,
        num_blocks: int = 5,
        num_layers: int = 5,
        growth_rate: int = 5,
        bottleneck_channels: int = 64,
        slope: float = 0.2,
        residual: bool = True,
    ) -> None:
        super().__init__()
        self.scale = _check_scale(scale)
        self.residual = residual
        conv = Conv[Conv.CONV, spatial_dims]
        convt = Conv[Conv.CONVTRANS, spatial_dims]
        block_channels = num_layers * growth_rate
        self.low = nn.Sequential(conv(in_channels, block_channels, 3, padding=1), nn.LeakyReLU(slope, True))
        self.blocks = nn.ModuleList(
            _DenseBlock(spatial_dims, block_channels, growth_rate, num_layers, slope) for _ in range(num_blocks)
        )
        self.bottleneck = nn.Sequential(
            conv(block_channels * (num_blocks + 1), bottleneck_channels, 1), nn.LeakyReLU(slope, True)
        )
        pad = (self.scale + 1) // 2  # output = scale * input exactly: (n - 1) * s - 2p + (s + 2p)
        self.upsample = nn.Sequential(
            convt(bottleneck_channels, bottleneck_channels, self.scale + 2 * pad, stride=self.scale, padding=pad),
            nn.LeakyReLU(slope, True),
        )
        self.reconstruction = nn.Sequential(conv(bottleneck_channels, in_channels, 3, padding=1), nn.Tanh())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [self.low(x)]
        for block in self.blocks:
            feats.append(block(feats[-1]))
        out = self.reconstruction(self.upsample(self.bottleneck(torch.cat(feats, 1))))
        return interpolate_up(x, self.scale) + out if self.residual else out


class _ResidualDenseBlock(nn.Module):
    """ESRGAN's residual dense block: five densely connected 3x3 convolutions, output scaled by 0.2 plus input."""

    def __init__(self, spatial_dims: int, channels: int, growth: int, beta: float = 0.2) -> None:
        super().__init__()
        conv = Conv[Conv.CONV, spatial_dims]
        self.convs = nn.ModuleList(conv(channels + i * growth, growth, 3, padding=1) for i in range(4))
        self.last = conv(channels + 4 * growth, channels, 3, padding=1)
        self.act = nn.LeakyReLU(0.2, True)
        self.beta = beta

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [x]
        for c in self.convs:
            feats.append(self.act(c(torch.cat(feats, 1))))
        return x + self.beta * self.last(torch.cat(feats, 1))


class _RRDB(nn.Module):
    """Residual-in-residual dense block: three residual dense blocks, scaled by 0.2, plus input."""

    def __init__(self, spatial_dims: int, channels: int, growth: int, beta: float = 0.2) -> None:
        super().__init__()
        self.body = nn.Sequential(*(_ResidualDenseBlock(spatial_dims, channels, growth, beta) for _ in range(3)))
        self.beta = beta

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.beta * self.body(x)


class RRDBNet(nn.Module):
    """RRDBNet (ESRGAN generator, Wang et al. 2018) with ``num_blocks`` RRDBs (3 in the study).

    ``features`` trunk channels (64 in ESRGAN), ``growth`` channels per dense layer (32). Up-sampling:
    nearest-neighbour x2 plus convolution per factor 2; an odd factor uses one nearest x``scale`` step.
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        scale: int = 2,
        in_channels: int = 1,
        features: int = 64,
        growth: int = 32,
        num_blocks: int = 3,
        residual: bool = True,
    ) -> None:
        super().__init__()
        self.scale = _check_scale(scale)
        self.residual = residual
        conv = Conv[Conv.CONV, spatial_dims]
        self.first = conv(in_channels, features, 3, padding=1)
        self.trunk = nn.Sequential(*(_RRDB(spatial_dims, features, growth) for _ in range(num_blocks)))
        self.trunk_conv = conv(features, features, 3, padding=1)
        s, self.up_factors = self.scale, torch.jit.annotate(list[int], [])
        while s > 1 and s % 2 == 0:
            self.up_factors.append(2)
            s //= 2
        if s > 1:
            self.up_factors.append(s)
        self.up_convs = nn.ModuleList(conv(features, features, 3, padding=1) for _ in self.up_factors)
        self.hr_conv = conv(features, features, 3, padding=1)
        self.last = conv(features, in_channels, 3, padding=1)
        self.act = nn.LeakyReLU(0.2, True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.first(x)
        feat = feat + self.trunk_conv(self.trunk(feat))
        for i, c in enumerate(self.up_convs):  # indexed, not zip: TorchScript iterates a ModuleList only directly
            feat = self.act(c(F.interpolate(feat, scale_factor=float(self.up_factors[i]), mode="nearest")))
        out = self.last(self.act(self.hr_conv(feat)))
        return interpolate_up(x, self.scale) + out if self.residual else out


def sr_network(
    name: str, scale: int = 2, spatial_dims: int = 2, in_channels: int = 1, width: float = 1.0, residual: bool = True
) -> nn.Module:
    """Build an SR network by name (``srcnn``, ``srdensenet``, ``rrdbnet``) with the study's configuration.

    ``width`` scales the channel counts (SRCNN's 64/32 filters, SRDenseNet's bottleneck, RRDBNet's trunk
    and growth channels); ``width=1`` is the paper's size. SRDenseNet's growth rate stays 5.
    """
    if width <= 0:
        raise ValueError(f"width must be > 0, got {width!r}")

    def w(c: int) -> int:
        return max(1, round(c * width))

    kw = {"spatial_dims": spatial_dims, "scale": scale, "in_channels": in_channels, "residual": residual}
    if name == "srcnn":
        return SRCNN(features=(w(64), w(32)), **kw)
    if name == "srdensenet":
        return SRDenseNet(bottleneck_channels=w(64), **kw)
    if name == "rrdbnet":
        return RRDBNet(features=w(64), growth=w(32), **kw)
    raise ValueError(f"unknown SR network {name!r}; expected one of {', '.join(SR_NETWORK_NAMES)}")


class SRInferer(Inferer):
    """Run a 2D SR network on a 2D batch ``(B, C, H, W)`` directly, or on a volume ``(B, C, X, Y, Z)`` slice by slice.

    Volumes go through MONAI ``SliceInferer`` along ``slice_axis`` (0, 1 or 2: the spatial axis that is *not*
    up-sampled), whole slices at a time; the result has the in-plane sizes times the network's scale.
    """

    def __init__(self, slice_axis: int = 2, sw_batch_size: int = 8) -> None:
        super().__init__()
        if slice_axis not in (0, 1, 2):
            raise ValueError(f"slice_axis must be 0, 1 or 2, got {slice_axis!r}")
        self.slice_axis = slice_axis
        self.sw_batch_size = sw_batch_size

    def __call__(self, inputs: torch.Tensor, network: Callable[..., torch.Tensor], *args: Any, **kwargs: Any):
        if inputs.ndim == 4:
            return network(inputs, *args, **kwargs)
        if inputs.ndim == 5:
            inferer = SliceInferer(
                roi_size=(-1, -1), spatial_dim=self.slice_axis, sw_batch_size=self.sw_batch_size, progress=False
            )
            return inferer(inputs, network, *args, **kwargs)
        raise ValueError(f"SRInferer expects (B, C, H, W) or (B, C, X, Y, Z) input, got shape {tuple(inputs.shape)}")

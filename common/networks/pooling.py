"""Internal down-sampling operators that halve every spatial size, in 2D and 3D.

``downsample(name, spatial_dims, channels)`` builds one of ``DOWNSAMPLE_NAMES``:

- ``maxpool``: max pooling, kernel 2, stride 2 (output ``floor(n / 2)``);
- ``strided_conv``: learned convolution, kernel 3, stride 2, padding 1, ``channels -> channels``
  (output ``ceil(n / 2)``, the usual ResNet/U-Net strided convolution);
- ``avgpool``: average pooling, kernel 2, stride 2;
- ``blurpool``: max pooling with stride 1 followed by :class:`BlurPool` (Zhang 2019, "MaxBlurPool");
- ``flc``: :class:`FLCPool`, frequency low-cut pooling (Grabinski et al. 2022);
- ``asap``: :class:`ASAPPool`, aliasing and sinc-artifact free pooling (Grabinski et al. 2023).

All operators take ``(B, C, *spatial)`` tensors with ``len(spatial) == spatial_dims`` and keep ``C``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.networks.layers.factories import Conv, Pool
from torch import nn

__all__ = ["DOWNSAMPLE_NAMES", "ASAPPool", "BlurPool", "FLCPool", "binomial_filter", "downsample"]

DOWNSAMPLE_NAMES = ("maxpool", "strided_conv", "avgpool", "blurpool", "flc", "asap")


def _depthwise_conv(x: torch.Tensor, kernel: torch.Tensor, stride: int, groups: int, spatial_dims: int) -> torch.Tensor:
    """``F.conv{1,2,3}d`` chosen by ``spatial_dims`` (a branch, not a table, so that TorchScript compiles it)."""
    if spatial_dims == 1:
        return F.conv1d(x, kernel, stride=stride, groups=groups)
    if spatial_dims == 2:
        return F.conv2d(x, kernel, stride=stride, groups=groups)
    return F.conv3d(x, kernel, stride=stride, groups=groups)


def _check_dims(spatial_dims: int) -> int:
    if spatial_dims not in (1, 2, 3):
        raise ValueError(f"spatial_dims must be 1, 2 or 3, got {spatial_dims}")
    return spatial_dims


def _check_input(x: torch.Tensor, spatial_dims: int, name: str) -> None:
    if x.ndim != spatial_dims + 2:
        raise ValueError(f"{name} expects a (B, C, {spatial_dims} spatial dims) tensor, got shape {list(x.shape)}")


def binomial_filter(size: int, spatial_dims: int) -> torch.Tensor:
    """Normalised binomial blur kernel of shape ``(size,) * spatial_dims`` (float64).

    The 1D taps are row ``size - 1`` of Pascal's triangle (``[1, 2, 1]``, ``[1, 3, 3, 1]``, ...); the kernel is
    their outer product over the spatial dims, divided by its sum.
    """
    if size < 1:
        raise ValueError(f"blur filter size must be >= 1, got {size}")
    taps = torch.tensor([math.comb(size - 1, i) for i in range(size)], dtype=torch.float64)
    kernel = taps
    for _ in range(_check_dims(spatial_dims) - 1):
        kernel = kernel[..., None] * taps
    return kernel / kernel.sum()


class BlurPool(nn.Module):
    """Anti-aliased down-sampling (Zhang 2019): binomial blur then subsampling, as one depthwise strided conv.

    Input padding is ``[floor((k - 1) / 2), ceil((k - 1) / 2)]`` per axis in ``pad_mode`` (default ``reflect``);
    where an axis is too short for reflection (length <= padding) it falls back to ``replicate``.

    Args:
        spatial_dims: 1, 2 or 3.
        channels: number of channels ``C`` (the filter is applied to each channel separately).
        filter_size: binomial filter length ``k`` (3 -> ``[1, 2, 1] / 4`` per axis).
        stride: subsampling factor (2 halves each size: ``(B, C, n) -> (B, C, ceil(n / 2))``).
        pad_mode: ``reflect``, ``replicate``, ``circular`` or ``constant`` (zeros).
    """

    def __init__(
        self, spatial_dims: int, channels: int, filter_size: int = 3, stride: int = 2, pad_mode: str = "reflect"
    ) -> None:
        super().__init__()
        self.spatial_dims = _check_dims(spatial_dims)
        self.channels = channels
        self.filter_size = filter_size
        self.stride = stride
        self.pad_mode = pad_mode
        left, right = (filter_size - 1) // 2, math.ceil((filter_size - 1) / 2)
        self.padding = (left, right) * spatial_dims  # F.pad order, last axis first (symmetric over axes)
        self._pad = [left, right] * spatial_dims  # the same as a list, the type F.pad takes under TorchScript
        kernel = binomial_filter(filter_size, spatial_dims).float()
        self.register_buffer("kernel", kernel[None, None].repeat(channels, 1, *([1] * spatial_dims)), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(x, self.spatial_dims, "BlurPool")
        if x.shape[1] != self.channels:
            raise ValueError(f"BlurPool built for {self.channels} channels got input with {x.shape[1]}")
        mode = self.pad_mode
        if mode == "reflect" and min(x.shape[2:]) <= max(self._pad):
            mode = "replicate"
        if max(self._pad) > 0:
            x = F.pad(x, self._pad, mode=mode)
        kernel = self.kernel.to(dtype=x.dtype)
        return _depthwise_conv(x, kernel, self.stride, self.channels, self.spatial_dims)

    def extra_repr(self) -> str:
        return f"spatial_dims={self.spatial_dims}, channels={self.channels}, filter_size={self.filter_size}, stride={self.stride}"


def _centre_crop_spectrum(spectrum: torch.Tensor, in_sizes: list[int]) -> torch.Tensor:
    """Keep ``n // 2`` samples centred on DC of an fftshifted spectrum along each trailing axis (``n`` from in_sizes)."""
    spatial_dims = len(in_sizes)
    for i, n in enumerate(in_sizes):
        axis = spectrum.ndim - spatial_dims + i
        keep = n // 2
        spectrum = spectrum.narrow(axis, spectrum.shape[axis] // 2 - keep // 2, keep)
    return spectrum


def _spectral_pool(x: torch.Tensor, spatial_dims: int, window: torch.Tensor | None, in_sizes: list[int]):
    dims = list(range(-spatial_dims, 0))
    compute_dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    spectrum = torch.fft.fftshift(torch.fft.fftn(x.to(compute_dtype), dim=dims, norm="forward"), dim=dims)
    if window is not None:
        spectrum = spectrum * window.to(device=x.device, dtype=compute_dtype)
    low = _centre_crop_spectrum(spectrum, in_sizes)
    out = torch.fft.ifftn(torch.fft.ifftshift(low, dim=dims), dim=dims, norm="forward").real
    return out.to(x.dtype)


class FLCPool(nn.Module):
    """Frequency low-cut pooling (Grabinski et al. 2022): ``(B, C, *n) -> (B, C, *(n // 2))``.

    FFT over the spatial dims with ``norm="forward"``, fftshift, keep the central ``n // 2`` frequencies along every
    axis, ifftshift, inverse FFT with ``norm="forward"``, real part. Amplitudes are preserved (a constant stays the
    same constant), and a signal band-limited to the kept band comes out as exactly ``x[..., ::2, ::2]``.
    Computed in float32 (float64 for float64 input) and cast back, so it is safe under autocast.
    """

    def __init__(self, spatial_dims: int = 2) -> None:
        super().__init__()
        self.spatial_dims = _check_dims(spatial_dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(x, self.spatial_dims, "FLCPool")
        return _spectral_pool(x, self.spatial_dims, None, x.shape[2:])

    def extra_repr(self) -> str:
        return f"spatial_dims={self.spatial_dims}"


def asap_window(sizes: Sequence[int], dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """ASAP's spectral window of shape ``sizes``: the square root of the outer product of symmetric Hamming windows.

    Equal to the product over axes of ``sqrt(hamming(n_axis))``; its value at the centre (DC after fftshift, for odd
    sizes) is 1 and at the corners ``0.08 ** (spatial_dims / 2)``.
    """
    return _asap_window([int(n) for n in sizes], dtype)


def _asap_window(sizes: list[int], dtype: torch.dtype) -> torch.Tensor:
    window = torch.ones((), dtype=dtype)
    for n in sizes:
        w = torch.hamming_window(n, periodic=False, dtype=dtype).clamp_min(0).sqrt()
        window = window.unsqueeze(-1) * w
    return window


class ASAPPool(nn.Module):
    """Aliasing and sinc-artifact free pooling (Grabinski et al. 2023): ``(B, C, *n) -> (B, C, *(n // 2))``.

    As :class:`FLCPool`, but the input is first zero-padded by one sample at the end of each spatial axis (so an even
    size becomes odd and DC sits at the centre of the shifted spectrum) and the full shifted spectrum is multiplied by
    :func:`asap_window` of the padded size before the central ``n // 2`` frequencies are kept.
    """

    def __init__(self, spatial_dims: int = 2) -> None:
        super().__init__()
        self.spatial_dims = _check_dims(spatial_dims)
        self._window_cache: dict[tuple[tuple[int, ...], str], torch.Tensor] = {}

    def window(self, padded_sizes: Sequence[int], device: torch.device | str = "cpu") -> torch.Tensor:
        """:func:`asap_window` for the padded spatial sizes, cached per size and device (float64)."""
        key = (tuple(int(n) for n in padded_sizes), str(device))
        if key not in self._window_cache:
            self._window_cache[key] = asap_window(key[0]).to(device)
        return self._window_cache[key]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(x, self.spatial_dims, "ASAPPool")
        in_sizes = x.shape[2:]
        padded = F.pad(x, [0, 1] * self.spatial_dims)
        if torch.jit.is_scripting():  # no window cache in TorchScript: the window is rebuilt per call
            window = _asap_window(padded.shape[2:], torch.float64).to(x.device)
        else:
            window = self.window(padded.shape[2:], x.device)
        return _spectral_pool(padded, self.spatial_dims, window, in_sizes)

    def extra_repr(self) -> str:
        return f"spatial_dims={self.spatial_dims}"


def downsample(name: str, spatial_dims: int, channels: int, blur_filter_size: int = 3) -> nn.Module:
    """Build the down-sampling operator ``name`` (one of ``DOWNSAMPLE_NAMES``) halving each spatial size.

    Args:
        name: operator name, see the module docstring.
        spatial_dims: 2 or 3 (1 also works).
        channels: input channels ``C``; the output has the same ``C``. Only ``strided_conv`` has parameters
            (``C * C * 3**spatial_dims + C``).
        blur_filter_size: binomial filter length of ``blurpool``.

    Returns:
        an ``nn.Module`` mapping ``(B, C, *n)`` to ``(B, C, *(n // 2))`` (``ceil(n / 2)`` for ``strided_conv``;
        identical for even ``n``).
    """
    _check_dims(spatial_dims)
    if name == "maxpool":
        return Pool[Pool.MAX, spatial_dims](kernel_size=2, stride=2)
    if name == "avgpool":
        return Pool[Pool.AVG, spatial_dims](kernel_size=2, stride=2)
    if name == "strided_conv":
        return Conv[Conv.CONV, spatial_dims](channels, channels, kernel_size=3, stride=2, padding=1)
    if name == "blurpool":
        return nn.Sequential(
            Pool[Pool.MAX, spatial_dims](kernel_size=2, stride=1), BlurPool(spatial_dims, channels, blur_filter_size)
        )
    if name == "flc":
        return FLCPool(spatial_dims)
    if name == "asap":
        return ASAPPool(spatial_dims)
    raise ValueError(f"unknown downsample operator {name!r}; choose one of {DOWNSAMPLE_NAMES}")

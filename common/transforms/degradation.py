"""Simulated low-resolution degradations for super-resolution studies (Shrestha, Wang and Nakarmi 2023).

The paper names its six filters without their sizes; the sizes, phases and grid conventions below, and the
k-space kinds, are ours.

Every kind maps a channel-first image ``(C, *spatial)`` with 2 or 3 spatial dims to ``(C, *(n // s))``:
a low-pass followed by decimation by the integer ``scale`` s along every spatial axis.

Grid and border conventions (identical for every kind):

- Non-divisible sizes: each spatial axis is first cropped to ``(n // s) * s`` by dropping the trailing
  ``n % s`` samples (the grid origin is kept), so the output size is ``floor(n / s)``.
- Sampling phase (option ``phase``), the same for every kind:

  - ``"centred"`` (default): output voxel k is centred at input coordinate ``c_k = (s - 1) / 2 + k * s``, the
    centre of the k-th block of s input voxels, as a resize with ``align_corners=False`` (``bicubic``). The
    filter kinds sample their continuous kernel at the offsets of the input voxels from ``c_k`` (half-integer
    offsets when s is even: even-length taps); ``mean`` is the box of width s + 1 integrated over each voxel
    (taps ``[1/2, 1, ..., 1, 1/2] / (s + 1)``, length s + 2: the block plus a half-weighted one-voxel rim);
    ``median`` takes the window of length s + 2 (the block plus a one-voxel rim); the k-space kinds apply the
    linear phase ramp of a shift by ``(s - 1) / 2``.
  - ``"legacy"``: the grid of earlier versions of this module. The filter kinds (gaussian, hann, hamming:
    length ``2 * tail + 1`` taps; mean / median: window s + 1) keep input samples ``s // 2 + k * s``; an even
    window (mean / median when s is odd) follows ``scipy.ndimage`` and is centred half a voxel before that
    sample; the k-space kinds shift by ``s // 2``; ``bicubic`` stays centred. When s is even the filter and
    k-space kinds are therefore half an input voxel past the block centre, i.e. misregistered against
    ``bicubic`` (and against bicubic interpolation of the low-resolution image) by ``1 / (2 s)`` of an output
    voxel. Kept to measure that misregistration and to reproduce earlier results.
- Borders: filters pad by mirroring without repeating the edge sample (torch ``"reflect"``, scipy ``"mirror"``).
- Metadata: a ``MetaTensor`` input gives a ``MetaTensor`` output whose affine is
  ``affine @ T`` with ``T = diag(s, ..., s, 1)`` translated by the input-voxel coordinate of output voxel 0
  (the window centre), so pixdim is multiplied by s and world positions stay exact. A 2D image with a 4x4
  affine (MONAI's default, or a NIfTI slice) has its first two voxel axes scaled and the third left alone.

Kinds:

- ``bicubic``: antialiased bicubic resize (Keys a = -0.5, kernel stretched by s; PIL / MATLAB ``imresize`` style,
  ``torch.nn.functional.interpolate(..., antialias=True)``, applied separably in 3D).
- ``gaussian``: sampled Gaussian, sigma = s / 2 px, truncated at ``tail = int(4 sigma + 0.5)`` px, normalised
  to sum 1.
- ``mean``: box of width s + 1 px (see the phase for its taps).
- ``median``: median over a cubic window of s + 2 (centred) or s + 1 (legacy) voxels per axis (an even count
  takes the mean of the two middle values when centred, so the window stays symmetric, and the upper median,
  as scipy, in the legacy phase).
- ``hann`` / ``hamming``: separable filters whose taps sample ``a + (1 - a) cos(pi x / s)`` for ``|x| <= s``
  (a = 0.5 Hann, 0.54 Hamming) at the voxel offsets x, normalised to sum 1 (legacy: the symmetric window of
  length 2s + 1, whose Hann end taps are 0; centred with s even: 2s taps at the half-integer offsets).
- ``kspace_truncation``: keep the central ``n // s`` frequencies of every axis (Gibbs ringing); real part.
- ``kspace_hann`` / ``kspace_hamming``: as ``kspace_truncation``, with the kept band of every axis apodised by
  the periodic window of its m = n // s lines centred on DC, ``w(f) = a + (1 - a) cos(2 pi f / m)`` for line
  offsets ``f = -m//2 .. (m-1)//2`` (a = 0.5 Hann: 0 at the Nyquist line; a = 0.54 Hamming: 0.08), applied
  separably (the product of the axes' windows); w(0) = 1 keeps the mean. Less ringing, more blur; real part.
- ``partial_fourier``: as ``kspace_truncation``, then along ``phase_axis`` only the first ``partial_fourier_fraction``
  of the kept lines (lowest-frequency end included) are kept, the rest zero-filled; magnitude image.
- ``undersample``: as ``kspace_truncation``, then Cartesian equispaced undersampling of the kept lines along
  ``phase_axis`` with ``acceleration`` R (lines whose offset from DC is a multiple of R) plus a fully sampled centre
  of ``center_fraction`` of the kept lines, zero-filled; magnitude image (aliasing ghosts).

``RandDegrade`` / ``RandDegraded`` draw one kind per call from ``self.R`` and can add Rician noise
(``monai.transforms.RandRicianNoise`` driven by the same random state).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, RandomizableTransform, RandRicianNoise, Transform
from monai.utils import convert_to_dst_type, convert_to_tensor

CLASSIC_DEGRADATION_KINDS: tuple[str, ...] = ("bicubic", "gaussian", "mean", "median", "hann", "hamming")
KSPACE_DEGRADATION_KINDS: tuple[str, ...] = (
    "kspace_truncation",
    "kspace_hann",
    "kspace_hamming",
    "partial_fourier",
    "undersample",
)
# k-space apodisation windows: w(f) = a + (1 - a) cos(2 pi f / m) over the kept band of m lines
_KSPACE_WINDOWS = {"kspace_hann": 0.5, "kspace_hamming": 0.54}
DEGRADATION_KINDS: tuple[str, ...] = CLASSIC_DEGRADATION_KINDS + KSPACE_DEGRADATION_KINDS

_SEPARABLE_KINDS = ("gaussian", "mean", "hann", "hamming")
PHASES: tuple[str, ...] = ("centred", "legacy")
PHASE_SEPARATOR = "@"


def split_kind(name: str) -> tuple[str, str | None]:
    """``"gaussian@legacy"`` -> ``("gaussian", "legacy")``; ``"gaussian"`` -> ``("gaussian", None)``.

    A test degradation may name its sampling phase after ``@`` (the misregistration evaluation); the kind and the
    phase are checked.
    """
    kind, sep, phase = str(name).partition(PHASE_SEPARATOR)
    _check_kind(kind)
    if sep:
        _check_phase(phase)
        return kind, phase
    return kind, None


def _window_start(scale: int, length: int, phase: str) -> int:
    """Input index of the first tap (window) of output voxel 0."""
    if phase == "centred":
        return int(round((scale - 1) / 2.0 - (length - 1) / 2.0))
    return scale // 2 - length // 2


def _half_offset(scale: int, phase: str) -> float:
    """0.5 when the window centre falls between input voxels (centred phase, even scale), else 0."""
    return 0.5 if phase == "centred" and scale % 2 == 0 else 0.0


def degradation_taps(kind: str, scale: int, phase: str = "centred") -> torch.Tensor:
    """1D taps (float64, sum 1) of a separable filter kind (gaussian, mean, hann or hamming) at ``phase``.

    Tap t weighs input voxel ``_window_start + t + k * s`` of output voxel k (see the module doc).
    """
    _check_phase(phase)
    half = _half_offset(scale, phase)
    if kind == "gaussian":
        sigma = scale / 2.0
        tail = int(max(4.0 * sigma, 0.5) + 0.5)
        x = torch.arange(-tail + half, tail - half + 0.5, dtype=torch.float64)
        taps = torch.exp(-(x**2) / (2.0 * sigma**2))
        return taps / taps.sum()
    if kind == "mean":
        if phase == "legacy":
            return torch.full((scale + 1,), 1.0 / (scale + 1), dtype=torch.float64)
        taps = torch.ones(scale + 2, dtype=torch.float64)
        taps[0] = taps[-1] = 0.5
        return taps / (scale + 1)
    if kind in ("hann", "hamming"):
        a = 0.5 if kind == "hann" else 0.54
        x = torch.arange(-scale + half, scale - half + 0.5, dtype=torch.float64)
        taps = a + (1.0 - a) * torch.cos(math.pi * x / scale)
        return taps / taps.sum()
    raise ValueError(f"{kind!r} is not a separable degradation kind; expected one of {_SEPARABLE_KINDS}.")


def _mirror_index(index: torch.Tensor, n: int) -> torch.Tensor:
    """Map indices outside ``[0, n)`` back inside by mirroring without repeating the edge (scipy ``"mirror"``)."""
    if n == 1:
        return torch.zeros_like(index)
    index = index.remainder(2 * n - 2)
    return torch.where(index >= n, 2 * n - 2 - index, index)


def _mirror_pad(x: torch.Tensor, dim: int, left: int, right: int) -> torch.Tensor:
    """Pad ``dim`` by mirroring without repeating the edge, any pad width and any size."""
    return x.index_select(dim, _mirror_index(torch.arange(-left, x.shape[dim] + right), x.shape[dim]))


def _filter_decimate_axis(x: torch.Tensor, taps: torch.Tensor, axis: int, scale: int, start: int) -> torch.Tensor:
    """Correlate ``x`` (C, *spatial) with ``taps`` along ``axis`` (a tensor dim): output k is
    ``sum_t taps[t] * x[start + t + k * s]`` (mirrored at the borders).

    A weighted sum of strided views of ``x``; only the few border outputs whose window leaves the image gather
    mirrored samples, so neither a padded copy nor the discarded samples are computed.
    """
    n, m = x.shape[axis], x.shape[axis] // scale
    shape = list(x.shape)
    shape[axis] = m
    out = torch.zeros(shape, dtype=x.dtype, device=x.device)
    for t, weight in enumerate(taps.tolist()):
        position = torch.arange(m) * scale + (start + t)
        valid = ((position >= 0) & (position < n)).nonzero().flatten()
        if valid.numel():
            first, last = int(valid[0]), int(valid[-1])
            index = [slice(None)] * x.ndim
            index[axis] = slice(int(position[first]), int(position[last]) + 1, scale)
            target = [slice(None)] * x.ndim
            target[axis] = slice(first, last + 1)
            out[tuple(target)].add_(x[tuple(index)], alpha=weight)
        border = ((position < 0) | (position >= n)).nonzero().flatten()
        if border.numel():
            gathered = x.index_select(axis, _mirror_index(position[border], n))
            out.index_add_(axis, border, gathered, alpha=weight)
    return out


def _median_decimate(x: torch.Tensor, scale: int, phase: str) -> torch.Tensor:
    """Median over cubic windows (s + 2 centred, s + 1 legacy) evaluated only at the kept samples; x is (C, *spatial)."""
    n_spatial = x.ndim - 1
    length = scale + 2 if phase == "centred" else scale + 1
    start = _window_start(scale, length, phase)
    left = max(0, -start)
    padded = x
    for dim in range(1, n_spatial + 1):
        right = max(0, (x.shape[dim] // scale - 1) * scale + start + length - x.shape[dim])
        padded = _mirror_pad(padded, dim, left, right)
    windows = padded[(slice(None),) + (slice(start + left, None),) * n_spatial]
    for axis in range(n_spatial):
        windows = windows.unfold(axis + 1, length, scale)
    windows = windows[(slice(None),) + tuple(slice(0, n // scale) for n in x.shape[1:])]
    flat = windows.reshape(*windows.shape[: n_spatial + 1], -1)
    count = flat.shape[-1]
    upper = flat.kthvalue(count // 2 + 1, dim=-1).values
    if phase == "centred" and count % 2 == 0:  # symmetric: the mean of the two middle values
        return 0.5 * (flat.kthvalue(count // 2, dim=-1).values + upper)
    return upper


def _bicubic_decimate(x: torch.Tensor, scale: int) -> torch.Tensor:
    """Antialiased bicubic resize by 1/s (x is (C, *spatial), sizes divisible by s), separable in 3D."""
    out_size = [n // scale for n in x.shape[1:]]
    if x.ndim == 3:
        return F.interpolate(x[None], size=out_size, mode="bicubic", antialias=True, align_corners=False)[0]
    c, d, h, w = x.shape
    planes = F.interpolate(
        x.reshape(1, c * d, h, w), size=out_size[1:], mode="bicubic", antialias=True, align_corners=False
    )
    planes = planes.reshape(1, c, d, out_size[1] * out_size[2])
    depth = F.interpolate(
        planes, size=(out_size[0], out_size[1] * out_size[2]), mode="bicubic", antialias=True, align_corners=False
    )
    return depth.reshape(c, *out_size)


def _kspace_decimate(
    x: torch.Tensor,
    scale: int,
    kind: str,
    phase_axis: int,
    partial_fourier_fraction: float,
    acceleration: int,
    center_fraction: float,
    shift: float,
) -> torch.Tensor:
    """Keep the central n // s frequencies per axis (plus the kind's line mask); x is (C, *spatial).

    The operator is a tensor product of 1D operators (FFT, band selection, phase ramp to ``shift``, line mask,
    inverse FFT on the small grid), so it is applied axis by axis and each pass shrinks the data.
    """
    image = x.to(torch.float64) if x.dtype == torch.float64 else x.to(torch.float32)
    for axis, n in enumerate(x.shape[1:]):
        m = n // scale
        freqs = torch.fft.fftfreq(m, d=1.0 / m, dtype=torch.float64).round().long()  # FFT order, -m//2 .. (m-1)//2
        line = torch.exp(2j * math.pi * freqs.double() * shift / n)
        if kind in _KSPACE_WINDOWS:
            a = _KSPACE_WINDOWS[kind]
            line = line * (a + (1.0 - a) * torch.cos(2.0 * math.pi * freqs.double() / m))
        if axis == phase_axis and kind == "partial_fourier":
            line = line * ((freqs + m // 2) < math.ceil(partial_fourier_fraction * m))
        elif axis == phase_axis and kind == "undersample":
            n_center = max(1, round(center_fraction * m))
            centre = (freqs >= -(n_center // 2)) & (freqs < n_center - n_center // 2)
            line = line * ((freqs % acceleration == 0) | centre)
        spectrum = torch.fft.fft(image, dim=axis + 1, norm="forward").index_select(axis + 1, freqs % n)
        shape = [1] * x.ndim
        shape[axis + 1] = m
        spectrum = spectrum * line.to(spectrum.dtype).reshape(shape)
        image = torch.fft.ifft(spectrum, dim=axis + 1, norm="forward")
    image = image.abs() if kind in ("partial_fourier", "undersample") else image.real
    return image.to(x.dtype)


def _centre_offset(kind: str, scale: int, phase: str = "centred") -> float:
    """Input-voxel coordinate of the centre of output voxel 0."""
    if kind == "bicubic" or phase == "centred":
        return (scale - 1) / 2.0
    if kind in ("mean", "median") and (scale + 1) % 2 == 0:
        return scale // 2 - 0.5
    return float(scale // 2)


def degrade(
    img: torch.Tensor,
    kind: str,
    scale: int = 2,
    phase_axis: int = 0,
    partial_fourier_fraction: float = 0.625,
    acceleration: int = 4,
    center_fraction: float = 0.08,
    phase: str = "centred",
) -> torch.Tensor:
    """Degrade a channel-first float tensor (C, *spatial) to (C, *(n // scale)); metadata is not handled here."""
    _check_phase(phase)
    n_spatial = img.ndim - 1
    x = img[(slice(None),) + tuple(slice(0, (n // scale) * scale) for n in img.shape[1:])].contiguous()
    if kind in _SEPARABLE_KINDS:
        taps = degradation_taps(kind, scale, phase)
        start = _window_start(scale, taps.numel(), phase)
        out = x
        for axis in range(1, n_spatial + 1):
            out = _filter_decimate_axis(out, taps, axis, scale, start)
        return out
    if kind == "median":
        return _median_decimate(x, scale, phase)
    if kind == "bicubic":
        return _bicubic_decimate(x, scale)
    shift = (scale - 1) / 2.0 if phase == "centred" else float(scale // 2)
    return _kspace_decimate(x, scale, kind, phase_axis, partial_fourier_fraction, acceleration, center_fraction, shift)


class Degrade(Transform):
    """Low-pass and decimate a channel-first image ``(C, H, W[, D])`` by an integer ``scale`` (see module doc).

    Args:
        kind: one of ``DEGRADATION_KINDS``.
        scale: integer decimation factor s >= 1; output spatial size is ``n // s`` per axis.
        phase_axis: spatial axis (0-based) of the phase-encoding lines for ``partial_fourier`` / ``undersample``.
        partial_fourier_fraction: fraction of phase-encoding lines kept by ``partial_fourier``, in (0.5, 1].
        acceleration: keep every R-th phase-encoding line for ``undersample``.
        center_fraction: fully sampled central fraction of the lines for ``undersample``.
        phase: sampling phase, ``"centred"`` (every kind samples at the centres of the s x s blocks, as
            ``bicubic``) or ``"legacy"`` (the filter and k-space kinds half an input voxel past it when s is
            even; see the module doc).

    Returns the same container type as the input (float32 unless the input is float64); a ``MetaTensor`` keeps its
    metadata with the affine scaled by s and shifted to the centre of output voxel 0.
    """

    def __init__(
        self,
        kind: str,
        scale: int = 2,
        phase_axis: int = 0,
        partial_fourier_fraction: float = 0.625,
        acceleration: int = 4,
        center_fraction: float = 0.08,
        phase: str = "centred",
    ) -> None:
        _check_kind(kind)
        _check_phase(phase)
        if int(scale) != scale or scale < 1:
            raise ValueError(f"scale must be a positive integer, got {scale!r}.")
        if not 0.5 < partial_fourier_fraction <= 1.0:
            raise ValueError(f"partial_fourier_fraction must be in (0.5, 1], got {partial_fourier_fraction}.")
        if int(acceleration) != acceleration or acceleration < 1:
            raise ValueError(f"acceleration must be a positive integer, got {acceleration!r}.")
        if not 0.0 <= center_fraction <= 1.0:
            raise ValueError(f"center_fraction must be in [0, 1], got {center_fraction}.")
        self.kind = kind
        self.scale = int(scale)
        self.phase_axis = phase_axis
        self.partial_fourier_fraction = partial_fourier_fraction
        self.acceleration = int(acceleration)
        self.center_fraction = center_fraction
        self.phase = phase

    def __call__(self, img: Any, kind: str | None = None, phase: str | None = None) -> Any:
        """Degrade ``img`` (C, *spatial) with ``kind`` at ``phase`` (defaults: those given at construction)."""
        kind = self.kind if kind is None else kind
        phase = self.phase if phase is None else phase
        _check_kind(kind)
        _check_phase(phase)
        n_spatial = len(img.shape) - 1
        if n_spatial not in (2, 3):
            raise ValueError(
                f"expected a channel-first image (C, H, W[, D]) with 2 or 3 spatial dims, got {img.shape}."
            )
        if not -n_spatial <= self.phase_axis < n_spatial:
            raise ValueError(f"phase_axis {self.phase_axis} is out of range for {n_spatial} spatial dims.")
        if min(img.shape[1:]) < self.scale:
            raise ValueError(f"every spatial size must be at least scale={self.scale}, got {tuple(img.shape[1:])}.")
        x = convert_to_tensor(img, track_meta=False)
        if not torch.is_floating_point(x) or x.dtype in (torch.float16, torch.bfloat16):
            x = x.to(torch.float32)
        out = degrade(
            x,
            kind,
            self.scale,
            self.phase_axis % n_spatial,
            self.partial_fourier_fraction,
            self.acceleration,
            self.center_fraction,
            phase,
        )
        if isinstance(img, MetaTensor):
            rank = img.affine.shape[-1] - 1  # a 2D image may carry a 3D (4x4) affine, e.g. a NIfTI slice
            if rank < n_spatial:
                raise ValueError(
                    f"affine of shape {tuple(img.affine.shape)} is too small for {n_spatial} spatial dims."
                )
            transform = torch.eye(rank + 1, dtype=torch.float64)
            offset = _centre_offset(kind, self.scale, phase)
            for axis in range(n_spatial):
                transform[axis, axis] = float(self.scale)
                transform[axis, rank] = offset
            affine = img.affine.to(torch.float64) @ transform
            meta = dict(img.meta)
            meta["spatial_shape"] = np.asarray(out.shape[1:])
            result = MetaTensor(out, meta=meta, applied_operations=list(img.applied_operations))
            result.affine = affine.to(img.affine.dtype)
            return result
        return convert_to_dst_type(out, img, dtype=out.dtype)[0]


class Degraded(MapTransform):
    """Dictionary version of :class:`Degrade`: degrades ``data[key]`` for every key."""

    def __init__(self, keys: KeysCollection, kind: str, scale: int = 2, allow_missing_keys: bool = False, **kwargs):
        super().__init__(keys, allow_missing_keys)
        self.degrade = Degrade(kind, scale, **kwargs)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.degrade(d[key])
        return d


class RandDegrade(RandomizableTransform):
    """Degrade with a kind drawn uniformly from ``kinds`` by ``self.R`` on every call (optionally Rician noise).

    Args:
        kinds: the kinds to draw from (default: the six classic kinds of the SR bias study).
        scale: integer decimation factor.
        rician_std: standard deviation of the Rician noise added after degradation (0 disables it; absolute
            intensity units, or a fraction of the image std when ``rician_relative``).
        rician_relative: interpret ``rician_std`` relative to the degraded image's standard deviation.
        kwargs: the k-space options and ``phase`` of :class:`Degrade`.

    The kind drawn by the last call is in ``self.kind``.
    """

    def __init__(
        self,
        kinds: Sequence[str] = CLASSIC_DEGRADATION_KINDS,
        scale: int = 2,
        rician_std: float = 0.0,
        rician_relative: bool = False,
        **kwargs,
    ) -> None:
        RandomizableTransform.__init__(self, prob=1.0)
        kinds = tuple(kinds)
        if not kinds:
            raise ValueError("kinds must name at least one degradation kind.")
        for kind in kinds:
            _check_kind(kind)
        if rician_std < 0:
            raise ValueError(f"rician_std must be >= 0, got {rician_std}.")
        self.kinds = kinds
        self.degrade = Degrade(kinds[0], scale, **kwargs)
        self.rician_std = rician_std
        self.rician = RandRicianNoise(prob=1.0, std=rician_std, relative=rician_relative, sample_std=False)
        self.rician.set_random_state(state=self.R)
        self.kind: str = kinds[0]

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None) -> RandDegrade:
        super().set_random_state(seed, state)
        self.rician.set_random_state(state=self.R)
        return self

    def randomize(self, data: Any = None) -> None:
        self.kind = self.kinds[self.R.randint(len(self.kinds))]

    def __call__(self, img: Any, randomize: bool = True) -> Any:
        """Degrade ``img`` (C, *spatial); ``randomize=False`` reuses the last kind (noise is always redrawn)."""
        if randomize:
            self.randomize()
        out = self.degrade(img, kind=self.kind)
        if self.rician_std > 0:
            out = self.rician(out)
        return out


class RandDegraded(RandomizableTransform, MapTransform):
    """Dictionary version of :class:`RandDegrade`: one kind per call for all keys, stored in ``data[kind_key]``."""

    def __init__(
        self,
        keys: KeysCollection,
        kinds: Sequence[str] = CLASSIC_DEGRADATION_KINDS,
        scale: int = 2,
        kind_key: str = "degradation",
        allow_missing_keys: bool = False,
        **kwargs,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob=1.0)
        self.rand_degrade = RandDegrade(kinds, scale, **kwargs)
        self.kind_key = kind_key

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None) -> RandDegraded:
        super().set_random_state(seed, state)
        self.rand_degrade.set_random_state(state=self.R)
        return self

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        self.rand_degrade.randomize()
        for key in self.key_iterator(d):
            d[key] = self.rand_degrade(d[key], randomize=False)
        d[self.kind_key] = self.rand_degrade.kind
        return d


def _check_phase(phase: str) -> None:
    if phase not in PHASES:
        raise ValueError(f"unknown sampling phase {phase!r}; expected one of {PHASES}.")


def _check_kind(kind: str) -> None:
    if kind not in DEGRADATION_KINDS:
        raise ValueError(f"unknown degradation kind {kind!r}; expected one of {DEGRADATION_KINDS}.")

"""Transforms that build and place super-resolution pairs.

- :class:`DegradeByKeyd` degrades each item with the kind stored in the item itself (``data["degradation"]``),
  so a datalist fixes which degradation every training or test image gets (deterministic test sets, the
  equal-share ``combined`` training set).
- :class:`RandAlignedCropSamplesd` takes random aligned patch pairs of a high-resolution image and its degraded
  copy, so training can degrade whole slices once (before a cache) and crop per iteration.
- :func:`training_pair_transforms` is the SR bundle's training chain: load, crop to the head, degrade once, then
  random aligned patch pairs.
- :class:`UpsampledAffine` / :class:`UpsampledAffined` give a network's up-sampled output the affine of the
  finer grid (pixdim divided by the size ratio, same field of view), since a network passes its input's
  metadata through unchanged.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from copy import deepcopy
from typing import Any

import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, RandomizableTransform, SpatialCrop, Transform
from monai.transforms.traits import MultiSampleTrait
from monai.transforms.utils import scale_affine
from monai.utils import ensure_tuple, ensure_tuple_rep

from common.transforms.degradation import DEGRADATION_KINDS, Degrade, split_kind


class DegradeByKeyd(MapTransform):
    """Degrade ``data[key]`` (C, *spatial) by ``scale`` with the kind named in ``data[kind_key]``.

    Args:
        keys: image keys to degrade (in place).
        kind_key: item key holding one of ``DEGRADATION_KINDS``, optionally with a sampling phase after ``@``
            (``"gaussian@legacy"``: the misregistered grid of earlier versions; see
            :mod:`common.transforms.degradation`).
        scale: integer decimation factor.
        phase: sampling phase of kinds named without one (``"centred"``: LR pixel k at the centre of HR block k).
        kwargs: k-space options of :class:`common.transforms.Degrade`.
    """

    def __init__(
        self,
        keys: KeysCollection,
        kind_key: str = "degradation",
        scale: int = 2,
        phase: str = "centred",
        allow_missing_keys: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.kind_key = kind_key
        self.degrade = Degrade(DEGRADATION_KINDS[0], scale, phase=phase, **kwargs)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        if self.kind_key not in d:
            raise KeyError(f"DegradeByKeyd: item has no {self.kind_key!r} key naming its degradation kind")
        try:
            kind, phase = split_kind(d[self.kind_key])
        except ValueError as error:
            raise ValueError(f"DegradeByKeyd: {error}") from None
        for key in self.key_iterator(d):
            d[key] = self.degrade(d[key], kind=kind, phase=phase)
        return d


class RandAlignedCropSamplesd(RandomizableTransform, MapTransform, MultiSampleTrait):
    """``num_samples`` random aligned patch pairs of high-resolution images and their degraded copies.

    Each sample draws one low-resolution (LR) start ``q`` per spatial axis from ``self.R``, uniformly over the
    positions where the patch fits. High-resolution (HR) images (C, *N) are cropped to ``[q * s, q * s + P)`` and
    LR images (C, *(N // s)) to ``[q, q + P // s)`` (``P`` = ``roi_size``, ``s`` = ``scale``, in pixels). LR pixel k
    of :class:`common.transforms.Degrade` is the low-pass of the HR window centred at ``(s - 1) / 2 + k * s`` (the
    centred phase; the legacy phase shifts the filter kinds to ``s // 2 + k * s``), so the LR patch is the degradation of the HR patch with the image around
    it as context: for the local filter kinds, degrading the HR patch alone gives the same pixels away from the
    patch edges.

    Args:
        hr_keys: HR image keys, all of one spatial size N (at least ``roi_size``).
        lr_keys: LR image keys, spatial size ``N // scale``.
        roi_size: HR patch size per spatial axis (or one int for all), each a multiple of ``scale``.
        scale: integer decimation factor between the HR and LR grids.
        num_samples: patch pairs per call.

    Returns a list of ``num_samples`` dicts; keys other than ``hr_keys`` and ``lr_keys`` are copied into each.
    ``MetaTensor`` inputs are cropped with MONAI ``SpatialCrop`` (affine and applied operations updated); other
    arrays are sliced.
    """

    def __init__(
        self,
        hr_keys: KeysCollection,
        lr_keys: KeysCollection,
        roi_size: Sequence[int] | int,
        scale: int = 2,
        num_samples: int = 1,
        allow_missing_keys: bool = False,
    ) -> None:
        self.hr_keys, self.lr_keys = ensure_tuple(hr_keys), ensure_tuple(lr_keys)
        MapTransform.__init__(self, self.hr_keys + self.lr_keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob=1.0)
        if int(scale) != scale or scale < 1:
            raise ValueError(f"RandAlignedCropSamplesd: scale must be a positive integer, got {scale!r}")
        if any(int(r) % int(scale) or int(r) < 1 for r in ensure_tuple(roi_size)):
            raise ValueError(f"RandAlignedCropSamplesd: roi_size {roi_size} must be positive multiples of {scale}")
        if num_samples < 1:
            raise ValueError(f"RandAlignedCropSamplesd: num_samples must be >= 1, got {num_samples}")
        self.roi_size = roi_size
        self.scale = int(scale)
        self.num_samples = int(num_samples)
        self.lr_starts: list[tuple[int, ...]] = []

    def randomize(self, lr_size: Sequence[int], lr_patch: Sequence[int]) -> None:
        """Draw ``num_samples`` LR starts for an LR image of spatial size ``lr_size`` and patches of ``lr_patch``."""
        self.lr_starts = [
            tuple(int(self.R.randint(0, m - p + 1)) for m, p in zip(lr_size, lr_patch)) for _ in range(self.num_samples)
        ]

    def __call__(self, data: Mapping[Hashable, Any]) -> list[dict[Hashable, Any]]:
        d = dict(data)
        hr_sizes = {tuple(d[k].shape[1:]) for k in self.key_iterator(d) if k in self.hr_keys}
        lr_sizes = {tuple(d[k].shape[1:]) for k in self.key_iterator(d) if k in self.lr_keys}
        if len(hr_sizes) != 1 or len(lr_sizes) != 1:
            raise ValueError(
                f"RandAlignedCropSamplesd: expected one HR and one LR spatial size, got HR {sorted(hr_sizes)}, "
                f"LR {sorted(lr_sizes)} (keys {self.hr_keys}, {self.lr_keys})"
            )
        (hr_size,), (lr_size,) = hr_sizes, lr_sizes
        hr_patch = ensure_tuple_rep(self.roi_size, len(hr_size))
        lr_patch = tuple(int(p) // self.scale for p in hr_patch)
        if lr_size != tuple(n // self.scale for n in hr_size) or any(p > m for p, m in zip(lr_patch, lr_size)):
            raise ValueError(
                f"RandAlignedCropSamplesd: HR size {hr_size} and LR size {lr_size} are not a x{self.scale} pair "
                f"holding a {tuple(hr_patch)} patch"
            )
        self.randomize(lr_size, lr_patch)
        samples = []
        for lr_start in self.lr_starts:
            sample = {k: deepcopy(v) for k, v in d.items() if k not in self.keys}
            for key in self.key_iterator(d):
                if key in self.hr_keys:
                    sample[key] = _crop(d[key], [q * self.scale for q in lr_start], hr_patch)
                else:
                    sample[key] = _crop(d[key], lr_start, lr_patch)
            samples.append(sample)
        return samples


def _crop(img: Any, start: Sequence[int], size: Sequence[int]) -> Any:
    """``img[:, start : start + size]`` over the spatial axes of a channel-first image."""
    slices = [slice(int(a), int(a) + int(n)) for a, n in zip(start, size)]
    if isinstance(img, MetaTensor):
        return SpatialCrop(roi_slices=slices)(img)
    return img[(slice(None), *slices)]


class UpsampledAffine(Transform):
    """Set the affine of ``img`` (C, *fine) to the grid of ``ref`` (C, *coarse) up-sampled to ``fine``.

    The new affine is ``ref.affine @ S`` with ``S`` scaling voxel axis i by ``coarse_i / fine_i`` about the
    image centre (``align_corners=False``, as ``torch.nn.functional.interpolate`` and MONAI ``Resize``): the
    field of view is kept and pixdim is divided by the up-sampling factor. Axes whose size is unchanged keep
    their spacing (slice-by-slice SR of a volume).
    """

    def __call__(self, img: Any, ref: Any) -> MetaTensor:
        if not isinstance(ref, MetaTensor):
            raise TypeError(f"UpsampledAffine: the reference image must be a MetaTensor, got {type(ref).__name__}")
        coarse, fine = tuple(ref.shape[1:]), tuple(img.shape[1:])
        if len(coarse) != len(fine):
            raise ValueError(f"UpsampledAffine: spatial ranks differ, reference {coarse} vs image {fine}")
        out = img if isinstance(img, MetaTensor) else MetaTensor(img)
        out = out.clone()
        out.meta = dict(ref.meta)
        s = torch.as_tensor(scale_affine(coarse, fine), dtype=torch.float64)
        affine = ref.affine.to(torch.float64)
        r = affine.shape[0] - 1
        out.affine = (affine @ _embed(s, r)).to(ref.affine.dtype)
        out.meta["spatial_shape"] = torch.as_tensor(fine)
        return out


def _embed(s: torch.Tensor, r: int) -> torch.Tensor:
    """Embed a (d+1)x(d+1) homogeneous matrix into (r+1)x(r+1) (r >= d spatial dims of the affine)."""
    d = s.shape[0] - 1
    if d == r:
        return s
    out = torch.eye(r + 1, dtype=s.dtype)
    out[:d, :d] = s[:d, :d]
    out[:d, r] = s[:d, d]
    return out


class UpsampledAffined(MapTransform):
    """Dictionary version of :class:`UpsampledAffine`: ``data[key]`` gets the up-sampled grid of ``data[ref_key]``."""

    def __init__(self, keys: KeysCollection, ref_key: str = "image", allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.ref_key = ref_key
        self.transform = UpsampledAffine()

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.transform(d[key], d[self.ref_key])
        return d


def training_pair_transforms(
    load_hr: Sequence[Any], make_pair: Sequence[Any], patch_size: int, scale: int, patches_per_image: int
) -> list:
    """The SR bundle's training chain, in this order: ``load_hr`` (read the high-resolution image into
    ``"image"``); crop to the foreground (margin 4) and pad to at least ``patch_size`` square; ``make_pair``
    (copy it to ``"label"``, degrade ``"image"``); plain tensors; ``patches_per_image`` random aligned patch
    pairs (:class:`RandAlignedCropSamplesd`, HR ``patch_size``, LR ``patch_size / scale``).

    Everything before the random crop is deterministic, so a ``CacheDataset`` caches the degraded whole slices.
    """
    from monai.transforms import CropForegroundd, EnsureTyped, SpatialPadd

    return [
        *load_hr,
        CropForegroundd(keys="image", source_key="image", margin=4, allow_smaller=True),
        SpatialPadd(keys="image", spatial_size=[patch_size, patch_size]),
        *make_pair,
        EnsureTyped(keys=["image", "label"], track_meta=False),
        RandAlignedCropSamplesd(
            hr_keys="label", lr_keys="image", roi_size=patch_size, scale=scale, num_samples=patches_per_image
        ),
    ]

"""Transforms that build and place super-resolution pairs.

- :class:`DegradeByKeyd` degrades each item with the kind stored in the item itself (``data["degradation"]``),
  so a datalist fixes which degradation every training or test image gets (deterministic test sets, the
  equal-share ``combined`` training set).
- :class:`UpsampledAffine` / :class:`UpsampledAffined` give a network's up-sampled output the affine of the
  finer grid (pixdim divided by the size ratio, same field of view), since a network passes its input's
  metadata through unchanged.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform
from monai.transforms.utils import scale_affine

from common.transforms.degradation import DEGRADATION_KINDS, Degrade


class DegradeByKeyd(MapTransform):
    """Degrade ``data[key]`` (C, *spatial) by ``scale`` with the kind named in ``data[kind_key]``.

    Args:
        keys: image keys to degrade (in place).
        kind_key: item key holding one of ``DEGRADATION_KINDS``.
        scale: integer decimation factor.
        kwargs: k-space options of :class:`common.transforms.Degrade`.
    """

    def __init__(
        self,
        keys: KeysCollection,
        kind_key: str = "degradation",
        scale: int = 2,
        allow_missing_keys: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.kind_key = kind_key
        self.degrade = Degrade(DEGRADATION_KINDS[0], scale, **kwargs)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        if self.kind_key not in d:
            raise KeyError(f"DegradeByKeyd: item has no {self.kind_key!r} key naming its degradation kind")
        kind = d[self.kind_key]
        if kind not in DEGRADATION_KINDS:
            raise ValueError(f"DegradeByKeyd: unknown degradation kind {kind!r}; expected one of {DEGRADATION_KINDS}")
        for key in self.key_iterator(d):
            d[key] = self.degrade(d[key], kind=kind)
        return d


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

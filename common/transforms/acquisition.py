"""Acquisition simulation: a high-resolution image or label map seen by a coarser scanner grid.

Grid convention (same field-of-view corner): along every axis the input has ``N`` voxels of
size ``s`` (mm) and the output voxels of size ``t`` (mm). Both grids start at the same outer
corner (half a voxel before the first voxel centre). The output has ``M = ceil(N * s / t)``
voxels, so it covers the whole input field of view (exactly the same one when ``N * s`` is a
multiple of ``t``). Output voxel ``j`` has its centre at input voxel coordinate
``x = (j + 0.5) * t / s - 0.5``, which gives the new affine ``A_in @ [diag(t/s), (t/s - 1) / 2]``.

Images: a Gaussian blur whose FWHM equals the target voxel size (``sigma = 0.4247 * t / s``
input voxels, only along axes with ``t > s``), then trilinear sampling at the output centres
(edge values are repeated beyond the input field of view).

Labels: majority vote (mode pooling) over the covered input voxels. Each input voxel is covered
by the output voxel whose cell contains its centre (nearest-centre assignment); for integer
factors this is exact block mode. Ties go to the tied label whose voxels lie closest to the
output centre (smallest sum of squared distances), remaining ties to the smallest label value.
An output voxel that covers no input centre (only when ``t < s``) takes the label of the input
voxel containing its centre.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform
from scipy import ndimage

FWHM_TO_SIGMA = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))  # 0.4247

__all__ = ["FWHM_TO_SIGMA", "SimulateLowResolution", "SimulateLowResolutiond", "fwhm_sigma_voxels"]


def fwhm_sigma_voxels(source_spacing: Sequence[float], target_spacing: Sequence[float]) -> list[float]:
    """Gaussian sigma in source voxels per axis: ``0.4247 * t / s`` where ``t > s``, else 0."""
    return [FWHM_TO_SIGMA * t / s if t > s else 0.0 for s, t in zip(source_spacing, target_spacing)]


def _spacing_from_affine(affine: np.ndarray, ndim: int) -> np.ndarray:
    return np.sqrt((affine[:ndim, :ndim] ** 2).sum(axis=0))


def _affine_of(img, ndim: int) -> np.ndarray:
    if isinstance(img, MetaTensor):
        aff = np.asarray(img.affine, dtype=np.float64)
        if aff.shape[0] != ndim + 1:  # e.g. a 2D image read with a 3D affine: keep the leading axes
            full = np.eye(ndim + 1)
            full[:ndim, :ndim] = aff[:ndim, :ndim]
            full[:ndim, ndim] = aff[:ndim, -1]
            aff = full
        return aff
    return np.eye(ndim + 1)


class SimulateLowResolution(Transform):
    """Simulate acquisition at a coarser voxel size (see the module docstring for the conventions).

    Args:
        target_spacing: output voxel size in mm, one number or one per spatial axis.
        is_label: mode pooling of an integer label map instead of blur + trilinear.
        num_classes: number of label values (``0..num_classes-1``); inferred from the data when None.

    Input: array of shape (C, H, W[, D]); a ``MetaTensor`` provides the affine (otherwise the
    identity, 1 mm voxels). Output: ``MetaTensor`` (C, H', W'[, D']) with the new affine; images
    as float32, labels in the input dtype.
    """

    backend = [torch.Tensor.__name__]

    def __init__(self, target_spacing: float | Sequence[float], is_label: bool = False, num_classes: int | None = None):
        self.target_spacing = target_spacing
        self.is_label = is_label
        self.num_classes = num_classes

    def _target(self, ndim: int) -> np.ndarray:
        t = np.atleast_1d(np.asarray(self.target_spacing, dtype=np.float64))
        if t.size == 1:
            t = np.repeat(t, ndim)
        if t.size < ndim:
            raise ValueError(f"target_spacing {self.target_spacing} has fewer entries than {ndim} spatial axes")
        t = t[:ndim]
        if np.any(t <= 0):
            raise ValueError(f"target_spacing must be positive, got {self.target_spacing}")
        return t

    def __call__(self, img, is_label: bool | None = None) -> MetaTensor:
        is_label = self.is_label if is_label is None else is_label
        ndim = img.ndim - 1
        if ndim not in (2, 3):
            raise ValueError(f"expected a channel-first 2D or 3D array (C, H, W[, D]), got shape {tuple(img.shape)}")
        affine = _affine_of(img, ndim)
        source = _spacing_from_affine(affine, ndim)
        target = self._target(ndim)
        ratio = target / source
        in_shape = np.asarray(img.shape[1:])
        out_shape = np.maximum(1, np.ceil(in_shape / ratio - 1e-6).astype(int))
        scale = np.eye(ndim + 1)
        scale[:ndim, :ndim] = np.diag(ratio)
        scale[:ndim, ndim] = (ratio - 1.0) / 2.0
        new_affine = affine @ scale

        data = img.detach().cpu().numpy() if isinstance(img, torch.Tensor) else np.asarray(img)
        if is_label:
            out = np.stack([self._mode_pool(ch, ratio, out_shape) for ch in data]).astype(data.dtype, copy=False)
        else:
            sigma = fwhm_sigma_voxels(source, target)
            centres = [(np.arange(m) + 0.5) * r - 0.5 for m, r in zip(out_shape, ratio)]
            coords = np.stack(np.meshgrid(*centres, indexing="ij"))
            out = np.stack(
                [
                    ndimage.map_coordinates(
                        ndimage.gaussian_filter(ch.astype(np.float32), sigma, mode="nearest"),
                        coords,
                        order=1,
                        mode="nearest",
                    )
                    for ch in data
                ]
            ).astype(np.float32)
        meta = dict(img.meta) if isinstance(img, MetaTensor) else {}
        meta.pop("affine", None)
        meta["spatial_shape"] = out_shape.copy()
        if "pixdim" in meta:  # NIfTI header entries copied by LoadImage: keep them consistent with the new grid
            meta["pixdim"] = np.array(meta["pixdim"], dtype=np.float64, copy=True)
            meta["pixdim"][1 : 1 + ndim] = target
        if "dim" in meta:
            meta["dim"] = np.array(meta["dim"], copy=True)
            meta["dim"][1 : 1 + ndim] = out_shape
        return MetaTensor(torch.as_tensor(out), affine=torch.as_tensor(new_affine, dtype=torch.float64), meta=meta)

    def _mode_pool(self, lab: np.ndarray, ratio: np.ndarray, out_shape: np.ndarray) -> np.ndarray:
        """Majority vote of one channel (H, W[, D]) onto the output grid (shape ``out_shape``)."""
        if not np.allclose(lab, np.round(lab)) or lab.min() < 0:
            raise ValueError("label maps for SimulateLowResolution must hold non-negative integers")
        lab = lab.astype(np.int64)
        n_cls = int(self.num_classes if self.num_classes is not None else lab.max() + 1)
        if lab.max() >= n_cls:
            raise ValueError(f"label value {int(lab.max())} >= num_classes={n_cls}")
        # output cell of each input voxel centre, and its squared distance (output voxel units) to that cell's centre
        idx, dist2 = [], []
        for n, r, m in zip(lab.shape, ratio, out_shape):
            pos = (np.arange(n) + 0.5) / r  # input centres in output-voxel units from the shared corner
            j = np.minimum(np.floor(pos).astype(np.int64), m - 1)
            idx.append(j)
            dist2.append((pos - (j + 0.5)) ** 2)
        grids = np.meshgrid(*idx, indexing="ij")
        flat_out = np.ravel_multi_index(grids, tuple(out_shape))
        d2 = sum(np.meshgrid(*dist2, indexing="ij"))
        # integer scores: count dominates, then closeness; ties resolved by argmax -> smallest label
        d2_q = np.round(d2 * 1e4).astype(np.int64)
        n_out = int(np.prod(out_shape))
        bins = (flat_out * n_cls + lab).ravel()
        counts = np.bincount(bins, minlength=n_out * n_cls).reshape(n_out, n_cls)
        dsum = np.bincount(bins, weights=d2_q.ravel(), minlength=n_out * n_cls).reshape(n_out, n_cls).astype(np.int64)
        big = int(dsum.max()) + 1
        score = counts * big - dsum
        score[counts == 0] = -1
        out = np.argmax(score, axis=1)
        empty = counts.sum(axis=1) == 0
        if empty.any():  # finer output grid: take the input voxel that contains the output centre
            centres = [
                np.clip(np.floor((np.arange(m) + 0.5) * r).astype(np.int64), 0, n - 1)
                for m, r, n in zip(out_shape, ratio, lab.shape)
            ]
            nearest = lab[np.ix_(*centres)].ravel()
            out[empty] = nearest[empty]
        return out.reshape(tuple(out_shape))


class SimulateLowResolutiond(MapTransform):
    """Dictionary version of :class:`SimulateLowResolution`.

    Args:
        keys: image keys (blur + trilinear).
        target_spacing: output voxel size in mm, one number or one per spatial axis.
        label_keys: label keys (mode pooling); they may also appear in ``keys``.
        num_classes: number of label values, inferred when None.
        allow_missing_keys: skip absent keys.
    """

    backend = SimulateLowResolution.backend

    def __init__(
        self,
        keys: KeysCollection,
        target_spacing: float | Sequence[float],
        label_keys: KeysCollection = (),
        num_classes: int | None = None,
        allow_missing_keys: bool = False,
    ):
        label_keys = [label_keys] if isinstance(label_keys, str) else list(label_keys)
        all_keys = list(dict.fromkeys(([keys] if isinstance(keys, str) else list(keys)) + label_keys))
        super().__init__(all_keys, allow_missing_keys)
        self.label_keys = set(label_keys)
        self.resampler = SimulateLowResolution(target_spacing, num_classes=num_classes)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.resampler(d[key], is_label=key in self.label_keys)
        return d

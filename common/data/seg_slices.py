"""Thick 2D slices of 3D volumes for 2.5D segmentation across voxel sizes.

The segmentation-resolution-bias bundle trains one 2D network per anatomical
plane on *thick slices* (``thickness`` neighbouring slices as channels) of
volumes that come at different voxel sizes (group H at the high, group L at
the low resolution). This module

- loads the training volumes of one approach (:func:`load_seg_volumes`),
- cuts them into thick slices with the correct in-plane voxel size
  (:func:`thick_slices`, :class:`ThickSliceDataset`),
- batches slices of the same plane, shape and voxel size together
  (:class:`SliceBatchSampler`, distributed-aware), and
- hands the in-plane voxel size and plane to the network
  (:func:`prepare_slice_batch`, a MONAI ``prepare_batch``).

Volumes are channel-first ``(1, X, Y, Z)`` MetaTensors in RAS voxel order, so
the slicing axis of a plane is fixed by :data:`PLANE_AXES`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from monai.data import MetaTensor
from torch.utils.data import Dataset, Sampler

from common.data.batch import plain_tensor

PLANE_AXES = {"sagittal": 0, "coronal": 1, "axial": 2}
"""Slicing axis of each anatomical plane in RAS voxel order (x: left-right, y: posterior-anterior, z: inferior-superior)."""

PLANE_WEIGHTS = {"axial": 0.4, "coronal": 0.4, "sagittal": 0.2}
"""Weights of the per-plane logits in the 2.5D aggregation."""

APPROACHES = ("h_only", "resampled", "scale_aug", "vinn")


def approach_settings(approach: str, high_spacing: float, scale_prob: float) -> dict:
    """What each training approach means for the network and the data, in one place.

    Returns ``{"internal_spacing": mm or None, "zoom_prob": p, "inference_spacing": [mm] * 3}``: VINN works at
    ``high_spacing`` inside the network and takes every input at its native voxel size (``0.0``: keep it);
    scale augmentation zooms a ``scale_prob`` fraction of training slices; the others resample inputs to
    ``high_spacing`` and never zoom.
    """
    if approach not in APPROACHES:
        raise ValueError(f"unknown approach {approach!r}; expected one of {', '.join(APPROACHES)}")
    vinn = approach == "vinn"
    return {
        "internal_spacing": float(high_spacing) if vinn else None,
        "zoom_prob": float(scale_prob) if approach == "scale_aug" else 0.0,
        "inference_spacing": [0.0] * 3 if vinn else [float(high_spacing)] * 3,
    }


def panel_plane(plane: str | Sequence[str]) -> str:
    """The plane TensorBoard panels show: the plane trained on, or axial for several planes."""
    names = planes_of(plane)
    return names[0] if len(names) == 1 else "axial"


def planes_of(plane: str | Sequence[str]) -> tuple[str, ...]:
    """``"all"`` -> the three planes; a plane name -> a 1-tuple; a list -> itself, validated."""
    names = tuple(PLANE_AXES) if plane == "all" else ((plane,) if isinstance(plane, str) else tuple(plane))
    bad = [p for p in names if p not in PLANE_AXES]
    if bad or not names:
        raise ValueError(f"unknown plane(s) {bad or plane!r}; expected one of {', '.join(PLANE_AXES)} or 'all'")
    return names


def volume_transform(high_spacing: float | None = None, keys: Sequence[str] = ("image", "label")):
    """Load -> channel first -> RAS -> (optionally resample to ``high_spacing`` mm) -> intensities to [0, 1].

    Images are resampled (bi/trilinear), labels nearest. Intensities are scaled by
    the 0.5 / 99.5 percentiles of each volume and clipped.
    """
    from monai.transforms import (
        Compose,
        EnsureTyped,
        LoadImaged,
        Orientationd,
        ScaleIntensityRangePercentilesd,
        Spacingd,
    )

    keys = list(keys)
    modes = ["bilinear" if k == "image" else "nearest" for k in keys]
    xforms = [
        LoadImaged(keys, ensure_channel_first=True, image_only=True),
        Orientationd(keys, axcodes="RAS"),
    ]
    if high_spacing is not None:
        xforms.append(Spacingd(keys, pixdim=float(high_spacing), mode=modes))
    xforms += [
        ScaleIntensityRangePercentilesd("image", lower=0.5, upper=99.5, b_min=0.0, b_max=1.0, clip=True),
        EnsureTyped(keys, dtype=[torch.float32 if k == "image" else torch.uint8 for k in keys], track_meta=True),
    ]
    return Compose(xforms)


def _resolve(path: str, base: str | os.PathLike) -> str:
    return path if os.path.isabs(path) else str(Path(base) / path)


def load_seg_volumes(
    entries: Sequence[Mapping],
    approach: str,
    high_spacing: float,
    dataset_dir: str | os.PathLike = ".",
    image_key: str = "image",
    label_key: str = "label",
) -> list[dict]:
    """The training volumes of one approach, as dicts ``{image, label, group}``.

    - ``h_only``: group H only, native (high) resolution;
    - ``resampled``: all groups, group-L images and labels resampled to ``high_spacing``
      outside the network (image trilinear, label nearest);
    - ``scale_aug`` and ``vinn``: all groups at their native resolution.

    An entry without ``group`` counts as group H.
    """
    if approach not in APPROACHES:
        raise ValueError(f"unknown approach {approach!r}; expected one of {', '.join(APPROACHES)}")
    native, to_high = volume_transform(None), volume_transform(high_spacing)
    volumes = []
    for entry in entries:
        group = str(entry.get("group", "H"))
        if approach == "h_only" and group != "H":
            continue
        item = {"image": _resolve(entry[image_key], dataset_dir), "label": _resolve(entry[label_key], dataset_dir)}
        xform = to_high if (approach == "resampled" and group != "H") else native
        out = xform(item)
        out["group"] = group
        volumes.append(out)
    if not volumes:
        raise ValueError(f"approach {approach!r} has no training volumes (entries: {len(entries)})")
    return volumes


def thick_slices(volume: torch.Tensor, plane: str, thickness: int) -> torch.Tensor:
    """All thick slices of ``volume`` ``(C, X, Y, Z)`` along ``plane``: ``(S, C * thickness, H, W)``.

    Slice ``s`` holds slices ``s - thickness // 2 ... s + thickness // 2`` (zero outside the
    volume) as channels; ``H, W`` are the two remaining axes in RAS order.
    """
    if thickness < 1 or thickness % 2 == 0:
        raise ValueError(f"thickness must be an odd number >= 1, got {thickness}")
    return thick_slices_along(torch.as_tensor(volume), PLANE_AXES[plane], thickness)


def thick_slices_along(volume: torch.Tensor, axis: int, thickness: int) -> torch.Tensor:
    """:func:`thick_slices` along spatial ``axis`` (0, 1, 2) of ``volume`` ``(C, X, Y, Z)``; TorchScript-compatible."""
    v = volume.movedim(axis + 1, 1)  # (C, S, H, W)
    half = thickness // 2
    if half > 0:
        v = torch.nn.functional.pad(v, [0, 0, 0, 0, half, half])
    # (C, S, H, W, T) -> (S, C, T, H, W) -> (S, C*T, H, W)
    slabs = v.unfold(1, thickness, 1).permute(1, 0, 4, 2, 3)
    return slabs.reshape(slabs.shape[0], -1, slabs.shape[3], slabs.shape[4])


def in_plane_spacing(pixdim: Sequence[float], plane: str) -> tuple[float, float]:
    """The two voxel sizes (mm) of a slice along ``plane`` from the 3D ``pixdim``."""
    axis = PLANE_AXES[plane]
    return tuple(float(p) for i, p in enumerate(pixdim[:3]) if i != axis)


def _slice_meta(spacing: Sequence[float]) -> torch.Tensor:
    affine = torch.eye(3, dtype=torch.float64)
    affine[0, 0], affine[1, 1] = float(spacing[0]), float(spacing[1])
    return affine


class ThickSliceDataset(Dataset):
    """Thick 2D slices of a list of volumes ``{image, label, group}`` (``(1, X, Y, Z)`` MetaTensors).

    Item ``i`` is ``{image: (thickness, H, W), label: (1, H, W), group, plane, volume}``;
    image and label are 2D MetaTensors whose affine carries the in-plane voxel size,
    so MONAI 2D transforms (e.g. ``RandZoomd``) update it. ``transform`` is applied
    to each item. With ``foreground_only`` only slices with a non-zero label are kept.
    """

    def __init__(
        self,
        volumes: Sequence[Mapping],
        planes: str | Sequence[str] = "axial",
        thickness: int = 1,
        transform: Callable | None = None,
        foreground_only: bool = True,
    ) -> None:
        self.planes = planes_of(planes)
        self.thickness = int(thickness)
        self.transform = transform
        self.volumes = list(volumes)
        self.slices: dict[tuple[int, str], tuple[torch.Tensor, torch.Tensor]] = {}
        self.index: list[tuple[int, str, int]] = []
        self.keys: list[tuple] = []  # batch key per item: (plane, H, W, spacing)
        for v, vol in enumerate(self.volumes):
            pixdim = [float(p) for p in vol["image"].pixdim]
            for plane in self.planes:
                img = thick_slices(vol["image"].as_tensor(), plane, self.thickness)
                lab = thick_slices(vol["label"].as_tensor(), plane, 1)
                self.slices[(v, plane)] = (img, lab)
                keep = lab.flatten(1).any(1) if foreground_only else torch.ones(len(lab), dtype=torch.bool)
                spacing = in_plane_spacing(pixdim, plane)
                for s in torch.nonzero(keep).flatten().tolist():
                    self.index.append((v, plane, s))
                    self.keys.append((plane, *img.shape[2:], *(round(x, 4) for x in spacing)))

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict:
        v, plane, s = self.index[i]
        img, lab = self.slices[(v, plane)]
        vol = self.volumes[v]
        affine = _slice_meta(in_plane_spacing(vol["image"].pixdim, plane))
        item = {
            "image": MetaTensor(img[s].float(), affine=affine.clone()),
            "label": MetaTensor(lab[s].float(), affine=affine.clone()),
            "group": vol.get("group", "H"),
            "plane": plane,
            "volume": v,
        }
        return self.transform(item) if self.transform is not None else item


class SliceBatchSampler(Sampler):
    """Batches of slices that share plane, shape and voxel size (so one forward pass fits them all).

    Per epoch, ``slices_per_volume`` slices (all if ``None``) are drawn per volume and
    plane, grouped by :attr:`ThickSliceDataset.keys`, cut into batches of ``batch_size``
    and shuffled. Randomness comes from ``seed`` and the epoch (``set_epoch``; each
    ``__iter__`` without it moves to the next epoch). With ``num_replicas > 1`` each
    rank gets every ``num_replicas``-th batch, all ranks the same number.
    """

    def __init__(
        self,
        dataset: ThickSliceDataset,
        batch_size: int,
        slices_per_volume: int | None = None,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} outside [0, {num_replicas})")
        self.dataset, self.batch_size = dataset, int(batch_size)
        self.slices_per_volume = None if slices_per_volume in (None, 0) else int(slices_per_volume)
        self.seed, self.num_replicas, self.rank = int(seed), int(num_replicas), int(rank)
        self.epoch = 0
        self._explicit_epoch = False
        self._per_volume: dict[tuple[int, str], list[int]] = {}
        for i, (v, plane, _) in enumerate(dataset.index):
            self._per_volume.setdefault((v, plane), []).append(i)
        self._len = len(self._batches(0)) // self.num_replicas

    def set_epoch(self, epoch: int) -> None:
        self.epoch, self._explicit_epoch = int(epoch), True

    def _batches(self, epoch: int) -> list[list[int]]:
        rng = np.random.default_rng([self.seed, epoch])
        by_key: dict[tuple, list[int]] = {}
        for (_, _), idx in sorted(self._per_volume.items()):
            chosen = idx
            if self.slices_per_volume is not None and len(idx) > self.slices_per_volume:
                chosen = sorted(rng.choice(idx, self.slices_per_volume, replace=False).tolist())
            for i in chosen:
                by_key.setdefault(self.dataset.keys[i], []).append(i)
        batches = []
        for key in sorted(by_key):
            idx = rng.permutation(by_key[key]).tolist()
            batches += [idx[j : j + self.batch_size] for j in range(0, len(idx), self.batch_size)]
        order = rng.permutation(len(batches))
        return [batches[j] for j in order]

    def __iter__(self):
        batches = self._batches(self.epoch)
        if not self._explicit_epoch:
            self.epoch += 1
        self._explicit_epoch = False
        n = self._len
        return iter(batches[self.rank :: self.num_replicas][:n])

    def __len__(self) -> int:
        return self._len


def slice_spacing(image: torch.Tensor) -> torch.Tensor | None:
    """Per-sample in-plane voxel size ``(B, 2)`` (mm) of a collated 2D MetaTensor batch, else ``None``."""
    if not isinstance(image, MetaTensor):
        return None
    affine = torch.as_tensor(image.affine, dtype=torch.float64)
    if affine.ndim == 2:
        affine = affine[None].expand(image.shape[0], -1, -1)
    sd = image.ndim - 2
    return torch.linalg.norm(affine[:, :sd, :sd], dim=1).float()


def prepare_slice_batch(batchdata: Mapping, device=None, non_blocking: bool = False, **kwargs):
    """MONAI ``prepare_batch`` for thick-slice batches: ``(image, label, (), {"spacing", "plane"})``.

    The network receives the in-plane voxel size ``(B, 2)`` and the plane name so a
    multi-plane / voxel-size-aware network can route and resample.
    """
    image, label = batchdata["image"], batchdata.get("label")
    spacing = slice_spacing(image)
    plane = batchdata.get("plane")
    plane = plane[0] if isinstance(plane, (list, tuple)) else plane
    # plain tensors: the network gets the voxel size explicitly, and MetaTensor bookkeeping costs ~15% per step
    image = plain_tensor(image).to(device=device, non_blocking=non_blocking, **kwargs)
    if label is not None:
        label = plain_tensor(label).to(device=device, non_blocking=non_blocking, **kwargs)
    net_kwargs = {"spacing": None if spacing is None else spacing.to(device), "plane": plane}
    return image, label, (), net_kwargs


def divisible_size(size: int, k: int) -> int:
    return int(math.ceil(size / k) * k)


def seg_datalist(
    datalist: str | os.PathLike | None,
    dataset_dir: str | os.PathLike | None,
    population=None,
    cache_dir: str | os.PathLike = "data_cache",
    seed: int = 0,
    num_classes: int = 4,
    splits: Sequence[str] = ("training", "validation", "test"),
) -> dict:
    """The bundle's datalist, validated before any training.

    An empty ``datalist`` generates (or reuses) the embedded MNI population
    (:func:`common.data.generate_mni_population` with ``population``, an ``MNIPopulationConfig``)
    under ``cache_dir``. Every entry needs ``image`` and ``label`` (3D NIfTI, labels
    ``0 .. num_classes - 1``); ``group`` is optional (default H), and ``image_hr``/``label_hr``
    (the high-resolution copies used for evaluation) are checked when present.
    Raises :class:`common.data.DatalistError` listing every problem, one line per file.
    """
    from functools import partial

    from common.data.datalist import DatalistError, load_datalist, resolve_datalist
    from common.data.mni_population import generate_mni_population

    factory = partial(generate_mni_population, cache_dir, population, seed)
    raw = load_datalist(factory() if datalist in (None, "") else datalist, dataset_dir or None)
    has_hr = any("image_hr" in e for s in splits for e in raw.get(s, []) if isinstance(e, Mapping))
    has_group = all("group" in e for s in splits for e in raw.get(s, []) if isinstance(e, Mapping))
    data = resolve_datalist(
        datalist,
        dataset_dir,
        factory,
        image_key="image",
        label_key="label",
        num_classes=num_classes,
        spatial_dims=3,
        splits=tuple(s for s in splits if s != "test" or raw.get(s)),  # training and validation must not be empty
        group_key="group" if has_group else None,
        required_groups=("H", "L") if has_group else None,  # the study compares the two groups
        extra_image_keys=("image_hr", "label_hr") if has_hr else (),
    )
    if not data.get("training"):
        raise DatalistError(["no 'training' entries"], datalist or "embedded population")
    return data


def evaluation_entries(entries: Sequence[Mapping]) -> list[dict]:
    """Evaluation items at the high resolution: ``image_hr``/``label_hr`` where present, else ``image``/``label``.

    Keeps ``group`` (default ``H``) and ``subject`` (default the image file name).
    """
    out = []
    for e in entries:
        image = e.get("image_hr", e["image"])
        label = e.get("label_hr", e.get("label"))
        subject = e.get("subject") or Path(str(image)).name.split(".")[0]
        out.append({"image": image, "label": label, "group": str(e.get("group", "H")), "subject": subject})
    return out


def inference_items(
    input_image: str | os.PathLike | None,
    datalist: str | os.PathLike | None = None,
    dataset_dir=None,
    allow_empty: bool = False,
) -> list[dict]:
    """``[{"image": path}]`` for ``input_image``, else the ``test`` (or ``validation``) images of ``datalist``.

    Raises ``FileNotFoundError`` naming a missing file before any model is loaded. Without either input it
    raises ``ValueError``, or returns ``[]`` with ``allow_empty`` (a config that is only parsed, e.g. by
    ``ConfigWorkflow.check_properties`` or MONAI Label, which supplies its own data).
    """
    from common.data.datalist import load_datalist

    if input_image:
        paths = [str(input_image)]
    elif datalist:
        data = load_datalist(datalist, dataset_dir or None)
        entries = data.get("test") or data.get("validation") or []
        paths = [e["image"] if isinstance(e, Mapping) else e for e in entries]
        if not paths:
            raise ValueError(f"{datalist}: no 'test' or 'validation' entries to segment")
    elif allow_empty:
        return []
    else:
        raise ValueError("inference needs --input_image FILE or --datalist JSON")
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise FileNotFoundError(f"image file(s) not found: {', '.join(missing)}")
    return [{"image": p} for p in paths]

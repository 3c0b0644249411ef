"""High-resolution 2D slices of the MNI152 2009 T1 template (1 mm) for super-resolution studies.

Slices are taken in one plane, kept only where the brain covers enough of the slice, and split into
training / validation / test by *slabs*: the eligible slice indices are cut into contiguous blocks of
``slab_size`` slices separated by ``gap`` discarded slices, and whole slabs are dealt to the splits in a seeded
random order. Any slice of one split is therefore at least ``gap + 1`` slices away from every slice of another
split, so neighbouring (nearly identical) slices never leak across splits.

Intensities: the whole volume is scaled once so that the 0.5th and 99.5th percentiles of the voxels inside
the template's brain mask map to 0 and 1, then clipped to [0, 1] (the template is skull-stripped, so the
background stays 0). One scaling for the volume keeps contrast comparable between slices.

Each slice is cropped or zero-padded around the in-plane centre of the brain's bounding box to ``crop_size``
(default: that bounding box plus a margin, rounded up to a multiple of ``multiple_of`` = 4, so scale-2 and
scale-4 degradations divide exactly) and written as a 2D float32 NIfTI file whose affine is the template's,
restricted to the slice (1 mm pixdim, world position kept). A decathlon-style ``datalist.json`` (entries
``{"image", "slice_index", "plane", "spacing"}``, no labels) is written last, atomically. The output lives in
``output_dir/sr_slices_<hash of the parameters>/`` and is reused when it exists.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from common.io import atomic_write, atomic_write_json

__all__ = ["generate_sr_slices", "PLANE_AXES"]

PLANE_AXES = {"sagittal": 0, "coronal": 1, "axial": 2}  # slice axis in the MNI voxel grid (RAS, x/y/z)
SPLITS = ("training", "validation", "test")
_FORMAT_VERSION = 1  # bump when the output of the same parameters changes


@functools.lru_cache(maxsize=1)
def _load_template() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """T1 (float32, [0, 1] as shipped), brain mask (bool) and affine of the 1 mm MNI152 2009 template."""
    from nilearn.datasets import load_mni152_brain_mask, load_mni152_template

    t1 = load_mni152_template(resolution=1)
    mask = load_mni152_brain_mask(resolution=1)
    return (
        np.asarray(t1.get_fdata(dtype=np.float32)),
        np.asarray(mask.get_fdata(dtype=np.float32)) > 0.5,
        np.asarray(t1.affine, dtype=np.float64),
    )


def _crop_window(centre: float, size: int) -> int:
    """Start index of a window of ``size`` centred on ``centre`` (may be negative: zero padding)."""
    return int(math.floor(centre - size / 2.0 + 0.5))


def _take(arr2d: np.ndarray, starts: Sequence[int], size: Sequence[int]) -> np.ndarray:
    """Crop ``arr2d`` to ``size`` from ``starts``, zero-padding where the window leaves the array."""
    out = np.zeros(tuple(size), dtype=arr2d.dtype)
    src, dst = [], []
    for s, n, dim in zip(starts, size, arr2d.shape):
        lo, hi = max(s, 0), min(s + n, dim)
        src.append(slice(lo, max(hi, lo)))
        dst.append(slice(lo - s, lo - s + max(hi - lo, 0)))
    out[tuple(dst)] = arr2d[tuple(src)]
    return out


def _nifti_gz_bytes(arr2d: np.ndarray, affine: np.ndarray) -> bytes:
    """Deterministic ``.nii.gz`` bytes (gzip mtime 0) of a 2D float32 image."""
    import nibabel as nib

    img = nib.Nifti1Image(arr2d.astype(np.float32), affine)
    img.header.set_xyzt_units("mm")
    img.header.set_qform(affine, code=1)
    img.header.set_sform(affine, code=1)
    return gzip.compress(img.to_bytes(), compresslevel=6, mtime=0)


def _assign_slabs(
    num_slabs: int, slab_size: int, num_slices: Sequence[int | None] | None, fractions: Sequence[float], rng
) -> list[list[int]]:
    order = [int(i) for i in rng.permutation(num_slabs)]
    if num_slices is None:
        counts = [max(1, int(round(f * num_slabs))) for f in fractions]
        counts[0] = num_slabs - sum(counts[1:])
    else:
        counts = [math.ceil(int(n) / slab_size) for n in num_slices]
    if min(counts) < 1 or sum(counts) > num_slabs:
        raise ValueError(
            f"generate_sr_slices: {num_slabs} slabs of {slab_size} slices are available but the splits need "
            f"{counts} slabs; lower num_slices/slab_size/gap/min_brain_fraction"
        )
    out, pos = [], 0
    for c in counts:
        out.append(sorted(order[pos : pos + c]))
        pos += c
    return out


def generate_sr_slices(
    output_dir: str | os.PathLike,
    seed: int = 0,
    *,
    plane: str = "axial",
    num_slices: Sequence[int] | None = None,
    split_fractions: Sequence[float] = (0.6, 0.2, 0.2),
    slab_size: int = 8,
    gap: int = 2,
    min_brain_fraction: float = 0.15,
    crop_size: Sequence[int] | None = None,
    multiple_of: int = 4,
    margin: int = 4,
    percentiles: tuple[float, float] = (0.5, 99.5),
) -> Path:
    """Write high-resolution MNI T1 slices and their datalist; return the path of ``datalist.json``.

    Args:
        output_dir: cache root; the data go to ``output_dir/sr_slices_<hash>/``.
        seed: seeds the order in which slabs are dealt to the splits.
        plane: ``"axial"``, ``"coronal"`` or ``"sagittal"``.
        num_slices: slices per split ``(training, validation, test)``; ``None`` uses every eligible slab,
            dealt by ``split_fractions``.
        slab_size: slices per contiguous slab (a slab never straddles two splits).
        gap: slices dropped between consecutive slabs (``gap >= 1`` keeps splits non-adjacent).
        min_brain_fraction: keep a slice if the brain mask covers at least this fraction of the full slice.
        crop_size: in-plane output size (H, W) in pixels; each must be a multiple of ``multiple_of``.
        multiple_of: default crop sizes are rounded up to this multiple.
        margin: pixels added on each side of the brain bounding box for the default crop size.
        percentiles: intensity percentiles (inside the brain mask) mapped to 0 and 1.

    Returns:
        Path of ``datalist.json``; image paths in it are relative to its folder.
    """
    if plane not in PLANE_AXES:
        raise ValueError(f"generate_sr_slices: plane must be one of {sorted(PLANE_AXES)}, got {plane!r}")
    if slab_size < 1 or gap < 0:
        raise ValueError(f"generate_sr_slices: need slab_size >= 1 and gap >= 0, got {slab_size}, {gap}")
    if num_slices is not None and (len(num_slices) != 3 or min(num_slices) < 1):
        raise ValueError(f"generate_sr_slices: num_slices must be three positive counts, got {num_slices}")
    if crop_size is not None:
        crop_size = tuple(int(c) for c in crop_size)
        if len(crop_size) != 2 or any(c < 1 or c % multiple_of for c in crop_size):
            raise ValueError(f"generate_sr_slices: crop_size must be 2 multiples of {multiple_of}, got {crop_size}")
    params = {
        "version": _FORMAT_VERSION,
        "seed": int(seed),
        "plane": plane,
        "num_slices": None if num_slices is None else [int(n) for n in num_slices],
        "split_fractions": None if num_slices is not None else [float(f) for f in split_fractions],
        "slab_size": int(slab_size),
        "gap": int(gap),
        "min_brain_fraction": float(min_brain_fraction),
        "crop_size": None if crop_size is None else list(crop_size),
        "multiple_of": int(multiple_of),
        "margin": int(margin),
        "percentiles": [float(p) for p in percentiles],
    }
    key = hashlib.sha1(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]
    root = Path(output_dir) / f"sr_slices_{key}"
    datalist_path = root / "datalist.json"
    if datalist_path.is_file():
        return datalist_path

    volume, mask, affine = _load_template()
    lo, hi = np.percentile(volume[mask], percentiles)
    volume = np.clip((volume - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)

    axis = PLANE_AXES[plane]
    inplane = [a for a in range(3) if a != axis]
    fraction = mask.sum(axis=tuple(inplane)) / float(mask.shape[inplane[0]] * mask.shape[inplane[1]])
    eligible = np.nonzero(fraction >= min_brain_fraction)[0]
    coords = np.nonzero(mask)
    bb_lo = [int(coords[a].min()) for a in inplane]
    bb_hi = [int(coords[a].max()) for a in inplane]
    if crop_size is None:
        crop_size = tuple(
            int(math.ceil((h - lo_ + 1 + 2 * margin) / multiple_of) * multiple_of) for lo_, h in zip(bb_lo, bb_hi)
        )
    starts = [_crop_window((lo_ + h + 1) / 2.0, n) for lo_, h, n in zip(bb_lo, bb_hi, crop_size)]

    # Slabs over runs of consecutive eligible slices: slab, gap, slab, gap ... (partial slabs dropped).
    slabs: list[list[int]] = []
    run: list[int] = []
    for idx in [*eligible.tolist(), None]:
        if idx is not None and (not run or idx == run[-1] + 1):
            run.append(idx)
            continue
        for s in range(0, len(run) - slab_size + 1, slab_size + gap):
            slabs.append(run[s : s + slab_size])
        run = [] if idx is None else [idx]
    rng = np.random.default_rng(seed)
    assignment = _assign_slabs(len(slabs), slab_size, num_slices, split_fractions, rng)

    datalist: dict[str, object] = {
        "name": "MNI152 2009 T1 high-resolution slices",
        "description": f"{plane} slices, 1 mm, intensities in [0, 1]; split by slabs of {slab_size}, gap {gap}",
        "licence": "MNI ICBM152 2009 template (see nilearn): free use with acknowledgement of the MNI",
        "parameters": params,
    }
    image_dir = root / "images"
    for split, slab_ids, n_keep in zip(SPLITS, assignment, num_slices or (None, None, None)):
        indices = [i for s in slab_ids for i in slabs[s]][:n_keep]
        entries = []
        for z in indices:
            img2d = _take(np.moveaxis(volume, axis, 0)[z], starts, crop_size)
            # voxel (i, j, k) of the slice -> voxel of the volume: inplane[0] = i + s0, inplane[1] = j + s1,
            # axis = z + k; the slice affine is the template's composed with that map.
            to_volume = np.zeros((4, 4))
            to_volume[inplane[0], 0] = to_volume[inplane[1], 1] = to_volume[axis, 2] = to_volume[3, 3] = 1.0
            to_volume[inplane[0], 3], to_volume[inplane[1], 3], to_volume[axis, 3] = starts[0], starts[1], z
            name = f"images/{split}_{plane}_{z:03d}.nii.gz"
            data = _nifti_gz_bytes(img2d, affine @ to_volume)
            atomic_write(root / name, lambda tmp, data=data: Path(tmp).write_bytes(data))
            entries.append({"image": name, "slice_index": int(z), "plane": plane, "spacing": [1.0, 1.0]})
        datalist[split] = entries
    image_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(datalist_path, datalist)
    return datalist_path

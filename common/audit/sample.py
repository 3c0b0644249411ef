"""``python -m common.audit.sample DIR [--cases N] [--shape X Y [Z]]``: a synthetic cohort to try the audit on.

Writes ``DIR/datalist.json`` and, per case, an image, a manual label and a prediction (NIfTI, 1 mm voxels):
three nested structures (an ellipse or ellipsoid with two inner ones, sizes varying per case); attributes
``sex`` (F/M), ``site`` (A/B) and ``age`` (years). The predictions of sex F and of site B grow each structure
by one voxel (a volume bias built in), every other prediction is the label with a few boundary voxels flipped.
"""

from __future__ import annotations

import argparse
import gzip
import json
from pathlib import Path

import numpy as np

from common.io import atomic_write, atomic_write_text

__all__ = ["make_sample_cohort"]


def _case(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    grid = np.meshgrid(*[np.arange(n) - n / 2 for n in shape], indexing="ij")
    radii = np.asarray(shape, dtype=np.float64) * rng.uniform(0.25, 0.4, size=len(shape))
    r = np.sqrt(sum((g / rad) ** 2 for g, rad in zip(grid, radii)))
    label = np.zeros(shape, np.uint8)
    label[r < 1.0] = 1
    label[r < 0.7] = 2
    label[r < 0.35] = 3
    return label


def _predict(label: np.ndarray, grow: bool, rng: np.random.Generator) -> np.ndarray:
    from scipy import ndimage

    pred = label.copy()
    if grow:
        for value in (1, 2, 3):  # each structure one voxel wider, inner ones drawn over outer ones
            grown = ndimage.binary_dilation(label >= value)
            pred[grown] = np.maximum(pred[grown], value)
    edge = ndimage.morphological_gradient(label, size=3) > 0
    flip = edge & (rng.random(label.shape) < 0.1)
    pred[flip] = np.where(pred[flip] > 0, pred[flip] - 1, 0)
    return pred


def make_sample_cohort(
    folder: str | Path, cases: int = 200, shape: tuple[int, ...] = (256, 256), seed: int = 0
) -> Path:
    """Write the cohort described in the module docstring; return the datalist's path."""
    import nibabel as nib

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    entries = []
    for k in range(cases):
        sex, site = "FM"[k % 2], "AB"[(k // 2) % 2]
        label = _case(tuple(shape), rng)
        pred = _predict(label, sex == "F" or site == "B", rng)
        image = label.astype(np.float32) + rng.normal(0.0, 0.3, label.shape).astype(np.float32)
        entry = {"sex": sex, "site": site, "age": int(rng.integers(20, 80))}
        for key, data, dtype in (
            ("image", image, np.float32),
            ("label", label, np.uint8),
            ("prediction", pred, np.uint8),
        ):
            path = folder / f"case{k:04d}_{key}.nii.gz"
            raw = gzip.compress(nib.Nifti1Image(data.astype(dtype), np.eye(4)).to_bytes(), compresslevel=1, mtime=0)
            atomic_write(path, lambda tmp, raw=raw: Path(tmp).write_bytes(raw))
            entry[key] = path.name
        entries.append(entry)
    datalist = folder / "datalist.json"
    atomic_write_text(datalist, json.dumps({"test": entries}, indent=1))
    return datalist


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m common.audit.sample", description=__doc__)
    p.add_argument("folder", type=Path)
    p.add_argument("--cases", type=int, default=200)
    p.add_argument("--shape", type=int, nargs="+", default=[256, 256], help="2 or 3 sizes in voxels")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if len(args.shape) not in (2, 3):
        p.error("--shape takes 2 or 3 sizes")
    print(make_sample_cohort(args.folder, args.cases, tuple(args.shape), args.seed))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

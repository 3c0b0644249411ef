"""Writing small test cohorts: each case's image, label and prediction as NIfTI, and the datalist."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np


def save_nifti(path: Path, data: np.ndarray, dtype=np.uint8) -> str:
    """``data`` as ``dtype`` at ``path`` (1 mm voxels); returns the path as a string."""
    nib.save(nib.Nifti1Image(np.asarray(data).astype(dtype), np.eye(4)), str(path))
    return str(path)


def case_entry(root: Path, name: str, image, label, prediction, prediction_dtype=np.uint8, **attributes) -> dict:
    """One datalist entry, its three files written under ``root`` as ``<name>_{img,lab,pred}.nii.gz``."""
    return {
        "image": save_nifti(root / f"{name}_img.nii.gz", image, np.float32),
        "label": save_nifti(root / f"{name}_lab.nii.gz", label),
        "prediction": save_nifti(root / f"{name}_pred.nii.gz", prediction, prediction_dtype),
        **attributes,
    }


def write_datalist(root: Path, entries: list[dict]) -> Path:
    path = root / "cohort.json"
    path.write_text(json.dumps(entries))
    return path

"""Datalist for the public CAMUS echocardiography data set (Leclerc et al., IEEE TMI 2019).

CAMUS layout: one folder per patient, ``patientXXXX/patientXXXX_{2CH,4CH}_{ED,ES}.nii.gz`` images with
``..._gt.nii.gz`` masks (0 background, 1 LV cavity, 2 myocardium, 3 left atrium; the same convention as
the embedded echo phantom). :func:`camus_datalist` turns such a tree into a decathlon-style datalist,
split by patient so that no patient's images fall into two splits.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from common.io import atomic_write_json

_PATIENT = re.compile(r"^patient\d{4}$")


def camus_datalist(
    root: str | Path,
    views: Sequence[str] = ("2CH", "4CH"),
    phases: Sequence[str] = ("ED", "ES"),
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    seed: int = 0,
    output_path: str | Path | None = None,
    suffix: str = ".nii.gz",
) -> dict:
    """Build ``{"training", "validation", "test"}`` lists of ``{"image", "label", "id", "patient", "view", "phase"}``.

    Paths are relative to ``root`` (use ``root`` as ``dataset_dir``). Patients are shuffled with ``seed`` and
    split by the given fractions. If ``output_path`` is given the datalist is also written there (JSON).

    Raises:
        FileNotFoundError: ``root`` is missing or holds no ``patientXXXX`` folder.
        ValueError: an image lacks its ``_gt`` mask (all such files are listed), bad fractions or views/phases.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"CAMUS root {root} is not a directory")
    bad_views = [v for v in views if v not in ("2CH", "4CH")]
    bad_phases = [p for p in phases if p not in ("ED", "ES")]
    if bad_views or bad_phases:
        raise ValueError(f"CAMUS views are 2CH/4CH and phases ED/ES; got views {list(views)}, phases {list(phases)}")
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError(f"val_fraction + test_fraction must be < 1, got {val_fraction} + {test_fraction}")
    patients = sorted(p for p in root.iterdir() if p.is_dir() and _PATIENT.match(p.name))
    if not patients:
        raise FileNotFoundError(f"{root}: no patientXXXX folders (expected the CAMUS layout)")
    entries: dict[str, list[dict]] = {}
    problems = []
    for folder in patients:
        items = []
        for view in views:
            for phase in phases:
                stem = f"{folder.name}_{view}_{phase}"
                image, label = folder / f"{stem}{suffix}", folder / f"{stem}_gt{suffix}"
                if not image.is_file():
                    continue
                if not label.is_file():
                    problems.append(f"{image}: no ground-truth mask {label.name}")
                    continue
                items.append(
                    {
                        "image": str(image.relative_to(root)),
                        "label": str(label.relative_to(root)),
                        "id": stem,
                        "patient": folder.name,
                        "view": view,
                        "phase": phase,
                    }
                )
        if items:
            entries[folder.name] = items
    if problems:
        raise ValueError(f"CAMUS tree {root}: {len(problems)} problem(s)\n" + "\n".join(f"  - {p}" for p in problems))
    if not entries:
        raise FileNotFoundError(f"{root}: no {'/'.join(views)} {'/'.join(phases)} images found")
    names = sorted(entries)
    order = np.random.default_rng(seed).permutation(len(names))
    n_test = int(round(test_fraction * len(names)))
    n_val = int(round(val_fraction * len(names)))
    split_of = {}
    for rank, idx in enumerate(order):
        split_of[names[idx]] = "test" if rank < n_test else "validation" if rank < n_test + n_val else "training"
    datalist: dict = {"name": "CAMUS", "training": [], "validation": [], "test": []}
    for name in names:
        datalist[split_of[name]].extend(entries[name])
    if output_path is not None:
        atomic_write_json(output_path, datalist)
    return datalist

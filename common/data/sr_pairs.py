"""Datalist of super-resolution pairs: which degradation every high-resolution image gets.

:func:`sr_pair_datalist` resolves the user's datalist of high-resolution 2D images (or generates the embedded
MNI T1 slices), validates it before any training, and adds a ``"degradation"`` kind to every entry:

- ``training`` / ``validation``: the training degradation; for ``combined``, entry i gets
  ``COMBINED_KINDS[i % 6]``, so the combined set has the same size as a single-degradation set and an equal
  share (within one image) of each of the six classic kinds, fixed for the whole training (``combined_kspace``:
  the same over the k-space kinds);
- ``test``: every test image once per kind in ``test_degradations`` (deterministic, so every model is
  evaluated on the same low-resolution inputs). A datalist without a ``test`` split uses ``validation``.

The low-resolution inputs themselves are made by :class:`common.transforms.sr_pairs.DegradeByKeyd` in the bundle's
transforms (training: once per whole slice, before the cache; random aligned patch pairs are cropped afterwards by
:class:`common.transforms.sr_pairs.RandAlignedCropSamplesd`).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from common.transforms.degradation import (
    CLASSIC_DEGRADATION_KINDS,
    DEGRADATION_KINDS,
    KSPACE_DEGRADATION_KINDS,
    PHASES,
    split_kind,
)

COMBINED = "combined"
COMBINED_KINDS: tuple[str, ...] = CLASSIC_DEGRADATION_KINDS
COMBINED_KSPACE = "combined_kspace"
# the mixed training sets: name -> the kinds assigned round-robin
COMBINED_SETS: dict[str, tuple[str, ...]] = {COMBINED: COMBINED_KINDS, COMBINED_KSPACE: KSPACE_DEGRADATION_KINDS}
TRAIN_DEGRADATIONS: tuple[str, ...] = (*DEGRADATION_KINDS, *COMBINED_SETS)


def assign_degradations(entries: Sequence[dict], degradation: str) -> list[dict]:
    """Copies of ``entries`` with ``"degradation"`` set: one kind, or a mixed set round-robin over its kinds
    (``combined``: the six classic kinds; ``combined_kspace``: the k-space kinds)."""
    if degradation not in TRAIN_DEGRADATIONS:
        raise ValueError(f"unknown training degradation {degradation!r}; expected one of {TRAIN_DEGRADATIONS}")
    if degradation in COMBINED_SETS:
        kinds = COMBINED_SETS[degradation]
        return [{**e, "degradation": kinds[i % len(kinds)]} for i, e in enumerate(entries)]
    return [{**e, "degradation": degradation} for e in entries]


def expand_test_degradations(entries: Sequence[dict], degradations: Sequence[str]) -> list[dict]:
    """Every entry once per kind (kind-major order), with ``"degradation"`` set.

    A kind may name its sampling phase after ``@`` (``"gaussian@legacy"``): those test images are degraded on that
    grid and scored under that name (the misregistration evaluation).
    """
    unknown = [k for k in degradations if not _is_kind(k)]
    if unknown or not degradations:
        raise ValueError(
            f"test_degradations must be kinds of {DEGRADATION_KINDS} (optionally '<kind>@<phase>', phase one of "
            f"{PHASES}), got {list(degradations)}"
        )
    return [{**e, "degradation": k} for k in degradations for e in entries]


def sr_pair_datalist(
    datalist: str | os.PathLike | None,
    dataset_dir: str | os.PathLike | None,
    cache_dir: str | os.PathLike,
    train_degradation: str,
    test_degradations: Sequence[str],
    seed: int = 0,
    num_slices: Sequence[int] | None = None,
    plane: str = "axial",
) -> dict[str, list[dict]]:
    """Resolve, validate and annotate the datalist of high-resolution images.

    Args:
        datalist: path of a decathlon-style JSON with ``training``, ``validation`` and optionally ``test``
            lists of ``{"image": path}`` (2D high-resolution images, intensities in [0, 1] preferred);
            empty or ``None``: the embedded MNI T1 slices, generated into ``cache_dir``.
        dataset_dir: base of the user datalist's relative paths (default: the JSON's folder).
        cache_dir: where the embedded slices are generated (reused when present).
        train_degradation: a kind of ``DEGRADATION_KINDS`` or ``"combined"``.
        test_degradations: kinds every test image is degraded with.
        seed: seeds the embedded data's split.
        num_slices: embedded data only: slices per split ``(training, validation, test)``; ``None`` uses all.
        plane: embedded data only: slicing plane of the MNI template.

    Returns:
        ``{"training": [...], "validation": [...], "test": [...]}`` with absolute image paths.

    Raises:
        common.data.DatalistError: one line per problem (missing file, unreadable NIfTI, NaN, not 2D ...).
    """
    from common.data.datalist import resolve_datalist
    from common.data.sr_slices import generate_sr_slices

    if train_degradation not in TRAIN_DEGRADATIONS:
        raise ValueError(f"unknown train_degradation {train_degradation!r}; expected one of {TRAIN_DEGRADATIONS}")
    expand_test_degradations([], test_degradations)  # checks the kinds before any data work
    factory = functools.partial(
        generate_sr_slices,
        Path(cache_dir),
        seed,
        plane=plane,
        num_slices=None if num_slices is None else [int(n) for n in num_slices],
    )
    has_test = _has_split(datalist, "test")
    resolved = resolve_datalist(
        datalist,
        dataset_dir,
        default_factory=factory,
        label_key=None,
        spatial_dims=2,
        splits=("training", "validation", "test") if has_test else ("training", "validation"),
    )
    test = resolved.get("test") or resolved["validation"]
    return {
        "training": assign_degradations(resolved["training"], train_degradation),
        "validation": assign_degradations(resolved["validation"], train_degradation),
        "test": expand_test_degradations(test, test_degradations),
    }


def fit_grey_matter_segmenter(
    training: Sequence[dict], cache_dir: str | os.PathLike | None = None, image_key: str = "image"
) -> tuple[float, float]:
    """Fit the downstream grey-matter segmenter on the high-resolution *training* images only.

    Each image is min-max scaled to [0, 1] (as the bundle's ``ScaleIntensityd``) and the thresholds of
    :func:`common.metrics.tissue_area.fit_tissue_thresholds` are fitted on all of them. With ``cache_dir`` the
    result is cached in ``grey_matter_segmenter_<hash of the image paths>.json`` (one per split, hence per seed).

    Returns ``(t_csf_gm, t_gm_wm)``.
    """
    import hashlib
    import json

    import nibabel as nib
    import numpy as np

    from common.io import atomic_write_json
    from common.metrics.tissue_area import fit_tissue_thresholds

    paths = [str(e[image_key]) for e in training]
    if not paths:
        raise ValueError("fit_grey_matter_segmenter: no training images")
    cache = None
    if cache_dir:
        digest = hashlib.sha256("\n".join(paths).encode()).hexdigest()[:12]
        cache = Path(cache_dir) / f"grey_matter_segmenter_{digest}.json"
        if cache.exists():
            return tuple(json.loads(cache.read_text())["thresholds"])  # type: ignore[return-value]

    def scaled(path: str) -> np.ndarray:
        x = np.asarray(nib.load(path).get_fdata(dtype=np.float32), dtype=np.float64)
        lo, hi = x.min(), x.max()
        return (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)

    thresholds = fit_tissue_thresholds(scaled(p) for p in paths)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(cache, {"thresholds": list(thresholds), "images": paths})
    return thresholds


def _is_kind(name: Any) -> bool:
    try:
        split_kind(name)
    except ValueError:
        return False
    return True


def _has_split(datalist: Any, split: str) -> bool:
    """Whether a user datalist JSON holds a non-empty ``split`` (the embedded data always has one)."""
    if datalist in (None, ""):
        return True
    import json

    try:
        return bool(json.loads(Path(datalist).read_text()).get(split))
    except (OSError, ValueError, AttributeError):
        return True  # let validation report the unreadable file

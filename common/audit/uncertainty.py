"""Per-case structure-volume intervals from a bundle's sampling uncertainty (``--uncertainty``).

For each case the bundle's ``preprocessing`` prepares the image, one of the estimators of
:mod:`common.uncertainty` draws ``num_samples`` softmax maps, and every sample's argmax gives a volume per
structure (mL, voxel size of the preprocessed image). The case's interval is the central ``level`` percentile
interval of those volumes (:func:`common.metrics.precision.percentile_interval`); a group's summary is the mean
interval width of its cases.

- ``tta``: random in-plane affine transforms (:func:`common.uncertainty.default_tta_transform`), predictions
  mapped back by inversion;
- ``mc_dropout``: the bundle's network with its dropout active (it must have dropout);
- ``ensemble``: the bundle's network loaded with each of several checkpoints (``--member``), one sample each.

The network is called through the bundle's ``inferer`` (e.g. a sliding window) when the config has one.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from common.audit.infer import BundleModel, load_bundle_model

__all__ = ["UNCERTAINTY_METHODS", "BundleModel", "load_bundle_model", "volume_intervals", "uncertainty_tables"]

UNCERTAINTY_METHODS = ("tta", "mc_dropout", "ensemble")


def _sample_probabilities(
    models: Sequence[BundleModel], image_path: str, method: str, num_samples: int, seed: int
) -> tuple[torch.Tensor, np.ndarray]:
    """Softmax samples ``(N, C, *spatial)`` of one image and its preprocessed voxel size (mm)."""
    from common.uncertainty import default_tta_transform, ensemble_samples, mc_dropout_samples, tta_samples

    model = models[0]
    data = model.preprocessing({"image": image_path})
    image = data["image"]
    spacing = np.asarray(image.pixdim if hasattr(image, "pixdim") else [1.0] * (image.ndim - 1), dtype=np.float64)
    if method == "tta":
        transform = default_tta_transform(keys=("image",), seed=seed, spatial_dims=image.ndim - 1)
        probs = tta_samples(model.network, {"image": image}, num_samples, seed, transform)
    elif method == "mc_dropout":
        batch = torch.as_tensor(image)[None].to(model.device)
        probs = mc_dropout_samples(model.network, batch, num_samples, seed)[:, 0]
    elif method == "ensemble":
        batch = torch.as_tensor(image)[None].to(model.device)
        probs = ensemble_samples([m.network for m in models], batch)[:, 0]
    else:
        raise ValueError(f"method must be one of {UNCERTAINTY_METHODS}, got {method!r}")
    return probs.cpu(), spacing


def volume_intervals(
    cohort,
    bundle_dir: str | os.PathLike,
    method: str,
    *,
    members: Sequence[str | os.PathLike] = (),
    num_samples: int = 20,
    seed: int = 0,
    level: float = 0.95,
    overrides: Mapping[str, Any] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Volume intervals of every case's structures and the mean interval width per group.

    Args:
        cohort: a :class:`common.audit.cohort.Cohort`; every entry's ``image`` is sampled.
        bundle_dir: the bundle whose network and preprocessing are sampled.
        method: ``"tta"``, ``"mc_dropout"`` or ``"ensemble"``.
        members: for ``"ensemble"``, at least two checkpoints loaded into the bundle's network.
        num_samples: samples per case for ``tta`` and ``mc_dropout`` (an ensemble gives one per member).
        seed: seed of the augmentations / dropout masks.
        level: central interval level (0.95: 2.5-97.5 percentiles).

    Returns:
        ``{"method", "num_samples", "level", "seed", "members", "cases": [{"id", "structures": {name:
        {"median_ml", "low_ml", "high_ml", "width_ml"}}}], "by": {attr: {group: {name: {"n",
        "mean_width_ml"}}}}}``; ``by`` covers the grouped attributes (continuous ones only with ``--bins``).
    """
    from tqdm import tqdm

    from common.metrics.precision import percentile_interval
    from common.metrics.volume import label_volumes

    if method not in UNCERTAINTY_METHODS:
        raise ValueError(f"method must be one of {UNCERTAINTY_METHODS}, got {method!r}")
    if method == "ensemble" and len(members) < 2:
        raise ValueError(f"an ensemble needs at least two member checkpoints, got {len(members)}")
    if method != "ensemble" and num_samples < 2:
        raise ValueError(f"num_samples must be at least 2 for an interval, got {num_samples}")
    model = load_bundle_model(bundle_dir, overrides or {})
    models = [model.with_checkpoint(m) for m in members] if method == "ensemble" else [model]
    structures = cohort.structures
    cases = []
    for case_id, entry in tqdm(
        list(zip(cohort.ids, cohort.entries)), desc=f"{method} samples", unit="case", disable=not progress
    ):
        probs, spacing = _sample_probabilities(models, entry["image"], method, num_samples, seed)
        labels = probs.argmax(dim=1, keepdim=True)
        volumes_ml = label_volumes(labels, num_classes=probs.shape[1], spacing=spacing).numpy() / 1000.0
        per_structure = {}
        for value, name in structures.items():
            v = volumes_ml[:, value] if value < volumes_ml.shape[1] else np.zeros(len(volumes_ml))
            low, high = percentile_interval(v, level)
            per_structure[name] = {
                "median_ml": float(np.median(v)),
                "low_ml": low,
                "high_ml": high,
                "width_ml": high - low,
            }
        cases.append({"id": case_id, "structures": per_structure})
    by: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
    for attr in cohort.attributes.values():
        if attr.groups is None:
            continue
        by[attr.name] = {}
        for group in attr.order or sorted({g for g in attr.groups if g is not None}):
            members_of_group = [c for c, g in zip(cases, attr.groups) if g == group]
            by[attr.name][group] = {
                name: {
                    "n": len(members_of_group),
                    "mean_width_ml": float(np.mean([c["structures"][name]["width_ml"] for c in members_of_group]))
                    if members_of_group
                    else float("nan"),
                }
                for name in structures.values()
            }
    return {
        "method": method,
        "num_samples": len(models) if method == "ensemble" else num_samples,
        "level": level,
        "seed": seed,
        "members": [str(Path(m).resolve()) for m in members],
        "cases": cases,
        "by": by,
    }


def uncertainty_tables(section: Mapping[str, Any] | None) -> list[str]:
    """Markdown lines for the report: mean interval width per group, then every case's intervals."""
    if not section:
        return []
    pct = f"{100 * section['level']:g}%"
    lines = [
        f"### Volume uncertainty ({section['method']}, {section['num_samples']} samples)",
        "",
        f"Per case, the {pct} percentile interval of each structure's volume over the samples; per group, the "
        "mean interval width.",
        "",
        "| attribute | group | structure | n | mean interval width (mL) |",
        "|---|---|---|---|---|",
    ]
    for attr, groups in section["by"].items():
        for group, structures in groups.items():
            for name, s in structures.items():
                lines.append(f"| {attr} | {group} | {name} | {s['n']} | {s['mean_width_ml']:.3f} |")
    lines += ["", "| case | structure | median (mL) | interval (mL) | width (mL) |", "|---|---|---|---|---|"]
    for case in section["cases"]:
        for name, s in case["structures"].items():
            lines.append(
                f"| {case['id']} | {name} | {s['median_ml']:.3f} | {s['low_ml']:.3f} to {s['high_ml']:.3f} "
                f"| {s['width_ml']:.3f} |"
            )
    return [*lines, ""]

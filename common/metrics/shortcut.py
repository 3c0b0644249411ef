"""Shortcut-learning metrics: per-group Flip decomposition and flip-risk as a detector of flip-prone images.

A model trained where object identity and scene are correlated may read the scene instead of the object:
on counterfactual ("rare") test images it then labels the object as the other identity (a *flip*, see
:mod:`common.metrics.flip`) while its foreground Dice looks fine. These functions summarise per-image test
records (``SegmentationReport`` rows: ``dice_<class>``, ``correct``, ``flip``, ``miss``, ``flip_risk``) per
group, score flip-risk as a label-free flag of images whose flip fraction exceeds a threshold (ROC AUC and
average precision), and write the bundle's ``metrics.json`` (:mod:`common.metrics.record`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from common.metrics.auc import binary_auroc, binary_average_precision

__all__ = [
    "average_precision",
    "flip_risk_detection",
    "group_summary",
    "identity_uncertainty",
    "write_shortcut_metrics",
]


# The project's one AP (MONAI ``compute_average_precision``), under the name this module has always exported.
average_precision = binary_average_precision


def flip_risk_detection(records: Sequence[Mapping[str, Any]], threshold: float) -> dict:
    """How well per-image ``flip_risk`` flags images whose ``flip`` fraction exceeds ``threshold``.

    Returns ``{"auroc", "ap", "threshold", "num_positive", "num_images"}`` over the records with a flip
    fraction (images with ground-truth foreground); AUROC/AP are NaN when all or none are flip-prone.
    """
    rows = [r for r in records if r.get("flip") is not None and r.get("flip_risk") is not None]
    scores = np.array([float(r["flip_risk"]) for r in rows])
    positive = np.array([float(r["flip"]) > threshold for r in rows], dtype=bool)
    return {
        "auroc": binary_auroc(scores, positive) if rows else float("nan"),
        "ap": average_precision(scores, positive) if rows else float("nan"),
        "threshold": float(threshold),
        "num_positive": int(positive.sum()),
        "num_images": len(rows),
    }


def _mean(values) -> float:
    vals = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return float(np.mean(vals)) if vals else float("nan")


def group_summary(records: Sequence[Mapping[str, Any]], class_names: Sequence[str]) -> dict:
    """Means over ``records`` (one group's images): Dice per class (images containing the class),
    ``dice_mean`` (of the class means), per-image mean ``correct``/``flip``/``miss`` fractions,
    ``flip_risk_mean`` and ``num_images``."""
    dice = {n: _mean(r.get(f"dice_{n}") for r in records) for n in class_names}
    present = [v for v in dice.values() if not math.isnan(v)]
    out = {"dice": dice, "dice_mean": float(np.mean(present)) if present else float("nan")}
    out.update({k: _mean(r.get(k) for r in records) for k in ("correct", "flip", "miss", "flip_risk")})
    out["flip_risk_mean"] = out.pop("flip_risk")
    out["num_images"] = len(records)
    return out


def write_shortcut_metrics(
    output_dir: str | Path,
    report: Any,
    datalist_path: str | Path,
    settings: Mapping | None = None,
    flip_threshold: float = 0.25,
    groups: Sequence[str] = ("common", "rare"),
) -> Path:
    """Write ``<output_dir>/metrics.json``: per-group Dice, Flip decomposition, flip-risk and its detection.

    ``report`` is a ``common.handlers.SegmentationReport`` that ran over the test split of
    ``datalist_path`` (entries with ``id`` and ``group``). ``metrics``: ``dice_<class>_<group>``,
    ``dice_mean_<group>``, ``flip_correct|flip|miss_<group>``, ``flip_risk_<group>``, ``dice_gap``
    (common minus rare), ``flip_gap`` (rare minus common), ``flip_risk_auroc``, ``flip_risk_ap``;
    ``per_sample``: the test images with their ``group``, ``identity`` and ``scene``.
    """
    from common.metrics.record import nan_to_none, write_metrics

    entries = {str(e["id"]): e for e in json.loads(Path(datalist_path).read_text()).get("test", []) if "id" in e}
    test = report.results()
    per_sample = []
    for rec in test["per_image"]:
        entry = entries.get(str(rec["id"]), {})
        per_sample.append({**rec, **{k: entry.get(k) for k in ("group", "identity", "scene")}})
    names = list(report.class_names)
    summary = {g: group_summary([r for r in per_sample if r["group"] == g], names) for g in groups}
    detection = flip_risk_detection(per_sample, flip_threshold)
    detection_by_group = {g: flip_risk_detection([r for r in per_sample if r["group"] == g], flip_threshold)
                          for g in groups}  # fmt: skip
    flat: dict[str, Any] = {}
    for g, s in summary.items():
        flat.update({f"dice_{n}_{g}": v for n, v in s["dice"].items()})
        flat[f"dice_mean_{g}"] = s["dice_mean"]
        flat.update({f"flip_{k}_{g}": s[k] for k in ("correct", "flip", "miss")})
        flat[f"flip_risk_{g}"] = s["flip_risk_mean"]
    if "common" in summary and "rare" in summary:
        flat["dice_gap"] = summary["common"]["dice_mean"] - summary["rare"]["dice_mean"]
        flat["flip_gap"] = summary["rare"]["flip"] - summary["common"]["flip"]
    flat["dice_mean"] = test["dice_mean"]
    flat["flip_risk_auroc"], flat["flip_risk_ap"] = detection["auroc"], detection["ap"]
    flat["flip_prone_fraction"] = detection["num_positive"] / max(detection["num_images"], 1)
    extra = {
        "groups": nan_to_none(summary),
        "flip_pooled": test["flip"],
        "flip_risk_detection": nan_to_none(detection),
        "flip_risk_detection_by_group": nan_to_none(detection_by_group),
    }
    write_metrics(Path(output_dir) / "metrics.json", dict(settings or {}), flat, per_sample, extra)
    return Path(output_dir) / "metrics.json"


def identity_uncertainty(probs: torch.Tensor, background: int = 0, eps: float = 1e-12) -> torch.Tensor:
    """Per-pixel identity uncertainty ``(1, *spatial)`` in [0, 1] from probabilities ``(C, *spatial)``, C >= 3.

    The normalised entropy of the foreground class probabilities (renormalised to sum to 1) at pixels
    predicted foreground, 0 elsewhere: the map whose mean over predicted foreground is the flip-risk.
    """
    probs = torch.as_tensor(probs).float()
    if probs.ndim < 2 or probs.shape[0] < 3:
        raise ValueError(f"identity_uncertainty needs probabilities (C>=3, *spatial), got shape {tuple(probs.shape)}")
    fg = probs[[c for c in range(probs.shape[0]) if c != background]]
    q = fg / fg.sum(0, keepdim=True).clamp_min(eps)
    entropy = -(q * q.clamp_min(eps).log()).sum(0, keepdim=True) / math.log(fg.shape[0])
    return (entropy * (probs.argmax(0, keepdim=True) != background)).clamp(0.0, 1.0)

"""Per-case measurements and per-group summaries, from :mod:`common.metrics` and ``monai.metrics``.

Per case and structure (:func:`measure_cases`): predicted and manual volume in ml (voxel counts times the voxel
size in each file's NIfTI header, :func:`common.metrics.label_volumes`), the normalised volume bias
``(V_pred - V_true) / V_true`` (:func:`common.metrics.volume_bias`), Dice (``monai.metrics.compute_dice``), the
symmetric average surface distance in mm (``monai.metrics.compute_average_surface_distance``) and the Flip
counts of the structure's manual voxels (correct / flip to another structure / miss to background,
:func:`common.metrics.flip.flip_counts`).

Per attribute (:func:`summarise`): per group and structure the means, medians, the median volume bias with its
percentile-bootstrap 95% interval (:func:`common.metrics.bootstrap_ci`) and the pooled Flip fractions; for a
two-group attribute the group AUC by predicted and by manual volume (:func:`common.metrics.group_auc`); for a
numeric attribute the least-squares trend of volume bias against it with a 95% interval on the slope.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from common.audit.cohort import Cohort
from common.metrics.record import nan_to_none

__all__ = ["Case", "load_label_map", "measure_case", "measure_cases", "summarise", "fit_trend"]

MM3_PER_ML = 1000.0


@dataclass
class Case:
    """Measurements of one case: per structure name a dict of numbers (NaN where not defined)."""

    id: str
    has_label: bool
    structures: dict[str, dict[str, float]] = field(default_factory=dict)
    flip_counts: dict[str, list[float]] = field(default_factory=dict)  # correct, flip, miss, manual voxels


def load_label_map(path: str) -> tuple[np.ndarray, tuple[float, ...]]:
    """Integer label map (trailing singleton axes dropped) and its voxel size in mm from the NIfTI header."""
    import nibabel as nib

    img = nib.load(path)
    data = np.asanyarray(img.dataobj)
    while data.ndim > 2 and data.shape[-1] == 1:
        data = data[..., 0]
    zooms = tuple(float(z) for z in img.header.get_zooms()[: data.ndim])
    return np.rint(data).astype(np.int64), zooms


def _masks(labels: np.ndarray, values: list[int]):
    import torch

    return torch.from_numpy(np.stack([labels == v for v in values])[None].astype(np.float32))


def measure_case(
    case_id: str, prediction: str, label: str | None, structures: Mapping[int, str], surface: bool = True
) -> Case:
    """Measure one case; ``label`` None gives only the predicted volumes."""
    import torch
    from monai.metrics import compute_average_surface_distance, compute_dice

    from common.metrics import label_volumes, volume_bias
    from common.metrics.flip import flip_counts

    pred, pred_zooms = load_label_map(prediction)
    gt, gt_zooms = load_label_map(label) if label else (None, None)
    values = list(structures)
    num_classes = max([*values, int(pred.max()), int(gt.max()) if gt is not None else 0]) + 1
    p = torch.from_numpy(pred)[None, None]
    v_pred = label_volumes(p, num_classes, spacing=pred_zooms)[0].numpy() / MM3_PER_ML
    case = Case(case_id, gt is not None)
    nan = float("nan")
    if gt is None:
        for v, name in structures.items():
            case.structures[name] = {
                "volume_pred_ml": float(v_pred[v]),
                "volume_true_ml": nan,
                "volume_bias": nan,
                "dice": nan,
                "surface_distance": nan,
            }
        return case
    g = torch.from_numpy(gt)[None, None]
    v_true = label_volumes(g, num_classes, spacing=gt_zooms)[0].numpy() / MM3_PER_ML
    bias = volume_bias(p, g, include_background=True, num_classes=num_classes)[0].numpy()
    y_pred, y = _masks(pred, values), _masks(gt, values)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # empty structures give NaN / Inf with a warning each
        dice = compute_dice(y_pred, y, include_background=True, ignore_empty=True)[0].numpy()
        if surface:
            asd = compute_average_surface_distance(
                y_pred, y, include_background=True, symmetric=True, spacing=list(gt_zooms)
            )[0].numpy()
        else:
            asd = np.full(len(values), nan)
    for k, (v, name) in enumerate(structures.items()):
        case.structures[name] = {
            "volume_pred_ml": float(v_pred[v]),
            "volume_true_ml": float(v_true[v]),
            "volume_bias": float(bias[v]),
            "dice": float(dice[k]),
            "surface_distance": float(asd[k]) if np.isfinite(asd[k]) else nan,
        }
        only = torch.from_numpy(np.where(gt == v, v, 0))[None, None]
        case.flip_counts[name] = flip_counts(p, only)[0].tolist()
    return case


def measure_cases(cohort: Cohort, progress: bool = True, surface: bool = True) -> list[Case]:
    """Measure every case of the cohort (every entry must have its ``prediction`` by now)."""
    from tqdm import tqdm

    if not cohort.structures:  # no labels to name structures from: every foreground value of the predictions
        top = max(int(load_label_map(e["prediction"])[0].max()) for e in cohort.entries)
        cohort.structures = {v: f"label_{v}" for v in range(1, top + 1)}
    items = list(zip(cohort.ids, cohort.entries))
    return [
        measure_case(i, e["prediction"], e.get("label"), cohort.structures, surface)
        for i, e in tqdm(items, desc="measuring", unit="case", disable=not progress or len(items) < 20)
    ]


def _finite(values) -> np.ndarray:
    a = np.asarray(values, dtype=np.float64).reshape(-1)
    return a[np.isfinite(a)]


def _mean(values) -> float | None:
    a = _finite(values)
    return float(a.mean()) if a.size else None


def _median(values) -> float | None:
    a = _finite(values)
    return float(np.median(a)) if a.size else None


def fit_trend(x, y) -> dict[str, Any]:
    """Least-squares line ``y = slope * x + intercept`` with a 95% t interval on the slope (``scipy.stats``)."""
    from scipy import stats

    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    out: dict[str, Any] = dict.fromkeys(("slope", "ci_low", "ci_high", "intercept", "r"))
    out["n"] = int(x.size)
    if x.size < 3 or np.ptp(x) == 0:
        return out
    if np.ptp(y) == 0:  # a constant bias: flat line, exactly (linregress gives NaN here)
        out.update(slope=0.0, ci_low=0.0, ci_high=0.0, intercept=float(y[0]), r=None)
        return out
    fit = stats.linregress(x, y)
    half = float(stats.t.ppf(0.975, x.size - 2) * fit.stderr)
    out.update(
        slope=float(fit.slope),
        ci_low=nan_to_none(float(fit.slope - half), infinite=True),
        ci_high=nan_to_none(float(fit.slope + half), infinite=True),
        intercept=float(fit.intercept),
        r=nan_to_none(float(fit.rvalue), infinite=True),
    )
    return out


def _group_summary(cases: list[Case], name: str, n_resamples: int, seed: int) -> dict[str, Any]:
    from common.metrics import bootstrap_ci
    from common.metrics.flip import flip_fractions

    labelled = [c for c in cases if c.has_label]
    out: dict[str, Any] = {"n": len(cases), "n_labelled": len(labelled)}
    out["dice"] = _mean([c.structures[name]["dice"] for c in labelled])
    out["surface_distance"] = _mean([c.structures[name]["surface_distance"] for c in labelled])
    out["volume_pred_ml"] = _median([c.structures[name]["volume_pred_ml"] for c in cases])
    out["volume_true_ml"] = _median([c.structures[name]["volume_true_ml"] for c in labelled])
    values = [c.structures[name]["volume_bias"] for c in labelled]
    if _finite(values).size:
        median, low, high = bootstrap_ci(values, n_resamples=n_resamples, seed=seed)
        out["volume_bias"] = {
            "median": nan_to_none(median, infinite=True),
            "ci_low": nan_to_none(low, infinite=True),
            "ci_high": nan_to_none(high, infinite=True),
            "values": [nan_to_none(v, infinite=True) for v in values],
        }
    else:
        out["volume_bias"] = None
    if labelled:
        import torch

        counts = torch.tensor([c.flip_counts[name] for c in labelled], dtype=torch.float64)
        fractions = flip_fractions(counts)["global"]
        out["flip"] = {k: nan_to_none(fractions[k], infinite=True) for k in ("correct", "flip", "miss")}
    else:
        out["flip"] = None
    return out


def _auc(cases: list[Case], groups: list[str], order: list[str], name: str) -> dict[str, Any]:
    from common.metrics import group_auc

    labelled = [k for k, c in enumerate(cases) if c.has_label]
    labelled_groups = {groups[k] for k in labelled}
    use_manual = len(labelled_groups) == 2
    idx = labelled if use_manual else list(range(len(cases)))
    g = [groups[k] for k in idx]
    pred = [cases[k].structures[name]["volume_pred_ml"] for k in idx]
    true = [cases[k].structures[name]["volume_true_ml"] for k in idx] if use_manual else None
    reference = true if use_manual else pred
    medians = {grp: np.median([v for v, gg in zip(reference, g) if gg == grp]) for grp in order}
    positive = order[1] if medians[order[1]] >= medians[order[0]] else order[0]  # larger volumes: positive
    negative = order[0] if positive == order[1] else order[1]
    out: dict[str, Any] = {"positive": positive, "negative": negative, "n": len(idx), "predicted": None, "manual": None}
    try:
        out["predicted"] = group_auc(pred, g, positive)
        if use_manual:
            out["manual"] = group_auc(true, g, positive)
    except ValueError:  # a non-finite volume or a group without cases
        pass
    return out


def summarise(cohort: Cohort, cases: list[Case], n_resamples: int = 2000, seed: int = 0) -> dict[str, Any]:
    """``{"by": ..., "auc": ..., "trend": ...}`` as laid out in ``results.json`` (see :mod:`common.audit.report`)."""
    names = list(cohort.structures.values())
    by: dict[str, Any] = {}
    auc: dict[str, Any] = {}
    trend: dict[str, Any] = {}
    for attr in cohort.attributes.values():
        if attr.groups is not None:
            by[attr.name] = {
                group: {
                    name: _group_summary([c for c, g in zip(cases, attr.groups) if g == group], name, n_resamples, seed)
                    for name in names
                }
                for group in attr.order
            }
            if len(attr.order) == 2:
                auc[attr.name] = {name: _auc(cases, attr.groups, attr.order, name) for name in names}
        if attr.kind == "continuous":
            trend[attr.name] = {
                name: fit_trend(attr.values, [c.structures[name]["volume_bias"] for c in cases]) for name in names
            }
    return {"by": by, "auc": auc, "trend": trend}

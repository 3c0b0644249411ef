"""Per-case measurements and per-group summaries, from :mod:`common.metrics` and ``monai.metrics``.

Per case and structure (:func:`measure_cases`): predicted and manual volume in ml (voxel counts times the voxel
size in each file's NIfTI header, :func:`common.metrics.label_volumes`), the normalised volume bias
``(V_pred - V_true) / V_true`` (:func:`common.metrics.volume_bias`), Dice (``monai.metrics.compute_dice``), the
symmetric average surface distance in mm (``monai.metrics.compute_average_surface_distance``), the voxel
sensitivity ``TP / V_true`` and false-positive rate ``FP / V_true`` (false-positive voxels relative to the
structure's manual size; both in voxels, NaN without manual voxels) and the Flip counts of the structure's manual
voxels (correct / flip to another structure / miss to background, :func:`common.metrics.flip.flip_counts`).

Per attribute (:func:`summarise`): per group and structure the means, medians, the median volume bias with its
percentile-bootstrap 95% interval (:func:`common.metrics.bootstrap_ci`) and the pooled Flip fractions; across
the groups of at least ``min_group_size`` cases the disparity summary and between-group tests
(:mod:`common.audit.disparity`), stratified by the cohort's control attribute; for a two-group attribute the
group AUC by predicted and by manual volume with the test of their difference; with probability predictions
(probability maps, or a bundle's softmax with ``--keep-probabilities``) the expected calibration error's group
gap with a permutation test; for a numeric attribute the least-squares trend of volume bias against it with a 95%
interval on the slope. Every p-value is corrected over all tests of the report.
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
    # with a probability map: per structure the reliability bins' voxel counts, summed probabilities, summed truth
    calibration: dict[str, dict[str, list[float]]] = field(default_factory=dict)


CALIBRATION_BINS = 10  # equal-width probability bins of the expected calibration error and reliability diagrams


def load_prediction(path: str, label_ndim: int | None) -> tuple[np.ndarray, tuple[float, ...], np.ndarray | None]:
    """Label map, voxel size (mm) and, for a probability map ``(spatial..., C)``, the probabilities (else None);
    a probability map's label map is its argmax over the classes."""
    from common.audit.cohort import is_probability_map

    if not is_probability_map(path, label_ndim):
        return (*load_label_map(path), None)
    import nibabel as nib

    img = nib.load(path)
    probs = np.asarray(img.dataobj, dtype=np.float32)
    zooms = tuple(float(z) for z in img.header.get_zooms()[: probs.ndim - 1])
    return probs.argmax(axis=-1).astype(np.int64), zooms, probs


def _calibration(probs: np.ndarray, gt: np.ndarray, values: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Per structure the expected calibration error (``monai.metrics.CalibrationErrorMetric``) of its class
    probability against its manual mask over every voxel, ``(K,)``, and the reliability bins ``(K, 3, bins)``:
    voxel count, summed probability, summed truth (``monai.metrics.calibration_binning``)."""
    import torch
    from monai.metrics import CalibrationErrorMetric
    from monai.metrics.calibration import calibration_binning

    y_pred = torch.from_numpy(np.stack([probs[..., v] for v in values])[None])
    y = torch.from_numpy(np.stack([gt == v for v in values])[None].astype(np.float32))
    ece = CalibrationErrorMetric(num_bins=CALIBRATION_BINS, include_background=True)(y_pred, y)[0].numpy()
    mean_p, mean_gt, counts = (
        t[0].numpy().astype(np.float64) for t in calibration_binning(y_pred, y, CALIBRATION_BINS)
    )
    bins = np.stack([counts, np.nan_to_num(mean_p) * counts, np.nan_to_num(mean_gt) * counts], axis=1)
    return ece, bins


def load_label_map(path: str) -> tuple[np.ndarray, tuple[float, ...]]:
    """Integer label map (trailing singleton axes dropped) and its voxel size in mm from the NIfTI header."""
    import nibabel as nib

    img = nib.load(path)
    data = np.asanyarray(img.dataobj)
    while data.ndim > 2 and data.shape[-1] == 1:
        data = data[..., 0]
    zooms = tuple(float(z) for z in img.header.get_zooms()[: data.ndim])
    return np.rint(data).astype(np.int64), zooms


def _crop(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both maps cut to the bounding box of their foreground plus one background voxel on each side (clipped to
    the image): Dice, surface distance, sensitivity and Flip counts are those of the whole image, faster."""
    foreground = (pred > 0) | (gt > 0)
    if not foreground.any():
        return pred, gt
    box = []
    for axis in range(foreground.ndim):
        hit = np.flatnonzero(foreground.any(axis=tuple(a for a in range(foreground.ndim) if a != axis)))
        box.append(slice(max(int(hit[0]) - 1, 0), int(hit[-1]) + 2))
    return pred[tuple(box)], gt[tuple(box)]


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

    gt, gt_zooms = load_label_map(label) if label else (None, None)
    pred, pred_zooms, probs = load_prediction(prediction, None if gt is None else gt.ndim)
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
                "sensitivity": nan,
                "fp_rate": nan,
            }
        return case
    g = torch.from_numpy(gt)[None, None]
    v_true = label_volumes(g, num_classes, spacing=gt_zooms)[0].numpy() / MM3_PER_ML
    bias = volume_bias(p, g, include_background=True, num_classes=num_classes)[0].numpy()
    if probs is not None:
        ece, bins = _calibration(probs, gt, values)
        for k, name in enumerate(structures.values()):
            case.calibration[name] = {"ece": float(ece[k]), "bins": bins[k].tolist()}
    pred, gt = _crop(pred, gt)
    p = torch.from_numpy(np.ascontiguousarray(pred))[None, None]
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
        manual, predicted = gt == v, pred == v
        size = int(manual.sum())
        tp = int(np.count_nonzero(manual & predicted))
        fp = int(predicted.sum()) - tp
        case.structures[name] = {
            "volume_pred_ml": float(v_pred[v]),
            "volume_true_ml": float(v_true[v]),
            "volume_bias": float(bias[v]),
            "dice": float(dice[k]),
            "surface_distance": float(asd[k]) if np.isfinite(asd[k]) else nan,
            "sensitivity": tp / size if size else nan,
            "fp_rate": fp / size if size else nan,
        }
        only = torch.from_numpy(np.where(gt == v, v, 0))[None, None]
        case.flip_counts[name] = flip_counts(p, only)[0].tolist()
    return case


def measure_cases(cohort: Cohort, progress: bool = True, surface: bool = True) -> list[Case]:
    """Measure every case of the cohort (every entry must have its ``prediction`` by now).

    Torch runs on one thread meanwhile (restored after): one case's tensors are small, and a second thread only
    stalls the work when other jobs share the cores (three times slower measured on 2 shared cores).
    """
    import torch
    from tqdm import tqdm

    if not cohort.structures:  # no labels to name structures from: every foreground value of the predictions
        top = max(int(load_prediction(e["prediction"], None)[0].max()) for e in cohort.entries)
        cohort.structures = {v: f"label_{v}" for v in range(1, top + 1)}
    items = list(zip(cohort.ids, cohort.entries))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return [
            measure_case(i, e["prediction"], e.get("label"), cohort.structures, surface)
            for i, e in tqdm(items, desc="measuring", unit="case", disable=not progress or len(items) < 20)
        ]
    finally:
        torch.set_num_threads(threads)


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
    out["sensitivity"] = _mean([c.structures[name]["sensitivity"] for c in labelled])
    out["fp_rate"] = _mean([c.structures[name]["fp_rate"] for c in labelled])
    out["surface_distance"] = _mean([c.structures[name]["surface_distance"] for c in labelled])
    calibrated = [c.calibration[name] for c in labelled if name in c.calibration]
    out["ece"] = _mean([k["ece"] for k in calibrated])
    out["reliability"] = None
    if calibrated:
        counts, sum_p, sum_gt = np.sum([k["bins"] for k in calibrated], axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            out["reliability"] = {
                "count": counts.tolist(),
                "mean_probability": [nan_to_none(v) for v in (sum_p / counts).tolist()],
                "frequency": [nan_to_none(v) for v in (sum_gt / counts).tolist()],
            }
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


def _auc(
    cases: list[Case], groups: list[str], order: list[str], name: str, strata, n_resamples: int, seed: int
) -> dict[str, Any]:
    """AUCs of the two ``order`` groups by predicted and manual volume (within strata) and the test of their
    difference; the group with the larger median manual (else predicted) volume is positive."""
    from common.audit.disparity import auc_difference_test, stratified_auc

    member = [k for k, g in enumerate(groups) if g in order]
    labelled = [k for k in member if cases[k].has_label]
    use_manual = {groups[k] for k in labelled} == set(order)
    idx = labelled if use_manual else member
    g = np.asarray([groups[k] for k in idx], dtype=object)
    s = None if strata is None else np.asarray([strata[k] for k in idx], dtype=object)
    pred = np.asarray([cases[k].structures[name]["volume_pred_ml"] for k in idx], dtype=np.float64)
    true = np.asarray([cases[k].structures[name]["volume_true_ml"] for k in idx], dtype=np.float64)
    reference = true if use_manual else pred
    medians = {grp: np.median(reference[g == grp]) for grp in order}
    positive = order[1] if medians[order[1]] >= medians[order[0]] else order[0]  # larger volumes: positive
    negative = order[0] if positive == order[1] else order[1]
    out: dict[str, Any] = {"positive": positive, "negative": negative, "n": len(idx), "predicted": None, "manual": None}
    out["test"] = None
    if not np.isfinite(pred).all() or (use_manual and not np.isfinite(true).all()):
        return out
    is_pos = g == positive
    out["predicted"] = nan_to_none(float(stratified_auc(pred, is_pos, s)))
    if use_manual:
        out["manual"] = nan_to_none(float(stratified_auc(true, is_pos, s)))
        test = auc_difference_test(pred, true, is_pos, s, n_resamples=n_resamples, seed=seed)
        out["test"] = test if test["p"] is not None else None
    return out


METRICS = ("dice", "sensitivity", "fp_rate", "volume_bias")  # compared between groups by the disparity summary
TESTED = ("dice", "volume_bias")  # their group differences are tested


def _control_for(cohort: Cohort, attr) -> str | None:
    """The control attribute's name for ``attr``, or None when there is none or ``attr`` contains it."""
    from common.audit.cohort import INTERSECT

    control = cohort.control
    if control is None or control.name == attr.name or control.name in attr.name.split(INTERSECT):
        return None
    return control.name


def summarise(
    cohort: Cohort,
    cases: list[Case],
    n_resamples: int = 2000,
    seed: int = 0,
    min_group_size: int = 5,
    correction: str = "holm",
) -> dict[str, Any]:
    """``{"by", "too_small", "disparity", "auc", "trend", "tests", "control"}`` as laid out in ``results.json``
    (see :mod:`common.audit.report`).

    Groups with fewer than ``min_group_size`` cases (labelled ones when the cohort has labels) keep their row in
    ``by`` and are listed in ``too_small``; they take no part in the disparity summary, the tests or the AUC.
    """
    from collections import Counter

    from common.audit.disparity import (
        CORRECTIONS,
        correct,
        disparity_summary,
        gap_permutation_test,
        group_difference_test,
    )

    if min_group_size < 2:
        raise ValueError(f"min_group_size must be at least 2, got {min_group_size}")
    names = list(cohort.structures.values())
    any_label = any(c.has_label for c in cases)
    by: dict[str, Any] = {}
    too_small: dict[str, dict[str, int]] = {}
    disparity: dict[str, Any] = {}
    auc: dict[str, Any] = {}
    trend: dict[str, Any] = {}
    for attr in cohort.attributes.values():
        control = _control_for(cohort, attr)
        strata = cohort.control.groups if control else None
        if attr.groups is not None:
            by[attr.name] = {
                group: {
                    name: _group_summary([c for c, g in zip(cases, attr.groups) if g == group], name, n_resamples, seed)
                    for name in names
                }
                for group in attr.order
            }
            sizes = Counter(g for g, c in zip(attr.groups, cases) if c.has_label or not any_label)
            too_small[attr.name] = {g: sizes[g] for g in attr.order if sizes[g] < min_group_size}
            compared = [g for g in attr.order if sizes[g] >= min_group_size]
            if len(compared) >= 2 and any_label:
                disparity[attr.name] = {}
                for name in names:
                    values = {m: [c.structures[name][m] for c in cases] for m in METRICS}
                    if any(name in c.calibration for c in cases):  # probability predictions: ECE per case
                        values["ece"] = [c.calibration.get(name, {}).get("ece", np.nan) for c in cases]
                    d = disparity_summary(values, attr.groups, compared, strata, n_resamples, seed)
                    for metric in TESTED:
                        if "error" not in d[metric]:
                            d[metric]["test"] = group_difference_test(values[metric], attr.groups, compared, strata)
                    if "ece" in d and "error" not in d["ece"]:
                        d["ece"]["test"] = gap_permutation_test(
                            values["ece"], attr.groups, compared, strata, n_resamples, seed
                        )
                    disparity[attr.name][name] = {"groups": compared, "controlled_by": control, **d}
            if len(compared) == 2:
                auc[attr.name] = {
                    name: {
                        **_auc(cases, attr.groups, compared, name, strata, n_resamples, seed),
                        "controlled_by": control,
                    }
                    for name in names
                }
        if attr.kind == "continuous":
            biases = {name: [c.structures[name]["volume_bias"] for c in cases] for name in names}
            if control:
                from common.audit.disparity import trend as controlled_trend

                trend[attr.name] = {name: controlled_trend(attr.values, biases[name], strata) for name in names}
            else:
                trend[attr.name] = {name: fit_trend(attr.values, biases[name]) for name in names}
            for t in trend[attr.name].values():
                t["controlled_by"] = control
    family = [
        d[metric]["test"]
        for structures in disparity.values()
        for d in structures.values()
        for metric in (*TESTED, "ece")
        if (d.get(metric, {}).get("test") or {}).get("p") is not None
    ]
    family += [a["test"] for structures in auc.values() for a in structures.values() if a.get("test")]
    for test, p in zip(family, correct([t["p"] for t in family], correction)):
        test["p_corrected"] = p
    return {
        "control": cohort.control.name if cohort.control else None,
        "min_group_size": min_group_size,
        "by": by,
        "too_small": too_small,
        "disparity": disparity,
        "auc": auc,
        "trend": trend,
        "tests": {"n": len(family), "correction": correction, "correction_name": CORRECTIONS[correction]},
    }

"""Scan-rescan precision of LV biomarkers under three uncertainty estimators (bundle ``biomarker_precision``).

For every test heart (four frames: ED/ES x scan/rescan) and every estimator (deep ensemble, test-time
augmentation, MC dropout; :mod:`common.uncertainty`), each frame gives ``N`` probability maps, hence ``N`` LV
areas, Feret lengths and area-length volumes (:func:`lv_biomarker_samples`: the largest LV component of each
sample's argmax, measured by :func:`common.uncertainty.biomarker_samples`' rules). Sample ``i`` of ED
and of ES of the same session (same member, same dropout seed, same augmentation seed) gives EF sample ``i``.
:func:`evaluate_precision` writes ``metrics.json`` with one row per (heart, estimator) holding the EDV, ESV and
EF samples of scan and rescan and their truth, and the cohort summary of :func:`common.metrics.precision.
precision_summary` per estimator, biomarker and image-quality group. :class:`BiomarkerIntervalsd` is the
inference-side transform: per image an estimate and interval of each biomarker (JSON) and an entropy map (NIfTI).
"""

from __future__ import annotations

import gzip
import json
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from common.data.datalist import DatalistError
from common.metrics.precision import (
    area_length_volume,
    ejection_fraction,
    lv_long_axis_length_mm,
    mask_area_mm2,
    percentile_interval,
    precision_summary,
)

__all__ = [
    "BIOMARKERS",
    "ESTIMATORS",
    "BiomarkerIntervalsd",
    "check_test_hearts",
    "estimator_samples",
    "evaluate_precision",
    "lv_biomarker_samples",
    "prepare_precision_datalist",
    "summarize_rows",
    "write_subject_biomarkers",
]

BIOMARKERS = ("edv", "esv", "ef")
ESTIMATORS = ("ensemble", "tta", "mc_dropout")
FRAMES = (("ED", "scan"), ("ES", "scan"), ("ED", "rescan"), ("ES", "rescan"))
TRUTH_KEYS = ("edv_true", "esv_true", "ef_true")


def prepare_precision_datalist(
    datalist: str | Path | None, dataset_dir: str | Path | None, cache_dir: str | Path, seed: int = 0,
    phantom: Mapping | None = None, num_classes: int = 4,
) -> Path:  # fmt: skip
    """The datalist of a run: the cardiac phantom (``phantom``: :class:`~common.data.cardiac_phantom.
    CardiacPhantomConfig` fields) under ``cache_dir`` when ``datalist`` is empty, else the user's datalist after
    :func:`common.data.validate_datalist` (2-D images, labels in ``0..num_classes-1``) and
    :func:`check_test_hearts`. Raises :class:`~common.data.DatalistError` naming every problem."""
    from common.data.cardiac_phantom import CardiacPhantomConfig, generate_cardiac_phantom
    from common.data.datalist import load_datalist, validate_datalist

    if not datalist:
        return generate_cardiac_phantom(cache_dir, CardiacPhantomConfig(**dict(phantom or {})), seed=seed)
    path = Path(datalist)
    if not path.is_file():
        raise DatalistError([f"datalist {path} does not exist"], path)
    base = Path(dataset_dir) if dataset_dir else path.parent
    validate_datalist(path, base, num_classes=num_classes, spatial_dims=2, splits=("training", "validation", "test"))
    check_test_hearts(load_datalist(path, base)["test"], path)
    return path


def check_test_hearts(entries: Sequence[Mapping], source: Any = None) -> dict[str, dict[tuple[str, str], Mapping]]:
    """Group test entries by ``subject`` into ``{subject: {(phase, session): entry}}``; every entry needs
    ``subject``, ``phase`` (ED/ES), ``session`` (scan/rescan) and ``label``, every subject all four frames.
    Raises one :class:`~common.data.DatalistError` listing every problem."""
    hearts: dict[str, dict[tuple[str, str], Mapping]] = defaultdict(dict)
    problems = []
    for i, e in enumerate(entries):
        missing = [k for k in ("subject", "phase", "session", "label") if k not in e]
        if missing:
            problems.append(f"test entry {i} ({e.get('image', '?')}) lacks {', '.join(missing)}")
        elif (e["phase"], e["session"]) not in FRAMES:
            problems.append(f"test entry {i}: phase/session {e['phase']}/{e['session']} not in ED|ES x scan|rescan")
        elif (e["phase"], e["session"]) in hearts[e["subject"]]:
            problems.append(f"test subject {e['subject']}: {e['phase']}/{e['session']} given twice")
        else:
            hearts[e["subject"]][(e["phase"], e["session"])] = e
    for subject, frames in hearts.items():
        lacking = [f"{p}/{s}" for p, s in FRAMES if (p, s) not in frames]
        if lacking:
            problems.append(f"test subject {subject} lacks frame(s) {', '.join(lacking)}")
    if not hearts and not problems:
        problems.append("no test subjects")
    if problems:
        raise DatalistError(problems, source)
    return dict(hearts)


def estimator_samples(
    estimator: str, network: torch.nn.Module, data: Mapping, num_samples: int, seed: int
) -> torch.Tensor:
    """Probability samples ``(N, C, H, W)`` of one preprocessed item ``data`` (``data["image"]`` is ``(1, H, W)``)
    under ``estimator``. ``network`` is a :class:`~common.networks.ensemble.DeepEnsemble`: the ensemble uses
    every member (``N = K``), TTA and MC dropout member 0 (``N = num_samples``)."""
    from common.uncertainty import default_tta_transform, ensemble_samples, mc_dropout_samples, tta_samples

    members = list(getattr(network, "members", [network]))
    device = next(members[0].parameters()).device
    image = torch.as_tensor(data["image"]).to(device)
    if estimator == "ensemble":
        return ensemble_samples(members, image[None])[:, 0]
    if estimator == "mc_dropout":
        return mc_dropout_samples(members[0], image[None], num_samples, seed)[:, 0]
    if estimator == "tta":
        item = {"image": data["image"].to(device) if hasattr(data["image"], "to") else data["image"]}
        return tta_samples(members[0], item, num_samples, seed, default_tta_transform(["image"], seed))
    raise ValueError(f"unknown estimator {estimator!r}; expected one of {', '.join(ESTIMATORS)}")


def _spacing(image) -> tuple[float, float]:
    """Pixel spacing (mm) of a preprocessed ``(1, H, W)`` MetaTensor (its affine follows any resize)."""
    pixdim = getattr(image, "pixdim", None)
    if pixdim is None:
        raise ValueError("the image carries no affine: keep track_meta for the image key")
    return float(pixdim[0]), float(pixdim[1])


def lv_biomarker_samples(prob_samples, spacing_mm, largest_component: bool = True, lv_label: int = 1) -> list[dict]:
    """:func:`common.uncertainty.biomarker_samples` of ``(N, C, H, W)`` probabilities, each sample's LV mask first
    reduced to its largest 8-connected component when ``largest_component`` (the usual clean-up of a biomarker
    pipeline).

    Returns:
        One dict per sample: ``area_mm2``, ``length_mm``, ``volume_ml`` (0 for an empty mask).
    """
    from common.uncertainty import biomarker_samples

    rows = biomarker_samples(prob_samples, spacing_mm, lv_label, largest_component=largest_component)
    return [{k: row[k] for k in ("area_mm2", "length_mm", "volume_ml")} for row in rows]


def _reference_truth(frames: Mapping[tuple[str, str], Mapping], transform) -> dict[str, float]:
    """Truth from the reference labels (same area-length measurement) for data without analytic truth:
    EDV/ESV/EF of the scan session."""
    vols = {}
    for phase in ("ED", "ES"):
        d = transform(dict(frames[(phase, "scan")]))
        mask, spacing = np.asarray(d["label"])[0] == 1, _spacing(d["image"])
        vols[phase] = area_length_volume(mask_area_mm2(mask, spacing), lv_long_axis_length_mm(mask, spacing))
    return {"edv_true": vols["ED"], "esv_true": vols["ES"], "ef_true": ejection_fraction(vols["ED"], vols["ES"])}


def _dice(pred: torch.Tensor, label: torch.Tensor, num_classes: int) -> list[float]:
    """Dice of structures 1..num_classes-1 of two ``(H, W)`` label maps (NaN where both are empty)."""
    out = []
    for c in range(1, num_classes):
        p, g = pred == c, label == c
        denom = float(p.sum() + g.sum())
        out.append(2.0 * float((p & g).sum()) / denom if denom else float("nan"))
    return out


def summarize_rows(rows: Sequence[Mapping], estimators: Sequence[str], level: float = 0.95) -> dict:
    """``{estimator: {biomarker: precision_summary}}`` and ``{estimator: {group: {biomarker: ...}}}`` (groups
    with at least 2 subjects) of the per-(subject, estimator) rows written by :func:`evaluate_precision`."""
    overall, by_group = {}, {}
    for est in estimators:
        mine = [r for r in rows if r["estimator"] == est]
        overall[est] = {b: precision_summary(mine, b, level=level) for b in BIOMARKERS}
        groups = sorted({r.get("group", "all") for r in mine})
        by_group[est] = {
            g: {b: precision_summary(sub, b, level=level) for b in BIOMARKERS}
            for g in groups
            if len(sub := [r for r in mine if r.get("group", "all") == g]) >= 2
        }
    return {"overall": overall, "by_group": by_group}


def evaluate_precision(
    network: torch.nn.Module,
    data: Sequence[Mapping],
    transform,
    output_dir: str | Path,
    estimators: Sequence[str] = ESTIMATORS,
    num_samples: int = 20,
    seed: int = 0,
    level: float = 0.95,
    largest_component: bool = True,
    class_names: Sequence[str] = ("lv_cavity", "myocardium", "left_atrium"),
    settings: Mapping | None = None,
    summary_writer=None,
    num_panels: int = 2,
) -> dict:
    """Run every estimator on every test heart and write ``<output_dir>/metrics.json``.

    Args:
        network: trained :class:`~common.networks.ensemble.DeepEnsemble`.
        data: test entries (absolute paths) with ``subject``, ``phase``, ``session``, ``label`` and, where known,
            ``edv_true``/``esv_true``/``ef_true`` (else measured on the scan's reference labels).
        transform: preprocessing of an entry (image ``(1, H, W)`` MetaTensor, label ``(1, H, W)``).
        estimators: subset of :data:`ESTIMATORS`.
        num_samples: samples of TTA and MC dropout (the ensemble has one per member).
        level: central interval level.
        largest_component: keep each sample's largest LV component before measuring (:func:`lv_biomarker_samples`).
        summary_writer: TensorBoard writer for panels image | label | prediction | entropy of the first
            ``num_panels`` subjects' ED scan frames and the headline scalars (``None``: none).

    Returns:
        The metrics record: ``metrics`` ``{b}_{key}_{estimator}`` for every :func:`precision_summary` key,
        ``dice_{structure}_{estimator}`` and ``dice_mean_{estimator}``; ``per_sample`` one row per (subject,
        estimator); ``extra`` the summaries overall and by group.
    """
    from common.handlers.seg_panels import panel
    from common.metrics.record import write_metrics
    from common.uncertainty import uncertainty_map

    bad = [e for e in estimators if e not in ESTIMATORS]
    if bad:
        raise ValueError(f"unknown estimator(s) {bad}; expected a subset of {', '.join(ESTIMATORS)}")
    hearts = check_test_hearts(data, "test split")
    num_classes = len(class_names) + 1
    rows = []
    for h_index, (subject, frames) in enumerate(sorted(hearts.items())):
        first = frames[("ED", "scan")]
        truth = {k: float(first[k]) for k in TRUTH_KEYS} if all(k in first for k in TRUTH_KEYS) else None
        truth = truth or _reference_truth(frames, transform)
        items = {f: transform(dict(frames[f])) for f in FRAMES}
        for est in estimators:
            row: dict[str, Any] = {"id": f"{subject}/{est}", "subject": subject, "estimator": est,
                                   "group": str(first.get("group", "all")), **{f"{b}_true": truth[f"{b}_true"]
                                                                                for b in BIOMARKERS}}  # fmt: skip
            dice = []
            volumes = {}
            for phase, session in FRAMES:
                d = items[(phase, session)]
                probs = estimator_samples(est, network, d, num_samples, seed).cpu()
                volumes[(phase, session)] = np.array(
                    [s["volume_ml"] for s in lv_biomarker_samples(probs, _spacing(d["image"]), largest_component)],
                    dtype=float,
                )
                pred = probs.mean(0).argmax(0)
                dice.append(_dice(pred, torch.as_tensor(d["label"])[0].long().cpu(), num_classes))
                if summary_writer is not None and h_index < num_panels and (phase, session) == ("ED", "scan"):
                    img = panel(d["image"], d["label"], pred[None], num_classes)
                    ent = uncertainty_map(probs)[None] / math.log(num_classes)
                    summary_writer.add_image(f"evaluate/{est}/{subject}", torch.cat([img, ent.clamp(0, 1)], -1), 0)
            for session in ("scan", "rescan"):
                edv, esv = volumes[("ED", session)], volumes[("ES", session)]
                with np.errstate(divide="ignore", invalid="ignore"):
                    ef = np.where(edv > 0, (edv - esv) / edv, np.nan)
                for b, values in (("edv", edv), ("esv", esv), ("ef", ef)):
                    row[f"{b}_{session}_samples"] = [None if not np.isfinite(v) else float(v) for v in values]
            per_structure = np.nanmean(np.array(dice, dtype=float), axis=0)
            row.update({f"dice_{n}": float(v) for n, v in zip(class_names, per_structure)})
            rows.append(row)
    summaries = summarize_rows(rows, estimators, level)  # samples: floats, None (undefined volume) reads as NaN
    metrics: dict[str, Any] = {}
    for est in estimators:
        for b, summary in summaries["overall"][est].items():
            metrics.update({f"{b}_{k}_{est}": v for k, v in summary.items()})
        mine = [r for r in rows if r["estimator"] == est]
        per = {n: float(np.nanmean([r[f"dice_{n}"] for r in mine])) for n in class_names}
        metrics.update({f"dice_{n}_{est}": v for n, v in per.items()})
        metrics[f"dice_mean_{est}"] = float(np.mean(list(per.values())))
    if summary_writer is not None:
        for k, v in metrics.items():
            if v is not None and np.isfinite(v):
                summary_writer.add_scalar(f"evaluate/{k}", v, 0)
    extra = {"level": level, "num_samples": num_samples, "estimators": list(estimators), **summaries}
    return write_metrics(Path(output_dir) / "metrics.json", dict(settings or {}), metrics, rows, extra)


class BiomarkerIntervalsd:
    """Inference postprocessing: LV biomarkers with intervals and an entropy map for each image.

    For the item's ``image`` (preprocessed ``(1, H, W)`` MetaTensor) it draws ``estimator`` samples
    (:func:`estimator_samples`; LV masks reduced to their largest component with ``largest_component``), writes ``<output_dir>/<name>_biomarkers.json`` with the LV area (mm^2), length
    (mm) and area-length volume (mL) as ``{"estimate" (median), "low", "high", "samples"}`` at ``level``, plus the
    item's ``subject``/``phase``/``session`` when given, and ``<output_dir>/<name>_uncertainty.nii.gz``, the
    per-pixel predictive entropy (nats) on the preprocessed grid. The item passes through unchanged.
    """

    def __init__(self, network, output_dir: str, estimator: str = "ensemble", num_samples: int = 20,
                 seed: int = 0, level: float = 0.95, largest_component: bool = True,
                 image_key: str = "image"):  # fmt: skip
        if estimator not in ESTIMATORS:
            raise ValueError(f"unknown estimator {estimator!r}; expected one of {', '.join(ESTIMATORS)}")
        self.network, self.output_dir, self.estimator = network, Path(output_dir), estimator
        self.num_samples, self.seed, self.level, self.image_key = num_samples, seed, level, image_key
        self.largest_component = largest_component

    def __call__(self, data: Mapping) -> dict:
        import nibabel as nib

        from common.io import atomic_write, atomic_write_json
        from common.metrics.record import nan_to_none
        from common.uncertainty import uncertainty_map

        d = dict(data)
        image = d[self.image_key]
        probs = estimator_samples(self.estimator, self.network, {"image": image}, self.num_samples, self.seed).cpu()
        name = Path(str(image.meta.get("filename_or_obj", "image"))).name.split(".")[0]
        record: dict[str, Any] = {"image": str(image.meta.get("filename_or_obj", "")), "estimator": self.estimator,
                                  "level": self.level, "spacing_mm": list(_spacing(image))}  # fmt: skip
        record.update({k: d[k] for k in ("subject", "phase", "session") if isinstance(d.get(k), str)})
        samples = lv_biomarker_samples(probs, _spacing(image), self.largest_component)
        for key in ("area_mm2", "length_mm", "volume_ml"):
            x = np.array([s[key] for s in samples], dtype=float)
            low, high = percentile_interval(x, self.level)
            record[key] = {"estimate": float(np.nanmedian(x)) if np.isfinite(x).any() else None,
                           "low": low, "high": high, "samples": [float(v) for v in x]}  # fmt: skip
        self.output_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.output_dir / f"{name}_biomarkers.json", nan_to_none(record))
        from monai.data.utils import to_affine_nd

        affine = to_affine_nd(3, np.asarray(image.affine, dtype=float))
        nifti = nib.Nifti1Image(uncertainty_map(probs).numpy().astype(np.float32), affine)
        blob = gzip.compress(nifti.to_bytes(), mtime=0)
        atomic_write(self.output_dir / f"{name}_uncertainty.nii.gz", lambda tmp: Path(tmp).write_bytes(blob))
        return d


def write_subject_biomarkers(output_dir: str | Path, level: float = 0.95) -> Path:
    """Collect ``*_biomarkers.json`` of an inference run into ``<output_dir>/biomarkers.json``: every image, and
    per subject and session with both an ED and an ES image the EDV, ESV and EF (sample ``i`` of ED with sample
    ``i`` of ES) with estimate (median) and ``level`` interval."""
    from common.io import atomic_write_json
    from common.metrics.record import nan_to_none

    output_dir = Path(output_dir)
    images = [json.loads(p.read_text()) for p in sorted(output_dir.glob("*_biomarkers.json"))]
    by_visit: dict[tuple[str, str], dict[str, dict]] = defaultdict(dict)
    for rec in images:
        if {"subject", "phase", "session"} <= set(rec):
            by_visit[(rec["subject"], rec["session"])][rec["phase"]] = rec
    subjects = []
    for (subject, session), phases in sorted(by_visit.items()):
        if {"ED", "ES"} <= set(phases):
            edv = np.array(phases["ED"]["volume_ml"]["samples"], dtype=float)
            esv = np.array(phases["ES"]["volume_ml"]["samples"], dtype=float)
            with np.errstate(divide="ignore", invalid="ignore"):
                ef = np.where(edv > 0, (edv - esv) / edv, np.nan)
            entry: dict[str, Any] = {"subject": subject, "session": session}
            for key, x in (("edv_ml", edv), ("esv_ml", esv), ("ef", ef)):
                low, high = percentile_interval(x, level)
                entry[key] = {"estimate": float(np.nanmedian(x)) if np.isfinite(x).any() else None,
                              "low": low, "high": high}  # fmt: skip
            subjects.append(entry)
    path = output_dir / "biomarkers.json"
    atomic_write_json(path, nan_to_none({"level": level, "images": images, "subjects": subjects}))
    return path

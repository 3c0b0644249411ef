"""Per-group segmentation metrics of an evaluator: Dice, normalised volume bias, group AUC, flip decomposition.

:class:`GroupSegmentationMetrics` attaches to a MONAI ``SupervisedEvaluator`` whose
decollated outputs hold a label-map ``pred`` ``(1, *spatial)`` and ``label``, and whose
batches carry a ``group`` (and optionally ``subject``) key. Per subject it records
every structure's Dice (MONAI ``compute_dice``), predicted and true volume (ml) and
the flip counts; at the end of the run it summarises per group
(:func:`summarize_groups`), puts scalars such as ``dice_grey_matter_L`` and
``volume_bias_grey_matter_L`` into ``engine.state.metrics`` (so MONAI's
``TensorBoardStatsHandler`` logs them per validation) and, with ``output_file``,
writes the whole summary as JSON atomically.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from common.metrics.flip import flip_fractions
from common.metrics.record import nan_to_none, write_metrics

__all__ = ["GroupSegmentationMetrics", "auc_orientation", "subject_record", "summarize_groups"]


def auc_orientation(true_volumes: Sequence[float], groups: Sequence[str], group_a: str, group_b: str) -> str:
    """The group whose ground-truth volumes are larger (by median): it is the AUC's positive group."""
    v, g = np.asarray(true_volumes, float), np.asarray(groups)
    return group_a if np.median(v[g == group_a]) >= np.median(v[g == group_b]) else group_b


def summarize_groups(
    subjects: Sequence[Mapping[str, Any]],
    structures: Sequence[str],
    n_bootstrap: int = 2000,
    seed: int = 0,
) -> dict:
    """Per-group summary of per-subject records.

    Args:
        subjects: ``{"subject", "group", "dice": {s: x}, "volume_pred": {s: ml}, "volume_true": {s: ml},
            "volume_bias": {s: x or None}, "flip_counts": [correct, flip, miss, foreground]}`` per subject
            (:func:`subject_record`).
        structures: structure names (keys of the per-subject dicts).

    Returns:
        ``{"groups": {g: {"n", "dice": {s: {mean, median, values}}, "volume_bias": {s: {median, ci95, mean,
        values}}, "flip": {global, per_image, num_images}}}, "auc": {s: {"pred", "manual", "positive"}},
        "mean_dice": x, "balanced_dice": x}``. ``mean_dice`` pools every subject and structure; ``balanced_dice``
        is the mean over groups of each group's mean Dice over structures, so each group weighs the same
        whatever its size (the validation metric of the segmentation bundle). Volume bias is ``(Vol(pred) - Vol(gt)) / Vol(gt)`` per subject; its median gets a
        percentile-bootstrap 95% interval. The AUC tells the two groups apart by a structure's predicted
        volume (``pred``) and true volume (``manual``), both oriented so the group with larger true volumes is
        ``positive``: a predicted AUC below 0.5 reverses the true difference. ``None`` where undefined.
    """
    from common.metrics import bootstrap_ci, group_auc

    groups = sorted({str(s["group"]) for s in subjects})
    out: dict[str, Any] = {"groups": {}, "auc": {}}
    for g in groups:
        rows = [s for s in subjects if str(s["group"]) == g]
        entry: dict[str, Any] = {"n": len(rows), "dice": {}, "volume_bias": {}}
        for st in structures:
            dice = np.array([r["dice"][st] for r in rows], float)
            vb = np.array([r["volume_bias"][st] if r["volume_bias"][st] is not None else np.nan for r in rows], float)
            entry["dice"][st] = {
                "mean": nan_to_none(float(np.nanmean(dice))) if np.isfinite(dice).any() else None,
                "median": nan_to_none(float(np.nanmedian(dice))) if np.isfinite(dice).any() else None,
                "values": [nan_to_none(x) for x in dice.tolist()],
            }
            est, lo, hi = bootstrap_ci(vb, np.median, n_resamples=n_bootstrap, seed=seed)
            entry["volume_bias"][st] = {
                "median": nan_to_none(est),
                "ci95": [nan_to_none(lo), nan_to_none(hi)],
                "mean": nan_to_none(float(np.nanmean(vb))) if np.isfinite(vb).any() else None,
                "values": [nan_to_none(x) for x in vb.tolist()],
            }
        counts = torch.as_tensor([r["flip_counts"] for r in rows], dtype=torch.float64)
        entry["flip"] = nan_to_none(flip_fractions(counts))  # num_images stays an int
        out["groups"][g] = entry
    if len(groups) == 2:
        grp = [str(s["group"]) for s in subjects]
        for st in structures:
            true = [s["volume_true"][st] for s in subjects]
            pred = [s["volume_pred"][st] for s in subjects]
            positive = auc_orientation(true, grp, *groups)
            out["auc"][st] = {
                "pred": group_auc(pred, grp, positive),
                "manual": group_auc(true, grp, positive),
                "positive": positive,
            }
    all_dice = [s["dice"][st] for s in subjects for st in structures if s["dice"][st] is not None]
    out["mean_dice"] = nan_to_none(float(np.nanmean(all_dice))) if all_dice else None
    group_means = [
        np.nanmean([e["dice"][st]["mean"] for st in structures if e["dice"][st]["mean"] is not None])
        for e in out["groups"].values()
        if any(e["dice"][st]["mean"] is not None for st in structures)
    ]
    out["balanced_dice"] = nan_to_none(float(np.mean(group_means))) if group_means else None
    return out


def subject_record(pred: torch.Tensor, label: torch.Tensor, structures: Sequence[str], spacing=None) -> dict:
    """Dice, volumes (ml), normalised volume bias and flip counts of one subject: ``pred``/``label`` label maps
    ``(1, *spatial)``; every number comes from MONAI's or ``common.metrics``' tested functions.

    ``structures`` name the classes ``1 .. len(structures)`` (0 is background).
    """
    from common.metrics.per_image import dice_and_flip_counts
    from common.metrics.volume import label_volumes, volume_bias

    num_classes = len(structures) + 1
    p = torch.as_tensor(pred).reshape(1, 1, *pred.shape[-(pred.ndim - 1) :]).round().long()
    y = torch.as_tensor(label).reshape(p.shape).round().long()
    dice, counts = dice_and_flip_counts(p, y, num_classes)
    vol_p = label_volumes(p, num_classes, spacing) / 1000.0
    vol_y = label_volumes(y, num_classes, spacing) / 1000.0
    bias = volume_bias(p, y, num_classes=num_classes)
    return {
        "dice": {s: nan_to_none(float(dice[0, i])) for i, s in enumerate(structures)},
        "volume_pred": {s: float(vol_p[0, i + 1]) for i, s in enumerate(structures)},
        "volume_true": {s: float(vol_y[0, i + 1]) for i, s in enumerate(structures)},
        "volume_bias": {s: nan_to_none(float(bias[0, i])) for i, s in enumerate(structures)},
        "flip_counts": counts[0].tolist(),
    }


class GroupSegmentationMetrics:
    """Ignite handler: per-subject records and per-group summary of a segmentation evaluator (see module doc).

    Args:
        structures: names of classes ``1 .. K-1``, e.g. ``["other_csf", "grey_matter", "white_matter"]``.
        output_file: write the run's metrics record here at the end of each run (atomic;
            :mod:`common.metrics.record`: ``metrics`` the scalars above, ``per_sample`` the subjects, ``extra``
            ``{"structures", "groups", "auc"}``); ``None`` keeps it in :attr:`summary` only.
        settings: recorded as ``settings`` in the JSON (e.g. the approach and resolution pair).
        pred_key, label_key, group_key, subject_key: keys in the decollated output / batch.
        n_bootstrap, seed: bootstrap resamples and seed of the volume-bias intervals.
        prefix: prefix of the scalar names put into ``engine.state.metrics``.
    """

    def __init__(
        self,
        structures: Sequence[str],
        output_file: str | os.PathLike | None = None,
        settings: Mapping[str, Any] | None = None,
        pred_key: str = "pred",
        label_key: str = "label",
        group_key: str = "group",
        subject_key: str = "subject",
        n_bootstrap: int = 2000,
        seed: int = 0,
        prefix: str = "",
    ) -> None:
        self.structures = list(structures)
        self.output_file = output_file
        self.settings = dict(settings or {})
        self.pred_key, self.label_key = pred_key, label_key
        self.group_key, self.subject_key = group_key, subject_key
        self.n_bootstrap, self.seed, self.prefix = int(n_bootstrap), int(seed), prefix
        self.subjects: list[dict] = []
        self.summary: dict = {}

    def attach(self, engine) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.EPOCH_STARTED, self.reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.collect)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self.complete)

    def reset(self, engine=None) -> None:
        self.subjects = []

    def collect(self, engine) -> None:
        outputs = engine.state.output
        batches = engine.state.batch
        if isinstance(outputs, Mapping):  # not decollated
            raise ValueError("GroupSegmentationMetrics needs a decollating evaluator (decollate=True)")
        for out, batch in zip(outputs, batches):
            pred, label = out[self.pred_key], out[self.label_key]
            spacing = getattr(label, "pixdim", None)
            rec = subject_record(pred.detach().cpu(), label.detach().cpu(), self.structures, spacing)
            group = batch.get(self.group_key, "H") if isinstance(batch, Mapping) else "H"
            subject = batch.get(self.subject_key) if isinstance(batch, Mapping) else None
            self.subjects.append({"subject": subject or f"subject_{len(self.subjects)}", "group": str(group), **rec})

    def complete(self, engine) -> None:
        self.summary = summarize_groups(self.subjects, self.structures, self.n_bootstrap, self.seed)
        flat = {"mean_dice": self.summary["mean_dice"], "balanced_dice": self.summary["balanced_dice"]}
        for g, entry in self.summary["groups"].items():
            for st in self.structures:
                flat[f"dice_{st}_{g}"] = entry["dice"][st]["mean"]
                flat[f"volume_bias_{st}_{g}"] = entry["volume_bias"][st]["median"]
        for st, auc in self.summary["auc"].items():
            flat[f"auc_{st}"] = auc["pred"]
        for name, value in flat.items():
            engine.state.metrics[f"{self.prefix}{name}"] = value
        if self.output_file is not None:
            per_sample = [{"id": s["subject"], **{k: v for k, v in s.items() if k != "subject"}} for s in self.subjects]
            extra = {"structures": self.structures, "groups": self.summary["groups"], "auc": self.summary["auc"]}
            write_metrics(self.output_file, self.settings, flat, per_sample, extra)

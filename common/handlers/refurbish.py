"""Label-error detection scoring and pseudo-label refurbishment inside a trainer, and the test report.

:class:`RefurbishHandler` fires once, at the end of epoch ``epoch``: it collects
the scores of every detector (:class:`~common.handlers.sample_loss.SampleLossHandler`,
:class:`~common.handlers.vog.VOGHandler`), scores them against the samples'
corruption flags (AUROC, average precision), writes ``detection.json`` and
TensorBoard histograms, and, if ``refurbish`` is on, replaces the labels of the
``flag_fraction`` highest-scoring samples by the network's pseudo-labels
(argmax; with ``confidence > 0`` only where the top probability reaches it,
keeping the original label elsewhere). Training then continues on the
refurbished labels.

:func:`write_label_error_metrics` writes the bundle's ``metrics.json`` from a
:class:`~common.handlers.segmentation_report.SegmentationReport` (importable from here too).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine, Events

from common.handlers.sample_loss import sample_id
from common.handlers.segmentation_report import SegmentationReport
from common.io import atomic_write_json
from common.metrics.label_agreement import label_dice, relative_area_change

# The detector scores reported as flat metrics: per-sample loss, VOG as defined, area under the margin, EL2N.
DETECTOR_SCORES = ("loss", "vog", "aum", "el2n")


def detection_metrics(scores: Mapping[str, float], flags: Mapping[str, int]) -> dict:
    """AUROC and average precision (:mod:`common.metrics.auc`) of ``scores`` (high = suspicious) against 0/1
    ``flags``, matched by id.

    Values are ``None`` when the flags hold only one class.
    """
    from common.metrics.auc import binary_auroc, binary_average_precision

    ids = [i for i in scores if i in flags]
    y = np.array([int(flags[i]) for i in ids])
    s = np.array([float(scores[i]) for i in ids])
    if len(ids) == 0 or y.min() == y.max():
        return {"auroc": None, "ap": None, "n": len(ids), "n_corrupted": int(y.sum()) if len(ids) else 0}
    return {
        "auroc": binary_auroc(s, y == 1),
        "ap": binary_average_precision(s, y == 1),
        "n": len(ids),
        "n_corrupted": int(y.sum()),
    }


def _is_main_process() -> bool:
    dist = torch.distributed
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def _cached_items(dataset) -> list:
    """The mutable list of pre-processed items behind a MONAI ``CacheDataset`` (or a list-backed ``Dataset``)."""
    cache = getattr(dataset, "_cache", None)
    if isinstance(cache, list) and cache and isinstance(cache[0], dict):
        return cache
    data = getattr(dataset, "data", None)
    if isinstance(data, list) and data and isinstance(data[0], dict) and torch.is_tensor(data[0].get("image")):
        return data
    raise TypeError("refurbishment needs a fully cached dataset (monai.data.CacheDataset with cache_rate=1.0)")


class CachedLabels:
    """The training labels held in a fully cached dataset, as resumable state.

    Refurbishment edits the cached labels in place, so they are part of the training state: a run resumed after
    the detection epoch must train on the refurbished labels, not on the ones the cache was built with. Put this
    object in a :class:`~common.handlers.resume.ResumableCheckpoint` ``save_dict``.

    Args:
        dataset: a ``monai.data.CacheDataset`` with ``cache_rate=1.0`` (the trainer's dataset).
        label_key: the key of the labels that refurbishment replaces.
        id_key, image_key: how samples are named (:func:`~common.handlers.sample_loss.sample_id`).

    ``state_dict()`` is ``{sample id: (1, *spatial) uint8 tensor}``: one byte per pixel, labels 0-255.
    """

    def __init__(self, dataset, label_key: str = "label", id_key: str = "id", image_key: str = "image") -> None:
        self.dataset = dataset
        self.label_key, self.id_key, self.image_key = label_key, id_key, image_key

    def _by_id(self) -> dict[str, dict]:
        return {sample_id(it, self.id_key, self.image_key): it for it in _cached_items(self.dataset)}

    def state_dict(self) -> dict[str, torch.Tensor]:
        out = {}
        for sid, it in self._by_id().items():
            label = torch.as_tensor(it[self.label_key]).detach().cpu().as_subclass(torch.Tensor)
            if label.min() < 0 or label.max() > 255:
                raise ValueError(f"sample {sid}: labels outside 0-255 cannot be stored as uint8")
            out[sid] = label.to(torch.uint8)
        return out

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        items = self._by_id()
        unknown = sorted(set(state) - set(items))
        if unknown:
            raise KeyError(f"saved labels for samples the dataset does not hold: {unknown[:5]}")
        for sid, label in state.items():
            target = items[sid][self.label_key]
            if tuple(target.shape) != tuple(label.shape):
                raise ValueError(f"sample {sid}: saved label shape {tuple(label.shape)} != {tuple(target.shape)}")
            target.copy_(label.to(target.dtype))  # in place: keeps the MetaTensor's metadata


class RefurbishHandler:
    """Score detectors against corruption flags and (optionally) refurbish flagged labels at one epoch.

    Args:
        detectors: ``{name: handler}``; each handler has ``all_scores()`` returning ``{variant: {id: score}}``.
            :meth:`attach` also attaches those not yet attached, so a config can define the detectors inside
            this handler and list only the refurbisher among the trainer's handlers.
        dataset: the training ``CacheDataset`` (items hold ``image``, ``label``, ``id``, ``corrupted``,
            optionally ``label_clean``); refurbished labels are written into its cache.
        network: the network being trained.
        epoch: the epoch after which detection (and refurbishment) happens.
        detector: the score variant that drives refurbishment (``loss``, ``vog`` or any variant name).
        refurbish: replace flagged labels by pseudo-labels (otherwise only score and log).
        flag_fraction: fraction of training samples flagged (the highest scores).
        confidence: pseudo-label only where the top class probability is at least this (0 = everywhere).
        output_dir: where ``detection.json`` is written.
        summary_writer: optional TensorBoard ``SummaryWriter`` for histograms and label panels.
    """

    def __init__(
        self,
        detectors: Mapping[str, Any],
        dataset,
        network: torch.nn.Module,
        epoch: int,
        detector: str = "loss",
        refurbish: bool = True,
        flag_fraction: float = 0.5,
        confidence: float = 0.0,
        output_dir: str | Path = ".",
        device: str | torch.device = "cpu",
        summary_writer=None,
        num_panels: int = 4,
        image_key: str = "image",
        label_key: str = "label",
        clean_key: str = "label_clean",
        flag_key: str = "corrupted",
        id_key: str = "id",
    ) -> None:
        if not 0.0 < flag_fraction <= 1.0:
            raise ValueError(f"flag_fraction must be in (0, 1], got {flag_fraction}")
        self.detectors = dict(detectors)
        self.dataset = dataset
        self.network = network
        self.epoch = int(epoch)
        self.detector = detector
        self.refurbish = bool(refurbish)
        self.flag_fraction = float(flag_fraction)
        self.confidence = float(confidence)
        self.output_dir = Path(output_dir)
        self.device = torch.device(device)
        self.summary_writer = summary_writer
        self.num_panels = num_panels
        self.image_key, self.label_key, self.clean_key = image_key, label_key, clean_key
        self.flag_key, self.id_key = flag_key, id_key
        self.result: dict | None = None

    def attach(self, engine: Engine) -> None:
        """Attach the detectors that have ``attach`` and are not on ``engine`` yet, then this handler after them
        (so that a detector collecting at ``epoch`` has its scores before detection runs)."""
        for detector in self.detectors.values():
            if hasattr(detector, "attach") and not engine.has_event_handler(detector):
                detector.attach(engine)
        engine.add_event_handler(Events.EPOCH_COMPLETED(lambda _, e: e == self.epoch), self)

    def __call__(self, engine: Engine) -> None:
        self.run(global_step=int(engine.state.epoch))

    def gather_scores(self) -> dict[str, dict[str, float]]:
        """Every detector's scores up to ``epoch``: ``{variant: {sample id: score}}``.

        In a distributed run every rank already holds every sample's scores (``SampleLossHandler`` exchanges
        each epoch's losses, ``VOGHandler`` iterates all samples), so all ranks flag the same samples."""
        scores: dict[str, dict[str, float]] = {}
        for handler in self.detectors.values():
            scores.update(handler.all_scores(upto_epoch=self.epoch))
        return scores

    @torch.no_grad()
    def pseudo_label(self, image: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        """Argmax pseudo-label ``(1, *spatial)`` for one image ``(C, *spatial)``, keeping ``label`` where unsure."""
        from common.handlers.vog import unwrap

        network = unwrap(self.network)
        was_training = network.training
        network.eval()
        try:
            probs = network(image[None].to(self.device)).softmax(1)[0].cpu()
        finally:
            network.train(was_training)
        top, arg = probs.max(0)
        new = arg[None].to(label.dtype)
        if self.confidence > 0:
            new = torch.where(top[None] >= self.confidence, new, torch.as_tensor(label).cpu())
        return new

    def run(self, global_step: int | None = None) -> dict:
        items = _cached_items(self.dataset)
        flags = {sample_id(it, self.id_key, self.image_key): int(it.get(self.flag_key, 0)) for it in items}
        scores = self.gather_scores()
        if self.detector not in scores:
            raise ValueError(f"unknown detector {self.detector!r}; available: {', '.join(sorted(scores))}")
        metrics = {name: detection_metrics(s, flags) for name, s in scores.items()}
        driving = scores[self.detector]
        ranked = sorted(driving, key=lambda i: driving[i], reverse=True)
        flagged = ranked[: int(round(self.flag_fraction * len(ranked)))]
        result: dict[str, Any] = {
            "epoch": self.epoch,
            "detector": self.detector,
            "refurbish": self.refurbish,
            "flag_fraction": self.flag_fraction,
            "flags": flags,
            "scores": scores,
            "metrics": metrics,
            "flagged": flagged,
        }
        result["error_size"] = self.error_size(items)
        if self.refurbish:
            result["label_quality"] = self._refurbish(items, set(flagged), global_step)
        if _is_main_process():
            self._log_histograms(scores, flags, global_step)
            atomic_write_json(self.output_dir / "detection.json", result)
        self.result = result
        return result

    def error_size(self, items: list) -> dict:
        """Size of the injected errors in the training labels as the network sees them (before refurbishment):
        over the corrupted samples that hold a clean label, the mean label Dice against the clean label
        (:func:`~common.metrics.label_agreement.label_dice`, structures present in either) and the mean
        relative |area change| per structure (:func:`~common.metrics.label_agreement.relative_area_change`)."""
        dice, area = [], []
        for it in items:
            if not int(it.get(self.flag_key, 0)) or self.clean_key not in it:
                continue
            label = torch.as_tensor(it[self.label_key]).cpu().numpy()[0]
            clean = torch.as_tensor(it[self.clean_key]).cpu().numpy()[0]
            classes = range(1, int(max(clean.max(), label.max())) + 1)
            dice.append(label_dice(label, clean, classes))
            area.append(relative_area_change(label, clean, classes))
        return {
            "num_corrupted": len(dice),
            "label_dice_vs_clean": float(np.mean(dice)) if dice else None,
            "relative_area_change": float(np.mean(area)) if area else None,
        }

    def _refurbish(self, items: list, flagged: set, global_step: int | None) -> dict:
        before, after, changed, panels = [], [], [], []
        for it in items:
            sid = sample_id(it, self.id_key, self.image_key)
            if sid not in flagged:
                continue
            old = it[self.label_key]
            new = self.pseudo_label(torch.as_tensor(it[self.image_key]), torch.as_tensor(old))
            old_np = torch.as_tensor(old).cpu().numpy()[0]
            new_np = new.numpy()[0]
            changed.append(float((old_np != new_np).mean()))
            if self.clean_key in it:
                clean_np = torch.as_tensor(it[self.clean_key]).cpu().numpy()[0]
                classes = range(1, int(max(clean_np.max(), old_np.max(), new_np.max())) + 1)
                before.append(label_dice(old_np, clean_np, classes))
                after.append(label_dice(new_np, clean_np, classes))
                if len(panels) < self.num_panels:
                    panels.append((sid, it[self.image_key], clean_np, old_np, new_np))
            replaced = old.clone() if torch.is_tensor(old) else torch.as_tensor(old).clone()
            replaced.copy_(new.to(replaced.dtype))
            it[self.label_key] = replaced
        if self.summary_writer is not None and panels and _is_main_process():
            self._log_panels(panels, global_step)
        return {
            "num_refurbished": len(changed),
            "changed_pixel_fraction": float(np.mean(changed)) if changed else 0.0,
            "label_dice_vs_clean_before": float(np.mean(before)) if before else None,
            "label_dice_vs_clean_after": float(np.mean(after)) if after else None,
        }

    def _log_histograms(self, scores: dict, flags: dict, global_step: int | None) -> None:
        if self.summary_writer is None:
            return
        for name in dict.fromkeys((*DETECTOR_SCORES, self.detector)):
            if name not in scores:
                continue
            for flag, tag in ((1, "corrupted"), (0, "clean")):
                vals = [v for i, v in scores[name].items() if flags.get(i) == flag]
                if vals:
                    self.summary_writer.add_histogram(f"detection/{name}/{tag}", np.asarray(vals), global_step)
        self.summary_writer.flush()

    def _log_panels(self, panels: list, global_step: int | None) -> None:
        for sid, image, clean, corrupted, refurbished in panels:
            img = torch.as_tensor(image).cpu().float()[0].numpy()
            img = (img - img.min()) / max(float(img.max() - img.min()), 1e-6)
            top = max(int(clean.max()), int(corrupted.max()), int(refurbished.max()), 1)
            row = np.concatenate([img] + [lab.astype(np.float32) / top for lab in (clean, corrupted, refurbished)], 1)
            self.summary_writer.add_image(
                f"refurbish/{sid}/image_original_corrupted_refurbished", row[None], global_step, dataformats="CHW"
            )
        self.summary_writer.flush()


def write_label_error_metrics(
    output_dir: str | Path, report: SegmentationReport, settings: Mapping | None = None
) -> Path:
    """Write ``<output_dir>/metrics.json`` as a metrics record (:mod:`common.metrics.record`).

    ``metrics``: ``dice_mean``, ``dice_<structure>``, ``flip_correct`` / ``flip_flip`` / ``flip_miss`` (pooled),
    ``flip_risk_mean`` and, when ``detection.json`` exists, ``detection_auroc_<detector>`` and
    ``detection_ap_<detector>``; ``per_sample``: the test images; ``extra``: ``{"test": the report without
    its images, "detection": detection.json's content}``.
    """
    from common.metrics.record import write_metrics

    output_dir = Path(output_dir)
    test = report.results()
    per_sample = test.pop("per_image")
    flat: dict[str, Any] = {"dice_mean": test["dice_mean"], "flip_risk_mean": test["flip_risk_mean"]}
    flat.update({f"dice_{name}": value for name, value in test["dice"].items()})
    if test["flip"]:
        flat.update({f"flip_{k}": v for k, v in test["flip"]["global"].items()})
    extra: dict[str, Any] = {"test": test}
    det = output_dir / "detection.json"
    if det.exists():
        extra["detection"] = json.loads(det.read_text())
        for name, scores in extra["detection"].get("metrics", {}).items():
            if name in DETECTOR_SCORES:
                flat[f"detection_auroc_{name}"] = scores.get("auroc")
                flat[f"detection_ap_{name}"] = scores.get("ap")
    write_metrics(output_dir / "metrics.json", dict(settings or {}), flat, per_sample, extra)
    return output_dir / "metrics.json"

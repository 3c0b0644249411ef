"""Per-image test metrics of a segmentation evaluator: Dice per structure, Flip decomposition, flip-risk."""

from __future__ import annotations

import numpy as np
import torch
from ignite.engine import Engine, Events

from common.metrics.flip import FlipMetric

__all__ = ["SegmentationReport"]


class SegmentationReport:
    """Per-image test metrics on an evaluator: Dice per structure, Flip decomposition, flip-risk.

    Reads ``engine.state.output`` ``pred`` (logits or probabilities, ``(C, *spatial)`` per image) and
    ``label`` ``(1, *spatial)``; sample ids from the batch's ``id_key``, else the image's source file, else a
    running index.
    """

    def __init__(self, num_classes: int, id_key: str = "id", pred_is_logits: bool = True, class_names=None) -> None:
        self.num_classes = int(num_classes)
        self.id_key = id_key
        self.pred_is_logits = pred_is_logits
        self.class_names = list(class_names or [f"class_{c}" for c in range(1, self.num_classes)])
        self.records: list[dict] = []
        self.flip_metric = FlipMetric()  # buffers every image's flip counts; pooled by ``results``

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, lambda _: self.reset())
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def reset(self) -> None:
        self.records = []
        self.flip_metric.reset()

    def __call__(self, engine: Engine) -> None:
        from common.handlers.sample_loss import batch_sample_ids
        from common.metrics.flip import flip_risk
        from common.metrics.per_image import dice_and_flip_counts

        out = engine.state.output
        pred = torch.stack([o["pred"] for o in out]) if isinstance(out, list) else out["pred"]
        label = torch.stack([o["label"] for o in out]) if isinstance(out, list) else out["label"]
        try:
            ids = batch_sample_ids(engine.state.batch, self.id_key)
        except KeyError:  # neither ids nor source files: a running index
            ids = [str(len(self.records) + i) for i in range(len(pred))]
        pred, label = torch.as_tensor(pred).detach().float().cpu(), torch.as_tensor(label).detach().cpu()
        probs = pred.softmax(1) if self.pred_is_logits else pred
        dice, counts = dice_and_flip_counts(probs.argmax(1, keepdim=True), label, self.num_classes)
        risk = flip_risk(probs)
        self.flip_metric.extend(counts)
        for i, sid in enumerate(ids):
            rec = {"id": sid, **{f"dice_{n}": float(dice[i, j]) for j, n in enumerate(self.class_names)}}
            fg = float(counts[i, 3])
            rec.update(
                {
                    "correct": float(counts[i, 0]) / fg if fg else None,
                    "flip": float(counts[i, 1]) / fg if fg else None,
                    "miss": float(counts[i, 2]) / fg if fg else None,
                    "flip_risk": float(risk[i]),
                }
            )
            self.records.append(rec)

    def results(self) -> dict:
        """``{"dice": {structure: mean}, "dice_mean", "flip": flip_decomposition dict, "flip_risk_mean",
        "per_image": [...]}`` (Dice means skip images where the structure is absent)."""
        from common.metrics.record import nan_to_none

        dice = {}
        for n in self.class_names:
            vals = [r[f"dice_{n}"] for r in self.records if not np.isnan(r[f"dice_{n}"])]
            dice[n] = float(np.mean(vals)) if vals else None
        valid = [v for v in dice.values() if v is not None]
        return {
            "dice": dice,
            "dice_mean": float(np.mean(valid)) if valid else None,
            "flip": self.flip_metric.aggregate() if self.records else None,
            "flip_risk_mean": float(np.mean([r["flip_risk"] for r in self.records])) if self.records else None,
            "num_images": len(self.records),
            "per_image": nan_to_none(self.records),
        }

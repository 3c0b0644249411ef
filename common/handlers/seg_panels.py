"""TensorBoard image panels (input | label | prediction) of the first subject of every group."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

import torch

from common.data.seg_slices import PLANE_AXES

__all__ = ["ExamplePanels", "GroupImagePanels", "panel"]


def panel(image: torch.Tensor, label: torch.Tensor, pred: torch.Tensor, num_classes: int, plane: str = "axial"):
    """``(1, H, 3 * W)`` grey panel of the middle slice along ``plane``: image in [0, 1] | label | prediction.

    Inputs are ``(1, X, Y, Z)`` volumes (or ``(1, H, W)`` slices); labels are scaled by ``1 / (num_classes - 1)``.
    """

    def middle(v: torch.Tensor) -> torch.Tensor:
        v = torch.as_tensor(v).detach().float().cpu()
        if v.ndim == 4:
            axis = PLANE_AXES[plane] + 1
            v = v.select(axis, v.shape[axis] // 2)
        return v[:1]

    img = middle(image)
    lo, hi = img.min(), img.max()
    img = (img - lo) / (hi - lo) if hi > lo else torch.zeros_like(img)
    scale = 1.0 / max(num_classes - 1, 1)
    return torch.cat([img, middle(label) * scale, middle(pred) * scale], dim=-1).clamp(0, 1)


class GroupImagePanels:
    """Ignite handler: at the end of each evaluator run, write one panel per group to TensorBoard.

    Args:
        log_dir: TensorBoard folder (a ``SummaryWriter`` is opened lazily).
        num_classes: classes including background (scales the label maps).
        plane: slicing plane of the panel.
        tag: prefix of the image tags, e.g. ``val`` -> ``val/panel_L``.
        global_step_transform: maps the engine to the step (e.g. the trainer's epoch); default its epoch.
        image_key, label_key, pred_key, group_key: keys of the decollated batch / output.
    """

    def __init__(
        self,
        log_dir: str | os.PathLike,
        num_classes: int,
        plane: str = "axial",
        tag: str = "val",
        global_step_transform: Callable | None = None,
        image_key: str = "image",
        label_key: str = "label",
        pred_key: str = "pred",
        group_key: str = "group",
    ) -> None:
        self.log_dir, self.num_classes, self.plane, self.tag = str(log_dir), int(num_classes), plane, tag
        self.global_step_transform = global_step_transform
        self.keys = (image_key, label_key, pred_key, group_key)
        self.panels: dict[str, torch.Tensor] = {}
        self._writer = None

    def attach(self, engine) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.EPOCH_STARTED, lambda e: self.panels.clear())
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.collect)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self.write)

    def collect(self, engine) -> None:
        image_key, label_key, pred_key, group_key = self.keys
        for out, batch in zip(engine.state.output, engine.state.batch):
            group = str(batch.get(group_key, "H")) if isinstance(batch, Mapping) else "H"
            if group not in self.panels:
                self.panels[group] = panel(out[image_key], out[label_key], out[pred_key], self.num_classes, self.plane)

    def write(self, engine) -> None:
        from torch.utils.tensorboard import SummaryWriter

        if self._writer is None:
            self._writer = SummaryWriter(log_dir=self.log_dir)
        step = self.global_step_transform(engine) if self.global_step_transform else engine.state.epoch
        for group, img in sorted(self.panels.items()):
            self._writer.add_image(f"{self.tag}/input_label_pred_{group}", img, global_step=step)
        self._writer.flush()


class ExamplePanels:
    """Ignite handler: keep the first evaluated 2D image of each value of ``distinct`` among the items that match
    ``where``, and write them to ``<output_dir>/<filename>`` at the end of the run.

    The file holds ``image`` ``(N, H, W)`` (first channel), ``label`` and ``pred`` ``(N, H, W)`` (class indices; the
    prediction is the argmax of the network output over its channels) and ``meta`` (a JSON list with each item's
    ``where`` and ``distinct`` values), so a study's figures show examples without running the network again.

    Args:
        output_dir: folder of the file.
        where: item fields and the values they must have (e.g. ``{"group": "rare"}``).
        distinct: the field whose values each get one example (e.g. ``"identity"``).
        filename: name of the ``.npz`` file.
        enabled: ``False`` attaches nothing (e.g. on ranks other than 0).
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        where: Mapping[str, object] | None = None,
        distinct: str = "identity",
        filename: str = "example_panels.npz",
        enabled: bool = True,
        image_key: str = "image",
        label_key: str = "label",
        pred_key: str = "pred",
    ) -> None:
        self.path = os.path.join(str(output_dir), filename)
        self.where, self.distinct, self.enabled = dict(where or {}), distinct, enabled
        self.keys = (image_key, label_key, pred_key)
        self.items: dict[str, dict] = {}

    def attach(self, engine) -> None:
        if not self.enabled:
            return
        from ignite.engine import Events

        engine.add_event_handler(Events.EPOCH_STARTED, lambda e: self.items.clear())
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.collect)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self.write)

    @staticmethod
    def _value(v) -> object:
        v = v.item() if isinstance(v, torch.Tensor) and v.numel() == 1 else v
        return v if isinstance(v, (str, int, float)) else str(v)

    def collect(self, engine) -> None:
        image_key, label_key, pred_key = self.keys
        for out, batch in zip(engine.state.output, engine.state.batch):
            if not isinstance(batch, Mapping) or any(self._value(batch.get(k)) != v for k, v in self.where.items()):
                continue
            key = str(self._value(batch.get(self.distinct)))
            if key in self.items:
                continue
            pred = torch.as_tensor(out[pred_key]).detach().cpu()
            self.items[key] = {
                "image": torch.as_tensor(out[image_key]).detach().float().cpu()[0].numpy(),
                "label": torch.as_tensor(out[label_key]).detach().cpu()[0].long().numpy(),
                "pred": (pred.argmax(0) if pred.shape[0] > 1 else pred[0]).long().numpy(),
                "meta": {
                    **{k: self._value(batch.get(k)) for k in self.where},
                    self.distinct: self._value(batch.get(self.distinct)),
                },
            }

    def write(self, engine) -> None:
        import io
        import json

        import numpy as np

        from common.io import atomic_write

        if not self.items:
            return
        items = [self.items[k] for k in sorted(self.items)]
        buf = io.BytesIO()
        np.savez_compressed(
            buf,
            image=np.stack([i["image"] for i in items]),
            label=np.stack([i["label"] for i in items]),
            pred=np.stack([i["pred"] for i in items]),
            meta=np.array(json.dumps([i["meta"] for i in items])),
        )
        atomic_write(self.path, lambda tmp: open(tmp, "wb").write(buf.getvalue()))

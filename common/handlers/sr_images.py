"""TensorBoard image panels of a super-resolution evaluator: LR | bicubic | SR | HR, one panel per degradation."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from ignite.engine import Engine, Events

from common.handlers.sr_metrics import _items
from common.networks.sr import interpolate_up


def sr_panel(lr: torch.Tensor, sr: torch.Tensor, hr: torch.Tensor, scale: int) -> torch.Tensor:
    """One ``(1, H, 4 W)`` image in [0, 1]: LR (nearest, to HR size), bicubic, SR and HR side by side (2D only)."""
    hr = torch.as_tensor(hr).detach().cpu().float()[:1]
    lr = torch.as_tensor(lr).detach().cpu().float()[:1]
    size = hr.shape[1:]
    tiles = [
        F.interpolate(lr[None], size=size, mode="nearest")[0],
        interpolate_up(lr[None], scale)[0][(..., *(slice(0, n) for n in size))],
        torch.as_tensor(sr).detach().cpu().float()[:1][(..., *(slice(0, n) for n in size))],
        hr,
    ]
    tiles = [F.pad(t, (0, size[1] - t.shape[-1], 0, size[0] - t.shape[-2])) for t in tiles]
    return torch.cat(tiles, dim=-1).clamp(0.0, 1.0)


class SRImagePanels:
    """Log, at the end of each evaluation, the first image of every degradation kind as an LR/bicubic/SR/HR panel.

    Args:
        summary_writer: a TensorBoard ``SummaryWriter``.
        scale: up-sampling factor.
        group_key: batch key naming each image's degradation kind.
        tag_prefix: tags are ``<tag_prefix>/<kind>``.
        global_step_transform: engine -> step (default: the engine's epoch).
    """

    def __init__(
        self,
        summary_writer: Any,
        scale: int = 2,
        group_key: str = "degradation",
        tag_prefix: str = "panels",
        global_step_transform: Any = None,
    ) -> None:
        self.summary_writer = summary_writer
        self.scale = int(scale)
        self.group_key = group_key
        self.tag_prefix = tag_prefix
        self.global_step_transform = global_step_transform or (lambda engine: engine.state.epoch)
        self.panels: dict[str, torch.Tensor] = {}

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, lambda _: self.panels.clear())
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.iteration_completed)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self.epoch_completed)

    def iteration_completed(self, engine: Engine) -> None:
        for item, out in _items(engine.state.batch, engine.state.output):
            kind = str(item.get(self.group_key, "all"))
            if kind in self.panels or out["pred"].ndim != 3:
                continue
            lr, hr = out.get("image", item.get("image")), out.get("label", item.get("label"))
            self.panels[kind] = sr_panel(lr, out["pred"], hr, self.scale)

    def epoch_completed(self, engine: Engine) -> None:
        step = self.global_step_transform(engine)
        for kind, panel in self.panels.items():
            self.summary_writer.add_image(f"{self.tag_prefix}/{kind}", panel, step, dataformats="CHW")
        self.summary_writer.flush()

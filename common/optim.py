"""Optimisers and learning-rate schedules of the bundles' training recipes, named in one place.

A bundle config picks them by name (``optimizer: adamw``, ``lr_schedule: cosine``) and this module says what
each name means:

- ``make_optimizer``: ``adam`` (``torch.optim.Adam``) or ``adamw`` (``torch.optim.AdamW``, decoupled weight
  decay, the optimiser family of Henschel et al. 2022).
- ``make_lr_scheduler``: a per-iteration schedule (step it with MONAI's ``LrScheduleHandler(epoch_level=False)``)
  over ``epochs * steps_per_epoch`` steps: ``constant``; ``cosine`` (linear warm-up over the first
  ``warmup_fraction`` of the steps, then cosine decay to ``final_fraction`` of the peak: one cycle of the
  cosine-annealing family, ending at a small rate when the budget ends); ``onecycle``
  (``torch.optim.lr_scheduler.OneCycleLR``, peak ``lr``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

__all__ = ["OPTIMIZERS", "LR_SCHEDULES", "make_lr_scheduler", "make_optimizer"]

OPTIMIZERS = ("adam", "adamw")
LR_SCHEDULES = ("constant", "cosine", "onecycle")


def make_optimizer(
    params: Iterable[torch.nn.Parameter], name: str = "adam", lr: float = 1e-3, weight_decay: float = 0.0
) -> torch.optim.Optimizer:
    """``name`` in :data:`OPTIMIZERS` with learning rate ``lr`` and (decoupled for ``adamw``) ``weight_decay``."""
    if name == "adam":
        return torch.optim.Adam(params, lr=float(lr), weight_decay=float(weight_decay))
    if name == "adamw":
        return torch.optim.AdamW(params, lr=float(lr), weight_decay=float(weight_decay))
    raise ValueError(f"unknown optimizer {name!r}; expected one of {', '.join(OPTIMIZERS)}")


def cosine_warmup_factor(step: int, total_steps: int, warmup_steps: int, final_fraction: float = 0.01) -> float:
    """Multiplier of the peak rate at ``step`` (0-based): linear ramp ``(step + 1) / warmup_steps`` during the
    warm-up, then ``final + (1 - final) * (1 + cos(pi * t)) / 2`` with ``t`` going from 0 to 1 over the rest."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(total_steps - warmup_steps - 1, 1)
    t = min((step - warmup_steps) / span, 1.0)
    return final_fraction + (1.0 - final_fraction) * 0.5 * (1.0 + math.cos(math.pi * t))


def make_lr_scheduler(
    optimizer: torch.optim.Optimizer,
    schedule: str = "constant",
    epochs: int = 1,
    steps_per_epoch: int = 1,
    warmup_fraction: float = 0.1,
    final_fraction: float = 0.01,
) -> torch.optim.lr_scheduler.LRScheduler:
    """A per-iteration schedule of ``optimizer``'s current rate (its peak) over ``epochs * steps_per_epoch`` steps."""
    total = max(int(epochs) * int(steps_per_epoch), 1)
    if schedule == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    if schedule == "cosine":
        warmup = max(int(round(warmup_fraction * total)), 1)
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: cosine_warmup_factor(step, total, warmup, final_fraction)
        )
    if schedule == "onecycle":
        peak = [group["lr"] for group in optimizer.param_groups]
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=peak, total_steps=total, pct_start=float(warmup_fraction), anneal_strategy="cos"
        )
    raise ValueError(f"unknown lr_schedule {schedule!r}; expected one of {', '.join(LR_SCHEDULES)}")

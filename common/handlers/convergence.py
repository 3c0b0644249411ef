"""Convergence of a training run: the validation curve against CPU time, and the best-on-validation weights.

Two ignite handlers with ``attach(trainer)``, both fed by the validator a MONAI ``ValidationHandler`` runs:

- :class:`ValidationCurve` records, after every validation, the trainer's epoch and iteration, the process CPU
  seconds and wall seconds since training started, and the validator's scalar metrics; it writes them to a JSON
  file (``{"metric": name, "points": [{epoch, iteration, cpu_seconds, wall_seconds, metrics}]}``) so a benchmark
  can read the time a recipe needs to reach a target (:func:`time_to_target`).
- :class:`BestValidationWeights` keeps a copy of the network weights with the best value of one validation
  metric and puts them back into the network at the end of the last epoch (after that epoch's validation, and
  before ``COMPLETED``, where checkpoint savers write the final model), so the final checkpoint (and everything
  evaluated after training) is the best-on-validation model. It has ``state_dict``/``load_state_dict`` so a
  resumed run keeps its best so far (add it to ``ResumableCheckpoint``'s ``save_dict``).

CPU seconds are ``time.process_time()`` of the training process (all its threads, data loading included with
``num_workers=0``), so they measure the computation a recipe needs, not how busy the machine was.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from ignite.engine import Engine, Events

from common.io import atomic_write_json

__all__ = ["BestValidationWeights", "ValidationCurve", "time_to_target"]


def _scalars(metrics: Mapping[str, Any]) -> dict[str, float]:
    out = {}
    for name, value in metrics.items():
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            value = value.item()
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[name] = float(value)
    return out


class ValidationCurve:
    """Record ``validator``'s metrics against the trainer's CPU and wall seconds after every validation.

    Args:
        validator: the engine a ``ValidationHandler`` on the same trainer runs (its ``state.metrics`` is read).
        output_file: JSON written (atomically) after every validation; ``None`` keeps :attr:`points` only.
        metric: the name of the metric the curve is about (stored for readers; every scalar is recorded).
    """

    def __init__(self, validator: Engine, output_file: str | os.PathLike | None = None, metric: str = "") -> None:
        self.validator, self.output_file, self.metric = validator, output_file, metric
        self.points: list[dict] = []
        self._trainer: Engine | None = None
        self._cpu0 = self._wall0 = 0.0

    def attach(self, engine: Engine) -> None:
        self._trainer = engine
        engine.add_event_handler(Events.STARTED, self._start)
        self.validator.add_event_handler(Events.EPOCH_COMPLETED, self._record)

    def _start(self, engine: Engine) -> None:
        self._cpu0, self._wall0 = time.process_time(), time.perf_counter()
        # a resumed run continues the curve it has (state_dict) with its own clock offset
        if self.points:
            self._cpu0 -= self.points[-1]["cpu_seconds"]
            self._wall0 -= self.points[-1]["wall_seconds"]

    def _record(self, validator: Engine) -> None:
        trainer = self._trainer
        self.points.append(
            {
                "epoch": int(trainer.state.epoch) if trainer is not None else None,
                "iteration": int(trainer.state.iteration) if trainer is not None else None,
                "cpu_seconds": round(time.process_time() - self._cpu0, 3),
                "wall_seconds": round(time.perf_counter() - self._wall0, 3),
                "metrics": _scalars(validator.state.metrics),
            }
        )
        if self.output_file is not None:
            atomic_write_json(self.output_file, {"metric": self.metric, "points": self.points})

    def state_dict(self) -> dict:
        return {"points": json.dumps(self.points)}

    def load_state_dict(self, state: Mapping) -> None:
        self.points = json.loads(state["points"])


class BestValidationWeights:
    """Keep the weights with the best validation ``metric``; load them into ``network`` when training completes.

    Args:
        network: the trained module (its ``state_dict`` is copied to CPU at every improvement).
        validator: the engine a ``ValidationHandler`` on the same trainer runs.
        metric: name in ``validator.state.metrics``; ``None``/NaN values never count as an improvement.
        mode: ``"max"`` (e.g. Dice) or ``"min"`` (e.g. a loss).
        enabled: ``False`` keeps the last weights (the handler then does nothing).
    """

    def __init__(
        self, network: torch.nn.Module, validator: Engine, metric: str, mode: str = "max", enabled: bool = True
    ) -> None:
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
        self.network, self.validator, self.metric, self.mode = network, validator, metric, mode
        self.enabled = bool(enabled)
        self.best_value: float | None = None
        self.best_epoch: int | None = None
        self.best_state: dict[str, torch.Tensor] | None = None
        self._trainer: Engine | None = None

    def attach(self, engine: Engine) -> None:
        if not self.enabled:
            return
        self._trainer = engine
        self.validator.add_event_handler(Events.EPOCH_COMPLETED, self._update)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._restore_after_last_epoch)
        engine.add_event_handler(Events.COMPLETED, self.restore)  # also after a terminate(); idempotent

    def _restore_after_last_epoch(self, engine: Engine) -> None:
        if engine.state.max_epochs is not None and engine.state.epoch >= engine.state.max_epochs:
            self.restore()

    def _better(self, value: float) -> bool:
        if self.best_value is None:
            return True
        return value > self.best_value if self.mode == "max" else value < self.best_value

    def _update(self, validator: Engine) -> None:
        value = _scalars(validator.state.metrics).get(self.metric)
        if value is None or math.isnan(value):
            return
        if self._better(value):
            self.best_value = value
            self.best_epoch = int(self._trainer.state.epoch) if self._trainer is not None else None
            self.best_state = {k: v.detach().cpu().clone() for k, v in self.network.state_dict().items()}

    def restore(self, engine: Engine | None = None) -> None:
        """Load the best weights into the network (nothing to do before the first validation)."""
        if self.best_state is not None:
            self.network.load_state_dict(self.best_state)  # copies into the parameters

    def state_dict(self) -> dict:
        state: dict[str, Any] = {
            "best_value": torch.tensor(math.nan if self.best_value is None else self.best_value, dtype=torch.float64),
            "best_epoch": torch.tensor(-1 if self.best_epoch is None else self.best_epoch),
        }
        for k, v in (self.best_state or {}).items():
            state[f"weights.{k}"] = v
        return state

    def load_state_dict(self, state: Mapping) -> None:
        value = float(state["best_value"])
        self.best_value = None if math.isnan(value) else value
        epoch = int(state["best_epoch"])
        self.best_epoch = None if epoch < 0 else epoch
        weights = {k[len("weights.") :]: v for k, v in state.items() if k.startswith("weights.")}
        self.best_state = weights or None


def time_to_target(
    points: Sequence[Mapping], metric: str, target: float, clock: str = "cpu_seconds", mode: str = "max"
) -> float | None:
    """The first ``clock`` value at which ``metric`` reaches ``target`` (``>=`` for max, ``<=`` for min); ``None``
    if it never does. ``points`` as written by :class:`ValidationCurve`."""
    for p in points:
        value = p["metrics"].get(metric)
        if value is None or math.isnan(value):
            continue
        if (value >= target) if mode == "max" else (value <= target):
            return float(p[clock])
    return None

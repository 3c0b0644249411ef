"""A MONAI ``CumulativeIterationMetric`` that buffers per-image scores with a group label and aggregates by group.

Subclasses define :attr:`GroupedScoresMetric.names` (one per score column) and ``_scores(y_pred, y)``, returning
``(B, len(names))``; calls take ``groups=[label per image]`` (default ``"all"``). :meth:`~GroupedScoresMetric.aggregate`
gives ``{name: {group: statistic}}`` with groups in order of first appearance and the subclass's
:attr:`~GroupedScoresMetric.statistic` (``"mean"`` or ``"median"``, NaN-ignoring for the median);
:meth:`~GroupedScoresMetric.per_sample` the buffered rows. The buffer is the only copy of the scores.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from monai.metrics import CumulativeIterationMetric

__all__ = ["GroupedScoresMetric"]


class GroupedScoresMetric(CumulativeIterationMetric):
    """Per-image scores ``(B, K)`` buffered with one group label per image; see the module docstring."""

    names: tuple[str, ...] = ()
    statistic: str = "mean"

    def __init__(self) -> None:
        super().__init__()
        self._groups: list[str] = []

    def reset(self) -> None:
        super().reset()
        self._groups = []

    def _scores(self, y_pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _compute_tensor(
        self, y_pred: torch.Tensor, y: torch.Tensor | None = None, groups: Sequence[str] | None = None
    ) -> torch.Tensor:
        """Scores of a batch, ``(B, len(names))``; records the groups (one label per image)."""
        name = type(self).__name__
        if y is None:
            raise ValueError(f"{name} needs the target images y.")
        groups = ["all"] * y_pred.shape[0] if groups is None else [str(g) for g in groups]
        if len(groups) != y_pred.shape[0]:
            raise ValueError(f"{name}: {len(groups)} group labels for a batch of {y_pred.shape[0]} images.")
        scores = self._scores(y_pred, y)
        self._groups.extend(groups)
        return scores

    @property
    def groups(self) -> list[str]:
        """The group label of every buffered image, in call order."""
        return list(self._groups)

    def aggregate(self) -> dict[str, dict[str, float]]:  # type: ignore[override]
        """``{name: {group: statistic over the group's images}}`` (float64; empty when nothing was scored)."""
        if not self._groups:
            return {name: {} for name in self.names}
        scores = self.get_buffer().to(torch.float64)
        order = list(dict.fromkeys(self._groups))
        labels = torch.tensor([order.index(g) for g in self._groups])
        reduce = (lambda x: float(x.mean())) if self.statistic == "mean" else (lambda x: float(np.nanmedian(x.numpy())))
        return {
            name: {g: reduce(scores[labels == i, j]) for i, g in enumerate(order)} for j, name in enumerate(self.names)
        }

    def per_sample(self) -> list[dict[str, Any]]:
        """One ``{"group", <name>: score, ...}`` per buffered image, in call order."""
        if not self._groups:
            return []
        return [{"group": g, **dict(zip(self.names, row))} for g, row in zip(self._groups, self.get_buffer().tolist())]

    def counts(self) -> dict[str, int]:
        """Images per group."""
        return {g: self._groups.count(g) for g in dict.fromkeys(self._groups)}

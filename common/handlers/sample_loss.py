"""Per-sample training loss, recorded every epoch: the loss-based label-error detector.

A sample whose label disagrees with what the network learns from the rest of
the data keeps a high loss; its mean loss over the last epochs is its score
(METHODS §4). The batch must carry sample ids (``id_key``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from ignite.engine import Engine, Events


def engine_batch_items(engine: Engine, id_key: str = "id", pred_key: str = "pred", label_key: str = "label"):
    """``(ids, pred (B, C, ...), label (B, 1, ...))`` of the current iteration, collated or decollated."""
    batch, output = engine.state.batch, engine.state.output
    if isinstance(output, list):
        ids = [str(b[id_key]) for b in batch]
        pred = torch.stack([torch.as_tensor(o[pred_key]) for o in output])
        label = torch.stack([torch.as_tensor(o[label_key]) for o in output])
    else:
        ids = [str(i) for i in batch[id_key]]
        pred, label = torch.as_tensor(output[pred_key]), torch.as_tensor(output[label_key])
    return ids, pred.detach().float(), label.detach()


def per_sample_losses(logits: torch.Tensor, label: torch.Tensor, smooth: float = 1e-5) -> dict[str, torch.Tensor]:
    """Per-sample ``ce`` (mean pixel cross-entropy), ``dice`` (1 - soft Dice over foreground classes present in
    label or prediction) and ``dice_ce`` (their sum) for logits ``(B, C, *spatial)`` and labels ``(B, 1, *spatial)``."""
    target = label[:, 0].long().to(logits.device)
    ce = F.cross_entropy(logits, target, reduction="none").flatten(1).mean(1)
    probs = logits.softmax(1)
    onehot = F.one_hot(target, logits.shape[1]).movedim(-1, 1).float()
    dims = tuple(range(2, logits.ndim))
    inter = (probs * onehot).sum(dims)[:, 1:]
    denom = (probs + onehot).sum(dims)[:, 1:]
    dice = 1.0 - ((2 * inter + smooth) / (denom + smooth)).mean(1)
    return {"ce": ce, "dice": dice, "dice_ce": ce + dice}


class SampleLossHandler:
    """Record each training sample's loss at every iteration, keyed by sample id and epoch.

    Args:
        id_key: batch key holding the sample ids.
        window: the score of a sample is its mean loss over the last ``window`` recorded epochs.
        loss_fn: ``(logits, label) -> {name: (B,) tensor}``; default :func:`per_sample_losses`.
        score_name: which of the recorded losses :meth:`scores` returns by default.

    The losses come from the trainer's forward pass (``engine.state.output["pred"]``),
    so recording costs no extra forward pass.
    """

    def __init__(
        self,
        id_key: str = "id",
        window: int = 5,
        loss_fn: Callable | None = None,
        score_name: str = "dice_ce",
    ) -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.id_key = id_key
        self.window = window
        self.loss_fn = loss_fn or per_sample_losses
        self.score_name = score_name
        # history[name][sample_id][epoch] = loss
        self.history: dict[str, dict[str, dict[int, float]]] = defaultdict(lambda: defaultdict(dict))

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        ids, pred, label = engine_batch_items(engine, self.id_key)
        with torch.no_grad():
            losses = self.loss_fn(pred, label)
        epoch = int(engine.state.epoch)
        for name, values in losses.items():
            for sid, val in zip(ids, values.cpu().tolist()):
                self.history[name][sid][epoch] = float(val)

    def scores(self, name: str | None = None, upto_epoch: int | None = None) -> dict[str, float]:
        """Mean loss per sample over its last ``window`` epochs (up to ``upto_epoch``). High is suspicious."""
        name = name or self.score_name
        out = {}
        for sid, per_epoch in self.history[name].items():
            epochs = sorted(e for e in per_epoch if upto_epoch is None or e <= upto_epoch)
            if epochs:
                out[sid] = float(np.mean([per_epoch[e] for e in epochs[-self.window :]]))
        return out

    def all_scores(self, upto_epoch: int | None = None) -> dict[str, dict[str, float]]:
        """Scores of every recorded loss, named ``loss`` (the default) and ``loss_<name>``."""
        out = {"loss": self.scores(self.score_name, upto_epoch)}
        for name in self.history:
            out[f"loss_{name}"] = self.scores(name, upto_epoch)
        return out

    def state_dict(self) -> dict:
        return {k: {s: dict(v) for s, v in d.items()} for k, d in self.history.items()}

    def load_state_dict(self, state: dict) -> None:
        for name, per_sample in state.items():
            for sid, per_epoch in per_sample.items():
                self.history[name][sid].update({int(e): float(v) for e, v in per_epoch.items()})

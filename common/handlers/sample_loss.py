"""Per-sample training loss, recorded every epoch: the loss-based label-error detector.

A sample whose label disagrees with what the network learns from the rest of
the data keeps a high loss; its mean loss over the last epochs is its score
(as in Islam et al. 2026). Samples are keyed by the batch's ``id_key``; items without one (MONAI Label's
datastore items are ``{"image", "label"}`` only) are keyed by their image's source file, read
from MONAI's metadata (:func:`sample_id`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from ignite.engine import Engine, Events


def _source_files(item: Mapping, image_key: str) -> Any:
    """``filename_or_obj`` of ``item[image_key]`` (a ``MetaTensor``) or of ``item["<image_key>_meta_dict"]``;
    a string for one item, a list for a collated batch; ``None`` if neither is there."""
    meta = getattr(item.get(image_key), "meta", None)
    if not isinstance(meta, Mapping) or meta.get("filename_or_obj") is None:
        meta = item.get(f"{image_key}_meta_dict")
    return meta.get("filename_or_obj") if isinstance(meta, Mapping) else None


def _missing_id_error(id_key: str, image_key: str) -> KeyError:
    return KeyError(
        f"sample has no {id_key!r} key and its {image_key!r} carries no 'filename_or_obj' metadata; "
        f"give every datalist item an {id_key!r} or load {image_key!r} from a file with LoadImaged"
    )


def sample_id(item: Mapping, id_key: str = "id", image_key: str = "image") -> str:
    """Stable id of one (decollated or cached) item: ``item[id_key]``, else the path of its image's source file."""
    if id_key in item:
        return str(item[id_key])
    source = _source_files(item, image_key)
    if isinstance(source, (str, bytes)) or hasattr(source, "__fspath__"):
        return str(source)
    raise _missing_id_error(id_key, image_key)


def batch_sample_ids(batch: Mapping | list, id_key: str = "id", image_key: str = "image") -> list[str]:
    """Ids (see :func:`sample_id`) of a collated ``dict`` batch or a decollated ``list`` of items."""
    if isinstance(batch, list):
        return [sample_id(b, id_key, image_key) for b in batch]
    if id_key in batch:
        return [str(i) for i in batch[id_key]]
    source = _source_files(batch, image_key)
    if isinstance(source, (list, tuple)) and all(s is not None for s in source):
        return [str(s) for s in source]
    raise _missing_id_error(id_key, image_key)


def engine_batch_items(
    engine: Engine, id_key: str = "id", pred_key: str = "pred", label_key: str = "label", image_key: str = "image"
):
    """``(ids, pred (B, C, ...), label (B, 1, ...))`` of the current iteration, collated or decollated.

    Ids come from :func:`batch_sample_ids` (``id_key``, else the image's source file)."""
    batch, output = engine.state.batch, engine.state.output
    ids = batch_sample_ids(batch, id_key, image_key)
    if isinstance(output, list):
        pred = torch.stack([torch.as_tensor(o[pred_key]) for o in output])
        label = torch.stack([torch.as_tensor(o[label_key]) for o in output])
    else:
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
        id_key: batch key holding the sample ids (items without it are keyed by their image's source file).
        image_key: batch key of the image whose metadata names the source file.
        window: the score of a sample is its mean loss over the last ``window`` recorded epochs.
        loss_fn: ``(logits, label) -> {name: (B,) tensor}``; default :func:`per_sample_losses`.
        score_name: which of the recorded losses :meth:`scores` returns by default.

    The losses come from the trainer's forward pass (``engine.state.output["pred"]``),
    so recording costs no extra forward pass. In a distributed run each rank sees its own share of the
    samples, and the share changes every epoch (``DistributedSampler``): at every ``EPOCH_COMPLETED`` the
    ranks exchange that epoch's losses, so every rank holds (and a resume checkpoint saves) the full history.
    """

    def __init__(
        self,
        id_key: str = "id",
        window: int = 5,
        loss_fn: Callable | None = None,
        score_name: str = "dice_ce",
        image_key: str = "image",
    ) -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.id_key, self.image_key = id_key, image_key
        self.window = window
        self.loss_fn = loss_fn or per_sample_losses
        self.score_name = score_name
        # history[name][sample_id][epoch] = loss
        self.history: dict[str, dict[str, dict[int, float]]] = defaultdict(lambda: defaultdict(dict))

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._share_epoch)

    def _share_epoch(self, engine: Engine) -> None:
        """Distributed runs: merge every rank's losses of this epoch into every rank's history."""
        dist = torch.distributed
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
            return
        epoch = int(engine.state.epoch)
        mine = {name: {sid: e[epoch] for sid, e in per.items() if epoch in e} for name, per in self.history.items()}
        gathered: list = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, mine)
        for part in gathered:
            for name, per_sample in part.items():
                for sid, value in per_sample.items():
                    self.history[name][sid][epoch] = float(value)

    def __call__(self, engine: Engine) -> None:
        ids, pred, label = engine_batch_items(engine, self.id_key, image_key=self.image_key)
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


def per_sample_dynamics(logits: torch.Tensor, label: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-sample training-dynamics quantities for logits ``(B, C, *spatial)`` and labels ``(B, 1, *spatial)``:

    - ``margin``: mean over pixels of the assigned-class logit minus the largest other logit (the margin of
      Pleiss et al. 2020, "Identifying Mislabeled Data using the Area Under the Margin Ranking", per pixel);
    - ``el2n``: mean over pixels of the L2 norm of ``softmax(logits) - onehot(label)`` (the error vector of
      Paul et al. 2021, "Deep Learning on a Data Diet: Finding Important Examples Early in Training").
    """
    target = label[:, 0].long().to(logits.device)
    onehot = F.one_hot(target, logits.shape[1]).movedim(-1, 1).to(logits.dtype)
    assigned = (logits * onehot).sum(1)
    other = logits.masked_fill(onehot.bool(), float("-inf")).amax(1)
    error = (logits.softmax(1) - onehot).norm(dim=1)
    return {"margin": (assigned - other).flatten(1).mean(1), "el2n": error.flatten(1).mean(1)}


class TrainingDynamicsHandler(SampleLossHandler):
    """Area under the margin (AUM) and EL2N per training sample, from the trainer's forward passes.

    Segmentation adaptation (:func:`per_sample_dynamics`): a sample's margin at one iteration is the mean over
    its pixels of the assigned-class logit minus the largest other logit; its AUM is the mean of its margins over
    every recorded epoch up to detection (Pleiss et al. 2020 average over all training epochs). EL2N is the mean
    over pixels of ``||softmax - onehot(label)||_2``, averaged over the last ``el2n_window`` epochs (Paul et al.
    2021 average it over several independent early-training runs; here one run, its last epochs before
    detection stand in for them).

    :meth:`all_scores` returns ``aum`` as the *negated* AUM and ``el2n`` as it is, so that for both a high
    score is suspicious (a mislabelled sample keeps a low, often negative, margin and a large error).
    """

    def __init__(self, id_key: str = "id", el2n_window: int = 5, image_key: str = "image") -> None:
        super().__init__(id_key, el2n_window, per_sample_dynamics, score_name="el2n", image_key=image_key)

    def area_under_margin(self, upto_epoch: int | None = None) -> dict[str, float]:
        """AUM per sample: the mean margin over every recorded epoch (up to ``upto_epoch``). Low is suspicious."""
        out = {}
        for sid, per_epoch in self.history["margin"].items():
            values = [v for e, v in per_epoch.items() if upto_epoch is None or e <= upto_epoch]
            if values:
                out[sid] = float(np.mean(values))
        return out

    def all_scores(self, upto_epoch: int | None = None) -> dict[str, dict[str, float]]:
        """``{"aum": {id: -AUM}, "el2n": {id: EL2N}}``: high is suspicious for both."""
        return {
            "aum": {sid: -v for sid, v in self.area_under_margin(upto_epoch).items()},
            "el2n": self.scores("el2n", upto_epoch),
        }

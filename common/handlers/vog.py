"""Variance of Gradients (VOG, Agarwal et al. 2022) adapted to segmentation as a label-error detector.

At K checkpoint epochs the handler computes, for every training sample, the
gradient with respect to the input image of the summed true-class logits
(true class = the sample's possibly wrong training label, per pixel). A
sample's VOG map is the per-pixel standard deviation of these gradients over
the checkpoints; its score is the mean of the map over a region, z-scored
across the data set. High is suspicious.

``vog`` is VOG as Agarwal et al. (2022, "Estimating Example Difficulty Using Variance of Gradients") define it,
adapted to segmentation: every checkpoint, the raw gradient of the summed true-class logits; the standard
deviation over checkpoints per pixel; the mean over all pixels of the image (variant ``vog_all_raw_image``,
:data:`VOG_DEFINED`). The other variants are modifications of ours; a study picks among them only on tuning
seeds.

Variants (all computed from the same stored gradients, named
``vog_<schedule>_<norm>_<region>``):

- schedule ``all`` (every checkpoint) or ``late`` (the last half);
- norm ``raw`` (gradients as they are), ``ckpt`` (each checkpoint's gradients
  divided by their mean absolute value over the data set, so that the overall
  growth of gradient magnitude during training does not dominate the variance)
  or ``sample`` (each gradient map divided by its own mean absolute value, so
  that per-image contrast does not dominate);
- region ``image`` (all pixels), ``fg`` (pixels labelled foreground),
  ``boundary`` (pixels within ``band`` pixels of a label boundary) or
  ``boundary<k>`` (within ``band`` pixels of the boundary of structure ``k``:
  restricts VOG to the structure whose label is in doubt).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from ignite.engine import Engine, Events
from scipy import ndimage

from common.handlers.sample_loss import batch_sample_ids

VOG_SCHEDULES = ("all", "late")
VOG_NORMS = ("raw", "ckpt", "sample")
VOG_REGIONS = ("image", "fg", "boundary")  # plus "boundary<k>": the band around structure k only
VOG_DEFINED = "vog_all_raw_image"  # Agarwal et al.'s definition: every checkpoint, raw gradients, all pixels


def checkpoint_epochs(num_checkpoints: int, last_epoch: int, first_epoch: int = 1) -> list[int]:
    """``num_checkpoints`` epochs evenly spread over ``[first_epoch, last_epoch]``, ending at ``last_epoch``."""
    if num_checkpoints < 2:
        raise ValueError(f"VOG needs at least 2 checkpoints, got {num_checkpoints}")
    if last_epoch < first_epoch + num_checkpoints - 1:
        raise ValueError(f"cannot place {num_checkpoints} checkpoints in epochs {first_epoch}..{last_epoch}")
    return sorted({int(round(x)) for x in np.linspace(first_epoch, last_epoch, num_checkpoints)})


def unwrap(network: torch.nn.Module) -> torch.nn.Module:
    """The plain module inside ``DistributedDataParallel``/``DataParallel`` (their forward expects a backward pass)."""
    return (
        network.module
        if isinstance(network, (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel))
        else network
    )


def input_gradients(network: torch.nn.Module, image: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """Gradient ``(B, *spatial)`` (summed over input channels) of the summed true-class logits w.r.t. ``image``.

    ``image`` is ``(B, C_in, *spatial)``; ``label`` ``(B, 1, *spatial)`` holds the class per pixel.
    Parameter gradients are left untouched.
    """
    image = image.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        logits = network(image)
        onehot = F.one_hot(label[:, 0].long(), logits.shape[1]).movedim(-1, 1).to(logits.dtype)
        (grad,) = torch.autograd.grad((logits * onehot).sum(), image)
    return grad.sum(1)


def boundary_band(label: np.ndarray, band: int = 2) -> np.ndarray:
    """Pixels within ``band`` pixels of a boundary between different labels."""
    edges = np.zeros(label.shape, bool)
    for axis in range(label.ndim):
        diff = np.diff(label, axis=axis) != 0
        lo = [slice(None)] * label.ndim
        hi = [slice(None)] * label.ndim
        lo[axis], hi[axis] = slice(0, -1), slice(1, None)
        edges[tuple(lo)] |= diff
        edges[tuple(hi)] |= diff
    return ndimage.binary_dilation(edges, iterations=band) if band > 0 and edges.any() else edges


def _zscore(scores: dict[str, float]) -> dict[str, float]:
    vals = np.array(list(scores.values()), dtype=np.float64)
    if vals.size == 0:
        return {}
    std = vals.std()
    return {k: float((v - vals.mean()) / std) if std > 0 else 0.0 for k, v in scores.items()}


class VOGHandler:
    """Collect input gradients at checkpoint epochs and turn them into VOG scores.

    Args:
        data_loader: iterates the training samples *without* random augmentation, yielding dicts with
            ``image_key`` ``(B, C, *spatial)``, ``label_key`` ``(B, 1, *spatial)`` and ``id_key`` (batches without
            ``id_key`` are keyed by the image's source file, :func:`~common.handlers.sample_loss.sample_id`).
        network: the network being trained.
        epochs: checkpoint epochs (see :func:`checkpoint_epochs`).
        device: where to run the network.
        default_variant: the variant returned as ``vog`` (``vog_<schedule>_<norm>_<region>``); default
            :data:`VOG_DEFINED`, the published definition.
        band: width in pixels of the ``boundary`` region.

    Memory: the gradients are kept as float16, ``N x K x prod(spatial) x 2`` bytes.
    """

    def __init__(
        self,
        data_loader: Iterable,
        network: torch.nn.Module,
        epochs: Sequence[int],
        device: str | torch.device = "cpu",
        default_variant: str = VOG_DEFINED,
        image_key: str = "image",
        label_key: str = "label",
        id_key: str = "id",
        band: int = 2,
    ) -> None:
        self.data_loader = data_loader
        self.network = network
        self.epochs = sorted(int(e) for e in epochs)
        if len(self.epochs) < 2:
            raise ValueError(f"VOG needs at least 2 checkpoint epochs, got {list(epochs)}")
        self.device = torch.device(device)
        self.default_variant = default_variant
        self.image_key, self.label_key, self.id_key = image_key, label_key, id_key
        self.band = band
        self.gradients: dict[int, dict[str, np.ndarray]] = {}  # epoch -> id -> (spatial) float16
        self.labels: dict[str, np.ndarray] = {}

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        epoch = int(engine.state.epoch)
        if epoch in self.epochs:
            self.collect(epoch)

    def collect(self, epoch: int) -> None:
        """Compute and store the input gradients of every sample for checkpoint ``epoch``."""
        network = unwrap(self.network)
        was_training = network.training
        network.eval()
        grads: dict[str, np.ndarray] = {}
        try:
            for batch in self.data_loader:
                image = torch.as_tensor(batch[self.image_key]).to(self.device)
                label = torch.as_tensor(batch[self.label_key]).to(self.device)
                g = input_gradients(network, image, label).cpu().numpy()
                ids = batch_sample_ids(batch, self.id_key, self.image_key)
                for sid, gi, li in zip(ids, g, label[:, 0].cpu().numpy()):
                    grads[sid] = gi.astype(np.float16)
                    self.labels[sid] = li.astype(np.int16)
        finally:
            network.train(was_training)
        self.gradients[epoch] = grads

    def _maps(self, schedule: str, norm: str, upto_epoch: int | None = None) -> dict[str, np.ndarray]:
        epochs = sorted(e for e in self.gradients if upto_epoch is None or e <= upto_epoch)
        if len(epochs) < 2:
            raise RuntimeError(f"VOG has gradients for {len(epochs)} checkpoint(s); it needs at least 2")
        if schedule == "late":
            epochs = epochs[len(epochs) // 2 :] if len(epochs) >= 4 else epochs[-2:]
        stacks: dict[str, list[np.ndarray]] = {}
        for e in epochs:
            g = self.gradients[e]
            scale = 1.0
            if norm == "ckpt":
                scale = float(np.mean([np.abs(v.astype(np.float32)).mean() for v in g.values()])) or 1.0
            for sid, v in g.items():
                v = v.astype(np.float32)
                if norm == "sample":
                    scale = float(np.abs(v).mean()) or 1.0
                stacks.setdefault(sid, []).append(v / scale)
        return {sid: np.std(np.stack(v), axis=0) for sid, v in stacks.items() if len(v) == len(epochs)}

    def all_scores(self, upto_epoch: int | None = None) -> dict[str, dict[str, float]]:
        """Every variant's z-scored VOG per sample: ``{variant: {id: score}}``; ``vog`` is the default variant.

        Uses the checkpoints up to ``upto_epoch`` (all if ``None``)."""
        out: dict[str, dict[str, float]] = {}
        regions = {}
        structures = sorted({int(v) for lab in self.labels.values() for v in np.unique(lab) if v > 0})
        for sid, lab in self.labels.items():
            regions[sid] = {"image": np.ones(lab.shape, bool), "fg": lab > 0, "boundary": boundary_band(lab, self.band)}
            for k in structures:
                regions[sid][f"boundary{k}"] = boundary_band((lab == k).astype(np.int8), self.band)
        for schedule in VOG_SCHEDULES:
            for norm in VOG_NORMS:
                maps = self._maps(schedule, norm, upto_epoch)
                for region in (*VOG_REGIONS, *(f"boundary{k}" for k in structures)):
                    raw = {}
                    for sid, m in maps.items():
                        mask = regions[sid][region]
                        raw[sid] = float(m[mask].mean()) if mask.any() else float(m.mean())
                    out[f"vog_{schedule}_{norm}_{region}"] = _zscore(raw)
        if self.default_variant not in out:
            raise ValueError(f"unknown VOG variant {self.default_variant!r}; known: {', '.join(sorted(out))}")
        out["vog"] = out[self.default_variant]
        return out

    def scores(self, upto_epoch: int | None = None) -> dict[str, float]:
        """The default variant's z-scored VOG per sample."""
        return self.all_scores(upto_epoch)["vog"]

    def state_dict(self) -> dict:
        """The collected gradients and labels as tensors (``torch.load(..., weights_only=True)`` can read them)."""
        return {
            "gradients": {e: {s: torch.from_numpy(g) for s, g in per.items()} for e, per in self.gradients.items()},
            "labels": {s: torch.from_numpy(lab) for s, lab in self.labels.items()},
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` returned (a resumed run continues with the earlier checkpoints)."""
        self.gradients = {
            int(e): {s: g.cpu().numpy().astype(np.float16) for s, g in per.items()}
            for e, per in state["gradients"].items()
        }
        self.labels = {s: lab.cpu().numpy().astype(np.int16) for s, lab in state["labels"].items()}

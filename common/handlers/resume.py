"""Interruption-safe training: atomic checkpoints, resume from the last one, per-epoch reseeding.

Three ignite handlers with ``attach(engine)``, meant to be used together on a MONAI ``SupervisedTrainer``:

- :class:`ResumableCheckpoint` writes the whole training state (network, optimizer, scheduler, trainer
  counters, any object with ``state_dict``) atomically every ``save_interval`` epochs, and at ``STARTED``
  resumes from that file if it exists (loaded by MONAI's ``CheckpointLoader``, i.e. ``weights_only=True``).
  A fresh run writes it at ``STARTED`` and deletes it once the run completes, so the file exists exactly while
  a run is unfinished (an evaluation can test for it, see ``bundles/label_error_refurbishment``) and only an
  interrupted run is continued.
- :class:`EpochReseed` sets the torch / numpy / ``random`` seeds, the data loader's generator, its samplers'
  epoch and the random transforms of its dataset from ``(seed, epoch)`` at every ``EPOCH_STARTED``. An epoch's
  randomness then depends only on the seed and the epoch number, so a run resumed after epoch ``k`` draws the
  same shuffles and augmentations in epoch ``k + 1`` as an uninterrupted run.
- :class:`AtomicCheckpointSaver` is MONAI's ``CheckpointSaver`` with atomic writes (temporary name, then
  rename) that never deletes the previous file before the new one is in place.

A run killed at any point (SIGKILL included) and started again with the same command ends with the same
weights as an uninterrupted run on the same device (tested on CPU in ``tests/reliability``).
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine, Events
from monai.handlers import CheckpointLoader, CheckpointSaver

from common.io import atomic_torch_save

__all__ = ["ResumableCheckpoint", "EpochReseed", "AtomicCheckpointSaver", "epoch_seed", "resume_path"]

FINGERPRINT_KEY = "resume_fingerprint"


def epoch_seed(seed: int, epoch: int, rank: int = 0) -> int:
    """A 32-bit seed derived from ``(seed, epoch[, rank])`` (numpy ``SeedSequence``); unrelated across epochs/ranks."""
    entropy = [int(seed) % 2**32, int(epoch)] + ([int(rank)] if rank else [])
    return int(np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint32)[0])


def resume_path(ckpt_path: str | os.PathLike) -> str:
    """The resume file next to a final checkpoint: ``models/model.pt`` -> ``models/model.resume.pt``."""
    p = Path(ckpt_path)
    return str(p.with_name(f"{p.stem}.resume{p.suffix or '.pt'}"))


def _unwrap(obj: Any) -> Any:
    return obj.module if isinstance(obj, (torch.nn.DataParallel, torch.nn.parallel.DistributedDataParallel)) else obj


def _barrier() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()


def _rank() -> int:
    return (
        torch.distributed.get_rank() if torch.distributed.is_available() and torch.distributed.is_initialized() else 0
    )


class ResumableCheckpoint:
    """Save the training state atomically every ``save_interval`` epochs; resume from it at ``STARTED``.

    Args:
        path: the checkpoint file (e.g. :func:`resume_path` of the bundle's ``ckpt_path``). Written with
            ``common.io.atomic_torch_save`` (temporary file in the same folder, then ``os.replace``), by rank 0
            only in a distributed run; every rank resumes from it.
        save_dict: objects with ``state_dict()`` / ``load_state_dict()``, e.g.
            ``{"network": net, "optimizer": opt, "lr_scheduler": sched}``. ``DataParallel`` /
            ``DistributedDataParallel`` wrappers are saved as their ``module``.
        engine_key: the engine the handler is attached to is saved under this key (its epoch/iteration
            counters make the run continue where it stopped), so a config need not reference the trainer
            from its own handler list; ``None`` to leave it out.
        save_interval: epochs between saves (the final epoch is always saved).
        min_interval_s: skip an epoch's save unless at least this many seconds (wall clock) have passed since the
            last one, so runs with very short epochs do not spend their time writing checkpoints; a kill then
            repeats at most this much training. 0 saves at every ``save_interval``.
        keep_on_complete: keep the file after the run completes (a restart then finds nothing left to train).
            By default it is deleted once every ``COMPLETED`` handler (e.g. the final ``CheckpointSaver``) has
            run, so a later run with changed settings and the same path trains afresh instead of resuming.
        fingerprint: JSON-serialisable settings of the run; a checkpoint written under different settings is
            refused with a clear error instead of being resumed silently.
        map_location: passed to ``torch.load`` (``CheckpointLoader``).
        enabled: ``False`` turns the handler into a no-op (a config switch).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        save_dict: Mapping[str, Any],
        engine_key: str | None = "trainer",
        save_interval: int = 1,
        min_interval_s: float = 0.0,
        keep_on_complete: bool = False,
        fingerprint: Mapping[str, Any] | None = None,
        map_location: Any = None,
        enabled: bool = True,
    ) -> None:
        if not save_dict:
            raise ValueError("ResumableCheckpoint needs a non-empty save_dict")
        if save_interval < 1:
            raise ValueError(f"save_interval must be >= 1, got {save_interval}")
        self.path = Path(path)
        self.save_dict = dict(save_dict)
        self.engine_key = engine_key
        self.save_interval = int(save_interval)
        self.min_interval_s = float(min_interval_s)
        self._last_save = float("-inf")
        self.keep_on_complete = bool(keep_on_complete)
        self.fingerprint = None if fingerprint is None else json.dumps(fingerprint, sort_keys=True, default=str)
        self.map_location = map_location
        self.enabled = bool(enabled)
        self.resumed_epoch: int | None = None  # epoch the last resume continued after (None: fresh start)
        self.logger = logging.getLogger(__name__)

    def attach(self, engine: Engine) -> None:
        if not self.enabled:
            return
        if self.engine_key is not None:
            self.save_dict.setdefault(self.engine_key, engine)
        engine.add_event_handler(Events.STARTED, self.resume)

    def _register_saving(self, engine: Engine) -> None:
        """Save after every other ``EPOCH_COMPLETED`` handler (an LR scheduler step, a validation, ...).

        Registered at ``STARTED``, once every handler is attached, so the saved state is the epoch's final one.
        """
        if not engine.has_event_handler(self._epoch_completed, Events.EPOCH_COMPLETED):
            engine.add_event_handler(Events.EPOCH_COMPLETED, self._epoch_completed)
        if not self.keep_on_complete and not engine.has_event_handler(self._completed, Events.COMPLETED):
            engine.add_event_handler(Events.COMPLETED, self._completed)

    def _completed(self, engine: Engine) -> None:
        if _rank() == 0:
            self.path.unlink(missing_ok=True)

    def _epoch_completed(self, engine: Engine) -> None:
        if engine.state.epoch >= (engine.state.max_epochs or 0):
            self.save(engine)
        elif engine.state.epoch % self.save_interval == 0:
            if time.monotonic() - self._last_save >= self.min_interval_s:
                self.save(engine)

    def state(self) -> dict[str, Any]:
        """The checkpoint content: ``{name: state_dict}`` plus the fingerprint, all ``weights_only``-loadable."""
        out: dict[str, Any] = {k: _unwrap(v).state_dict() for k, v in self.save_dict.items()}
        if self.fingerprint is not None:
            out[FINGERPRINT_KEY] = self.fingerprint
        return out

    def save(self, engine: Engine | None = None) -> None:
        self._last_save = time.monotonic()
        if _rank() == 0:
            atomic_torch_save(self.state(), self.path)
            if engine is not None:
                self.logger.info(f"epoch {engine.state.epoch}: saved resume checkpoint {self.path}")

    def _remove_stale_temporaries(self) -> None:
        """Temporary files of a write killed half-way (``.<name>.*.tmp``, see ``common.io``)."""
        if _rank() == 0 and self.path.parent.is_dir():
            for tmp in self.path.parent.glob(f".{self.path.name}.*.tmp"):
                tmp.unlink(missing_ok=True)

    def resume(self, engine: Engine) -> None:
        """Load ``path`` into ``save_dict`` if it exists (``weights_only=True``); otherwise start fresh."""
        self._register_saving(engine)
        exists = self.path.is_file()
        _barrier()  # every rank has looked for the file before rank 0 cleans up or writes the start file
        self._remove_stale_temporaries()
        if not exists:
            self.resumed_epoch = None
            self.save(engine)  # from now until COMPLETED the file exists: its presence marks an unfinished run
            return
        try:
            saved = torch.load(self.path, map_location=self.map_location or "cpu", weights_only=True)
        except Exception as e:
            raise RuntimeError(f"{self.path}: cannot read the resume checkpoint ({type(e).__name__}: {e})") from e
        if not isinstance(saved, Mapping):
            raise RuntimeError(f"{self.path}: not a resume checkpoint (a {type(saved).__name__}, not a dict)")
        missing = [k for k in self.save_dict if k not in saved]
        if missing:
            raise RuntimeError(f"{self.path}: resume checkpoint lacks {missing}; delete it to start afresh")
        if self.fingerprint is not None and saved.get(FINGERPRINT_KEY) != self.fingerprint:
            raise RuntimeError(
                f"{self.path}: resume checkpoint was written by a run with other settings "
                f"({saved.get(FINGERPRINT_KEY)} != {self.fingerprint}); delete it or use another checkpoint path"
            )
        loader = CheckpointLoader(str(self.path), self.save_dict, map_location=self.map_location)
        loader.logger = self.logger
        loader(engine)
        self.resumed_epoch = int(engine.state.epoch)
        self.logger.info(f"resumed from {self.path} after epoch {engine.state.epoch}")


class EpochReseed:
    """Seed every source of training randomness from ``(seed, epoch)`` at ``EPOCH_STARTED``.

    Sets ``torch`` (CPU and CUDA), ``numpy`` and ``random`` global seeds, re-seeds ``data_loader.generator`` if
    it has one, calls ``set_epoch(epoch)`` on its ``sampler`` and ``batch_sampler`` where they have it, and sets
    the random state of every ``Randomizable`` transform of its dataset (``monai.data.utils.set_rnd``), then gives
    the engine a fresh iterator over the loader (``engine.set_data``). Otherwise an unbroken run would first drain
    the previous epoch's iterator, whose sampler can draw from the reseeded generator as it finishes, while a
    resumed run starts from a new iterator, and the two would shuffle the epoch differently. With
    ``num_workers > 0`` the workers' seeds derive from the main process's torch seed, so they follow too
    (``persistent_workers=True`` would keep the first epoch's worker states: leave it off). In a distributed run
    the seed also depends on the rank, so ranks draw different augmentations; samplers shard by ``set_epoch``.
    Attach it before handlers that draw random numbers at ``EPOCH_STARTED``.

    Args:
        seed: the run's seed.
        data_loader: the trainer's loader (default: the engine's ``data_loader`` attribute at attach time).
    """

    def __init__(self, seed: int, data_loader: Any = None) -> None:
        self.seed = int(seed)
        self.data_loader = data_loader

    def attach(self, engine: Engine) -> None:
        if self.data_loader is None:
            self.data_loader = getattr(engine, "data_loader", None)
        engine.add_event_handler(Events.EPOCH_STARTED, self)

    def __call__(self, engine: Engine) -> None:
        from monai.data.utils import set_rnd

        seed = epoch_seed(self.seed, engine.state.epoch, _rank())
        torch.manual_seed(seed)  # also seeds every CUDA device
        np.random.seed(seed)
        random.seed(seed)
        loader = self.data_loader
        if loader is None:
            return
        generator = getattr(loader, "generator", None)
        if isinstance(generator, torch.Generator):
            generator.manual_seed(seed)
        for sampler in {
            id(s): s for s in (getattr(loader, "sampler", None), getattr(loader, "batch_sampler", None))
        }.values():
            if hasattr(sampler, "set_epoch"):
                sampler.set_epoch(engine.state.epoch)
            if isinstance(getattr(sampler, "generator", None), torch.Generator) and sampler.generator is not generator:
                sampler.generator.manual_seed(seed)
        if getattr(loader, "dataset", None) is not None:
            set_rnd(loader.dataset, seed)
        if engine.state.dataloader is loader:
            engine.set_data(loader)  # every epoch starts from a new iterator created after the reseed


class AtomicCheckpointSaver(CheckpointSaver):
    """MONAI ``CheckpointSaver`` whose files are written atomically and replaced, never deleted first.

    Same arguments as ``monai.handlers.CheckpointSaver``. MONAI's saver writes with ``atomic=False`` and removes
    the previous final checkpoint before writing the new one, so a kill at the wrong moment leaves a partial
    file or none; here every write goes to a temporary file in the same folder (ignite ``DiskSaver(atomic=True)``)
    and is renamed onto the target, so the previous fixed-name file stays until the new one replaces it.
    (Interval checkpoints with ``n_saved`` still delete the oldest file before writing the next, as in ignite.)
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for ckpt in (self._final_checkpoint, self._key_metric_checkpoint, self._interval_checkpoint):
            if ckpt is not None:
                ckpt.save_handler._atomic = True

    def _delete_previous_final_ckpt(self) -> None:
        if self._final_checkpoint is None:
            return
        if self._final_filename is not None:  # the same name: the atomic write replaces it
            self._final_checkpoint._saved.clear()
        else:
            super()._delete_previous_final_ckpt()

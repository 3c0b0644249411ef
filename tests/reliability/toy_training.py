"""A small MONAI ``SupervisedTrainer`` with every source of randomness a bundle has, for resume tests.

Random shuffling (``DataLoader(shuffle=True)``), random transforms (``RandFlipd``, ``RandGaussianNoised``) drawn
after a ``CacheDataset``, an LR scheduler and Adam; :class:`EpochReseed`, :class:`ResumableCheckpoint` and an
:class:`AtomicCheckpointSaver` for the final weights. Run as a script (``python -m
tests.reliability.toy_training OUT_DIR --epochs 6``) it writes ``OUT_DIR/final.pt`` and ``OUT_DIR/metrics.json``
(atomically) and resumes from ``OUT_DIR/model.resume.pt`` when that exists.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch

NUM_SAMPLES = 24
SIZE = 16


def toy_data(seed: int = 123) -> list[dict]:
    """``NUM_SAMPLES`` images (1, SIZE, SIZE) with a binary label: a bright disc of random centre and radius."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    items = []
    for _ in range(NUM_SAMPLES):
        cy, cx = rng.uniform(4, SIZE - 4, size=2)
        r = rng.uniform(2, 5)
        label = ((yy - cy) ** 2 + (xx - cx) ** 2 <= r**2).astype(np.float32)[None]
        image = (label + 0.3 * rng.standard_normal(label.shape)).astype(np.float32)
        items.append({"image": image, "label": label})
    return items


def build(out_dir: str | os.PathLike, epochs: int, seed: int = 0, iteration_sleep: float = 0.0, keep: bool = False):
    """The trainer and its parts: ``(trainer, network, resume_handler)``; nothing runs yet."""
    from ignite.engine import Events
    from monai.data import CacheDataset, DataLoader
    from monai.engines import SupervisedTrainer
    from monai.handlers import LrScheduleHandler
    from monai.losses import DiceLoss
    from monai.networks.nets import UNet
    from monai.transforms import Compose, EnsureTyped, RandFlipd, RandGaussianNoised
    from monai.utils import set_determinism

    from common.handlers.resume import AtomicCheckpointSaver, EpochReseed, ResumableCheckpoint, resume_path

    out_dir = Path(out_dir)
    set_determinism(seed=seed)
    transform = Compose(
        [
            EnsureTyped(keys=["image", "label"], track_meta=False),
            RandFlipd(keys=["image", "label"], prob=0.5, spatial_axis=0),
            RandGaussianNoised(keys="image", prob=0.5, std=0.1),
        ]
    )
    dataset = CacheDataset(toy_data(), transform=transform, progress=False)
    loader = DataLoader(dataset, batch_size=4, shuffle=True, num_workers=0)
    network = UNet(2, 1, 1, channels=(4, 8), strides=(2,), num_res_units=0)
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-2)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)
    trainer = SupervisedTrainer(
        device=torch.device("cpu"),
        max_epochs=epochs,
        train_data_loader=loader,
        network=network,
        optimizer=optimizer,
        loss_function=DiceLoss(sigmoid=True),
    )
    resume = ResumableCheckpoint(
        resume_path(out_dir / "model.pt"),
        {"network": network, "optimizer": optimizer, "lr_scheduler": scheduler},
        keep_on_complete=keep,
        fingerprint={"seed": seed},
    )
    EpochReseed(seed).attach(trainer)
    resume.attach(trainer)
    LrScheduleHandler(scheduler, print_lr=False).attach(trainer)
    AtomicCheckpointSaver(
        save_dir=str(out_dir), save_dict={"network": network}, save_final=True, final_filename="final.pt"
    ).attach(trainer)
    if iteration_sleep > 0:  # widen the window in which a kill lands mid-epoch
        trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda _: time.sleep(iteration_sleep))
    return trainer, network, resume


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out_dir")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--iteration-sleep", type=float, default=0.0)
    args = parser.parse_args(argv)
    from common.io import atomic_write_json

    torch.set_num_threads(1)
    trainer, network, resume = build(args.out_dir, args.epochs, args.seed, args.iteration_sleep)
    trainer.run()
    weights = torch.cat([p.detach().flatten() for p in network.parameters()])
    atomic_write_json(
        Path(args.out_dir) / "metrics.json",
        {
            "weight_sum": float(weights.double().sum()),
            "weight_abs_sum": float(weights.double().abs().sum()),
            "resumed_after_epoch": resume.resumed_epoch,
            "epochs": trainer.state.epoch,
        },
    )


if __name__ == "__main__":
    main()

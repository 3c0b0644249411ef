"""Training throughput of each bundle's trainer against a bare PyTorch loop; data wait; peak memory.

For every bundle, at its study's ``quick`` settings:

Rates use this process's CPU time (one torch thread, ``num_workers=0``), which a shared machine does not inflate.

- **engine / bare**: samples per second of the bundle's own ``SupervisedTrainer`` (built from ``train.yaml``,
  with all its handlers; validation switched off) against a bare ``zero_grad / forward / loss / backward / step``
  loop over the same network, optimizer, loss and batches already in memory. The first epoch of each is a
  warm-up; the bare loop is timed before and after the engine and averaged. The same again with the
  trainer's ``train#handlers`` emptied separates the engine's own cost from its handlers'.
- **data wait**: the fraction of the engine's step time spent between ``GET_BATCH_STARTED`` and
  ``GET_BATCH_COMPLETED`` (waiting for the data loader) over the timed epochs.
- **peak RSS**: maximum resident memory of one ``python -m monai.bundle run`` training process (quick settings,
  ``BENCH_MEMORY_EPOCHS`` epochs with one validation), read from ``getrusage(RUSAGE_CHILDREN)`` of a wrapper.

``python -m tests.benchmarks training``; embedded data are generated once into ``runs/bench_cache``.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from common.study.runner import REPO_ROOT, bundle_command

CACHE = REPO_ROOT / "runs" / "bench_cache"
BENCH_EPOCHS = 3  # engine and bare loop: 1 warm-up + 2 timed epochs
# the label-error trainer's quick epoch is 48 images (about 0.25 s): time more of them so the median is stable
EPOCHS_BY_BUNDLE = {"label_error_refurbishment": 11}


def bench_epochs(bundle: str) -> int:
    return EPOCHS_BY_BUNDLE.get(bundle, BENCH_EPOCHS)


BENCH_MEMORY_EPOCHS = 1
# CPU time of this process: with one torch thread and num_workers=0 it is the work done, whatever else runs on
# the machine (wall time on a shared 2-core machine mostly measures the other processes).
CLOCK = time.process_time
NO_VALIDATION = 10**6


def quick_settings(bundle: str) -> dict[str, Any]:
    """The bundle overrides of the study's quick profile (ids the study passes to the bundle)."""
    if bundle == "segmentation_resolution_bias":
        from common.study.segmentation_resolution_bias import PROFILES

        settings = dict(PROFILES["quick"].settings)
    elif bundle == "sr_degradation_bias":
        from common.study.sr_degradation_bias import PROFILES

        settings = {**PROFILES["quick"].settings, "train_degradation": "combined"}
    else:
        from common.study.label_error_refurbishment import PROFILES

        # detection and VOG are the study's algorithm, not loop overhead: moved past the benchmark's epochs
        settings = {**PROFILES["quick"].settings, "detect_epoch": 1000, "vog_first_epoch": 900}
    return settings


def _parser(bundle: str, overrides: dict[str, Any], out: Path):
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(REPO_ROOT / "bundles" / bundle / "configs" / "train.yaml"))
    known = {k: v for k, v in overrides.items() if k in parser}
    parser.update(
        {
            **known,
            "output_dir": str(out),
            "ckpt_path": str(out / "model.pt"),
            "cache_dir": str(CACHE / bundle),
            "epochs": bench_epochs(bundle),
            "val_interval": NO_VALIDATION,
        }
    )
    return parser


class _Timer:
    """Per-epoch wall time and data-wait time of an ignite engine."""

    def __init__(self, engine) -> None:
        from ignite.engine import Events

        self.epoch_times: list[float] = []
        self.wait: list[float] = []
        self.step: list[float] = []
        self._t: dict[str, float] = {}
        on = engine.add_event_handler
        on(Events.EPOCH_STARTED, lambda e: self._mark("epoch"))
        on(Events.EPOCH_COMPLETED, lambda e: self.epoch_times.append(CLOCK() - self._t["epoch"]))
        on(Events.GET_BATCH_STARTED, lambda e: self._mark("batch"))
        on(Events.GET_BATCH_COMPLETED, lambda e: self._add(self.wait, e, "batch"))
        on(Events.ITERATION_STARTED, lambda e: self._mark("step"))
        on(Events.ITERATION_COMPLETED, lambda e: self._add(self.step, e, "step"))

    def _mark(self, key: str) -> None:
        self._t[key] = CLOCK()

    def _add(self, into: list, engine, key: str) -> None:
        if engine.state.epoch > 1:  # epoch 1 is the warm-up
            into.append(CLOCK() - self._t[key])


def _bare_loop(network, optimizer, loss_function, batches, epochs: int) -> float:
    """Seconds per epoch (median over the timed epochs, after one warm-up epoch) of a plain training loop."""
    times = []
    for epoch in range(epochs):
        start = CLOCK()
        for inputs, targets, args, kwargs in batches:
            optimizer.zero_grad(set_to_none=True)
            loss = loss_function(network(inputs, *args, **kwargs), targets).mean()
            loss.backward()
            optimizer.step()
        if epoch:
            times.append(CLOCK() - start)
    return sorted(times)[len(times) // 2]


def throughput(bundle: str, with_handlers: bool = True) -> dict[str, float]:
    """Samples/s of the bundle's trainer (``with_handlers=False``: its ``train#handlers`` emptied) and of the
    bare loop, and the data-wait fraction."""
    from monai.utils import set_determinism

    with tempfile.TemporaryDirectory() as tmp:
        parser = _parser(bundle, quick_settings(bundle), Path(tmp))
        if not with_handlers:
            parser["train#handlers"] = []
        parser.get_parsed_content("initialize")
        trainer = parser.get_parsed_content("train#trainer")
        device = trainer.state.device
        batches, samples = [], 0
        for data in trainer.data_loader:
            batch = trainer.prepare_batch(data, device, trainer.non_blocking, **trainer.to_kwargs)
            inputs, targets, *rest = batch
            args, kwargs = (rest[0], rest[1]) if rest else ((), {})
            inputs = inputs.as_tensor() if hasattr(inputs, "as_tensor") else inputs
            targets = targets.as_tensor() if hasattr(targets, "as_tensor") else targets
            batches.append((inputs, targets, args, kwargs))
            samples += len(inputs)
        state = copy.deepcopy((trainer.network.state_dict(), trainer.optimizer.state_dict()))
        epochs = bench_epochs(bundle)
        bare_before = _bare_loop(trainer.network, trainer.optimizer, trainer.loss_function, batches, epochs)
        trainer.network.load_state_dict(state[0])
        trainer.optimizer.load_state_dict(state[1])
        set_determinism(0)
        timer = _Timer(trainer)
        with contextlib.redirect_stderr(io.StringIO()):  # the progress bar
            logging.disable(logging.INFO)  # per-iteration StatsHandler lines
            try:
                trainer.run()
            finally:
                logging.disable(logging.NOTSET)
        engine_epoch = sorted(timer.epoch_times[1:])[len(timer.epoch_times[1:]) // 2]
        bare_after = _bare_loop(trainer.network, trainer.optimizer, trainer.loss_function, batches, epochs)
        engine_samples = samples  # the same loader, so the same number of samples per epoch
        bare = (bare_before + bare_after) / 2
        wait, step = sum(timer.wait), sum(timer.step)
        return {
            "samples_per_epoch": samples,
            "bare_sps": samples / bare,
            "bare_spread": abs(bare_before - bare_after) / bare,
            "engine_sps": engine_samples / engine_epoch,
            "data_wait_fraction": wait / (wait + step),
        }


def peak_rss_mib(bundle: str) -> tuple[float, float]:
    """(peak RSS in MiB, CPU seconds) of one training process at quick settings for ``BENCH_MEMORY_EPOCHS`` epochs."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        settings = {k: v for k, v in quick_settings(bundle).items() if k != "num_threads"}
        overrides = {
            **settings,
            "epochs": BENCH_MEMORY_EPOCHS,
            "val_interval": BENCH_MEMORY_EPOCHS,
            "output_dir": out,
            "ckpt_path": out / "model.pt",
            "cache_dir": CACHE / bundle,
        }
        cmd = bundle_command(bundle, ["train.yaml"], overrides)
        wrapper = (
            "import resource, subprocess, sys\n"
            "rc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode\n"
            "r = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
            "print(rc, r.ru_maxrss, r.ru_utime + r.ru_stime)\n"
        )
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
        proc = subprocess.run(
            [sys.executable, "-c", wrapper, *cmd], cwd=REPO_ROOT, env=env, capture_output=True, text=True
        )
        rc, kib, seconds = proc.stdout.split()
        if rc != "0":
            raise RuntimeError(f"training run failed (exit {rc}): {' '.join(map(str, cmd))}")
        return int(kib) / 1024, float(seconds)


def main() -> None:
    from common.study.runner import BUNDLE_NAMES

    torch.set_num_threads(1)
    load = os.getloadavg()
    print(f"torch {torch.__version__}, 1 thread, {os.cpu_count()} CPUs, load average {load[0]:.1f} at start")
    print(
        f"quick-profile settings, {BENCH_EPOCHS} epochs ({EPOCHS_BY_BUNDLE} for the short ones; 1 warm-up), "
        "validation off; rates from CPU time\n"
    )
    print(
        "| bundle | samples/epoch | bare loop samples/s | engine samples/s | engine / bare "
        "| engine without handlers / bare | data wait / step |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for bundle in BUNDLE_NAMES:
        r = throughput(bundle)
        plain = throughput(bundle, with_handlers=False)
        print(
            f"| {bundle} | {r['samples_per_epoch']} | {r['bare_sps']:.1f} (+-{100 * r['bare_spread']:.0f}%) "
            f"| {r['engine_sps']:.1f} | {r['engine_sps'] / r['bare_sps']:.2f} "
            f"| {plain['engine_sps'] / plain['bare_sps']:.2f} | {100 * r['data_wait_fraction']:.1f}% |",
            flush=True,
        )
    print(f"\n| bundle | peak RSS of a training process (MiB) | CPU s ({BENCH_MEMORY_EPOCHS} epoch + validation) |")
    print("|---|---:|---:|")
    for bundle in BUNDLE_NAMES:
        mib, seconds = peak_rss_mib(bundle)
        print(f"| {bundle} | {mib:.0f} | {seconds:.0f} |", flush=True)
    print(f"\nload average {os.getloadavg()[0]:.1f} at end")


if __name__ == "__main__":
    main()

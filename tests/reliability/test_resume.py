"""Resume after interruption: atomic checkpoints, per-epoch reseeding, SIGKILL and restart on a toy trainer."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from common.handlers.resume import AtomicCheckpointSaver, EpochReseed, ResumableCheckpoint, epoch_seed, resume_path
from common.study.runner import REPO_ROOT
from tests.reliability.toy_training import build

EPOCHS = 5


def _weights(network: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in network.parameters()])


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> torch.Tensor:
    trainer, network, resume = build(tmp_path_factory.mktemp("full"), EPOCHS)
    trainer.run()
    assert resume.resumed_epoch is None and trainer.state.epoch == EPOCHS
    return _weights(network)


def test_epoch_seed_is_a_function_of_seed_and_epoch():
    # pinned values (numpy SeedSequence([seed, epoch(, rank)])): a resumed run must draw what the first run drew
    assert epoch_seed(0, 3) == 2613022947
    assert epoch_seed(7, 0) == 2083679832
    assert epoch_seed(0, 3, rank=1) == 3679268941
    assert epoch_seed(0, 3) != epoch_seed(0, 4) and epoch_seed(0, 3) != epoch_seed(1, 3)
    seeds = {epoch_seed(s, e) for s in range(4) for e in range(50)}
    assert len(seeds) == 200  # no collisions between (seed, epoch) pairs
    assert all(0 <= s < 2**32 for s in seeds)
    assert epoch_seed(0, 3, rank=0) == epoch_seed(0, 3) != epoch_seed(0, 3, rank=1)


def test_resume_path_sits_next_to_the_checkpoint():
    assert resume_path("bundles/x/models/model.pt") == "bundles/x/models/model.resume.pt"
    assert resume_path("/a/b/net") == "/a/b/net.resume.pt"


def test_epoch_reseed_replays_shuffle_transforms_and_global_rngs(tmp_path):
    trainer, _, _ = build(tmp_path, EPOCHS)
    handler = EpochReseed(7, trainer.data_loader)

    def draw(epoch: int):
        trainer.state.epoch = epoch
        handler(trainer)
        batches = [b["image"].clone() for b in trainer.data_loader]
        return batches, torch.rand(3), np.random.rand(3), random.random()

    first, again, other = draw(2), draw(2), draw(3)
    for a, b in zip(first[0], again[0]):
        assert torch.equal(a, b)  # same order and same random flips / noise
    assert torch.equal(first[1], again[1]) and np.array_equal(first[2], again[2]) and first[3] == again[3]
    assert not all(torch.equal(a, b) for a, b in zip(first[0], other[0]))


def test_generator_seeded_loader_shuffles_a_resumed_epoch_like_an_unbroken_run():
    """A loader with its own generator: epoch 3's order must not depend on whether epochs 1-2 ran in this process."""
    from ignite.engine import Engine, Events
    from torch.utils.data import DataLoader

    def orders(first_epoch: int) -> dict[int, list[int]]:
        loader = DataLoader(list(range(8)), batch_size=8, shuffle=True, generator=torch.Generator().manual_seed(0))
        seen: dict[int, list[int]] = {}
        engine = Engine(lambda e, batch: seen.setdefault(e.state.epoch, batch.tolist()))
        EpochReseed(3, loader).attach(engine)

        @engine.on(Events.STARTED)
        def jump(e):  # what a resume does: the counters of the last saved epoch
            e.state.epoch, e.state.iteration = first_epoch - 1, (first_epoch - 1) * len(loader)

        engine.run(loader, max_epochs=4)
        return seen

    unbroken, resumed = orders(1), orders(3)
    assert sorted(resumed) == [3, 4]
    assert resumed[3] == unbroken[3] and resumed[4] == unbroken[4]
    assert unbroken[2] != unbroken[3]  # the epochs do shuffle


def test_resume_file_exists_exactly_while_the_run_is_unfinished(tmp_path):
    from ignite.engine import Events

    trainer, _, resume = build(tmp_path, 2)
    seen = []
    trainer.add_event_handler(
        Events.ITERATION_COMPLETED(once=1),
        lambda e: seen.append(torch.load(resume.path, weights_only=True)["trainer"]["iteration"]),
    )
    assert not Path(resume.path).exists()
    trainer.run()
    assert seen == [0]  # written at STARTED, before the first iteration ended
    assert not Path(resume.path).exists()


@pytest.mark.parametrize("min_interval_s, saved_epochs", [(0.0, [0, 1, 2, 3, 4]), (3600.0, [0, 4])])
def test_min_interval_skips_epoch_saves_but_keeps_start_and_final(tmp_path, monkeypatch, min_interval_s, saved_epochs):
    from ignite.engine import Engine

    import common.handlers.resume as resume_module

    saved = []
    monkeypatch.setattr(resume_module, "atomic_torch_save", lambda obj, path: saved.append(obj["trainer"]["iteration"]))
    net = torch.nn.Linear(2, 1)
    engine = Engine(lambda e, batch: None)
    ResumableCheckpoint(tmp_path / "r.pt", {"network": net}, min_interval_s=min_interval_s).attach(engine)
    engine.run([0, 1], max_epochs=4)
    assert [it // 2 for it in saved] == saved_epochs  # epoch of each save (2 iterations per epoch)


def test_resume_in_process_matches_uninterrupted(tmp_path, uninterrupted):
    trainer, network, resume = build(tmp_path, 2, keep=True)  # "interrupted" after epoch 2
    trainer.run()
    assert Path(resume.path).is_file()
    trainer, network, resume = build(tmp_path, EPOCHS)  # a new process would rebuild everything
    trainer.run()
    assert resume.resumed_epoch == 2 and trainer.state.epoch == EPOCHS
    assert torch.equal(_weights(network), uninterrupted)
    assert not Path(resume.path).exists()  # removed once the run completed


def test_completed_run_restarted_trains_afresh_to_the_same_weights(tmp_path, uninterrupted):
    trainer, network, resume = build(tmp_path, EPOCHS)
    trainer.run()
    assert not Path(resume.path).exists() and (tmp_path / "final.pt").is_file()
    trainer, network, resume = build(tmp_path, EPOCHS)
    trainer.run()
    assert resume.resumed_epoch is None
    assert torch.equal(_weights(network), uninterrupted)


def test_kept_checkpoint_of_a_completed_run_resumes_without_training(tmp_path, uninterrupted):
    build(tmp_path, EPOCHS, keep=True)[0].run()
    trainer, network, resume = build(tmp_path, EPOCHS, keep=True)
    trainer.run()
    assert resume.resumed_epoch == EPOCHS and trainer.state.iteration == EPOCHS * 6
    assert torch.equal(_weights(network), uninterrupted)


def test_checkpoint_loads_weights_only_and_holds_everything(tmp_path):
    trainer, _, resume = build(tmp_path, 1, keep=True)
    trainer.run()
    saved = torch.load(resume.path, weights_only=True)
    assert {"network", "optimizer", "lr_scheduler", "trainer"} <= set(saved)
    assert saved["trainer"]["iteration"] == saved["trainer"]["epoch_length"] == 6  # 24 samples / batch 4


def test_settings_mismatch_is_refused_with_the_file_named(tmp_path):
    trainer, _, resume = build(tmp_path, 1, seed=0, keep=True)
    trainer.run()
    trainer, _, _ = build(tmp_path, 2, seed=1)
    with pytest.raises(RuntimeError, match=r"model\.resume\.pt: resume checkpoint was written by a run with other"):
        trainer.run()


def test_corrupt_checkpoint_is_reported_with_the_file_named(tmp_path):
    path = Path(resume_path(tmp_path / "model.pt"))
    path.write_bytes(b"not a checkpoint")
    trainer, _, _ = build(tmp_path, 1)
    with pytest.raises(RuntimeError, match=r"model\.resume\.pt: cannot read the resume checkpoint"):
        trainer.run()


def test_failed_write_keeps_previous_checkpoint_and_no_temporary(tmp_path, monkeypatch):
    net = torch.nn.Linear(2, 1)
    handler = ResumableCheckpoint(tmp_path / "m.resume.pt", {"network": net})
    handler.save()
    before = torch.load(handler.path, weights_only=True)["network"]["weight"].clone()
    with torch.no_grad():
        net.weight.add_(1.0)

    def half_write(obj, f, *args, **kwargs):
        Path(f).write_bytes(b"\x80\x02partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", half_write)
    with pytest.raises(OSError, match="disk full"):
        handler.save()
    monkeypatch.undo()
    assert torch.equal(torch.load(handler.path, weights_only=True)["network"]["weight"], before)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.resume.pt"]


def test_stale_temporaries_of_a_killed_write_are_removed_on_resume(tmp_path):
    stale = tmp_path / ".model.resume.pt.abc123.tmp"
    stale.write_bytes(b"half")
    trainer, _, _ = build(tmp_path, 1)
    trainer.run()
    assert not stale.exists()


def test_atomic_checkpoint_saver_replaces_final_file_in_place(tmp_path, monkeypatch):
    from ignite.engine import Engine

    net = torch.nn.Linear(2, 1)
    saver = AtomicCheckpointSaver(str(tmp_path), {"network": net}, save_final=True, final_filename="model.pt")
    engine = Engine(lambda e, b: None)
    saver.attach(engine)
    engine.run([0, 1], max_epochs=1)
    first = torch.load(tmp_path / "model.pt", weights_only=True)["weight"].clone()
    with torch.no_grad():
        net.weight.add_(1.0)

    def broken(obj, f, *args, **kwargs):
        raise OSError("killed mid-write")

    monkeypatch.setattr(torch, "save", broken)
    with pytest.raises(OSError):
        saver.completed(engine)
    monkeypatch.undo()
    assert torch.equal(torch.load(tmp_path / "model.pt", weights_only=True)["weight"], first)  # not deleted first
    saver.completed(engine)
    assert torch.equal(torch.load(tmp_path / "model.pt", weights_only=True)["weight"], net.weight.detach())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]


def _saved_epoch(path) -> int:
    """The epoch a resume checkpoint was written after (0 if absent or before the first epoch ended)."""
    try:
        trainer = torch.load(path, weights_only=True)["trainer"]
        return int(trainer["iteration"]) // int(trainer["epoch_length"])
    except (FileNotFoundError, EOFError, RuntimeError):
        return 0


@pytest.mark.slow
def test_sigkill_then_same_command_ends_like_uninterrupted(tmp_path, uninterrupted):
    """Kill the toy training at a random moment after its first checkpoint; rerun the same command."""
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "tests.reliability.toy_training", str(out), "--epochs", str(EPOCHS)]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([*cmd, "--iteration-sleep", "0.05"], cwd=REPO_ROOT, env=env)
    ckpt = out / "model.resume.pt"
    deadline = time.monotonic() + 300
    while not _saved_epoch(ckpt) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)  # the file exists from the start (epoch 0); wait for the first epoch's save
    time.sleep(random.Random(os.getpid()).uniform(0.0, 0.3))  # an arbitrary point inside a later epoch
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL
    assert not (out / "metrics.json").exists() and not (out / "final.pt").exists()  # killed before the end
    saved = torch.load(ckpt, weights_only=True)  # whatever moment the kill hit, the checkpoint is whole
    assert 1 <= saved["trainer"]["iteration"] // saved["trainer"]["epoch_length"] < EPOCHS
    done = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert 1 <= metrics["resumed_after_epoch"] < EPOCHS and metrics["epochs"] == EPOCHS
    final = torch.load(out / "final.pt", weights_only=True)
    net = build(tmp_path / "scratch", EPOCHS)[1]
    net.load_state_dict(final)
    assert torch.equal(_weights(net), uninterrupted)
    assert not list(out.glob(".*.tmp")) and not list(out.glob("tmp*"))

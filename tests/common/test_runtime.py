"""common.runtime: the decisions the bundle configs delegate (device, threads, rank 0, train or load)."""

import os

import pytest
import torch

from common import runtime
from common.data.datalist import inference_items


def test_set_num_threads_positive_sets_and_zero_keeps():
    before = torch.get_num_threads()
    try:
        runtime.set_num_threads(1)
        assert torch.get_num_threads() == 1
        runtime.set_num_threads(0)
        assert torch.get_num_threads() == 1  # 0 keeps whatever is set
    finally:
        torch.set_num_threads(before)


def test_devices_without_a_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert runtime.default_device() == torch.device("cpu")
    assert runtime.local_rank_device() == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert runtime.default_device() == torch.device("cuda")
    assert runtime.local_rank_device() == torch.device("cuda:3")


def test_rank_helpers_outside_a_process_group_act_as_rank_zero():
    assert not torch.distributed.is_initialized()
    assert runtime.is_rank_zero()


def test_rank_helpers_on_rank_one(monkeypatch):
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_rank", lambda: 1)
    assert not runtime.is_rank_zero()


@pytest.mark.parametrize("rank, main", [("0", True), ("1", False), ("3", False)])
def test_is_main_process_reads_the_launchers_rank(rank, main, monkeypatch):
    monkeypatch.setenv("RANK", rank)
    assert not torch.distributed.is_initialized()  # known before any process group exists
    assert runtime.is_main_process() is main
    monkeypatch.delenv("RANK")
    assert runtime.is_main_process()


def test_num_parameters_counts_every_scalar():
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.Linear(4, 2, bias=False))
    assert runtime.num_parameters(net) == (4 * 1 * 3 * 3 + 4) + 4 * 2
    assert runtime.num_parameters(torch.nn.ReLU()) == 0


def test_optional_path_and_close(tmp_path):
    assert runtime.optional_path(True, tmp_path, "a.csv") == os.path.join(str(tmp_path), "a.csv")
    assert runtime.optional_path(False, tmp_path, "a.csv") is None
    runtime.close(None)  # nothing to close

    class Closable:
        closed = False

        def close(self):
            self.closed = True

    c = Closable()
    runtime.close(c)
    assert c.closed


def test_summary_writer_only_when_enabled(tmp_path):
    assert runtime.summary_writer(tmp_path / "off", enabled=False) is None
    writer = runtime.summary_writer(tmp_path / "on")
    writer.add_scalar("x", 1.0, 0)
    writer.close()
    assert any((tmp_path / "on").iterdir())
    assert not (tmp_path / "off").exists()


def test_needs_training_and_train_if(tmp_path):
    from common.handlers import resume_path

    ckpt = tmp_path / "model.pt"
    assert runtime.needs_training(ckpt)
    net = torch.nn.Linear(2, 1)
    torch.save({"model": net.state_dict()}, ckpt)
    assert not runtime.needs_training(ckpt)
    open(resume_path(ckpt), "w").close()  # an interrupted run
    assert runtime.needs_training(ckpt) and not runtime.needs_training(ckpt, resume=False)

    class Trainer:
        runs = 0

        def run(self):
            self.runs += 1

    trainer = Trainer()
    runtime.train_if(False, trainer)
    assert trainer.runs == 0
    runtime.train_if(True, trainer)
    assert trainer.runs == 1


def test_inference_items(tmp_path):
    import json

    assert inference_items("a.nii.gz", None) == [{"image": os.path.abspath("a.nii.gz")}]
    assert inference_items(None, None) == []
    (tmp_path / "x.nii.gz").write_bytes(b"")
    path = tmp_path / "datalist.json"
    path.write_text(json.dumps({"test": [{"image": "x.nii.gz"}], "training": []}))
    items = inference_items("", str(path))
    assert [os.path.basename(i["image"]) for i in items] == ["x.nii.gz"]
    assert inference_items("b.nii.gz", str(path)) == [{"image": os.path.abspath("b.nii.gz")}]  # one image wins


def test_configs_hold_no_ternaries():
    """A setting's meaning lives in Python (common.runtime), not in ``$... if ... else ...`` expressions."""
    from common.study.runner import BUNDLES_DIR

    offenders = [
        f"{p.relative_to(BUNDLES_DIR)}:{i}"
        for p in sorted(BUNDLES_DIR.glob("*/configs/*.yaml"))
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if '"$' in line and " if " in line and " else " in line
    ]
    assert offenders == []


def _rank_zero_first_worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    import json
    import time
    from pathlib import Path

    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        marker = Path(out_dir) / "generated"

        def make(tag):
            seen = marker.exists()  # rank 0 runs first: it sees no marker, the others must see it
            if rank == 0:
                time.sleep(0.5)  # a slow generator: the other ranks would overtake it without the barrier
                marker.write_text("rank 0")
            return {"rank": rank, "tag": tag, "seen": seen}

        result = runtime.rank_zero_first(make, tag="data")
        (Path(out_dir) / f"rank{rank}.json").write_text(json.dumps(result))
    finally:
        torch.distributed.destroy_process_group()


def test_rank_zero_first_runs_rank_zero_before_the_others(tmp_path):
    import json

    torch.multiprocessing.spawn(
        _rank_zero_first_worker, args=(3, str(tmp_path / "init"), str(tmp_path)), nprocs=3, join=True
    )
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(3)]
    assert [r["seen"] for r in results] == [False, True, True]
    assert [r["tag"] for r in results] == ["data"] * 3 and [r["rank"] for r in results] == [0, 1, 2]


def test_rank_zero_first_without_a_process_group_is_a_plain_call():
    calls = []
    assert runtime.rank_zero_first(lambda a, b=0: calls.append((a, b)) or a + b, 2, b=3) == 5
    assert calls == [(2, 3)]

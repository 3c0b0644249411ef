"""Per-sample loss recording from a trainer's output."""

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from monai.data import MetaTensor, list_data_collate

from common.handlers.sample_loss import (
    SampleLossHandler,
    batch_sample_ids,
    engine_batch_items,
    per_sample_losses,
    sample_id,
)


def _engine(epoch, ids, pred, label, decollated):
    if decollated:
        batch = [{"id": i} for i in ids]
        output = [{"pred": p, "label": lab} for p, lab in zip(pred, label)]
    else:
        batch, output = {"id": ids}, {"pred": pred, "label": label}
    return SimpleNamespace(state=SimpleNamespace(epoch=epoch, batch=batch, output=output))


@pytest.mark.parametrize("decollated", [False, True])
def test_batch_items_both_layouts(decollated):
    pred, label = torch.rand(2, 3, 4, 4), torch.randint(0, 3, (2, 1, 4, 4))
    ids, p, lab = engine_batch_items(_engine(1, ["a", "b"], pred, label, decollated))
    assert ids == ["a", "b"] and torch.equal(p, pred) and torch.equal(lab, label)


def test_per_sample_losses_match_torch():
    torch.manual_seed(0)
    logits, label = torch.randn(3, 4, 5, 5), torch.randint(0, 4, (3, 1, 5, 5))
    out = per_sample_losses(logits, label)
    for b in range(3):
        assert out["ce"][b].item() == pytest.approx(
            F.cross_entropy(logits[b : b + 1], label[b : b + 1, 0]).item(), rel=1e-5
        )
    perfect = F.one_hot(label[:, 0], 4).movedim(-1, 1).float() * 50
    assert torch.all(per_sample_losses(perfect, label)["dice"] < 1e-4)
    torch.testing.assert_close(out["dice_ce"], out["ce"] + out["dice"])


def test_scores_average_the_last_window_epochs():
    calls = {1: [0.9, 0.1], 2: [0.7, 0.2], 3: [0.5, 0.3]}
    handler = SampleLossHandler(window=2, loss_fn=lambda p, lab: {"dice_ce": p[:, 0, 0, 0]})
    for epoch, vals in calls.items():
        pred = torch.tensor(vals).reshape(2, 1, 1, 1)
        handler(_engine(epoch, ["a", "b"], pred, torch.zeros(2, 1, 1, 1), decollated=False))
    assert handler.scores() == pytest.approx({"a": 0.6, "b": 0.25})
    assert handler.scores(upto_epoch=2) == pytest.approx({"a": 0.8, "b": 0.15})
    assert set(handler.all_scores()) == {"loss", "loss_dice_ce"}
    restored = SampleLossHandler(window=2)
    restored.load_state_dict(handler.state_dict())
    assert restored.scores() == pytest.approx(handler.scores())
    with pytest.raises(ValueError):
        SampleLossHandler(window=0)


def _image(path):
    return MetaTensor(torch.zeros(1, 2, 2), meta={"filename_or_obj": path})


def test_ids_fall_back_to_the_image_source_file():
    # MONAI Label's datastore items are {"image", "label"} only: the loaded image's file names them.
    items = [{"image": _image("/d/a.nii.gz")}, {"image": _image("/d/b.nii.gz")}]
    assert batch_sample_ids(items) == ["/d/a.nii.gz", "/d/b.nii.gz"]
    assert batch_sample_ids(list_data_collate(items)) == ["/d/a.nii.gz", "/d/b.nii.gz"]
    assert sample_id({"image": torch.zeros(1), "image_meta_dict": {"filename_or_obj": "/d/c.nii.gz"}}) == "/d/c.nii.gz"
    assert sample_id({"id": 7, "image": _image("/d/a.nii.gz")}) == "7"  # an explicit id wins
    with pytest.raises(KeyError, match="no 'id' key"):
        sample_id({"image": torch.zeros(1, 2, 2)})
    with pytest.raises(KeyError, match="filename_or_obj"):
        batch_sample_ids({"image": torch.zeros(2, 1, 2, 2)})


@pytest.mark.parametrize("decollated", [False, True])
def test_handler_records_items_without_ids(decollated):
    items = [{"image": _image(f"/d/{n}.nii.gz")} for n in ("a", "b")]
    pred, label = torch.rand(2, 3, 2, 2), torch.randint(0, 3, (2, 1, 2, 2))
    if decollated:
        batch, output = items, [{"pred": p, "label": lab} for p, lab in zip(pred, label)]
    else:
        batch, output = list_data_collate(items), {"pred": pred, "label": label}
    handler = SampleLossHandler(window=1)
    handler(SimpleNamespace(state=SimpleNamespace(epoch=1, batch=batch, output=output)))
    expected = per_sample_losses(pred, label)["dice_ce"].tolist()
    assert handler.scores() == pytest.approx({"/d/a.nii.gz": expected[0], "/d/b.nii.gz": expected[1]})


def _two_rank_worker(rank: int, store_path: str, out_dir: str) -> None:
    """Rank r sees samples the sampler gave it this epoch; after EPOCH_COMPLETED every rank has them all."""
    import json

    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{store_path}", rank=rank, world_size=2)
    try:
        handler = SampleLossHandler(window=2, loss_fn=lambda p, lab: {"dice_ce": p[:, 0, 0, 0]})
        shares = {1: (["a", "b"], ["c", "d"]), 2: (["c", "a"], ["d", "b"])}  # reshuffled every epoch
        for epoch, ids in shares.items():
            mine = ids[rank]
            pred = torch.tensor([10.0 * epoch + ord(s) - ord("a") for s in mine]).reshape(2, 1, 1, 1)
            engine = _engine(epoch, mine, pred, torch.zeros(2, 1, 1, 1), decollated=False)
            handler(engine)
            handler._share_epoch(engine)
        with open(f"{out_dir}/rank{rank}.json", "w") as f:
            json.dump({"scores": handler.scores(), "state": handler.state_dict()}, f)
    finally:
        dist.destroy_process_group()


def test_distributed_ranks_share_every_epochs_losses(tmp_path):
    import json

    import torch.multiprocessing as mp

    mp.spawn(_two_rank_worker, args=(str(tmp_path / "store"), str(tmp_path)), nprocs=2, join=True)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    # sample s has loss 10 * epoch + index(s) in every epoch: the mean of epochs 1 and 2 is 15 + index
    expected = {s: 15.0 + i for i, s in enumerate("abcd")}
    for r in ranks:
        assert r["scores"] == pytest.approx(expected)
    assert ranks[0]["state"] == ranks[1]["state"]  # rank 0's resume checkpoint holds the whole history


def test_per_sample_dynamics_by_hand():
    from common.handlers.sample_loss import per_sample_dynamics

    # one sample, two pixels, three classes. Pixel 0: logits (0, 0, 0), label 0 -> margin 0, softmax 1/3 each,
    # error (-2/3, 1/3, 1/3), norm sqrt(6)/3. Pixel 1: logits (log 3, 0, 0), label 1 -> margin 0 - log 3,
    # softmax (3/5, 1/5, 1/5), error (3/5, -4/5, 1/5), norm sqrt(26)/5.
    logits = torch.tensor([[0.0, math.log(3)], [0.0, 0.0], [0.0, 0.0]]).reshape(1, 3, 1, 2)
    label = torch.tensor([0, 1]).reshape(1, 1, 1, 2)
    out = per_sample_dynamics(logits, label)
    assert out["margin"].item() == pytest.approx(-math.log(3) / 2, rel=1e-5)
    assert out["el2n"].item() == pytest.approx((math.sqrt(6) / 3 + math.sqrt(26) / 5) / 2, rel=1e-5)
    # the assigned class is the label, not the prediction: relabelling pixel 1 as class 0 gives margin +log 3
    relabelled = per_sample_dynamics(logits, torch.tensor([0, 0]).reshape(1, 1, 1, 2))
    assert relabelled["margin"].item() == pytest.approx(math.log(3) / 2, rel=1e-5)


def test_training_dynamics_aum_over_all_epochs_el2n_over_the_window():
    from common.handlers.sample_loss import TrainingDynamicsHandler

    # the fake loss_fn below stands in for the logits: margins a 1, 2, 6 and b -1, -2, 0; EL2N a .1 .2 .3, b .5 .4 .3
    margins = {1: [1.0, -1.0], 2: [2.0, -2.0], 3: [6.0, 0.0]}
    el2n = {1: [0.1, 0.5], 2: [0.2, 0.4], 3: [0.3, 0.3]}
    handler = TrainingDynamicsHandler(el2n_window=2)
    handler.loss_fn = lambda p, lab: {"margin": p[:, 0, 0, 0], "el2n": p[:, 1, 0, 0]}
    for epoch in margins:
        pred = torch.tensor([margins[epoch], el2n[epoch]]).T.reshape(2, 2, 1, 1)
        handler(_engine(epoch, ["a", "b"], pred, torch.zeros(2, 1, 1, 1), decollated=False))
    assert handler.area_under_margin() == pytest.approx({"a": 3.0, "b": -1.0})
    scores = handler.all_scores()
    assert scores["aum"] == pytest.approx({"a": -3.0, "b": 1.0})  # negated: high is suspicious
    assert scores["el2n"] == pytest.approx({"a": 0.25, "b": 0.35})
    early = handler.all_scores(upto_epoch=2)
    assert early["aum"] == pytest.approx({"a": -1.5, "b": 1.5})
    assert early["el2n"] == pytest.approx({"a": 0.15, "b": 0.45})
    restored = TrainingDynamicsHandler(el2n_window=2)
    restored.load_state_dict(handler.state_dict())
    assert all(restored.all_scores()[k] == pytest.approx(scores[k]) for k in ("aum", "el2n"))

"""VOG on a linear network whose input gradients are known in closed form."""

import numpy as np
import pytest
import torch
from monai.data import DataLoader, MetaTensor

from common.handlers.vog import VOGHandler, boundary_band, checkpoint_epochs, input_gradients


def _net(w0, w1):
    net = torch.nn.Conv2d(1, 2, 1, bias=False)
    with torch.no_grad():
        net.weight[:, 0, 0, 0] = torch.tensor([w0, w1])
    return net


def test_input_gradient_is_the_true_class_weight():
    # logits_c = w_c * x, so d/dx_p sum_p logit_{y_p} = w_{y_p}.
    label = torch.tensor([[0, 1], [1, 1]])[None, None]
    g = input_gradients(_net(2.0, -3.0), torch.rand(1, 1, 2, 2), label)
    torch.testing.assert_close(g, torch.tensor([[[2.0, -3.0], [-3.0, -3.0]]]))


def test_vog_scores_hand_computed():
    images = torch.rand(2, 1, 4, 4)
    labels = torch.stack([torch.zeros(1, 4, 4), torch.ones(1, 4, 4)]).long()
    loader = [{"image": images, "label": labels, "id": ["a", "b"]}]
    net = _net(1.0, 1.0)
    handler = VOGHandler(loader, net, epochs=[1, 2], default_variant="vog_all_raw_image")
    handler.collect(1)
    with torch.no_grad():
        net.weight[1, 0, 0, 0] = 3.0  # class-1 gradient goes 1 -> 3: std 1; class 0 stays 1: std 0
    handler.collect(2)
    raw = handler._maps("all", "raw")
    np.testing.assert_allclose(raw["a"], 0.0)
    np.testing.assert_allclose(raw["b"], 1.0)
    scores = handler.scores()
    assert scores == pytest.approx({"a": -1.0, "b": 1.0})  # z-scored across the data set
    variants = handler.all_scores()
    assert {"vog", "vog_late_ckpt_boundary", "vog_all_ckpt_fg", "vog_all_raw_boundary1"} <= set(variants)
    # Per-sample normalisation divides each map by its own mean |gradient|: 1 -> 3 becomes 1 -> 1, no variance.
    assert variants["vog_all_sample_image"] == {"a": 0.0, "b": 0.0}
    assert net.weight.grad is None  # parameter gradients untouched
    with pytest.raises(RuntimeError, match="at least 2"):
        handler.all_scores(upto_epoch=1)


def test_checkpoint_schedule_and_band():
    assert checkpoint_epochs(4, 16, 4) == [4, 8, 12, 16]
    assert checkpoint_epochs(2, 2) == [1, 2]
    with pytest.raises(ValueError):
        checkpoint_epochs(1, 10)
    with pytest.raises(ValueError):
        checkpoint_epochs(5, 3)
    lab = np.zeros((9, 9), int)
    lab[:, 5:] = 1
    band = boundary_band(lab, band=1)
    assert band[:, 3:7].all() and not band[:, :3].any() and not band[:, 7:].any()


def test_batches_without_ids_are_keyed_by_source_file():
    items = []
    for i, cls in enumerate((0, 1)):
        image = MetaTensor(torch.rand(1, 4, 4), meta={"filename_or_obj": f"/studies/echo_{i}.nii.gz"})
        items.append({"image": image, "label": torch.full((1, 4, 4), cls)})
    loader = DataLoader(items, batch_size=2)  # MONAI collation keeps the file names in the image's meta
    net = _net(1.0, 1.0)
    handler = VOGHandler(loader, net, epochs=[1, 2], default_variant="vog_all_raw_image")
    handler.collect(1)
    with torch.no_grad():
        net.weight[1, 0, 0, 0] = 3.0
    handler.collect(2)
    assert handler.scores() == pytest.approx({"/studies/echo_0.nii.gz": -1.0, "/studies/echo_1.nii.gz": 1.0})


def test_state_dict_round_trips_through_a_weights_only_checkpoint(tmp_path):
    images = torch.rand(2, 1, 4, 4)
    labels = torch.stack([torch.zeros(1, 4, 4), torch.ones(1, 4, 4)]).long()
    loader = [{"image": images, "label": labels, "id": ["a", "b"]}]
    net = _net(1.0, 1.0)
    before = VOGHandler(loader, net, epochs=[1, 2])
    before.collect(1)
    torch.save(before.state_dict(), tmp_path / "state.pt")
    after = VOGHandler(loader, net, epochs=[1, 2])
    after.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=True))
    assert after.gradients.keys() == {1}
    for sid in ("a", "b"):
        assert after.gradients[1][sid].dtype == np.float16
        np.testing.assert_array_equal(after.gradients[1][sid], before.gradients[1][sid])
        np.testing.assert_array_equal(after.labels[sid], before.labels[sid])
    with torch.no_grad():
        net.weight[1, 0, 0, 0] = 3.0
    before.collect(2)
    after.collect(2)  # the resumed handler continues with the restored first checkpoint
    assert after.all_scores() == before.all_scores()

"""Flip decomposition and flip-risk against hand-computed values."""

import math

import numpy as np
import pytest
import torch

from common.metrics.flip import FlipMetric, flip_counts, flip_decomposition, flip_risk


def _lab(rows):
    return torch.tensor(rows)[None, None]  # (1, 1, H, W)


def test_hand_computed_decomposition():
    gt = _lab([[1, 1, 2, 0], [2, 2, 0, 0]])  # 5 foreground pixels
    pred = _lab([[1, 2, 2, 0], [0, 1, 0, 1]])  # correct: (0,0),(0,2); flip: (0,1),(1,1); miss: (1,0)
    out = flip_decomposition(pred, gt)
    assert out["global"] == pytest.approx({"correct": 0.4, "flip": 0.4, "miss": 0.2})
    assert out["per_image"] == pytest.approx({"correct": 0.4, "flip": 0.4, "miss": 0.2})
    np.testing.assert_array_equal(flip_counts(pred, gt).numpy(), [[2, 2, 1, 5]])


def test_global_pools_pixels_per_image_averages_images():
    gt = torch.cat([_lab([[1, 1, 1, 1]]), _lab([[2, 0, 0, 0]]), _lab([[0, 0, 0, 0]])])
    pred = torch.cat([_lab([[1, 1, 1, 1]]), _lab([[1, 0, 0, 0]]), _lab([[3, 3, 0, 0]])])
    out = flip_decomposition(pred, gt)
    assert out["global"] == pytest.approx({"correct": 0.8, "flip": 0.2, "miss": 0.0})
    assert out["per_image"] == pytest.approx({"correct": 0.5, "flip": 0.5, "miss": 0.0})
    assert out["num_images"] == 2  # the empty image is left out of the per-image mean
    for triple in (out["global"], out["per_image"]):
        assert sum(triple.values()) == pytest.approx(1.0)


def test_one_hot_input_equals_label_input():
    gt = torch.randint(0, 4, (3, 1, 8, 8))
    pred = torch.randint(0, 4, (3, 1, 8, 8))
    onehot = torch.nn.functional.one_hot(pred[:, 0], 4).movedim(-1, 1).float()
    assert flip_decomposition(onehot, gt) == flip_decomposition(pred, gt)


def test_flip_risk_hand_computed():
    # Two pixels, 4 classes. Pixel A: background wins -> ignored. Pixel B: fg probs 0.4/0.4/0.1 -> q = 4/9, 4/9, 1/9.
    probs = torch.tensor([[0.7, 0.1, 0.1, 0.1], [0.1, 0.4, 0.4, 0.1]]).T.reshape(1, 4, 1, 2)
    q = np.array([4, 4, 1]) / 9
    expected = -(q * np.log(q)).sum() / math.log(3)
    assert flip_risk(probs).item() == pytest.approx(expected, rel=1e-5)


def test_flip_risk_bounds():
    certain = torch.zeros(1, 4, 2, 2)
    certain[:, 1] = 1.0
    assert flip_risk(certain).item() == pytest.approx(0.0, abs=1e-6)
    uniform_fg = torch.full((1, 4, 2, 2), 0.0)
    uniform_fg[:, 0] = 0.1
    uniform_fg[:, 1:] = 0.3
    assert flip_risk(uniform_fg).item() == pytest.approx(1.0, abs=1e-6)
    background = torch.zeros(1, 4, 2, 2)
    background[:, 0] = 1.0
    assert flip_risk(background).item() == 0.0
    r = flip_risk(torch.rand(5, 4, 6, 6).softmax(1))
    assert r.shape == (5,) and (r >= 0).all() and (r <= 1).all()
    with pytest.raises(ValueError):
        flip_risk(torch.rand(1, 2, 4, 4))


def test_flip_metric_accumulates_like_the_function():
    torch.manual_seed(0)
    gt = torch.randint(0, 4, (6, 1, 8, 8))
    pred = torch.randint(0, 4, (6, 1, 8, 8))
    metric = FlipMetric()
    per = metric(pred[:4], gt[:4])
    assert per.shape == (4, 3)
    torch.testing.assert_close(per.sum(1), torch.ones(4))
    metric([p for p in pred[4:]], [g for g in gt[4:]])  # lists of channel-first images
    assert metric.aggregate() == flip_decomposition(pred, gt)
    metric.reset()
    with pytest.raises(ValueError):
        metric.aggregate()


def test_numpy_and_torch_counting_agree_for_every_label_dtype():
    from common.metrics.flip import _counts_numpy, _counts_torch

    rng = np.random.default_rng(3)
    gt = rng.integers(0, 4, size=(3, 9, 7, 5))
    pred = np.where(rng.random(gt.shape) < 0.6, gt, rng.integers(0, 4, size=gt.shape))
    expected = [
        (gt != 0).sum((1, 2, 3)),
        ((gt != 0) & (pred == gt)).sum((1, 2, 3)),
        ((gt != 0) & (pred == 0)).sum((1, 2, 3)),
    ]
    for dtype in (torch.uint8, torch.int16, torch.int64):
        p, g = torch.from_numpy(pred).to(dtype).flatten(1), torch.from_numpy(gt).to(dtype).flatten(1)
        for counts in (_counts_numpy(p, g, 0), _counts_torch(p, g, 0)):
            for got, want in zip(counts, expected):
                assert got.dtype == torch.int64 and got.tolist() == want.tolist()
    # float label maps (B, 1, ...) are rounded; integer ones are used as they are
    as_float = flip_counts(torch.from_numpy(pred)[:, None].float(), torch.from_numpy(gt)[:, None].float())
    as_uint8 = flip_counts(
        torch.from_numpy(pred)[:, None].to(torch.uint8), torch.from_numpy(gt)[:, None].to(torch.uint8)
    )
    assert torch.equal(as_float, as_uint8)
    assert as_uint8[:, 1].tolist() == (expected[0] - expected[1] - expected[2]).tolist()  # flips


# Asymmetric hand cases: correct, flip and miss all differ in every view, so swapping any two of them shows.
# Image A (5 foreground pixels): 3 correct, 1 flip, 1 miss, plus a false positive on background (not counted).
GT_A = [[1, 1, 2, 3], [2, 0, 0, 0]]
PRED_A = [[1, 1, 2, 1], [0, 0, 3, 0]]
# Image B (8 foreground pixels): 1 correct, 2 flips, 5 misses.
GT_B = [[1, 2, 2, 2], [3, 3, 3, 3]]
PRED_B = [[1, 1, 3, 0], [0, 0, 0, 0]]
# Image C: no foreground (left out of the per-image mean, adds nothing to the pooled counts).
GT_C = [[0, 0, 0, 0], [0, 0, 0, 0]]
PRED_C = [[2, 2, 0, 0], [0, 0, 0, 1]]

EXPECTED_GLOBAL = {"correct": 4 / 13, "flip": 3 / 13, "miss": 6 / 13}
EXPECTED_PER_IMAGE = {"correct": (3 / 5 + 1 / 8) / 2, "flip": (1 / 5 + 2 / 8) / 2, "miss": (1 / 5 + 5 / 8) / 2}


def test_hand_case_3_correct_1_flip_1_miss():
    out = flip_decomposition(_lab(PRED_A), _lab(GT_A))
    np.testing.assert_array_equal(flip_counts(_lab(PRED_A), _lab(GT_A)).numpy(), [[3, 1, 1, 5]])
    assert out["global"] == pytest.approx({"correct": 0.6, "flip": 0.2, "miss": 0.2})
    assert out["per_image"] == pytest.approx({"correct": 0.6, "flip": 0.2, "miss": 0.2})
    assert out["num_images"] == 1
    # the same image with flips and misses in other proportions: 1 correct, 2 flips, 5 misses
    np.testing.assert_array_equal(flip_counts(_lab(PRED_B), _lab(GT_B)).numpy(), [[1, 2, 5, 8]])
    assert flip_decomposition(_lab(PRED_B), _lab(GT_B))["per_image"] == pytest.approx(
        {"correct": 0.125, "flip": 0.25, "miss": 0.625}
    )


def test_asymmetric_batch_global_and_per_image_views():
    gt = torch.cat([_lab(GT_A), _lab(GT_B), _lab(GT_C)])
    pred = torch.cat([_lab(PRED_A), _lab(PRED_B), _lab(PRED_C)])
    np.testing.assert_array_equal(flip_counts(pred, gt).numpy(), [[3, 1, 1, 5], [1, 2, 5, 8], [0, 0, 0, 0]])
    out = flip_decomposition(pred, gt)
    assert out["global"] == pytest.approx(EXPECTED_GLOBAL)
    assert out["per_image"] == pytest.approx(EXPECTED_PER_IMAGE)
    assert out["num_images"] == 2
    # one-hot predictions and one-hot ground truth give the same numbers as label maps
    onehot = lambda x: torch.nn.functional.one_hot(x[:, 0], 4).movedim(-1, 1).float()  # noqa: E731
    assert flip_decomposition(onehot(pred), onehot(gt)) == out


def test_flip_metric_per_batch_fractions_and_aggregate_on_the_asymmetric_case():
    metric = FlipMetric()
    first = metric(torch.cat([_lab(PRED_A), _lab(PRED_C)]), torch.cat([_lab(GT_A), _lab(GT_C)]))
    torch.testing.assert_close(first[0], torch.tensor([0.6, 0.2, 0.2]))
    assert torch.isnan(first[1]).all()  # no foreground: NaN, not 0
    second = metric(_lab(PRED_B), _lab(GT_B))
    torch.testing.assert_close(second, torch.tensor([[0.125, 0.25, 0.625]]))
    out = metric.aggregate()
    assert out["global"] == pytest.approx(EXPECTED_GLOBAL)
    assert out["per_image"] == pytest.approx(EXPECTED_PER_IMAGE)
    assert out["num_images"] == 2


def test_background_index_other_than_zero():
    # background = 3: relabel A so that 3 is background and 0 a foreground class
    swap = lambda rows: [[{0: 3, 3: 0}.get(v, v) for v in r] for r in rows]  # noqa: E731
    out = flip_decomposition(_lab(swap(PRED_A)), _lab(swap(GT_A)), background=3)
    assert out["global"] == pytest.approx({"correct": 0.6, "flip": 0.2, "miss": 0.2})
    assert flip_counts(_lab(swap(PRED_B)), _lab(swap(GT_B)), background=3).tolist() == [[1.0, 2.0, 5.0, 8.0]]


def test_no_foreground_anywhere_gives_nan():
    out = flip_decomposition(_lab(PRED_C), _lab(GT_C))
    assert out["num_images"] == 0
    assert all(math.isnan(v) for v in out["global"].values())
    assert all(math.isnan(v) for v in out["per_image"].values())


# --- found by mutation testing (tests/MUTANTS.md) ---------------------------------------------------------------


def test_float_label_maps_are_rounded_and_1d_and_two_channel_inputs_work():
    gt = _lab(GT_A).float()
    noisy = _lab(PRED_A).float() + torch.tensor([[0.2, -0.3, 0.4, -0.1], [0.1, 0.0, -0.4, 0.3]])  # resampling noise
    assert flip_counts(noisy, gt).tolist() == [[3.0, 1.0, 1.0, 5.0]]
    # one spatial dim: (B, 1, N)
    assert flip_counts(torch.tensor([[[1, 2, 0, 1]]]), torch.tensor([[[1, 1, 1, 0]]])).tolist() == [
        [1.0, 1.0, 1.0, 3.0]
    ]
    # two-channel one-hot (background + one class): argmax over channels, not the background channel as labels
    gt2 = torch.tensor([[[0, 1, 1, 1]]])
    pred2 = torch.nn.functional.one_hot(torch.tensor([[0, 1, 0, 1]]), 2).movedim(-1, 1).float()
    assert flip_counts(pred2, gt2).tolist() == [[2.0, 0.0, 1.0, 3.0]]


def test_error_messages_give_the_shapes():
    with pytest.raises(ValueError, match=r"expected a batch \(B, C, \*spatial\), got shape \(4, 4\)"):
        flip_counts(torch.zeros(4, 4), torch.zeros(4, 4))
    with pytest.raises(ValueError, match=r"prediction \(1, 2, 4\) and ground truth \(1, 2, 5\) differ in shape"):
        flip_counts(torch.zeros(1, 1, 2, 4), torch.zeros(1, 1, 2, 5))
    with pytest.raises(
        ValueError, match=r"flip_risk needs probabilities \(B, C>=3, \*spatial\), got shape \(1, 2, 4\)"
    ):
        flip_risk(torch.rand(1, 2, 4))


def test_a_single_foreground_pixel_is_a_whole_image():
    gt, pred = _lab([[0, 2, 0]]), _lab([[0, 1, 0]])
    out = flip_decomposition(pred, gt)
    assert out["global"] == {"correct": 0.0, "flip": 1.0, "miss": 0.0}
    assert out["per_image"] == {"correct": 0.0, "flip": 1.0, "miss": 0.0}
    metric = FlipMetric()
    torch.testing.assert_close(metric(pred, gt), torch.tensor([[0.0, 1.0, 0.0]]))


def test_flip_risk_three_classes_one_dim_and_per_image_means():
    # 3 classes: one foreground pair; pixel probabilities (bg, a, b)
    p = torch.tensor(
        [
            [[0.1, 0.6, 0.3], [0.2, 0.4, 0.4], [0.8, 0.1, 0.1]],  # image 0: two fg pixels, one bg pixel
            [[0.0, 1.0, 0.0], [0.9, 0.05, 0.05], [0.9, 0.05, 0.05]],  # image 1: one certain fg pixel
        ]
    ).movedim(-1, 1)  # (B=2, C=3, N=3): one spatial dim
    h = lambda q: -(q * np.log(q) + (1 - q) * np.log(1 - q)) / np.log(2)  # noqa: E731
    expected = [(h(0.6 / 0.9) + h(0.5)) / 2, 0.0]  # the mean over an image's fg pixels, not their sum
    np.testing.assert_allclose(flip_risk(p).numpy(), expected, rtol=1e-5, atol=1e-7)
    # each image on its own gives the same value as in the batch
    np.testing.assert_allclose(flip_risk(p[:1]).numpy(), expected[:1], rtol=1e-5)


def test_flip_risk_stays_in_unit_interval_at_uniform_foreground():
    for n_fg in (2, 3, 5, 7):
        probs = torch.full((3, n_fg + 1, 5, 4), 1.0 / (n_fg + 2))
        probs[:, 1:] = (1.0 - probs[:, :1]) / n_fg
        r = flip_risk(probs)
        assert (r <= 1.0).all() and (r >= 0.0).all()
        np.testing.assert_allclose(r.numpy(), 1.0, atol=1e-6)


def test_flip_metric_background_and_error_messages():
    metric = FlipMetric(background=3)
    gt = _lab([[3, 1, 2, 0]])
    pred = _lab([[3, 1, 3, 2]])  # with background 3: correct (0,1); miss (0,2); flip (0,3)
    torch.testing.assert_close(metric(pred, gt), torch.tensor([[1 / 3, 1 / 3, 1 / 3]]))
    assert metric.aggregate()["num_images"] == 1
    with pytest.raises(ValueError, match="^FlipMetric needs ground truth y$"):
        FlipMetric()(pred)
    metric.reset()
    with pytest.raises(ValueError, match=r"^FlipMetric.aggregate called before any data$"):
        metric.aggregate()


def test_flip_riskd_writes_the_risk_and_a_table(tmp_path):
    from monai.data import MetaTensor

    from common.transforms import FlipRiskd

    probs = torch.tensor([[0.1, 0.6, 0.3], [0.2, 0.4, 0.4], [0.8, 0.1, 0.1]]).T.reshape(3, 3, 1)  # (C, H, W)
    expected = float(flip_risk(probs[None])[0])
    assert 0.5 < expected < 1.0
    plain = FlipRiskd()
    item = {"pred": probs, "image": "kept"}
    out = plain(item)
    assert out["flip_risk"] == pytest.approx(expected) and out["image"] == "kept"
    assert "flip_risk" not in item  # the input dictionary is left as it was
    assert plain.rows == {}  # no table without csv_path

    csv = tmp_path / "risk.csv"
    t = FlipRiskd(keys="probs", risk_key="risk", csv_path=str(csv), background=2)
    named = MetaTensor(probs, meta={"filename_or_obj": "/data/case_7.nii.gz"})
    risk_bg2 = float(flip_risk(probs[None], background=2)[0])
    assert risk_bg2 != pytest.approx(expected)
    assert t({"probs": named})["risk"] == pytest.approx(risk_bg2)
    t({"probs": probs.flip(1)})  # no metadata: a running name
    lines = csv.read_text().splitlines()
    assert lines[0] == "image,flip_risk"
    assert lines[1] == f"/data/case_7.nii.gz,{risk_bg2:.6f}"
    assert lines[2].startswith("image_1,") and len(lines) == 3
    assert t.rows["/data/case_7.nii.gz"] == pytest.approx(risk_bg2)


def test_counts_on_another_device_follow_the_prediction():
    """Off the CPU (here the shape-only "meta" device) the counts are taken by torch on the prediction's device,
    with the ground truth moved there; CPU tensors are counted by NumPy."""
    pred = torch.zeros(2, 1, 3, 3, dtype=torch.long, device="meta")
    counts = flip_counts(pred, torch.zeros(2, 1, 3, 3, dtype=torch.long))
    assert counts.device.type == "meta" and counts.shape == (2, 4) and counts.dtype == torch.float32

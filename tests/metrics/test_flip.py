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

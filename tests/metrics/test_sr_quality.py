"""SRQualityMetric: per-image scores buffered with their group, aggregated by group, against hand-computed values."""

import math

import pytest
import torch
import torch.nn.functional as F

from common.metrics import SRQualityMetric, hfen, nrmse


def _hr(seed):
    g = torch.Generator().manual_seed(seed)
    return F.avg_pool2d(torch.rand(1, 1, 32, 32, generator=g), 3, 1, 1) * 0.8 + 0.1


def test_group_means_and_samples_by_hand():
    metric = SRQualityMetric()
    a, b, c = _hr(0), _hr(1), _hr(2)
    metric(torch.cat([a + 0.01, b + 0.1]), torch.cat([a, b]), groups=["gaussian", "mean"])
    metric(c + 0.03, c, groups=["gaussian"])
    agg = metric.aggregate()
    # a constant offset d gives MSE d^2: PSNR = -20 log10(d)
    assert agg["psnr"]["gaussian"] == pytest.approx((-20 * math.log10(0.01) - 20 * math.log10(0.03)) / 2, abs=1e-3)
    assert agg["psnr"]["mean"] == pytest.approx(20.0, abs=1e-3)
    assert agg["nrmse"]["mean"] == pytest.approx(float(nrmse(b + 0.1, b)), rel=1e-6)
    assert agg["hfen"]["gaussian"] < 1e-3  # a constant offset has no high frequencies
    assert list(agg["psnr"]) == ["gaussian", "mean"]  # groups in order of first appearance
    assert metric.counts() == {"gaussian": 2, "mean": 1}
    samples = metric.per_sample()
    assert [s["group"] for s in samples] == ["gaussian", "mean", "gaussian"]
    assert samples[2]["psnr"] == pytest.approx(-20 * math.log10(0.03), abs=1e-3)
    assert metric.get_buffer().shape == (3, 4)  # one copy of the scores: one row per image
    metric.reset()
    assert metric.per_sample() == [] and metric.aggregate()["psnr"] == {}


def test_prediction_and_target_are_not_interchangeable():
    """NRMSE and HFEN normalise by the target: swapping the arguments changes them; clipping applies to y_pred."""
    hr, blurred = _hr(3), F.avg_pool2d(_hr(3), 5, 1, 2)
    forward, backward = SRQualityMetric(), SRQualityMetric()
    forward(blurred, hr)
    backward(hr, blurred)
    f, b = forward.aggregate(), backward.aggregate()
    assert f["nrmse"]["all"] == pytest.approx(float(nrmse(blurred, hr)), rel=1e-6)
    assert f["hfen"]["all"] == pytest.approx(float(hfen(blurred, hr)), rel=1e-5)
    assert f["nrmse"]["all"] != pytest.approx(b["nrmse"]["all"], rel=1e-3)
    clipped = SRQualityMetric()
    over = hr.clone()
    over[..., 0, 0] = 7.0
    clipped(over, hr)
    mse = float((1.0 - hr[0, 0, 0, 0]) ** 2) / hr.numel()
    assert clipped.aggregate()["psnr"]["all"] == pytest.approx(10 * math.log10(1 / mse), abs=1e-2)


def test_bad_inputs_are_named():
    metric = SRQualityMetric()
    with pytest.raises(ValueError, match="2 group labels for a batch of 1"):
        metric(_hr(0), _hr(0), groups=["a", "b"])
    with pytest.raises(ValueError, match=r"expects \(B, C, H, W\)"):
        metric(_hr(0)[0], _hr(0)[0])

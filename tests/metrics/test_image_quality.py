"""Tests of NRMSE and HFEN against direct numpy / scipy computations and their properties."""

import numpy as np
import pytest
import scipy.ndimage as ndi
import torch

from common.metrics import HFENMetric, NRMSEMetric, hfen, nrmse


def _numpy_log_kernel(spatial_dims, sigma=1.5, support=15):
    """Dense LoG kernel built directly: (r^2 - d sigma^2) / sigma^4 * G / sum(G), shifted to zero mean."""
    t = np.arange(support) - (support - 1) / 2
    grids = np.meshgrid(*[t] * spatial_dims, indexing="ij")
    r2 = sum(g**2 for g in grids)
    gauss = np.exp(-r2 / (2 * sigma**2))
    kernel = (r2 - spatial_dims * sigma**2) / sigma**4 * gauss / gauss.sum()
    return kernel - kernel.mean()


def _numpy_hfen(pred, gt):
    kernel = _numpy_log_kernel(gt.ndim)
    log_pred = ndi.correlate(pred, kernel, mode="mirror")
    log_gt = ndi.correlate(gt, kernel, mode="mirror")
    return np.linalg.norm(log_pred - log_gt) / np.linalg.norm(log_gt)


@pytest.mark.parametrize("spatial", [(32, 27), (12, 10, 11)])
def test_hfen_matches_direct_dense_convolution(spatial):
    rng = np.random.default_rng(0)
    gt = rng.random((2, 1, *spatial))
    pred = gt + 0.1 * rng.standard_normal(gt.shape)
    values = hfen(torch.from_numpy(pred), torch.from_numpy(gt))
    assert values.shape == (2, 1)
    for b in range(2):
        assert values[b, 0].item() == pytest.approx(_numpy_hfen(pred[b, 0], gt[b, 0]), rel=1e-10)


def test_hfen_kernel_is_zero_mean_and_ignores_offsets():
    rng = np.random.default_rng(1)
    gt = torch.from_numpy(rng.random((1, 1, 20, 20)))
    assert hfen(gt + 5.0, gt).item() == pytest.approx(0.0, abs=1e-10)
    assert abs(_numpy_log_kernel(2).sum()) < 1e-12


def test_nrmse_matches_numpy_per_image():
    rng = np.random.default_rng(2)
    gt = rng.random((3, 2, 9, 8))
    pred = rng.random((3, 2, 9, 8))
    values = nrmse(torch.from_numpy(pred), torch.from_numpy(gt))
    expected = [np.linalg.norm(pred[b] - gt[b]) / np.linalg.norm(gt[b]) for b in range(3)]
    np.testing.assert_allclose(values[:, 0].numpy(), expected, rtol=1e-12)


@pytest.mark.parametrize("metric", [nrmse, hfen])
def test_identical_images_give_zero_and_doubling_gives_one(metric):
    gt = torch.rand(2, 1, 16, 16, 16)
    np.testing.assert_allclose(metric(gt, gt).numpy(), 0.0, atol=1e-7)
    np.testing.assert_allclose(metric(2 * gt, gt).numpy(), 1.0, rtol=1e-5)
    np.testing.assert_allclose(metric(torch.zeros_like(gt), gt).numpy(), 1.0, rtol=1e-5)


def test_metric_classes_accumulate_and_average():
    rng = np.random.default_rng(3)
    batches = [
        (torch.from_numpy(rng.random((2, 1, 16, 16))), torch.from_numpy(rng.random((2, 1, 16, 16)))) for _ in range(2)
    ]
    for metric, func in ((NRMSEMetric(), nrmse), (HFENMetric(), hfen)):
        per_image = []
        for pred, gt in batches:
            out = metric(pred, gt)
            assert out.shape == (2, 1)
            per_image.append(func(pred, gt))
        assert metric.aggregate().item() == pytest.approx(torch.cat(per_image).mean().item(), rel=1e-6)
        metric.reset()
        metric(*batches[0])
        assert metric.aggregate().item() == pytest.approx(per_image[0].mean().item(), rel=1e-6)


def test_bad_shapes_are_rejected():
    with pytest.raises(ValueError, match="shapes differ"):
        nrmse(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 9))
    with pytest.raises(ValueError, match="spatial size > 7"):
        hfen(torch.zeros(1, 1, 6, 20), torch.zeros(1, 1, 6, 20))
    with pytest.raises(ValueError, match="batch-first"):
        hfen(torch.zeros(8, 8), torch.zeros(8, 8))

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


# --- found by mutation testing (tests/MUTANTS.md) ---------------------------------------------------------------


@pytest.mark.parametrize("spatial_dims, support", [(2, 15), (3, 15), (2, 9), (1, 7)])
def test_log_kernel_equals_the_dense_kernel(spatial_dims, support):
    from common.metrics.image_quality import log_kernel

    kernel = log_kernel(spatial_dims, support=support)
    assert kernel.dtype == torch.float64 and kernel.shape == (support,) * spatial_dims
    np.testing.assert_allclose(kernel.numpy(), _numpy_log_kernel(spatial_dims, support=support), atol=1e-14)
    other_sigma = log_kernel(spatial_dims, sigma=2.0, support=support).numpy()
    np.testing.assert_allclose(other_sigma, _numpy_log_kernel(spatial_dims, sigma=2.0, support=support), atol=1e-14)


@pytest.mark.parametrize("spatial", [(20, 17), (9, 10, 11)])
def test_laplacian_of_gaussian_response_equals_dense_correlation(spatial):
    """The absolute LoG response (not only HFEN's ratio, which hides a common scale or sign)."""
    from common.metrics.image_quality import laplacian_of_gaussian

    x = np.random.default_rng(12).random((2, 1, *spatial))
    out = laplacian_of_gaussian(torch.from_numpy(x))
    kernel = _numpy_log_kernel(len(spatial))
    for b in range(2):
        np.testing.assert_allclose(out[b, 0].numpy(), ndi.correlate(x[b, 0], kernel, mode="mirror"), atol=1e-12)
    out32 = laplacian_of_gaussian(torch.from_numpy(x).float())
    assert out32.dtype == torch.float32
    np.testing.assert_allclose(out32.numpy(), out.numpy(), atol=1e-5)


def test_hfen_with_another_support_matches_the_dense_reference():
    rng = np.random.default_rng(13)
    gt = rng.random((1, 1, 14, 12))
    pred = gt + 0.05 * rng.standard_normal(gt.shape)
    kernel = _numpy_log_kernel(2, support=9)
    log_p, log_g = ndi.correlate(pred[0, 0], kernel, mode="mirror"), ndi.correlate(gt[0, 0], kernel, mode="mirror")
    expected = np.linalg.norm(log_p - log_g) / np.linalg.norm(log_g)
    assert hfen(torch.from_numpy(pred), torch.from_numpy(gt), support=9).item() == pytest.approx(expected, rel=1e-10)
    metric = HFENMetric(support=9)
    assert metric(torch.from_numpy(pred), torch.from_numpy(gt)).item() == pytest.approx(expected, rel=1e-10)
    assert expected != pytest.approx(hfen(torch.from_numpy(pred), torch.from_numpy(gt)).item(), rel=1e-3)


@pytest.mark.parametrize("metric", [nrmse, hfen])
def test_dtypes_float32_stays_float32_float64_wins_integers_work(metric):
    rng = np.random.default_rng(14)
    gt64 = torch.from_numpy(rng.random((2, 1, 12, 12)))
    pred64 = gt64 + 0.1 * torch.from_numpy(rng.standard_normal((2, 1, 12, 12)))
    ref = metric(pred64, gt64)
    assert ref.dtype == torch.float64
    out32 = metric(pred64.float(), gt64.float())
    assert out32.dtype == torch.float32
    torch.testing.assert_close(out32.double(), ref, rtol=1e-4, atol=1e-6)
    # one float64 input makes the whole computation float64: exactly the value of two float64 inputs
    assert metric(pred64, gt64.float()).dtype == torch.float64
    torch.testing.assert_close(metric(pred64, gt64.float()), metric(pred64, gt64.float().double()), rtol=0, atol=0)
    torch.testing.assert_close(metric(pred64.float(), gt64), metric(pred64.float().double(), gt64), rtol=0, atol=0)
    # 8-bit images: computed in float32
    gt8 = (gt64 * 200).to(torch.uint8)
    pred8 = (pred64.clamp(0, 1) * 200).to(torch.uint8)
    out8 = metric(pred8, gt8)
    assert out8.dtype == torch.float32
    torch.testing.assert_close(out8, metric(pred8.float(), gt8.float()))


def test_hfen_minimum_size_and_messages():
    hfen(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 8))  # 8 > 15 // 2: accepted
    assert hfen(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 8)).shape == (1, 1)
    with pytest.raises(ValueError, match=r"HFEN needs every spatial size > 7 \(mirror padding\), got \(7, 20\)\."):
        hfen(torch.zeros(1, 1, 7, 20), torch.zeros(1, 1, 7, 20))


@pytest.mark.parametrize("cls, func", [(NRMSEMetric, nrmse), (HFENMetric, hfen)])
def test_metric_classes_pass_reduction_and_get_not_nans(cls, func):
    rng = np.random.default_rng(15)
    pred, gt = torch.from_numpy(rng.random((3, 1, 10, 10))), torch.from_numpy(rng.random((3, 1, 10, 10)))
    per_image = func(pred, gt)
    summed = cls(reduction="sum")
    summed(pred, gt)
    assert summed.aggregate().item() == pytest.approx(per_image.sum().item(), rel=1e-6)
    counted = cls(get_not_nans=True)
    counted(pred, gt)
    value, not_nans = counted.aggregate()
    assert value.item() == pytest.approx(per_image.mean().item(), rel=1e-6) and not_nans.item() == 3


def test_laplacian_of_gaussian_computes_half_input_in_float32():
    from common.metrics.image_quality import laplacian_of_gaussian

    x = torch.rand(1, 1, 12, 12, generator=torch.Generator().manual_seed(3))
    out = laplacian_of_gaussian(x.half())
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, laplacian_of_gaussian(x.half().float()))

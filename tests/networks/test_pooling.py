"""Down-sampling operators: hand-computed BlurPool cases, FLC exactness on band-limited input, ASAP vs NumPy."""

import numpy as np
import pytest
import torch
from scipy import ndimage

from common.networks import DOWNSAMPLE_NAMES, ASAPPool, BlurPool, FLCPool, downsample
from common.networks.pooling import asap_window, binomial_filter


def test_binomial_filter_taps():
    k3 = torch.tensor([1.0, 2.0, 1.0]) / 4
    k4 = torch.tensor([1.0, 3.0, 3.0, 1.0]) / 8
    torch.testing.assert_close(binomial_filter(1, 2), torch.ones(1, 1, dtype=torch.float64))
    torch.testing.assert_close(binomial_filter(3, 1).float(), k3)
    torch.testing.assert_close(binomial_filter(3, 2).float(), torch.outer(k3, k3))
    torch.testing.assert_close(binomial_filter(4, 2).float(), torch.outer(k4, k4))
    k5_3d = binomial_filter(5, 3)
    assert k5_3d.shape == (5, 5, 5)
    assert k5_3d.sum().item() == pytest.approx(1.0)
    k5 = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0], dtype=torch.float64) / 16
    torch.testing.assert_close(k5_3d, k5[:, None, None] * k5[None, :, None] * k5[None, None, :])


@pytest.mark.parametrize(
    "filter_size, expected",
    [
        (3, [0.5, 2.0]),  # reflect pad [1, 1]: [1, 0, 1, 2, 3, 2] * [1, 2, 1] / 4 at 0 and 2
        (4, [0.75, 2.25]),  # reflect pad [1, 2]: [1, 0, 1, 2, 3, 2, 1] * [1, 3, 3, 1] / 8 at 0 and 2
        (2, [0.5, 2.5]),  # pad [0, 1]: [0, 1, 2, 3, 2] * [1, 1] / 2 at 0 and 2
    ],
)
def test_blurpool_hand_computed_1d(filter_size, expected):
    x = torch.tensor([[[0.0, 1.0, 2.0, 3.0]]])
    out = BlurPool(1, 1, filter_size)(x)
    torch.testing.assert_close(out, torch.tensor([[expected]]))


@pytest.mark.parametrize("spatial_dims, filter_size", [(2, 3), (2, 4), (3, 3), (3, 5)])
def test_blurpool_matches_scipy(spatial_dims, filter_size):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 3) + (10,) * spatial_dims)
    left, right = (filter_size - 1) // 2, -(-(filter_size - 1) // 2)
    kernel = binomial_filter(filter_size, spatial_dims).numpy()
    expected = np.empty((2, 3) + (5,) * spatial_dims)
    for b in range(2):
        for c in range(3):
            padded = np.pad(x[b, c], [(left, right)] * spatial_dims, mode="reflect")
            full = ndimage.correlate(padded, kernel, mode="constant")  # full[j] centred on padded[j]
            valid_stride2 = tuple(slice(filter_size // 2, None, 2) for _ in range(spatial_dims))
            expected[b, c] = full[valid_stride2][tuple(slice(0, 5) for _ in range(spatial_dims))]
    result = BlurPool(spatial_dims, 3, filter_size)(torch.from_numpy(x))
    np.testing.assert_allclose(result.numpy(), expected, atol=1e-12)


def test_blurpool_short_axis_falls_back_to_replicate():
    x = torch.tensor([[[[1.0], [3.0]]]])  # (1, 1, 2, 1): too short to reflect-pad the last axis by 1
    out = BlurPool(2, 1, 3)(x)
    # replicate pad: rows [1, 1, 3, 3] -> at 0: (1 + 2 + 3) / 4 = 1.5 ; columns constant
    torch.testing.assert_close(out, torch.tensor([[[[1.5]]]]))


def _band_limited(shape, max_freq, rng):
    """Real signal on a periodic grid with every frequency index |k_axis| <= max_freq (sum of separable cosines)."""
    grids = np.meshgrid(*[np.arange(n) / n for n in shape], indexing="ij")
    x = np.zeros(shape)
    for _ in range(12):
        freqs = rng.integers(0, max_freq + 1, size=len(shape))
        phase = rng.uniform(0, 2 * np.pi)
        x += rng.normal() * np.cos(2 * np.pi * sum(f * g for f, g in zip(freqs, grids)) + phase)
    return x


@pytest.mark.parametrize("shape", [(32, 24), (16, 12, 8)])
def test_flc_exact_on_band_limited_input(shape):
    rng = np.random.default_rng(1)
    max_freq = min(shape) // 4 - 1  # strictly inside the kept band |k| < n / 4
    x = np.stack([_band_limited(shape, max_freq, rng) for _ in range(3)])[None]
    out = FLCPool(len(shape))(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(out, x[(..., *[slice(None, None, 2)] * len(shape))], atol=1e-10)


def test_flc_removes_frequencies_outside_band_where_subsampling_aliases():
    n = np.arange(16)
    x = np.cos(2 * np.pi * 6 * n / 16)[None, None, :, None] * np.ones((1, 1, 16, 16))  # k = 6 > 16 / 4
    out = FLCPool(2)(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(out, 0.0, atol=1e-12)
    assert np.abs(x[..., ::2, ::2]).max() > 0.5  # plain subsampling aliases it to k = 2


def test_flc_keeps_constants_and_float_dtype():
    x = torch.full((2, 3, 8, 8, 8), 2.5)
    out = FLCPool(3)(x)
    assert out.dtype == torch.float32 and out.shape == (2, 3, 4, 4, 4)
    torch.testing.assert_close(out, torch.full_like(out, 2.5))


def test_asap_window_values():
    w = asap_window((5, 7))
    assert w.shape == (5, 7)
    assert w[2, 3].item() == pytest.approx(1.0)
    assert w[0, 0].item() == pytest.approx(0.08)  # sqrt(0.08 * 0.08)
    np.testing.assert_allclose(w.numpy(), np.sqrt(np.outer(np.hamming(5), np.hamming(7))), atol=1e-12)
    w3 = asap_window((3, 3, 3))
    assert w3[1, 1, 1].item() == pytest.approx(1.0)
    assert w3[0, 0, 0].item() == pytest.approx(0.08**1.5)


def _asap_numpy(x: np.ndarray) -> np.ndarray:
    """Reference: pad one zero at the end of each axis, windowed shifted spectrum, keep [M/4, 3M/4)."""
    spatial = x.ndim - 2
    axes = tuple(range(2, x.ndim))
    padded = np.pad(x, [(0, 0), (0, 0)] + [(0, 1)] * spatial)
    spectrum = np.fft.fftshift(np.fft.fftn(padded, axes=axes, norm="forward"), axes=axes)
    window = np.ones(())
    for m in padded.shape[2:]:
        window = np.multiply.outer(window, np.hamming(m))
    spectrum = spectrum * np.sqrt(window)
    crop = tuple(slice(int(m / 4), int(m / 4 * 3)) for m in padded.shape[2:])
    low = spectrum[(slice(None), slice(None)) + crop]
    return np.fft.ifftn(np.fft.ifftshift(low, axes=axes), axes=axes, norm="forward").real


@pytest.mark.parametrize("shape", [(2, 3, 16, 8), (1, 2, 8, 12, 4)])
def test_asap_matches_numpy_reference(shape):
    x = np.random.default_rng(2).normal(size=shape)
    out = ASAPPool(len(shape) - 2)(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(out, _asap_numpy(x), atol=1e-12)


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("name", DOWNSAMPLE_NAMES)
def test_every_operator_halves_and_backpropagates(name, spatial_dims):
    op = downsample(name, spatial_dims, channels=3)
    x = torch.randn((2, 3) + (8, 12, 6)[:spatial_dims], requires_grad=True)
    out = op(x)
    assert out.shape == (2, 3) + (4, 6, 3)[:spatial_dims]
    out.square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_odd_sizes_and_parameters():
    x = torch.randn(1, 2, 9, 7)
    sizes = {name: tuple(downsample(name, 2, 2)(x).shape[2:]) for name in DOWNSAMPLE_NAMES}
    assert sizes.pop("strided_conv") == (5, 4)  # kernel 3, stride 2, padding 1: ceil(n / 2)
    assert set(sizes.values()) == {(4, 3)}
    n_params = {name: sum(p.numel() for p in downsample(name, 3, 4).parameters()) for name in DOWNSAMPLE_NAMES}
    assert n_params.pop("strided_conv") == 4 * 4 * 27 + 4
    assert set(n_params.values()) == {0}


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown downsample operator 'median'"):
        downsample("median", 2, 4)
    with pytest.raises(ValueError, match="spatial_dims"):
        downsample("flc", 4, 4)
    with pytest.raises(ValueError, match="FLCPool expects"):
        FLCPool(3)(torch.zeros(1, 1, 4, 4))
    with pytest.raises(ValueError, match="built for 2 channels"):
        BlurPool(2, 2)(torch.zeros(1, 3, 4, 4))

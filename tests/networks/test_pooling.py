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


# --- value checks at the sizes the U-Net inner levels hit (n // 2 odd: 6, 10, 14) and at odd sizes ---------------
# The reference below is written from the definition, frequency by frequency, without fftshift: the output of
# length k = n // 2 keeps the frequencies f = -(k // 2), ..., k - k // 2 - 1 of the (forward-normalised) DFT of the
# input and sums them back on the k-point grid. A crop that starts one bin early or late keeps another set of
# frequencies and fails every check here.

VALUE_SIZES = (6, 10, 14, 7, 9, 8)


def _kept_frequencies(n: int) -> np.ndarray:
    k = n // 2
    return np.arange(-(k // 2), k - k // 2)


def _spectral_reference(x: np.ndarray, window: bool) -> np.ndarray:
    """FLC (``window=False``) or ASAP (``window=True``) of a 1D/2D/3D array ``x`` (no batch or channel axes)."""
    if window:
        x = np.pad(x, [(0, 1)] * x.ndim)  # ASAP: one zero at the end of every axis
    spectrum = np.fft.fftn(x, norm="forward")
    out = np.zeros(tuple(n // 2 for n in (s - window for s in x.shape)), dtype=complex)
    freqs = [_kept_frequencies(s - window) for s in x.shape]
    for idx in np.ndindex(*[len(f) for f in freqs]):
        f = [fr[i] for fr, i in zip(freqs, idx)]
        coeff = spectrum[tuple(fi % s for fi, s in zip(f, x.shape))]
        if window:  # sqrt of the symmetric Hamming window of the padded length, centred on DC (index m // 2)
            for fi, m in zip(f, x.shape):
                coeff = coeff * np.sqrt(np.hamming(m)[m // 2 + fi])
        grids = np.meshgrid(*[np.arange(k) / k for k in out.shape], indexing="ij")
        out += coeff * np.exp(2j * np.pi * sum(fi * g for fi, g in zip(f, grids)))
    return out.real


@pytest.mark.parametrize("n", VALUE_SIZES)
def test_kept_frequency_band_is_centred_on_dc(n):
    k = n // 2
    freqs = _kept_frequencies(n)
    assert len(freqs) == k
    expected = {
        6: [-1, 0, 1],
        10: [-2, -1, 0, 1, 2],
        14: [-3, -2, -1, 0, 1, 2, 3],
        7: [-1, 0, 1],
        9: [-2, -1, 0, 1],
        8: [-2, -1, 0, 1],
    }
    assert freqs.tolist() == expected[n]


@pytest.mark.parametrize("spatial_dims", [1, 2, 3])
@pytest.mark.parametrize("n", VALUE_SIZES)
def test_flc_keeps_a_constant_constant(n, spatial_dims):
    x = torch.full((1, 2) + (n,) * spatial_dims, -1.75, dtype=torch.float64)
    out = FLCPool(spatial_dims)(x)
    assert out.shape == (1, 2) + (n // 2,) * spatial_dims
    torch.testing.assert_close(out, torch.full_like(out, -1.75), atol=1e-12, rtol=0)


@pytest.mark.parametrize("n", VALUE_SIZES)
def test_flc_matches_frequency_by_frequency_reference_1d(n):
    x = np.random.default_rng(n).normal(size=n) + np.linspace(0, 3, n)  # asymmetric: a ramp plus noise
    out = FLCPool(1)(torch.from_numpy(x)[None, None])[0, 0].numpy()
    np.testing.assert_allclose(out, _spectral_reference(x, window=False), atol=1e-12)


@pytest.mark.parametrize("shape", [(6, 10), (10, 14), (14, 6), (7, 9), (9, 8), (6, 7, 10)])
def test_flc_matches_frequency_by_frequency_reference_nd(shape):
    x = np.random.default_rng(sum(shape)).normal(size=shape)
    x = x + np.arange(x.size).reshape(shape) / x.size  # no symmetry that could hide a shifted crop
    out = FLCPool(len(shape))(torch.from_numpy(x)[None, None])[0, 0].numpy()
    np.testing.assert_allclose(out, _spectral_reference(x, window=False), atol=1e-12)


@pytest.mark.parametrize("shape", [(6,), (10,), (14,), (6, 10), (14, 10), (10, 6, 14)])
def test_flc_exact_on_band_limited_input_at_odd_half_sizes(shape):
    """n // 2 odd keeps the symmetric band |f| <= n // 4: a signal inside it comes out as x[::2] exactly."""
    rng = np.random.default_rng(len(shape) + shape[0])
    grids = np.meshgrid(*[np.arange(n) / n for n in shape], indexing="ij")
    x = np.full(shape, 0.3)
    for _ in range(8):
        freqs = [rng.integers(-(n // 4), n // 4 + 1) for n in shape]
        x += rng.normal() * np.cos(2 * np.pi * sum(f * g for f, g in zip(freqs, grids)) + rng.uniform(0, 2 * np.pi))
    out = FLCPool(len(shape))(torch.from_numpy(x)[None, None])[0, 0].numpy()
    np.testing.assert_allclose(out, x[tuple(slice(None, None, 2) for _ in shape)], atol=1e-12)


def test_flc_by_hand_n6():
    """n = 6 -> 3 samples keeping frequencies -1, 0, 1: x = 1 + cos(2 pi j / 6) gives 1 + cos(2 pi j / 3)."""
    j = np.arange(6)
    x = 1.0 + np.cos(2 * np.pi * j / 6) + 0.5 * np.cos(2 * np.pi * 2 * j / 6)  # frequency 2 is cut
    out = FLCPool(1)(torch.from_numpy(x)[None, None])[0, 0].numpy()
    np.testing.assert_allclose(out, [2.0, 0.5, 0.5], atol=1e-12)


@pytest.mark.parametrize("n", VALUE_SIZES)
def test_asap_matches_frequency_by_frequency_reference_1d(n):
    x = np.random.default_rng(100 + n).normal(size=n) + np.linspace(-1, 2, n)
    out = ASAPPool(1)(torch.from_numpy(x)[None, None])[0, 0].numpy()
    np.testing.assert_allclose(out, _spectral_reference(x, window=True), atol=1e-12)


@pytest.mark.parametrize("shape", [(6, 10), (14, 6), (7, 9), (10, 14, 6)])
def test_asap_matches_frequency_by_frequency_reference_nd(shape):
    x = np.random.default_rng(7 * len(shape)).normal(size=shape)
    x = x + np.arange(x.size).reshape(shape) / x.size
    out = ASAPPool(len(shape))(torch.from_numpy(x)[None, None])[0, 0].numpy()
    np.testing.assert_allclose(out, _spectral_reference(x, window=True), atol=1e-12)


@pytest.mark.parametrize("n", VALUE_SIZES)
def test_asap_of_a_constant_by_hand(n):
    """A constant c, padded with one zero to m = n + 1, has DFT coefficients c * n / m at f = 0 and
    -c / m * exp(-2 pi i f n / m) = -c / m * exp(2 pi i f / m) elsewhere; ASAP weights each by sqrt(hamming)."""
    m, k = n + 1, n // 2
    c = 2.0
    w = np.sqrt(np.hamming(m))
    j = np.arange(k)
    expected = np.zeros(k, dtype=complex)
    for f in _kept_frequencies(n):
        coeff = c * n / m if f == 0 else -c / m * np.exp(2j * np.pi * f / m)
        expected += coeff * w[m // 2 + f] * np.exp(2j * np.pi * f * j / k)
    out = ASAPPool(1)(torch.full((1, 1, n), c, dtype=torch.float64))[0, 0].numpy()
    np.testing.assert_allclose(out, expected.real, atol=1e-12)


def test_spectral_pools_keep_float32_and_compute_in_float64_for_float64():
    x = torch.from_numpy(np.random.default_rng(5).normal(size=(1, 1, 10, 14)))
    for pool in (FLCPool(2), ASAPPool(2)):
        out64 = pool(x)
        out32 = pool(x.float())
        assert out64.dtype == torch.float64 and out32.dtype == torch.float32
        np.testing.assert_allclose(out32.numpy(), out64.numpy(), atol=1e-5)
        assert not np.array_equal(out32.double().numpy(), out64.numpy())  # float32 really computed in float32


def test_asap_window_cache_is_per_size_and_reused():
    pool = ASAPPool(2)
    w = pool.window((7, 11))
    assert pool.window((7, 11)) is w
    assert pool.window([7, 11]) is w
    torch.testing.assert_close(w, asap_window((7, 11)))
    assert pool.window((11, 7)).shape == (11, 7)
    assert len(pool._window_cache) == 2


# --- contracts found by mutation testing (tests/MUTANTS.md) -----------------------------------------------------


@pytest.mark.parametrize("pool", [FLCPool(2), ASAPPool(2)], ids=["flc", "asap"])
def test_spectral_pools_accept_half_and_bfloat16_input(pool):
    """CPU FFTs reject float16: the pools compute in float32 and cast back (what autocast hands them)."""
    x = torch.from_numpy(np.random.default_rng(8).normal(size=(2, 3, 10, 14))).float()
    reference = pool(x)
    for dtype in (torch.float16, torch.bfloat16):
        out = pool(x.to(dtype))
        assert out.dtype == dtype and out.shape == (2, 3, 5, 7)
        torch.testing.assert_close(out.float(), reference, atol=0.05, rtol=0.05)


@pytest.mark.parametrize("pool", [FLCPool(2), ASAPPool(2)], ids=["flc", "asap"])
def test_spectral_pools_compute_float32_input_in_float32(pool):
    """float32 input is transformed in float32 (half the memory of float64): its rounding differs from a float64
    computation cast to float32, while staying within float32 precision of it."""
    x = torch.from_numpy(np.random.default_rng(9).normal(size=(2, 3, 14, 10))).float()
    out32, out64 = pool(x), pool(x.double())  # the same input values, transformed in float32 and in float64
    assert out32.dtype == torch.float32
    torch.testing.assert_close(out32, out64.float(), atol=1e-5, rtol=1e-5)
    assert not torch.equal(out32, out64.float())


def test_spectral_pools_transform_each_image_and_channel_separately():
    x = torch.from_numpy(np.random.default_rng(10).normal(size=(3, 2, 6, 10)))
    for pool, window in ((FLCPool(2), False), (ASAPPool(2), True)):
        out = pool(x).numpy()
        for b in range(3):
            for c in range(2):
                np.testing.assert_allclose(out[b, c], _spectral_reference(x[b, c].numpy(), window), atol=1e-12)


def test_default_spatial_dims_and_filter_sizes():
    assert FLCPool().spatial_dims == 2 and ASAPPool().spatial_dims == 2
    assert FLCPool()(torch.ones(1, 1, 6, 6)).shape == (1, 1, 3, 3)
    assert ASAPPool()(torch.ones(1, 1, 6, 6)).shape == (1, 1, 3, 3)
    blur = BlurPool(2, 3)
    assert blur.filter_size == 3 and blur.stride == 2 and blur.pad_mode == "reflect"
    assert "filter_size=3" in repr(blur)
    torch.testing.assert_close(blur.kernel[0, 0].double(), binomial_filter(3, 2))
    assert downsample("blurpool", 2, 3)[1].filter_size == 3
    op = downsample("blurpool", 2, 3, blur_filter_size=5)
    assert op[1].filter_size == 5 and op[1].kernel.shape == (3, 1, 5, 5)


def test_blurpool_kernel_is_not_saved_in_checkpoints():
    """The fixed kernel is a non-persistent buffer: state dicts of networks with BlurPool hold only learned weights."""
    blur = BlurPool(2, 3, 4)
    assert dict(blur.state_dict()) == {}
    assert "kernel" in dict(blur.named_buffers())


@pytest.mark.parametrize("filter_size", [2, 3, 4, 5])
@pytest.mark.parametrize("n", [5, 6, 7])
def test_blurpool_output_is_ceil_half_for_every_filter_size(n, filter_size):
    """Padding [floor((k - 1) / 2), ceil((k - 1) / 2)] then stride 2 gives ceil(n / 2) at every k, odd n too."""
    out = BlurPool(1, 1, filter_size)(torch.arange(float(n))[None, None])
    assert out.shape == (1, 1, -(-n // 2))
    blur = BlurPool(1, 1, filter_size)
    assert blur.padding == ((filter_size - 1) // 2, filter_size // 2)


def test_blurpool_by_hand_even_filter_odd_length():
    # k = 4, taps [1, 3, 3, 1] / 8, reflect pad [1, 2]: [1, 0, 1, 2, 3, 4, 3, 2] -> windows at 0, 2, 4
    out = BlurPool(1, 1, 4)(torch.arange(5.0)[None, None])
    torch.testing.assert_close(out, torch.tensor([[[0.75, 2.5, 3.25]]]))  # (1+0+3+2)/8, (1+6+9+4)/8, (3+12+9+2)/8


def test_asap_window_cache_is_per_device():
    pool = ASAPPool(2)
    cpu = pool.window((7, 11), "cpu")
    meta = pool.window((7, 11), "meta")  # a second device: its own entry, on that device
    assert cpu.device.type == "cpu" and meta.device.type == "meta" and meta.shape == (7, 11)
    assert pool.window((7, 11), torch.device("cpu")) is cpu
    assert len(pool._window_cache) == 2


def test_asap_forward_fills_the_window_cache_for_the_input_device():
    pool = ASAPPool(2)
    pool(torch.zeros(1, 1, 6, 8))
    cached = pool.window((7, 9), torch.device("cpu"))
    assert len(pool._window_cache) == 1  # the forward pass cached exactly this window
    assert pool.window((7, 9), "cpu") is cached


def test_error_messages_name_the_operator_and_the_sizes():
    with pytest.raises(ValueError, match=r"ASAPPool expects a \(B, C, 2 spatial dims\) tensor, got shape \[1, 4, 4\]"):
        ASAPPool(2)(torch.zeros(1, 4, 4))
    with pytest.raises(ValueError, match=r"BlurPool expects a \(B, C, 3 spatial dims\) tensor"):
        BlurPool(3, 1)(torch.zeros(1, 1, 4, 4))
    with pytest.raises(ValueError, match="BlurPool built for 2 channels got input with 3$"):
        BlurPool(2, 2)(torch.zeros(1, 3, 5, 5))
    with pytest.raises(ValueError, match="blur filter size must be >= 1, got 0"):
        binomial_filter(0, 2)
    with pytest.raises(ValueError, match="spatial_dims must be 1, 2 or 3, got 4"):
        FLCPool(4)

"""Degradation contracts found by mutation testing (tests/MUTANTS.md): bicubic and the k-space kinds against
references written from the module docstring, affine offsets of the even-length filters, the dictionary and random
transforms' arguments, defaults and random state."""

import math

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import RandRicianNoise

from common.transforms import Degrade, Degraded, RandDegrade, RandDegraded


def _cubic(t, a=-0.5):
    t = abs(t)
    if t < 1:
        return ((a + 2) * t - (a + 3)) * t * t + 1
    if t < 2:
        return (((t - 5) * t + 8) * t - 4) * a
    return 0.0


def _bicubic_1d(x, s):
    """Antialiased bicubic decimation by s (PIL): Keys kernel a = -0.5 stretched by s, output k centred at
    (k + 0.5) s - 0.5, taps inside the image only, renormalised."""
    n = len(x)
    out = np.zeros(n // s)
    for k in range(n // s):
        c = (k + 0.5) * s
        lo, hi = max(int(c - 2 * s + 0.5), 0), min(int(c + 2 * s + 0.5), n)
        w = np.array([_cubic((j - c + 0.5) / s) for j in range(lo, hi)])
        out[k] = (w * x[lo:hi]).sum() / w.sum()
    return out


@pytest.mark.parametrize("shape, s", [((13, 10), 2), ((12, 9), 3), ((8, 9, 10), 2), ((9, 7, 6), 3)])
def test_bicubic_equals_the_separable_pil_reference(shape, s):
    x = np.random.default_rng(sum(shape)).random(shape)
    cropped = x[tuple(slice(0, (n // s) * s) for n in shape)]
    expected = cropped
    for axis in range(len(shape)):
        expected = np.apply_along_axis(_bicubic_1d, axis, expected, s)
    out = Degrade("bicubic", s)(torch.from_numpy(x)[None])[0].numpy()
    np.testing.assert_allclose(out, expected, atol=1e-10)


def _kspace_reference(x, s, kind, phase_axis=0, fraction=0.625, acceleration=4, center_fraction=0.08, shift=None):
    """The k-space kinds from the module docstring, with a dense n-D FFT of the cropped image; output voxel k at
    input voxel ``shift + k s`` (default ``(s - 1) / 2``, the centred phase)."""
    shift = (s - 1) / 2 if shift is None else shift
    x = x[tuple(slice(0, (n // s) * s) for n in x.shape)]
    spectrum = np.fft.fftn(x, norm="forward")
    for axis, n in enumerate(x.shape):
        m = n // s
        f = np.fft.fftfreq(m, 1.0 / m).round().astype(int)  # -m//2 .. (m-1)//2 in FFT order
        weight = np.exp(2j * np.pi * f * shift / n)  # phase ramp: output voxel k at input voxel shift + k s
        if kind in ("kspace_hann", "kspace_hamming") and m % 2 == 0:  # NumPy's periodic window, DC at its peak
            window = (np.hanning if kind == "kspace_hann" else np.hamming)(m + 1)[:-1]
            weight = weight * np.fft.ifftshift(window)[f % m]
        elif kind in ("kspace_hann", "kspace_hamming"):  # odd band: the formula of the docstring
            weight = weight * _odd_window(kind, m)[f % m]
        if axis == phase_axis and kind == "partial_fourier":
            weight = weight * (f + m // 2 < math.ceil(fraction * m))  # the lowest-frequency lines first
        if axis == phase_axis and kind == "undersample":
            n_center = max(1, round(center_fraction * m))
            centre = (f >= -(n_center // 2)) & (f < n_center - n_center // 2)
            weight = weight * ((f % acceleration == 0) | centre)
        spectrum = np.take(spectrum, f % n, axis=axis)
        shape = [1] * x.ndim
        shape[axis] = m
        spectrum = spectrum * weight.reshape(shape)
    image = np.fft.ifftn(spectrum, norm="forward")
    return np.abs(image) if kind in ("partial_fourier", "undersample") else image.real


def _odd_window(kind, m):
    """The periodic window of odd length m centred on DC, in FFT order (index f % m for offset f)."""
    a = 0.5 if kind == "kspace_hann" else 0.54
    f = np.fft.fftfreq(m, 1.0 / m)
    return a + (1 - a) * np.cos(2 * np.pi * f / m)


@pytest.mark.parametrize(
    "kind, shape, s, kwargs",
    [
        ("kspace_truncation", (14, 11), 2, {}),
        ("kspace_truncation", (9, 12, 7), 3, {}),
        ("kspace_hann", (16, 12), 2, {}),
        ("kspace_hann", (14, 11), 2, {}),  # m = 7, 5: odd bands
        ("kspace_hamming", (24, 20), 4, {}),
        ("kspace_hamming", (9, 12, 8), 3, {}),
        ("partial_fourier", (42, 20), 2, {}),
        ("partial_fourier", (20, 42), 2, {"phase_axis": 1, "partial_fourier_fraction": 0.75}),
        ("partial_fourier", (12, 18, 9), 3, {"phase_axis": 2, "partial_fourier_fraction": 0.9}),
        ("undersample", (36, 16), 2, {}),  # m = 18: round(0.08 m) = 1 centre line
        ("undersample", (32, 20), 2, {"center_fraction": 0.25, "acceleration": 3}),  # 4 centre lines
        ("undersample", (20, 38), 2, {"phase_axis": 1, "center_fraction": 0.17, "acceleration": 2}),  # 3 lines
        ("undersample", (66, 12), 2, {"center_fraction": 0.2}),  # m = 33: 7 centre lines
    ],
)
@pytest.mark.parametrize("phase", ["centred", "legacy"])
def test_kspace_kinds_equal_the_dense_fft_reference(kind, shape, s, kwargs, phase):
    x = np.random.default_rng(len(kind) + sum(shape)).random(shape) + np.linspace(0, 1, shape[-1])
    ref_kwargs = {
        "phase_axis": kwargs.get("phase_axis", 0),
        "fraction": kwargs.get("partial_fourier_fraction", 0.625),
        "acceleration": kwargs.get("acceleration", 4),
        "center_fraction": kwargs.get("center_fraction", 0.08),
        "shift": (s - 1) / 2 if phase == "centred" else s // 2,
    }
    expected = _kspace_reference(x, s, kind, **ref_kwargs)
    out = Degrade(kind, s, phase=phase, **kwargs)(torch.from_numpy(x)[None])[0].numpy()
    assert out.shape == expected.shape
    np.testing.assert_allclose(out, expected, atol=1e-12)


@pytest.mark.parametrize("kind", ["kspace_truncation", "partial_fourier", "undersample"])
def test_kspace_kinds_compute_float32_input_in_float32(kind):
    x = torch.from_numpy(np.random.default_rng(4).random((1, 24, 20))).float()
    out32, out64 = Degrade(kind, 2)(x), Degrade(kind, 2)(x.double())  # the same values in float32 and float64
    assert out32.dtype == torch.float32 and out64.dtype == torch.float64
    torch.testing.assert_close(out32, out64.float(), atol=1e-5, rtol=1e-5)
    assert not torch.equal(out32, out64.float())


@pytest.mark.parametrize("kind, s", [("mean", 3), ("mean", 5), ("median", 3), ("median", 5), ("mean", 4)])
def test_affine_offset_of_even_length_windows(kind, s):
    """Legacy: even windows (s + 1 samples, s odd) are centred half a voxel before the kept sample s // 2.
    Centred: every window is centred at (s - 1) / 2."""
    img = MetaTensor(torch.rand(1, 20, 20), affine=torch.eye(3, dtype=torch.float64))
    out = Degrade(kind, s, phase="legacy")(img)
    offset = s // 2 - 0.5 if s % 2 else s // 2
    torch.testing.assert_close(out.affine[:2, 2], torch.tensor([offset, offset], dtype=torch.float64))
    centred = Degrade(kind, s)(img).affine[:2, 2]
    torch.testing.assert_close(centred, torch.tensor([(s - 1) / 2] * 2, dtype=torch.float64))
    torch.testing.assert_close(out.pixdim, torch.tensor([float(s), float(s)], dtype=torch.float64))


def test_degraded_dictionary_arguments():
    img = torch.rand(1, 24, 20)
    assert Degraded("image", "mean")({"image": img})["image"].shape == (1, 12, 10)  # default scale 2
    out = Degraded("image", "partial_fourier", scale=4, partial_fourier_fraction=0.75)({"image": img})["image"]
    torch.testing.assert_close(out, Degrade("partial_fourier", 4, partial_fourier_fraction=0.75)(img))
    with pytest.raises(KeyError):
        Degraded("image", "mean")({"label": img})
    assert "image" not in Degraded("image", "mean", allow_missing_keys=True)({"label": img})


def test_rand_degrade_arguments_and_initial_kind():
    img = torch.rand(1, 24, 20)
    single = RandDegrade(kinds=("partial_fourier",), scale=4, partial_fourier_fraction=0.75).set_random_state(0)
    torch.testing.assert_close(single(img), Degrade("partial_fourier", 4, partial_fourier_fraction=0.75)(img))
    pair = RandDegrade(kinds=("median", "mean"))
    assert pair.kind == "median"  # the first kind until a draw
    torch.testing.assert_close(pair(img, randomize=False), Degrade("median", 2)(img))
    assert RandDegrade()(img).shape == (1, 12, 10)  # default scale 2
    assert pair.rician.R is pair.R  # the noise is driven by the transform's own random state
    with pytest.raises(ValueError, match=r"^kinds must name at least one degradation kind\.$"):
        RandDegrade(kinds=())
    with pytest.raises(ValueError, match=r"^rician_std must be >= 0, got -0.1\.$"):
        RandDegrade(rician_std=-0.1)


def test_no_noise_keeps_negative_values():
    img = torch.rand(1, 24, 20) - 0.5
    out = RandDegrade(kinds=("gaussian",), rician_std=0.0).set_random_state(1)(img)
    torch.testing.assert_close(out, Degrade("gaussian", 2)(img))
    assert (out < 0).any()


@pytest.mark.parametrize("relative", [False, True])
def test_rician_noise_has_the_fixed_std_given(relative):
    img = torch.rand(1, 24, 20) + 1.0
    t = RandDegrade(kinds=("mean",), rician_std=0.1, rician_relative=relative).set_random_state(7)
    out = t(img)
    state = np.random.RandomState(7)
    state.randint(1)  # the kind drawn first
    reference = RandRicianNoise(prob=1.0, std=0.1, relative=relative, sample_std=False)
    reference.set_random_state(state=state)
    torch.testing.assert_close(out, reference(Degrade("mean", 2)(img)))


def test_rand_degraded_one_kind_for_all_keys_and_its_arguments():
    img = torch.rand(1, 24, 20)
    t = RandDegraded(["a", "b"], kinds=("mean", "hann", "median", "gaussian"), scale=4).set_random_state(3)
    kinds = set()
    for _ in range(6):
        out = t({"a": img, "b": img.clone()})
        kinds.add(out["degradation"])
        expected = Degrade(out["degradation"], 4)(img)
        torch.testing.assert_close(out["a"], expected)
        torch.testing.assert_close(out["b"], expected)
    assert len(kinds) > 1
    with pytest.raises(KeyError):
        RandDegraded("a")({"b": img})
    assert "a" not in RandDegraded("a", allow_missing_keys=True)({"b": img})
    runs = []
    for _ in range(2):
        r = RandDegraded("a", kinds=("mean", "hann", "median")).set_random_state(state=np.random.RandomState(11))
        runs.append([r({"a": img})["degradation"] for _ in range(8)])
    assert runs[0] == runs[1]


def test_defaults_of_degrade_and_the_function():
    from common.transforms.degradation import degrade

    img = torch.from_numpy(np.random.default_rng(21).random((1, 40, 36)))
    assert Degrade("mean")(img).shape == (1, 20, 18)  # scale 2
    for kind in ("partial_fourier", "undersample"):
        expected = Degrade(kind, 2, phase_axis=0, partial_fourier_fraction=0.625, acceleration=4, center_fraction=0.08)
        torch.testing.assert_close(Degrade(kind)(img), expected(img))
        torch.testing.assert_close(degrade(img, kind), expected(img))
        np.testing.assert_allclose(Degrade(kind)(img)[0].numpy(), _kspace_reference(img[0].numpy(), 2, kind))


def test_taps_are_float64_sampled_gaussian_and_box():
    from common.transforms.degradation import degradation_taps

    for s in (2, 3, 4):
        g = degradation_taps("gaussian", s, "legacy")
        sigma = s / 2.0
        t = np.arange(-int(4 * sigma + 0.5), int(4 * sigma + 0.5) + 1)
        expected = np.exp(-(t**2) / (2 * sigma**2))
        assert g.dtype == torch.float64  # as documented (MONAI's gaussian_1d, used before, gave float32)
        np.testing.assert_allclose(g.numpy(), expected / expected.sum(), rtol=1e-14)
        box = degradation_taps("mean", s, "legacy")
        assert box.dtype == torch.float64 and box.tolist() == [1.0 / (s + 1)] * (s + 1)
    with pytest.raises(ValueError, match=r"^'median' is not a separable degradation kind; expected one of "):
        degradation_taps("median", 2)


@pytest.mark.parametrize("kind", ["gaussian", "mean", "hann"])
@pytest.mark.parametrize("shape, s", [((1, 7), 1), ((2, 9), 1), ((3, 8), 2), ((2, 6), 2)])
def test_short_axes_and_scale_1_mirror_like_scipy(kind, shape, s):
    import scipy.ndimage as ndi

    from common.transforms.degradation import degradation_taps

    x = np.random.default_rng(sum(shape) + s).random(shape)
    taps = degradation_taps(kind, s, "legacy").numpy()
    cropped = x[tuple(slice(0, (n // s) * s) for n in shape)]
    full = cropped
    for axis in range(2):
        full = ndi.correlate1d(full, taps, axis=axis, mode="mirror")
    expected = full[s // 2 :: s, s // 2 :: s]
    out = Degrade(kind, s, phase="legacy")(torch.from_numpy(x)[None])[0].numpy()
    np.testing.assert_allclose(out, expected, atol=1e-12)


def test_input_types_and_dtypes():
    img = (np.random.default_rng(22).random((1, 16, 12)) * 200).astype(np.uint8)
    out = Degrade("gaussian", 2)(img)
    assert isinstance(out, np.ndarray) and out.dtype == np.float32  # float32 unless the input is float64
    np.testing.assert_allclose(out, Degrade("gaussian", 2)(img.astype(np.float32)), rtol=1e-6)
    half = Degrade("mean", 2)(torch.from_numpy(img).half())
    assert half.dtype == torch.float32
    plain = Degrade("mean", 2)(torch.from_numpy(img).float())
    assert type(plain) is torch.Tensor  # a plain tensor stays plain (no metadata tracking)


def test_metatensor_keeps_its_metadata_and_operations():
    from monai.transforms import SpatialPad

    img = MetaTensor(torch.rand(1, 14, 12), affine=torch.eye(3, dtype=torch.float64), meta={"filename_or_obj": "a.nii"})
    padded = SpatialPad((16, 12))(img)
    out = Degrade("hann", 2)(padded)
    assert out.meta["filename_or_obj"] == "a.nii"
    assert out.meta["spatial_shape"].tolist() == [8, 6]
    assert len(out.applied_operations) == len(padded.applied_operations) == 1
    with pytest.raises(ValueError, match=r"^affine of shape \(3, 3\) is too small for 3 spatial dims\.$"):
        Degrade("mean", 2)(MetaTensor(torch.rand(1, 4, 4, 4), affine=torch.eye(3, dtype=torch.float64)))


def test_argument_ranges_and_messages():
    img = torch.rand(1, 8, 6)
    torch.testing.assert_close(Degrade("undersample", 2, phase_axis=-2)(img), Degrade("undersample", 2)(img))
    with pytest.raises(ValueError, match=r"^phase_axis 2 is out of range for 2 spatial dims\.$"):
        Degrade("undersample", 2, phase_axis=2)(img)
    assert Degrade("mean", 6)(img).shape == (1, 1, 1)  # a size equal to the scale is enough
    with pytest.raises(ValueError, match=r"^every spatial size must be at least scale=7, got \(8, 6\)\.$"):
        Degrade("mean", 7)(img)
    with pytest.raises(ValueError, match=r"at least scale=3, got \(2, 6\)"):
        Degrade("mean", 3)(torch.rand(1, 2, 6))
    assert Degrade("mean", 1)(img).shape == img.shape
    for fraction in (0.5, 1.5):
        with pytest.raises(ValueError, match=rf"^partial_fourier_fraction must be in \(0.5, 1\], got {fraction}\.$"):
            Degrade("partial_fourier", partial_fourier_fraction=fraction)
    for acceleration in (0, 1.5):
        with pytest.raises(ValueError, match=rf"^acceleration must be a positive integer, got {acceleration}\.$"):
            Degrade("undersample", acceleration=acceleration)
    for fraction in (0.0, 1.0):
        Degrade("undersample", center_fraction=fraction)(img)
    with pytest.raises(ValueError, match=r"^center_fraction must be in \[0, 1\], got 1.5\.$"):
        Degrade("undersample", center_fraction=1.5)

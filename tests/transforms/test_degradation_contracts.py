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


def _kspace_reference(x, s, kind, phase_axis=0, fraction=0.625, acceleration=4, center_fraction=0.08):
    """The k-space kinds from the module docstring, with a dense n-D FFT of the cropped image."""
    x = x[tuple(slice(0, (n // s) * s) for n in x.shape)]
    spectrum = np.fft.fftn(x, norm="forward")
    for axis, n in enumerate(x.shape):
        m = n // s
        f = np.fft.fftfreq(m, 1.0 / m).round().astype(int)  # -m//2 .. (m-1)//2 in FFT order
        weight = np.exp(2j * np.pi * f * (s // 2) / n)  # phase ramp: output voxel k at input voxel s//2 + k s
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
    return image.real if kind == "kspace_truncation" else np.abs(image)


@pytest.mark.parametrize(
    "kind, shape, s, kwargs",
    [
        ("kspace_truncation", (14, 11), 2, {}),
        ("kspace_truncation", (9, 12, 7), 3, {}),
        ("partial_fourier", (42, 20), 2, {}),
        ("partial_fourier", (20, 42), 2, {"phase_axis": 1, "partial_fourier_fraction": 0.75}),
        ("partial_fourier", (12, 18, 9), 3, {"phase_axis": 2, "partial_fourier_fraction": 0.9}),
        ("undersample", (36, 16), 2, {}),  # m = 18: round(0.08 m) = 1 centre line
        ("undersample", (32, 20), 2, {"center_fraction": 0.25, "acceleration": 3}),  # 4 centre lines
        ("undersample", (20, 38), 2, {"phase_axis": 1, "center_fraction": 0.17, "acceleration": 2}),  # 3 lines
        ("undersample", (66, 12), 2, {"center_fraction": 0.2}),  # m = 33: 7 centre lines
    ],
)
def test_kspace_kinds_equal_the_dense_fft_reference(kind, shape, s, kwargs):
    x = np.random.default_rng(len(kind) + sum(shape)).random(shape) + np.linspace(0, 1, shape[-1])
    ref_kwargs = {
        "phase_axis": kwargs.get("phase_axis", 0),
        "fraction": kwargs.get("partial_fourier_fraction", 0.625),
        "acceleration": kwargs.get("acceleration", 4),
        "center_fraction": kwargs.get("center_fraction", 0.08),
    }
    expected = _kspace_reference(x, s, kind, **ref_kwargs)
    out = Degrade(kind, s, **kwargs)(torch.from_numpy(x)[None])[0].numpy()
    assert out.shape == expected.shape
    np.testing.assert_allclose(out, expected, atol=1e-12)


@pytest.mark.parametrize("kind", ["kspace_truncation", "partial_fourier", "undersample"])
def test_kspace_kinds_compute_float32_input_in_float32(kind):
    x = torch.from_numpy(np.random.default_rng(4).random((1, 24, 20)))
    out32, out64 = Degrade(kind, 2)(x.float()), Degrade(kind, 2)(x)
    assert out32.dtype == torch.float32 and out64.dtype == torch.float64
    torch.testing.assert_close(out32, out64.float(), atol=1e-5, rtol=1e-5)
    assert not torch.equal(out32, out64.float())


@pytest.mark.parametrize("kind, s", [("mean", 3), ("mean", 5), ("median", 3), ("median", 5), ("mean", 4)])
def test_affine_offset_of_even_length_windows(kind, s):
    """Even windows (s + 1 samples, s odd) are centred half a voxel before the kept sample s // 2."""
    out = Degrade(kind, s)(MetaTensor(torch.rand(1, 20, 20), affine=torch.eye(3, dtype=torch.float64)))
    offset = s // 2 - 0.5 if s % 2 else s // 2
    torch.testing.assert_close(out.affine[:2, 2], torch.tensor([offset, offset], dtype=torch.float64))
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

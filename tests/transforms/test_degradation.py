"""Tests of the SR degradations: sizes, references (scipy), taps, grid phase, k-space exactness, randomness."""

import itertools

import numpy as np
import pytest
import scipy.ndimage as ndi
import torch
from monai.data import MetaTensor

from common.transforms import DEGRADATION_KINDS, Degrade, Degraded, RandDegrade, RandDegraded
from common.transforms.degradation import CLASSIC_DEGRADATION_KINDS, degradation_taps


def _random_image(shape, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).random(shape, dtype=np.float64)).float()


@pytest.mark.parametrize("kind", DEGRADATION_KINDS)
@pytest.mark.parametrize("scale", [2, 4])
@pytest.mark.parametrize("spatial", [(33, 40), (17, 20, 23)])
def test_output_size_is_floor_of_input_over_scale(kind, scale, spatial):
    out = Degrade(kind, scale)(_random_image((2, *spatial)))
    assert tuple(out.shape) == (2, *(n // scale for n in spatial))
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("kind", DEGRADATION_KINDS)
@pytest.mark.parametrize("spatial", [(24, 30), (12, 14, 10)])
def test_constant_image_is_preserved_exactly(kind, spatial):
    out = Degrade(kind, 2)(torch.full((1, *spatial), 3.5))
    np.testing.assert_allclose(out.numpy(), 3.5, rtol=0, atol=1e-5)


@pytest.mark.parametrize("kind", CLASSIC_DEGRADATION_KINDS + ("kspace_truncation",))
def test_mean_of_smooth_image_is_preserved(kind):
    yy, xx = np.meshgrid(np.arange(64), np.arange(64), indexing="ij")
    smooth = 1.0 + np.exp(-((yy - 30.0) ** 2 + (xx - 34.0) ** 2) / (2 * 9.0**2))
    out = Degrade(kind, 2)(torch.from_numpy(smooth)[None])
    assert out.mean().item() == pytest.approx(smooth.mean(), rel=2e-3)


@pytest.mark.parametrize("scale", [2, 3])
@pytest.mark.parametrize("spatial", [(21, 26), (13, 11, 15)])
def test_median_equals_scipy_median_filter_at_kept_samples(scale, spatial):
    img = _random_image((1, *spatial), seed=scale).double()
    cropped = img[0][tuple(slice(0, (n // scale) * scale) for n in spatial)].numpy()
    ref = ndi.median_filter(cropped, size=scale + 1, mode="mirror")[(slice(scale // 2, None, scale),) * len(spatial)]
    out = Degrade("median", scale)(img)
    np.testing.assert_array_equal(out[0].numpy(), ref)


@pytest.mark.parametrize("scale", [2, 3])
def test_separable_kinds_equal_scipy_filters_at_kept_samples(scale):
    img = _random_image((1, 19, 22, 17), seed=4).double()
    cropped = img[0][tuple(slice(0, (n // scale) * scale) for n in img.shape[1:])].numpy()
    keep = (slice(scale // 2, None, scale),) * 3
    references = {
        "gaussian": ndi.gaussian_filter(cropped, sigma=scale / 2, mode="mirror", truncate=4.0),
        "mean": ndi.uniform_filter(cropped, size=scale + 1, mode="mirror"),
    }
    for name, window in (("hann", np.hanning), ("hamming", np.hamming)):
        taps = window(2 * scale + 1) / window(2 * scale + 1).sum()
        filtered = cropped
        for axis in range(3):
            filtered = ndi.correlate1d(filtered, taps, axis=axis, mode="mirror")
        references[name] = filtered
    for kind, ref in references.items():
        np.testing.assert_allclose(Degrade(kind, scale)(img)[0].numpy(), ref[keep], rtol=0, atol=1e-6, err_msg=kind)


def test_taps_by_hand():
    np.testing.assert_allclose(degradation_taps("hann", 2).numpy(), [0, 0.25, 0.5, 0.25, 0], atol=1e-15)
    # Hamming length 5: 0.54 - 0.46 cos(2 pi n / 4) = [0.08, 0.54, 1, 0.54, 0.08], sum 2.24
    np.testing.assert_allclose(
        degradation_taps("hamming", 2).numpy(), np.array([0.08, 0.54, 1.0, 0.54, 0.08]) / 2.24, atol=1e-15
    )
    # Hann length 9 (scale 4): sin^2(pi n / 8) = [0, .1464, .5, .8536, 1, ...], sum 4
    half = np.sin(np.pi * np.arange(9) / 8) ** 2
    np.testing.assert_allclose(degradation_taps("hann", 4).numpy(), half / 4.0, atol=1e-15)
    np.testing.assert_allclose(degradation_taps("mean", 2).numpy(), [1 / 3] * 3, atol=1e-15)
    gauss = np.exp(-(np.arange(-4, 5) ** 2) / 2.0)  # sigma = s / 2 = 1, truncated at 4 sigma
    np.testing.assert_allclose(degradation_taps("gaussian", 2).numpy(), gauss / gauss.sum(), atol=1e-12)
    for kind in ("gaussian", "mean", "hann", "hamming"):
        assert degradation_taps(kind, 3).sum().item() == pytest.approx(1.0)


def test_classic_kinds_differ_pairwise():
    img = _random_image((1, 48, 48), seed=7)
    outs = {kind: Degrade(kind, 2)(img) for kind in CLASSIC_DEGRADATION_KINDS}
    for a, b in itertools.combinations(CLASSIC_DEGRADATION_KINDS, 2):
        assert (outs[a] - outs[b]).abs().mean().item() > 5e-3, (a, b)


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("spatial", [(24, 36), (12, 24, 36)])
def test_kspace_truncation_of_band_limited_image_is_exact(scale, spatial):
    rng = np.random.default_rng(scale)
    grids = np.meshgrid(*[np.arange(n) for n in spatial], indexing="ij")
    img = np.full(spatial, 0.3)
    for _ in range(6):  # frequencies strictly inside the kept band |f| < (n // s) / 2
        freqs = [rng.integers(-((n // scale - 1) // 2), (n // scale - 1) // 2 + 1) for n in spatial]
        phase = sum(f * g / n for f, g, n in zip(freqs, grids, spatial))
        img += rng.normal() * np.cos(2 * np.pi * phase + rng.uniform(0, 2 * np.pi))
    out = Degrade("kspace_truncation", scale)(torch.from_numpy(img)[None])
    np.testing.assert_allclose(out[0].numpy(), img[(slice(scale // 2, None, scale),) * len(spatial)], atol=1e-10)
    # with every line kept, partial Fourier and undersampling reduce to the magnitude of the truncation
    positive = torch.from_numpy(img - img.min() + 1.0)[None]
    truncated = Degrade("kspace_truncation", scale)(positive)
    np.testing.assert_allclose(Degrade("partial_fourier", scale, partial_fourier_fraction=1.0)(positive), truncated)
    np.testing.assert_allclose(Degrade("undersample", scale, acceleration=1)(positive), truncated)


def test_kspace_kinds_add_their_artefacts():
    img = _random_image((1, 64, 64), seed=3)
    truncated = Degrade("kspace_truncation", 2)(img)
    for kind in ("partial_fourier", "undersample"):
        assert (Degrade(kind, 2)(img) - truncated.abs()).abs().mean().item() > 1e-2, kind


@pytest.mark.parametrize(
    "kind,scale",
    [("bicubic", 2), ("bicubic", 3), ("gaussian", 2), ("mean", 2), ("mean", 3), ("hann", 4), ("hamming", 3)],
)
def test_affine_marks_where_each_output_voxel_is_centred(kind, scale):
    """Linear filters keep a linear ramp, so interior output values equal their world coordinate."""
    affine = torch.tensor([[0.0, 1.5, 0.0, 10.0], [-2.0, 0.0, 0.0, -4.0], [0.0, 0.0, 0.8, 2.0], [0.0, 0.0, 0.0, 1.0]])
    spatial = (40, 37, 33)
    grids = torch.meshgrid(*[torch.arange(n, dtype=torch.float64) for n in spatial], indexing="ij")
    world = torch.einsum("ij,j...->i...", affine[:3, :3].double(), torch.stack(grids)) + affine[:3, 3, None, None, None]
    img = MetaTensor(world[1:2], affine=affine)  # intensity = world y coordinate
    out = Degrade(kind, scale)(img)
    assert isinstance(out, MetaTensor)
    np.testing.assert_allclose(out.pixdim.numpy(), img.pixdim.numpy() * scale, rtol=1e-6)
    out_grids = torch.meshgrid(*[torch.arange(n, dtype=torch.float64) for n in out.shape[1:]], indexing="ij")
    out_world = torch.einsum("j,j...->...", out.affine[1, :3].double(), torch.stack(out_grids)) + out.affine[1, 3]
    interior = (slice(3, -3),) * 3
    np.testing.assert_allclose(out[0][interior].numpy(), out_world[interior].numpy(), atol=1e-4)


def test_numpy_in_numpy_out_and_dict_transform():
    img = np.random.default_rng(0).random((1, 20, 20)).astype(np.float32)
    out = Degrade("hann", 2)(img)
    assert isinstance(out, np.ndarray) and out.shape == (1, 10, 10)
    data = Degraded(["image", "other"], "hann", 2)({"image": img, "other": img, "label": 1})
    np.testing.assert_array_equal(data["image"], out)
    np.testing.assert_array_equal(data["other"], out)
    assert data["label"] == 1


def test_bad_input_is_rejected_with_clear_errors():
    with pytest.raises(ValueError, match="unknown degradation kind 'nearest'"):
        Degrade("nearest")
    with pytest.raises(ValueError, match="positive integer"):
        Degrade("mean", scale=1.5)
    with pytest.raises(ValueError, match="2 or 3 spatial dims"):
        Degrade("mean")(torch.zeros(1, 16))
    with pytest.raises(ValueError, match="at least scale"):
        Degrade("mean", 4)(torch.zeros(1, 16, 3))


def test_rand_degrade_is_reproducible_and_draws_several_kinds():
    img = _random_image((1, 24, 24))
    first = RandDegrade(scale=2).set_random_state(seed=5)
    second = RandDegrade(scale=2).set_random_state(seed=5)
    kinds = []
    for _ in range(20):
        a, b = first(img), second(img)
        assert first.kind == second.kind
        torch.testing.assert_close(a, b)
        torch.testing.assert_close(a, Degrade(first.kind, 2)(img))
        kinds.append(first.kind)
    assert len(set(kinds)) >= 4
    assert set(kinds) <= set(CLASSIC_DEGRADATION_KINDS)


def test_rand_degraded_records_kind_and_adds_reproducible_rician_noise():
    img = _random_image((1, 24, 24))
    transform = RandDegraded(["image", "copy"], kinds=("gaussian", "undersample"), rician_std=0.05)
    transform.set_random_state(seed=1)
    seen = set()
    for _ in range(8):
        out = transform({"image": img, "copy": img})
        seen.add(out["degradation"])
        clean = Degrade(out["degradation"], 2)(img)
        assert out["image"].shape == clean.shape
        assert 0.005 < (out["image"] - clean).abs().mean().item() < 0.2  # noisy, but the same degradation
        assert not torch.equal(out["image"], out["copy"])  # independent noise per key
    assert seen == {"gaussian", "undersample"}
    again = RandDegraded(["image", "copy"], kinds=("gaussian", "undersample"), rician_std=0.05)
    again.set_random_state(seed=1)
    transform.set_random_state(seed=1)
    a, b = transform({"image": img, "copy": img}), again({"image": img, "copy": img})
    torch.testing.assert_close(a["image"], b["image"])
    assert a["degradation"] == b["degradation"]


def test_small_images_use_repeated_mirroring_like_scipy():
    """Filters wider than the image still follow scipy's ``mirror`` boundary (reflection repeated)."""
    img = _random_image((1, 5, 9), seed=11).double()
    cropped = img[0, :4, :8].numpy()
    ref = ndi.gaussian_filter(cropped, sigma=2.0, mode="mirror", truncate=4.0)[2::4, 2::4]
    np.testing.assert_allclose(Degrade("gaussian", 4)(img)[0].numpy(), ref, atol=1e-6)
    ref = ndi.median_filter(cropped, size=5, mode="mirror")[2::4, 2::4]
    np.testing.assert_array_equal(Degrade("median", 4)(img)[0].numpy(), ref)


def test_2d_image_with_4x4_affine_scales_only_its_two_axes():
    affine = torch.diag(torch.tensor([0.5, 0.7, 3.0, 1.0]))
    affine[:3, 3] = torch.tensor([1.0, 2.0, 3.0])
    out = Degrade("hann", 2)(MetaTensor(torch.rand(1, 20, 16), affine=affine))
    expected = affine.clone()
    expected[0, 0], expected[1, 1] = 1.0, 1.4
    expected[:2, 3] += torch.tensor([0.5, 0.7])  # output voxel 0 sits at input voxel (1, 1)
    torch.testing.assert_close(out.affine, expected, check_dtype=False)
    assert tuple(out.shape) == (1, 10, 8)
    assert tuple(Degrade("bicubic", 2)(MetaTensor(torch.rand(1, 20, 16))).pixdim.tolist()) == (2.0, 2.0)

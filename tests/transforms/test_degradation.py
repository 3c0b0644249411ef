"""Tests of the SR degradations: sizes, references (scipy), taps, grid phase, k-space exactness, randomness."""

import itertools

import numpy as np
import pytest
import scipy.ndimage as ndi
import torch
from monai.data import MetaTensor

from common.transforms import DEGRADATION_KINDS, Degrade, Degraded, RandDegrade, RandDegraded
from common.transforms.degradation import CLASSIC_DEGRADATION_KINDS, KSPACE_DEGRADATION_KINDS, degradation_taps


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
    out = Degrade("median", scale, phase="legacy")(img)
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
        out = Degrade(kind, scale, phase="legacy")(img)[0].numpy()
        np.testing.assert_allclose(out, ref[keep], rtol=0, atol=1e-6, err_msg=kind)


def test_taps_by_hand():
    """Legacy taps (odd length, s // 2 phase) and centred taps (the same kernels at half-integer offsets)."""
    np.testing.assert_allclose(degradation_taps("hann", 2, "legacy").numpy(), [0, 0.25, 0.5, 0.25, 0], atol=1e-15)
    # Hamming length 5: 0.54 - 0.46 cos(2 pi n / 4) = [0.08, 0.54, 1, 0.54, 0.08], sum 2.24
    np.testing.assert_allclose(
        degradation_taps("hamming", 2, "legacy").numpy(), np.array([0.08, 0.54, 1.0, 0.54, 0.08]) / 2.24, atol=1e-15
    )
    # Hann length 9 (scale 4): sin^2(pi n / 8) = [0, .1464, .5, .8536, 1, ...], sum 4
    half = np.sin(np.pi * np.arange(9) / 8) ** 2
    np.testing.assert_allclose(degradation_taps("hann", 4, "legacy").numpy(), half / 4.0, atol=1e-15)
    np.testing.assert_allclose(degradation_taps("mean", 2, "legacy").numpy(), [1 / 3] * 3, atol=1e-15)
    gauss = np.exp(-(np.arange(-4, 5) ** 2) / 2.0)  # sigma = s / 2 = 1, truncated at 4 sigma
    np.testing.assert_allclose(degradation_taps("gaussian", 2, "legacy").numpy(), gauss / gauss.sum(), atol=1e-12)
    # centred, s = 2: Hann 0.5 + 0.5 cos(pi x / 2) at x = -1.5 .. 1.5 = [1 - c, 1 + c, 1 + c, 1 - c] / 2, c = cos(pi/4)
    c = np.cos(np.pi / 4)
    np.testing.assert_allclose(
        degradation_taps("hann", 2).numpy(), np.array([1 - c, 1 + c, 1 + c, 1 - c]) / 4, atol=1e-15
    )
    np.testing.assert_allclose(degradation_taps("mean", 2).numpy(), [1 / 6, 1 / 3, 1 / 3, 1 / 6], atol=1e-15)
    np.testing.assert_allclose(degradation_taps("mean", 3).numpy(), [1 / 8, 1 / 4, 1 / 4, 1 / 4, 1 / 8], atol=1e-15)
    gauss = np.exp(-(np.arange(-3.5, 4) ** 2) / 2.0)  # 8 taps at the half-integer offsets
    np.testing.assert_allclose(degradation_taps("gaussian", 2).numpy(), gauss / gauss.sum(), atol=1e-15)
    # odd s: the centred taps are the legacy Gaussian / Hann / Hamming taps (s // 2 is the block centre)
    for kind in ("gaussian", "hann", "hamming"):
        torch.testing.assert_close(degradation_taps(kind, 3), degradation_taps(kind, 3, "legacy"))
    for kind, phase in itertools.product(("gaussian", "mean", "hann", "hamming"), ("centred", "legacy")):
        taps = degradation_taps(kind, 4, phase)
        assert taps.dtype == torch.float64 and taps.sum().item() == pytest.approx(1.0, abs=1e-15)
        torch.testing.assert_close(taps, taps.flip(0))  # symmetric about the window centre


def test_classic_kinds_differ_pairwise():
    img = _random_image((1, 48, 48), seed=7)
    outs = {kind: Degrade(kind, 2)(img) for kind in CLASSIC_DEGRADATION_KINDS}
    for a, b in itertools.combinations(CLASSIC_DEGRADATION_KINDS, 2):
        assert (outs[a] - outs[b]).abs().mean().item() > 5e-3, (a, b)


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("spatial", [(24, 36), (12, 24, 36)])
@pytest.mark.parametrize("phase", ["centred", "legacy"])
def test_kspace_truncation_of_band_limited_image_is_exact(scale, spatial, phase):
    rng = np.random.default_rng(scale)
    grids = np.meshgrid(*[np.arange(n) for n in spatial], indexing="ij")
    shift = (scale - 1) / 2 if phase == "centred" else scale // 2
    out_grids = np.meshgrid(*[shift + scale * np.arange(n // scale) for n in spatial], indexing="ij")
    img, expected = np.full(spatial, 0.3), np.full([n // scale for n in spatial], 0.3)
    for _ in range(6):  # frequencies strictly inside the kept band |f| < (n // s) / 2
        freqs = [rng.integers(-((n // scale - 1) // 2), (n // scale - 1) // 2 + 1) for n in spatial]
        amplitude, offset = rng.normal(), rng.uniform(0, 2 * np.pi)
        for grid, target in ((grids, img), (out_grids, expected)):  # the cosines on the HR grid and at the LR centres
            target += amplitude * np.cos(2 * np.pi * sum(f * g / n for f, g, n in zip(freqs, grid, spatial)) + offset)
    out = Degrade("kspace_truncation", scale, phase=phase)(torch.from_numpy(img)[None])
    np.testing.assert_allclose(out[0].numpy(), expected, atol=1e-10)
    # with every line kept, partial Fourier and undersampling reduce to the magnitude of the truncation
    positive = torch.from_numpy(img - img.min() + 1.0)[None]
    truncated = Degrade("kspace_truncation", scale, phase=phase)(positive)
    full = Degrade("partial_fourier", scale, partial_fourier_fraction=1.0, phase=phase)(positive)
    np.testing.assert_allclose(full, truncated)
    np.testing.assert_allclose(Degrade("undersample", scale, acceleration=1, phase=phase)(positive), truncated)


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
    np.testing.assert_allclose(Degrade("gaussian", 4, phase="legacy")(img)[0].numpy(), ref, atol=1e-6)
    ref = ndi.median_filter(cropped, size=5, mode="mirror")[2::4, 2::4]
    np.testing.assert_array_equal(Degrade("median", 4, phase="legacy")(img)[0].numpy(), ref)
    # centred: the window of s + 2 = 6 around the block centre 1.5, i.e. voxels -1 .. 4, mirrored in the 4 x 8 crop
    window = cropped[np.ix_([1, 0, 1, 2, 3, 2], [1, 0, 1, 2, 3, 4])]
    np.testing.assert_allclose(Degrade("median", 4)(img)[0, 0, 0].item(), np.median(window), atol=1e-12)


def test_2d_image_with_4x4_affine_scales_only_its_two_axes():
    affine = torch.diag(torch.tensor([0.5, 0.7, 3.0, 1.0]))
    affine[:3, 3] = torch.tensor([1.0, 2.0, 3.0])
    out = Degrade("hann", 2, phase="legacy")(MetaTensor(torch.rand(1, 20, 16), affine=affine))
    expected = affine.clone()
    expected[0, 0], expected[1, 1] = 1.0, 1.4
    expected[:2, 3] += torch.tensor([0.5, 0.7])  # output voxel 0 sits at input voxel (1, 1)
    torch.testing.assert_close(out.affine, expected, check_dtype=False)
    centred = Degrade("hann", 2)(MetaTensor(torch.rand(1, 20, 16), affine=affine))
    expected[:2, 3] -= torch.tensor([0.25, 0.35])  # centred: input voxel (0.5, 0.5)
    torch.testing.assert_close(centred.affine, expected, check_dtype=False)
    assert tuple(out.shape) == (1, 10, 8)
    assert tuple(Degrade("bicubic", 2)(MetaTensor(torch.rand(1, 20, 16))).pixdim.tolist()) == (2.0, 2.0)


def _centre_probe(kind, spatial):
    """A probe whose degraded value at output voxel k reads back the input coordinate where k is centred.

    Filter kinds and bicubic: the ramp y (a symmetric window about c returns c in the interior). K-space kinds: a
    band-limited cosine along y, constant along x (the phase-encoding axis, so the line masks keep all of it):
    truncation returns the cosine at c, whose phase gives c.
    """
    y = np.arange(spatial[0], dtype=np.float64)[:, None] * np.ones(spatial[1])
    if kind in KSPACE_DEGRADATION_KINDS:
        return 3.0 + np.cos(2 * np.pi * 2 * y / spatial[0] + 0.3)
    return y


@pytest.mark.parametrize("kind", DEGRADATION_KINDS)
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_every_kind_samples_at_the_block_centres_and_its_affine_says_so(kind, scale):
    """Centred phase: LR voxel k is the HR block centre (s - 1) / 2 + k s, for every kind, and the affine maps it
    there. Legacy phase: the filter and k-space kinds sit at s // 2 + k s (half a voxel later when s is even)."""
    spatial = (12 * scale, 10 * scale)
    probe = _centre_probe(kind, spatial)
    affine = torch.tensor([[0.7, 0.0, 5.0], [0.0, 1.3, -2.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    interior = slice(3, -3)
    kspace = kind in KSPACE_DEGRADATION_KINDS
    a = {"kspace_hann": 0.5, "kspace_hamming": 0.54}.get(kind, 1.0)
    gain = a + (1 - a) * np.cos(2 * np.pi * 2 / 12)  # the apodisation window at line 2 of the 12 kept lines
    for phase in ("centred", "legacy"):
        out = Degrade(kind, scale, phase=phase, phase_axis=1)(MetaTensor(torch.from_numpy(probe)[None], affine=affine))
        legacy_shift = (scale - 1) / 2 if kind == "bicubic" else scale // 2
        if kind in ("mean", "median") and scale % 2:
            legacy_shift = scale // 2 - 0.5  # even window (s + 1) centred half a voxel before s // 2
        shift = (scale - 1) / 2 if phase == "centred" else legacy_shift
        centres = shift + scale * np.arange(out.shape[1])
        expected = 3.0 + gain * np.cos(2 * np.pi * 2 * centres / spatial[0] + 0.3) if kspace else centres
        if kind == "median" and scale % 2 and phase == "legacy":
            expected = centres + 0.5  # the legacy upper median of an even window is not symmetric on a ramp
        got = out[0, :, out.shape[2] // 2].numpy()
        np.testing.assert_allclose(got[interior], expected[interior], atol=1e-9, err_msg=phase)
        # the affine: world y of output voxel (k, 0) = world y of input voxel (centre_k, 0)
        world_out = out.affine[0, 0].item() * np.arange(out.shape[1]) + out.affine[0, 2].item()
        np.testing.assert_allclose(world_out, 0.7 * centres + 5.0, atol=1e-12, err_msg=phase)
        assert out.affine[0, 0].item() == pytest.approx(0.7 * scale)


@pytest.mark.parametrize("kind", ["gaussian", "mean", "hann", "hamming"])
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_impulse_response_is_symmetric_about_the_block_centre(kind, scale):
    """An impulse at HR voxel j: LR voxel 2 (block centre c = (s - 1) / 2 + 2 s) sees weight taps(j - c); the weights
    at equal distances either side of c are equal (centred), and sum to 1 over the window."""
    n = 8 * scale
    c = (scale - 1) / 2 + 2 * scale
    weights = {}
    for j in range(n):
        img = torch.zeros(1, n, 1 * scale, dtype=torch.float64)
        img[0, j] = 1.0  # an impulse line along x: the response along y is the 1D filter
        weights[j] = Degrade(kind, scale)(img)[0, 2, 0].item()
    for j in range(n):
        mirror = int(2 * c - j)
        if 0 <= mirror < n:
            assert weights[j] == pytest.approx(weights[mirror], abs=1e-15), (j, mirror)
    assert sum(weights.values()) == pytest.approx(1.0, abs=1e-12)
    centroid = sum(j * w for j, w in weights.items())
    assert centroid == pytest.approx(c, abs=1e-12)
    legacy_degrade = Degrade(kind, scale, phase="legacy")
    impulses = torch.eye(n, dtype=torch.float64)[:, None, :, None].repeat(1, 1, 1, scale)  # (n, 1, n, s)
    legacy = {j: legacy_degrade(impulses[j])[0, 2, 0].item() for j in range(n)}
    legacy_centroid = sum(j * w for j, w in legacy.items())
    expected = scale // 2 + 2 * scale - (0.5 if kind == "mean" and scale % 2 else 0.0)
    assert legacy_centroid == pytest.approx(expected, abs=1e-12)


def test_apodised_kspace_kinds_ring_less_than_truncation():
    """A step edge: truncation overshoots (Gibbs; 1 % of the step at the LR sample positions), the Hann / Hamming
    windows a tenth of that or less, and the result stays symmetric about the step's mid-level."""
    step = torch.zeros(1, 128, 8, dtype=torch.float64)
    step[0, 32:96] = 1.0
    overshoot = {
        k: Degrade(k, 2)(step).max().item() - 1.0 for k in ("kspace_truncation", "kspace_hann", "kspace_hamming")
    }
    assert overshoot["kspace_truncation"] > 0.005
    assert 0 < overshoot["kspace_hann"] < overshoot["kspace_truncation"] / 5
    assert 0 < overshoot["kspace_hamming"] < overshoot["kspace_truncation"] / 5

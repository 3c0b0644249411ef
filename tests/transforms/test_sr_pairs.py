"""SR pair transforms: per-item degradation kind, aligned HR/LR patch crops, the affine of an up-sampled output."""

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import CopyItemsd, Resize

from common.transforms import (
    DEGRADATION_KINDS,
    Degrade,
    DegradeByKeyd,
    RandAlignedCropSamplesd,
    UpsampledAffine,
    UpsampledAffined,
)
from common.transforms.degradation import CLASSIC_DEGRADATION_KINDS


@pytest.mark.parametrize("kind", DEGRADATION_KINDS)
def test_degrade_by_key_matches_degrade(kind):
    img = torch.rand(1, 16, 12)
    out = DegradeByKeyd("image", scale=2)({"image": img, "degradation": kind})
    torch.testing.assert_close(out["image"], Degrade(kind, 2)(img))
    assert out["degradation"] == kind


def test_degrade_by_key_on_a_nifti_slice_keeps_world_positions():
    """A 2D slice read from NIfTI has a 4x4 affine: pixdim doubles in-plane, the slice position is kept."""
    affine = torch.tensor([[1.0, 0, 0, -77], [0, 1.0, 0, -112], [0, 0, 1.0, -36], [0, 0, 0, 1]], dtype=torch.float64)
    img = MetaTensor(torch.rand(1, 16, 12), affine=affine)
    out = DegradeByKeyd("image", scale=2)({"image": img, "degradation": "gaussian"})["image"]
    assert out.shape == (1, 8, 6)
    expected = affine.clone()
    expected[0, 0] = expected[1, 1] = 2.0
    expected[:2, 3] += 0.5  # output voxel 0 is centred on the first 2 x 2 block, input voxel (0.5, 0.5)
    torch.testing.assert_close(out.affine, expected)
    legacy = DegradeByKeyd("image", scale=2, phase="legacy")({"image": img, "degradation": "gaussian"})["image"]
    torch.testing.assert_close(legacy.affine[:2, 3], expected[:2, 3] + 0.5)  # legacy: input voxel s // 2 = 1


def test_degrade_by_key_reads_the_phase_from_the_kind_name():
    img = torch.rand(1, 16, 12)
    legacy = DegradeByKeyd("image", scale=2)({"image": img, "degradation": "hann@legacy"})
    torch.testing.assert_close(legacy["image"], Degrade("hann", 2, phase="legacy")(img))
    assert not torch.allclose(legacy["image"], Degrade("hann", 2)(img))
    centred = DegradeByKeyd("image", scale=2, phase="legacy")({"image": img, "degradation": "hann@centred"})
    torch.testing.assert_close(centred["image"], Degrade("hann", 2)(img))
    with pytest.raises(ValueError, match=r"^DegradeByKeyd: unknown sampling phase 'corner'"):
        DegradeByKeyd("image", scale=2)({"image": img, "degradation": "hann@corner"})


def test_degrade_by_key_errors_name_the_problem():
    with pytest.raises(KeyError, match="degradation"):
        DegradeByKeyd("image")({"image": torch.rand(1, 8, 8)})
    with pytest.raises(ValueError, match="lanczos"):
        DegradeByKeyd("image")({"image": torch.rand(1, 8, 8), "degradation": "lanczos"})


@pytest.mark.parametrize("shape", [(1, 10, 7), (1, 6, 5, 4)])
def test_upsampled_affine_matches_monai_resize(shape):
    """The affine equals the one MONAI ``Resize`` gives the same up-sampling (align_corners=False)."""
    rng = np.random.default_rng(0)
    affine = torch.eye(4, dtype=torch.float64)
    affine[:3, :3] = torch.as_tensor(np.diag([1.5, 2.0, 3.0]) + 0.1 * rng.random((3, 3)))
    affine[:3, 3] = torch.tensor([-40.0, 12.0, 5.0])
    lr = MetaTensor(torch.rand(*shape), affine=affine)
    fine = [2 * n for n in shape[1:]]
    reference = Resize(spatial_size=fine, mode="bilinear" if len(fine) == 2 else "trilinear")(lr)
    out = UpsampledAffine()(torch.rand(1, *fine), lr)
    torch.testing.assert_close(out.affine, reference.affine)
    assert out.shape == (1, *fine)


def test_upsampled_affine_keeps_the_slice_axis_of_a_volume():
    lr = MetaTensor(torch.rand(1, 6, 5, 4), affine=torch.diag(torch.tensor([2.0, 2.0, 3.0, 1.0], dtype=torch.float64)))
    out = UpsampledAffined("pred", ref_key="image")({"image": lr, "pred": torch.rand(1, 12, 10, 4)})["pred"]
    torch.testing.assert_close(out.pixdim, torch.tensor([1.0, 1.0, 3.0], dtype=torch.float64))
    torch.testing.assert_close(out.affine[:3, 3], torch.tensor([-0.5, -0.5, 0.0], dtype=torch.float64))


def _slice_and_degraded(kind, scale, shape=(1, 75, 61), seed=0):
    """A random HR slice (float64, sizes not multiples of ``scale``) and its whole-slice degradation."""
    hr = torch.from_numpy(np.random.default_rng(seed).random(shape))
    return {"label": hr, "image": Degrade(kind, scale)(hr), "degradation": kind}


@pytest.mark.parametrize("shape, roi", [((1, 40, 30), 12), ((2, 20, 18, 16), (8, 6, 4))])
def test_aligned_crops_have_patch_shapes_and_keep_other_keys(shape, roi):
    item = {"label": torch.rand(*shape), "degradation": "mean"}
    item["image"] = Degrade("mean", 2)(item["label"])
    out = RandAlignedCropSamplesd("label", "image", roi_size=roi, scale=2, num_samples=5)(item)
    hr_patch = (roi,) * (len(shape) - 1) if isinstance(roi, int) else roi
    assert len(out) == 5
    for sample in out:
        assert sample["label"].shape == (shape[0], *hr_patch)
        assert sample["image"].shape == (shape[0], *(p // 2 for p in hr_patch))
        assert sample["degradation"] == "mean"


@pytest.mark.parametrize("kind", CLASSIC_DEGRADATION_KINDS)
@pytest.mark.parametrize("scale", [2, 4])
def test_lr_crop_is_the_degraded_hr_crop_away_from_patch_edges(kind, scale):
    """Degrading the HR patch alone gives the LR patch except within the filters' reach of the patch edges.

    (The k-space kinds filter the whole field of view, so they have no patch-local equivalent.)
    """
    item = _slice_and_degraded(kind, scale)
    edge = 3  # LR pixels; the widest kernels (gaussian, bicubic) reach 2 LR pixels
    for sample in RandAlignedCropSamplesd("label", "image", 12 * scale, scale, num_samples=20)(item):
        alone = Degrade(kind, scale)(sample["label"])
        torch.testing.assert_close(alone[:, edge:-edge, edge:-edge], sample["image"][:, edge:-edge, edge:-edge])


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_lr_pixels_of_a_ramp_sit_on_the_hr_patch_grid(scale):
    """On a ramp ``100 * row + column`` (kept by the symmetric Gaussian away from the slice borders) LR pixel k
    of a patch equals the ramp at the centre of HR block k of the HR patch (the block mean), and every HR patch
    starts at a multiple of s."""
    rows, cols = 90, 70
    yy, xx = torch.meshgrid(
        torch.arange(rows, dtype=torch.float64), torch.arange(cols, dtype=torch.float64), indexing="ij"
    )
    hr = (100.0 * yy + xx)[None]
    lr = Degrade("gaussian", scale)(hr)
    reach = 2 * scale  # HR pixels: the Gaussian's support, 4 sigma = 2 s
    for sample in RandAlignedCropSamplesd("label", "image", 6 * scale, scale, num_samples=30)(
        {"label": hr, "image": lr}
    ):
        hr_patch, lr_patch = sample["label"][0], sample["image"][0]
        top, left = divmod(round(float(hr_patch[0, 0])), 100)
        assert top % scale == 0 and left % scale == 0
        kept = torch.nn.functional.avg_pool2d(hr_patch[None, None], scale)[0, 0]
        first = (scale - 1) / 2
        centre_y, centre_x = top + first + scale * torch.arange(6), left + first + scale * torch.arange(6)
        inside = ((centre_y >= reach) & (centre_y < rows // scale * scale - reach))[:, None] & (
            (centre_x >= reach) & (centre_x < cols // scale * scale - reach)
        )[None]
        torch.testing.assert_close(lr_patch[inside], kept[inside], rtol=0, atol=0.01)  # a pixel off: >= 1


def test_aligned_crops_are_reproducible_under_a_seed():
    item = _slice_and_degraded("hann", 2)

    def crops(seed):
        out = RandAlignedCropSamplesd("label", "image", 16, 2, num_samples=6).set_random_state(seed)(item)
        return torch.stack([s["label"] for s in out]), torch.stack([s["image"] for s in out])

    first, again, other = crops(3), crops(3), crops(4)
    torch.testing.assert_close(first, again, rtol=0, atol=0)
    assert not torch.equal(first[0], other[0])


def test_cache_holds_degraded_slices_and_reseeding_repeats_the_crops():
    """In a ``CacheDataset`` the degradation runs once per slice; ``set_rnd`` (as ``EpochReseed``) and
    ``set_determinism`` (before the transforms are built, as in the bundle) fix the crops."""
    from monai.data import CacheDataset
    from monai.data.utils import set_rnd
    from monai.transforms import Compose
    from monai.utils import set_determinism

    data = [{"image": torch.rand(1, 40, 36), "degradation": k} for k in ("gaussian", "median")]

    def dataset():
        transform = Compose(
            [
                CopyItemsd("image", names="label"),
                DegradeByKeyd("image", scale=2),
                RandAlignedCropSamplesd("label", "image", 16, 2, num_samples=3),
            ]
        )
        return CacheDataset(data, transform, cache_rate=1.0, progress=False)

    def epoch(ds):
        return [torch.stack([s[k] for i in range(len(ds)) for s in ds[i]]) for k in ("label", "image")]

    ds = dataset()
    for cached, raw in zip(ds._cache, data):
        assert cached["label"].shape == (1, 40, 36) and cached["image"].shape == (1, 20, 18)
        torch.testing.assert_close(cached["image"], Degrade(raw["degradation"], 2)(raw["image"]))
    set_rnd(ds, 11)
    first = epoch(ds)
    set_rnd(ds, 11)
    for a, b in zip(first, epoch(ds)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    try:
        set_determinism(5)
        built_first = epoch(dataset())
        set_determinism(5)
        for a, b in zip(built_first, epoch(dataset())):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    finally:
        set_determinism(None)


def test_aligned_crop_errors_name_the_problem():
    with pytest.raises(ValueError, match="multiples of 2"):
        RandAlignedCropSamplesd("label", "image", 15, 2)
    crop = RandAlignedCropSamplesd("label", "image", 16, 2)
    with pytest.raises(ValueError, match="x2 pair"):
        crop({"label": torch.rand(1, 20, 20), "image": torch.rand(1, 9, 10)})
    with pytest.raises(ValueError, match="x2 pair"):
        crop({"label": torch.rand(1, 14, 20), "image": torch.rand(1, 7, 10)})


def test_aligned_crop_of_metatensors_moves_the_affine():
    hr = MetaTensor(torch.rand(1, 32, 32), affine=torch.diag(torch.tensor([1.0, 1.0, 1.0, 1.0], dtype=torch.float64)))
    lr = Degrade("gaussian", 2)(hr)
    sample = RandAlignedCropSamplesd("label", "image", 8, 2).set_random_state(0)({"label": hr, "image": lr})[0]
    top_left_hr = sample["label"].affine[:2, 3]
    torch.testing.assert_close(sample["image"].affine[:2, 3], top_left_hr + 0.5)  # LR voxel 0: HR voxel (s - 1) / 2
    torch.testing.assert_close(sample["image"].pixdim[:2], torch.tensor([2.0, 2.0], dtype=torch.float64))

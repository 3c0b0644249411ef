"""UpsampledAffine(d) and SpacingWithPathsd contracts found by mutation testing (tests/MUTANTS.md)."""

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from common.transforms import SpacingWithPathsd, UpsampledAffine, UpsampledAffined


def _lr(dtype=torch.float64):
    return MetaTensor(torch.rand(1, 6, 5), affine=torch.diag(torch.tensor([2.0, 3.0, 1.0], dtype=dtype)))


def test_upsampled_affine_records_the_fine_shape():
    lr = _lr(torch.float32)  # MetaTensor stores it as float64
    out = UpsampledAffine()(torch.rand(1, 12, 10), lr)
    assert out.affine.dtype == torch.float64
    torch.testing.assert_close(
        out.affine, torch.tensor([[1.0, 0, -0.5], [0, 1.5, -0.75], [0, 0, 1]], dtype=torch.float64)
    )
    assert out.meta["spatial_shape"].tolist() == [12, 10]
    assert lr.affine[0, 0].item() == 2.0  # the reference is left as it was


def test_upsampled_affine_messages():
    with pytest.raises(TypeError, match=r"^UpsampledAffine: the reference image must be a MetaTensor, got Tensor$"):
        UpsampledAffine()(torch.rand(1, 12, 10), torch.rand(1, 6, 5))
    with pytest.raises(
        ValueError, match=r"^UpsampledAffine: spatial ranks differ, reference \(6, 5\) vs image \(12,\)$"
    ):
        UpsampledAffine()(torch.rand(1, 12), _lr())


def test_upsampled_affined_defaults_to_the_image_key_and_checks_missing_keys():
    out = UpsampledAffined("pred")({"image": _lr(), "pred": torch.rand(1, 12, 10)})
    torch.testing.assert_close(out["pred"].pixdim, torch.tensor([1.0, 1.5], dtype=torch.float64))
    with pytest.raises(KeyError):
        UpsampledAffined("pred")({"image": _lr()})
    assert "pred" not in UpsampledAffined("pred", allow_missing_keys=True)({"image": _lr()})


def test_spacing_with_paths_passes_lazy_on():
    img = MetaTensor(torch.rand(1, 8, 8, 4), affine=torch.eye(4, dtype=torch.float64))
    xform = SpacingWithPathsd("image", pixdim=(2.0, 2.0, 2.0))
    lazy = xform({"image": img, "image_path": "x.nii.gz"}, lazy=True)
    assert lazy["image"].has_pending_operations and lazy["image_path"] == "x.nii.gz"
    eager = xform({"image": img, "image_path": "x.nii.gz"})
    assert not eager["image"].has_pending_operations and eager["image"].shape == (1, 4, 4, 2)


def test_degrade_by_key_arguments():
    from common.transforms import Degrade, DegradeByKeyd

    img = torch.rand(1, 24, 18)
    assert DegradeByKeyd("image")({"image": img, "degradation": "mean"})["image"].shape == (1, 12, 9)
    out = DegradeByKeyd("image", scale=3, partial_fourier_fraction=0.75)(
        {"image": img, "degradation": "partial_fourier"}
    )
    torch.testing.assert_close(out["image"], Degrade("partial_fourier", 3, partial_fourier_fraction=0.75)(img))
    with pytest.raises(KeyError):
        DegradeByKeyd("image")({"degradation": "mean"})
    assert "image" not in DegradeByKeyd("image", allow_missing_keys=True)({"degradation": "mean"})


def _pair(n=8, s=2):
    return {"hr": torch.arange(float(n * n)).reshape(1, n, n), "lr": torch.zeros(1, n // s, n // s)}


def test_aligned_crop_defaults_and_whole_image_patch():
    from common.transforms import RandAlignedCropSamplesd

    t = RandAlignedCropSamplesd("hr", "lr", roi_size=4)
    assert t.scale == 2 and t.num_samples == 1 and t.lr_starts == []
    out = t(_pair())
    assert len(out) == 1 and out[0]["hr"].shape == (1, 4, 4) and out[0]["lr"].shape == (1, 2, 2)
    whole = RandAlignedCropSamplesd("hr", "lr", roi_size=8)(_pair())[0]  # the patch may be the whole image
    torch.testing.assert_close(whole["hr"], _pair()["hr"])
    unit = RandAlignedCropSamplesd("hr", "lr", roi_size=1, scale=1)(
        {"hr": torch.rand(1, 3, 3), "lr": torch.rand(1, 3, 3)}
    )
    assert unit[0]["hr"].shape == (1, 1, 1)


def test_aligned_crop_draws_every_start_position():
    from common.transforms import RandAlignedCropSamplesd

    t = RandAlignedCropSamplesd("hr", "lr", roi_size=4, num_samples=200).set_random_state(0)
    t(_pair(n=10))  # LR 5 x 5, LR patch 2 x 2: starts 0 .. 3 on each axis
    starts = np.array(t.lr_starts)
    assert set(starts[:, 0]) == set(starts[:, 1]) == {0, 1, 2, 3}


def test_aligned_crop_argument_checks_and_messages():
    from common.transforms import RandAlignedCropSamplesd

    for bad in (0, 1.5, -2):
        with pytest.raises(
            ValueError, match=rf"^RandAlignedCropSamplesd: scale must be a positive integer, got {bad}$"
        ):
            RandAlignedCropSamplesd("hr", "lr", roi_size=4, scale=bad)
    with pytest.raises(ValueError, match=r"^RandAlignedCropSamplesd: num_samples must be >= 1, got 0$"):
        RandAlignedCropSamplesd("hr", "lr", roi_size=4, num_samples=0)
    item = {"hr": torch.rand(1, 8, 8), "hr2": torch.rand(1, 10, 10), "lr": torch.rand(1, 4, 4)}
    with pytest.raises(
        ValueError, match=r"got HR \[\(8, 8\), \(10, 10\)\], LR \[\(4, 4\)\] \(keys \('hr', 'hr2'\), \('lr',\)\)$"
    ):
        RandAlignedCropSamplesd(["hr", "hr2"], "lr", roi_size=4)(item)
    with pytest.raises(KeyError):
        RandAlignedCropSamplesd("hr", "lr", roi_size=4)({"hr": torch.rand(1, 8, 8)})
    partial = RandAlignedCropSamplesd(["hr", "hr2"], "lr", roi_size=4, allow_missing_keys=True)(_pair())
    assert partial[0]["hr"].shape == (1, 4, 4) and "hr2" not in partial[0]

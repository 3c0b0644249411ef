"""UpsampledAffine(d) and SpacingWithPathsd contracts found by mutation testing (tests/MUTANTS.md)."""

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

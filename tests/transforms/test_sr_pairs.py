"""SR pair transforms: per-item degradation kind, and the affine of an up-sampled output."""

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Resize

from common.transforms import DEGRADATION_KINDS, Degrade, DegradeByKeyd, UpsampledAffine, UpsampledAffined


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
    expected[:2, 3] += 1.0  # output voxel 0 is centred on input voxel 1 (s // 2) for the filter kinds
    torch.testing.assert_close(out.affine, expected)


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

"""SimulateLowResolution: mode pooling, ties, affine convention, FWHM blur, shapes."""

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from scipy import ndimage

from common.transforms import SimulateLowResolution, SimulateLowResolutiond
from common.transforms.acquisition import FWHM_TO_SIGMA, fwhm_sigma_voxels


def _mt(array, spacing, origin=None):
    ndim = array.ndim - 1
    affine = np.eye(ndim + 1)
    affine[:ndim, :ndim] = np.diag(spacing)
    if origin is not None:
        affine[:ndim, ndim] = origin
    return MetaTensor(torch.as_tensor(array), affine=torch.as_tensor(affine))


def test_block_mode_hand_case():
    lab = np.array([[0, 0, 1, 2], [0, 1, 2, 2], [3, 3, 1, 1], [3, 0, 0, 1]])[None]
    out = SimulateLowResolution(2.0, is_label=True)(_mt(lab, [1.0, 1.0]))
    np.testing.assert_array_equal(out[0].numpy(), [[0, 2], [3, 1]])
    assert out.dtype == torch.as_tensor(lab).dtype


def test_tie_equidistant_goes_to_smallest_label():
    # integer factor: all four voxels are equally far from the output centre -> smallest tied label
    lab = np.array([[2, 1], [1, 2]])[None]
    assert SimulateLowResolution(2.0, is_label=True)(_mt(lab, [1.0, 1.0])).item() == 1
    lab = np.array([[3, 2], [3, 2]])[None]
    assert SimulateLowResolution(2.0, is_label=True)(_mt(lab, [1.0, 1.0])).item() == 2


def test_tie_goes_to_label_closest_to_centre_for_non_integer_factor():
    # 3 voxels of 2 mm -> 2 voxels of 3 mm: centres at 1/3, 1, 5/3 output voxels -> cells 0, 1, 1.
    # Cell 1 (centre 1.5) holds voxel 1 (distance 0.5) and voxel 2 (distance 1/6): the tie 1 vs 2 goes to voxel 2.
    lab = np.array([[0], [1], [2]])[None]
    out = SimulateLowResolution([3.0, 2.0], is_label=True)(_mt(lab, [2.0, 2.0]))
    np.testing.assert_array_equal(out[0, :, 0].numpy(), [0, 2])
    # a real majority still wins over closeness
    lab = np.array([[0], [1], [1], [2], [2], [2]])[None]  # cells 0,1,1,2,3,3
    out = SimulateLowResolution([3.0, 2.0], is_label=True)(_mt(lab, [2.0, 2.0]))
    np.testing.assert_array_equal(out[0, :, 0].numpy(), [0, 1, 2, 2])


def test_affine_pixdim_same_fov_corner():
    img = _mt(np.zeros((1, 6, 5, 4), np.float32), [2.0, 2.0, 2.0], origin=[10.0, 20.0, 30.0])
    out = SimulateLowResolution(3.0)(img)
    assert tuple(out.shape) == (1, 4, 4, 3)  # ceil(12/3), ceil(10/3), ceil(8/3)
    np.testing.assert_allclose(out.pixdim.numpy(), [3.0, 3.0, 3.0])
    expected = np.diag([3.0, 3.0, 3.0, 1.0])
    expected[:3, 3] = [10.5, 20.5, 30.5]  # corner 10 - 1 = 9 = 10.5 - 1.5
    np.testing.assert_allclose(out.affine.numpy(), expected)


def test_loaded_nifti_round_trip(tmp_path):
    import nibabel as nib
    from monai.transforms import LoadImage

    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = [-40.0, 10.0, 5.0]
    nib.save(nib.Nifti1Image(np.ones((9, 6, 3), np.float32), affine), tmp_path / "img.nii.gz")
    out = SimulateLowResolution(3.0)(LoadImage(ensure_channel_first=True)(tmp_path / "img.nii.gz"))
    assert tuple(out.shape) == (1, 6, 4, 2)
    np.testing.assert_allclose(out.meta["pixdim"][1:4], [3.0, 3.0, 3.0])
    np.testing.assert_array_equal(out.meta["dim"][1:4], [6, 4, 2])
    np.testing.assert_allclose(out.affine.numpy()[:3, 3], [-39.5, 10.5, 5.5])


def test_affine_keeps_direction_cosines():
    rot = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    affine = np.eye(4)
    affine[:3, :3] = rot * 1.5
    img = MetaTensor(torch.zeros(1, 8, 8, 8), affine=torch.as_tensor(affine))
    out = SimulateLowResolution(3.0)(img)
    np.testing.assert_allclose(out.affine.numpy()[:3, :3], rot * 3.0)
    # the world position of the shared corner is unchanged
    corner_in = affine @ np.array([-0.5, -0.5, -0.5, 1.0])
    corner_out = out.affine.numpy() @ np.array([-0.5, -0.5, -0.5, 1.0])
    np.testing.assert_allclose(corner_out, corner_in)


def test_fwhm_sigma_value():
    assert FWHM_TO_SIGMA == pytest.approx(1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0))))
    assert FWHM_TO_SIGMA == pytest.approx(0.4247, abs=1e-4)
    np.testing.assert_allclose(fwhm_sigma_voxels([1.0, 1.0, 2.0], [2.0, 1.0, 1.0]), [2 * 0.42466, 0.0, 0.0], rtol=1e-4)
    np.testing.assert_allclose(fwhm_sigma_voxels([2.0, 2.0], [3.0, 3.0]), [0.637, 0.637], rtol=1e-3)


def test_image_blur_matches_scipy_reference():
    rng = np.random.default_rng(0)
    line = rng.random(16).astype(np.float32)
    img = np.repeat(line[:, None], 3, axis=1)[None]  # (1, 16, 3), constant along axis 1
    out = SimulateLowResolution([2.0, 1.0])(_mt(img, [1.0, 1.0]))
    blurred = ndimage.gaussian_filter1d(line, 2 * FWHM_TO_SIGMA, mode="nearest")
    centres = (np.arange(8) + 0.5) * 2 - 0.5
    expected = np.interp(centres, np.arange(16), blurred)
    np.testing.assert_allclose(out[0, :, 1].numpy(), expected, rtol=1e-5, atol=1e-6)


def test_mean_intensity_roughly_preserved():
    rng = np.random.default_rng(1)
    img = ndimage.gaussian_filter(rng.random((1, 36, 30, 24)), 2.0).astype(np.float32)
    out = SimulateLowResolution(3.0)(_mt(img, [2.0, 2.0, 2.0]))
    assert out.dtype == torch.float32
    assert float(out.mean()) == pytest.approx(float(img.mean()), rel=0.01)


@pytest.mark.parametrize(
    "shape, spacing, target, out_shape",
    [((1, 10, 8), [1.0, 1.0], 2.0, (1, 5, 4)), ((2, 9, 9, 6), [2.0, 2.0, 2.0], [3.0, 3.0, 4.0], (2, 6, 6, 3))],
)
def test_shapes_2d_3d(shape, spacing, target, out_shape):
    img = _mt(np.ones(shape, np.float32), spacing)
    out = SimulateLowResolution(target)(img)
    assert tuple(out.shape) == out_shape
    np.testing.assert_allclose(out.numpy(), 1.0, rtol=1e-6)  # a constant stays constant


def test_upsampling_label_takes_containing_voxel():
    lab = np.array([[1, 2], [3, 0]])[None]
    out = SimulateLowResolution(0.5, is_label=True)(_mt(lab, [1.0, 1.0]))
    np.testing.assert_array_equal(out[0].numpy(), np.kron(lab[0], np.ones((2, 2), int)))


def test_dictionary_version_and_errors():
    img = _mt(np.random.default_rng(2).random((1, 12, 12, 12)).astype(np.float32), [2.0, 2.0, 2.0])
    lab = _mt(np.random.default_rng(3).integers(0, 4, (1, 12, 12, 12)).astype(np.uint8), [2.0, 2.0, 2.0])
    d = SimulateLowResolutiond("image", 3.0, label_keys="label")({"image": img, "label": lab, "other": 1})
    assert d["image"].shape == d["label"].shape == (1, 8, 8, 8)
    assert d["label"].dtype == torch.uint8 and set(np.unique(d["label"].numpy())) <= {0, 1, 2, 3}
    np.testing.assert_allclose(d["image"].affine.numpy(), d["label"].affine.numpy())
    assert d["other"] == 1
    with pytest.raises(ValueError, match="2D or 3D"):
        SimulateLowResolution(2.0)(torch.zeros(1, 2, 2, 2, 2))
    with pytest.raises(ValueError, match="non-negative integers"):
        SimulateLowResolution(2.0, is_label=True)(_mt(np.full((1, 4, 4), 0.5), [1.0, 1.0]))

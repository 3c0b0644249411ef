"""SimulateLowResolution contracts found by mutation testing (tests/MUTANTS.md): inputs without metadata, 2D images
with 3D affines, spacing from the affine's columns, ties by closeness, the edge of an upsampled grid, arguments."""

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from common.transforms import SimulateLowResolution, SimulateLowResolutiond


def _mt(array, affine):
    return MetaTensor(torch.as_tensor(array), affine=torch.as_tensor(np.asarray(affine, dtype=np.float64)))


@pytest.mark.parametrize("kind", ["numpy", "tensor", "grad"])
def test_inputs_without_metadata_are_1mm_voxels_at_the_origin(kind):
    data = np.arange(16, dtype=np.float32).reshape(1, 4, 4)
    img = {"numpy": data, "tensor": torch.from_numpy(data), "grad": torch.from_numpy(data).requires_grad_()}[kind]
    out = SimulateLowResolution(2.0)(img)
    assert isinstance(out, MetaTensor) and out.shape == (1, 2, 2)
    np.testing.assert_allclose(out.affine.numpy(), [[2.0, 0.0, 0.5], [0.0, 2.0, 0.5], [0.0, 0.0, 1.0]])
    labels = SimulateLowResolution(2.0, is_label=True)(np.array([[[0, 0, 1, 1], [0, 2, 1, 1]]]))
    assert labels.tolist() == [[[0, 1]]]


def test_2d_image_with_a_3d_affine_keeps_the_leading_axes():
    affine = np.array([[2.0, 0, 0, 10.0], [0, 3.0, 0, 20.0], [0, 0, 5.0, 30.0], [0, 0, 0, 1]])
    img = _mt(np.ones((1, 6, 4), np.float32), affine)
    out = SimulateLowResolution(6.0)(img)
    assert out.shape == (1, 2, 2)  # 6 x 2 mm -> 2 x 6 mm; 4 x 3 mm -> 2 x 6 mm
    # new affine: A @ [diag(t / s), (t / s - 1) / 2] with t / s = (3, 2), from the 2D part of A
    np.testing.assert_allclose(out.affine.numpy(), [[6.0, 0, 12.0], [0, 6.0, 21.5], [0, 0, 1]])


def test_spacing_is_the_norm_of_the_affine_columns():
    # voxel axis 0 steps 2 mm along y, voxel axis 1 steps 3 mm along x: spacing (2, 3), not the row norms (3, 2)
    affine = np.array([[0.0, 3.0, 0.0], [2.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    out = SimulateLowResolution(6.0)(_mt(np.ones((1, 6, 4), np.float32), affine))
    assert out.shape == (1, 2, 2)
    np.testing.assert_allclose(out.affine.numpy()[:2, :2], [[0.0, 6.0], [6.0, 0.0]])


def test_tie_goes_to_the_label_closest_to_the_output_centre_not_the_smallest():
    # 6 voxels of 1 mm -> 2.5 mm: centres at 0.2, 0.6, 1.0, 1.4, 1.8, 2.2 output voxels. Cell 1 (centre 1.5) holds
    # voxels 2, 3, 4 with labels 3, 2, 1 (one each): voxel 3 is closest (0.1), so label 2 wins over the smaller 1.
    lab = np.array([0, 0, 3, 2, 1, 0])[None, :, None].repeat(2, axis=2)  # (1, 6, 2), constant along axis 1
    out = SimulateLowResolution([2.5, 1.0], is_label=True)(_mt(lab, np.eye(3)))
    assert out.shape == (1, 3, 2)
    assert out[0, :, 0].tolist() == [0, 2, 0] and out[0, :, 1].tolist() == [0, 2, 0]


def test_upsampled_grid_edge_takes_the_last_input_voxel():
    # 3 voxels of 1 mm -> 0.4 mm: 8 output voxels with centres at 0.2, 0.6, ..., 3.0 mm from the corner; each takes
    # the input voxel containing its centre, and the last one (3.0 mm, on the outer edge) the last input voxel
    lab = np.array([[1], [2], [3]])[None]
    out = SimulateLowResolution([0.4, 1.0], is_label=True)(_mt(lab, np.eye(3)))
    assert out[0, :, 0].tolist() == [1, 1, 2, 2, 2, 3, 3, 3]


def test_num_classes_and_label_checks():
    lab = np.array([[[0, 1], [2, 3]]])
    with pytest.raises(ValueError, match=r"^label value 3 >= num_classes=3$"):
        SimulateLowResolution(2.0, is_label=True, num_classes=3)(lab)
    assert SimulateLowResolution(2.0, is_label=True, num_classes=4)(lab).item() == 0
    with pytest.raises(ValueError, match=r"^label maps for SimulateLowResolution must hold non-negative integers$"):
        SimulateLowResolution(2.0, is_label=True)(-lab)


def test_target_spacing_checks():
    img = np.zeros((1, 4, 4), np.float32)
    for bad in (0.0, [2.0, 0.0], -1.0):
        with pytest.raises(ValueError, match=r"^target_spacing must be positive, got "):
            SimulateLowResolution(bad)(img)
    with pytest.raises(ValueError, match=r"^target_spacing \[2.0\, 2.0\] has fewer entries than 3 spatial axes$"):
        SimulateLowResolution([2.0, 2.0])(np.zeros((1, 4, 4, 4), np.float32))


def test_dictionary_version_key_lists_missing_keys_and_num_classes():
    lab = np.array([[[0, 1], [2, 3]]])
    img = np.ones((1, 2, 2), np.float32)
    t = SimulateLowResolutiond(["a", "b"], 2.0, label_keys=["l1", "l2"])
    d = t({"a": img, "b": img * 2, "l1": lab, "l2": lab.T.copy()})
    assert d["a"].shape == d["l1"].shape == (1, 1, 1)
    assert d["b"].item() == pytest.approx(2.0) and d["l1"].item() == 0 and d["l1"].dtype == torch.int64
    with pytest.raises(KeyError):
        SimulateLowResolutiond("a", 2.0)({"b": img})
    assert "a" not in SimulateLowResolutiond("a", 2.0, allow_missing_keys=True)({"b": img})
    with pytest.raises(ValueError, match="num_classes=3"):
        SimulateLowResolutiond("img", 2.0, label_keys="lab", num_classes=3)({"img": img, "lab": lab})


def test_nifti_header_entries_follow_the_new_grid_without_touching_the_input():
    pixdim = np.array([1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0])  # float64, as a caller may hold it
    dim = np.array([2, 10, 8, 1, 1, 1, 1, 1])
    img = MetaTensor(
        torch.ones(1, 10, 8), affine=torch.eye(3, dtype=torch.float64), meta={"pixdim": pixdim, "dim": dim}
    )
    out = SimulateLowResolution([0.7, 2.0])(img)
    assert out.shape == (1, 15, 4)  # ceil(10 / 0.7), 8 / 2
    assert out.meta["spatial_shape"].tolist() == [15, 4]
    assert out.meta["pixdim"].dtype == np.float64 and out.meta["pixdim"][1] == 0.7 and out.meta["pixdim"][2] == 2.0
    assert out.meta["dim"].tolist()[:3] == [2, 15, 4]
    assert pixdim.tolist() == [1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0] and dim.tolist()[:3] == [2, 10, 8]
    f32 = MetaTensor(torch.ones(1, 10, 8), meta={"pixdim": pixdim.astype(np.float32), "dim": dim})
    header = SimulateLowResolution([0.7, 2.0])(f32).meta["pixdim"]
    assert header.dtype == np.float64 and float(header[1]) == 0.7  # not float32's 0.699999988


def test_edges_repeat_beyond_the_field_of_view_and_integer_images_are_blurred_in_float():
    # 5 voxels -> 2 mm: 3 output voxels; the last centre (input coordinate 4.5) lies outside the input
    out = SimulateLowResolution(2.0)(np.full((1, 5, 5), 3.0, np.float32))
    assert out.shape == (1, 3, 3)
    np.testing.assert_allclose(out.numpy(), 3.0, rtol=1e-6)
    noisy = np.random.default_rng(5).integers(0, 255, (1, 9, 9)).astype(np.uint8)  # blurred values are not integers
    as_uint8 = SimulateLowResolution(3.0)(noisy)
    as_float = SimulateLowResolution(3.0)(noisy.astype(np.float32))
    assert as_uint8.dtype == torch.float32
    torch.testing.assert_close(as_uint8, as_float)


def test_no_warning_about_the_input_affine_in_the_metadata():
    import warnings

    img = MetaTensor(torch.ones(1, 8, 8), affine=torch.diag(torch.tensor([2.0, 2.0, 1.0], dtype=torch.float64)))
    assert "affine" in img.meta  # as for every MetaTensor, e.g. one read by LoadImage
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = SimulateLowResolution(4.0)(img)
    assert out.affine[0, 0].item() == 4.0

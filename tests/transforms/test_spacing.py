"""SpacingWithPathsd: Spacingd's result, with non-dictionary ``image_*`` entries (MONAI Label's image_path) kept."""

import nibabel as nib
import numpy as np
import torch
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged, Spacingd

from common.transforms import SpacingWithPathsd


def _load(tmp_path):
    data = np.arange(6 * 8 * 5, dtype=np.float32).reshape(6, 8, 5)
    affine = np.diag([1.0, 1.5, 3.0, 1.0])
    affine[:3, 3] = [10.0, -4.0, 2.0]
    path = tmp_path / "vol.nii.gz"
    nib.save(nib.Nifti1Image(data, affine), str(path))
    return Compose([LoadImaged("image", image_only=True), EnsureChannelFirstd("image")])({"image": str(path)}), path


def test_matches_spacingd_and_keeps_path_entries(tmp_path):
    item, path = _load(tmp_path)
    reference = Spacingd("image", pixdim=(2.0, 2.0, 2.0), mode="bilinear")(dict(item))
    meta_dict = {"note": "kept"}
    out = SpacingWithPathsd("image", pixdim=(2.0, 2.0, 2.0), mode="bilinear")(
        {**item, "image_path": str(path), "image_meta_dict": meta_dict}
    )
    assert out["image_path"] == str(path)
    torch.testing.assert_close(out["image"].as_tensor(), reference["image"].as_tensor())
    np.testing.assert_allclose(out["image"].affine, reference["image"].affine)
    np.testing.assert_allclose(out["image"].pixdim, [2.0, 2.0, 2.0])
    # dictionary entries are still updated with the resampled image's metadata, as by Spacingd
    assert out["image_meta_dict"]["note"] == "kept" and "affine" in out["image_meta_dict"]


def test_inverse_restores_the_input_grid(tmp_path):
    item, _ = _load(tmp_path)
    xform = SpacingWithPathsd("image", pixdim=(2.0, 2.0, 2.0), mode="nearest")
    out = xform({**item, "image_path": "somewhere.nii.gz"})
    assert out["image"].shape[1:] != item["image"].shape[1:]
    back = xform.inverse(out)
    assert back["image"].shape == item["image"].shape
    np.testing.assert_allclose(back["image"].affine, item["image"].affine, atol=1e-5)
    assert back["image_path"] == "somewhere.nii.gz"

"""Thick slices, slice dataset and batch sampler of the segmentation-resolution-bias bundle."""

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from common.data.seg_slices import (
    SliceBatchSampler,
    ThickSliceDataset,
    in_plane_spacing,
    planes_of,
    prepare_slice_batch,
    slice_spacing,
    thick_slices,
)


def test_thick_slices_match_numpy_indexing():
    vol = torch.arange(2 * 4 * 5 * 6, dtype=torch.float32).reshape(2, 4, 5, 6)
    padded = np.pad(vol.numpy(), ((0, 0), (0, 0), (0, 0), (1, 1)))  # zero outside along z
    slabs = thick_slices(vol, "axial", 3)
    assert slabs.shape == (6, 2 * 3, 4, 5)
    for s in range(6):
        expected = np.concatenate([padded[c, :, :, s : s + 3].transpose(2, 0, 1) for c in range(2)])
        np.testing.assert_array_equal(slabs[s].numpy(), expected)
    # coronal: slicing axis y, in-plane (x, z)
    cor = thick_slices(vol[:1], "coronal", 1)
    assert cor.shape == (5, 1, 4, 6)
    np.testing.assert_array_equal(cor[2, 0].numpy(), vol[0, :, 2, :].numpy())
    with pytest.raises(ValueError, match="odd"):
        thick_slices(vol, "axial", 2)


def test_planes_and_spacing():
    assert planes_of("all") == ("sagittal", "coronal", "axial")
    assert in_plane_spacing([1.0, 2.0, 3.0], "coronal") == (1.0, 3.0)
    with pytest.raises(ValueError, match="unknown plane"):
        planes_of("oblique")


def _volume(shape, spacing, group, fg_slices):
    label = torch.zeros(1, *shape)
    label[0, 1:-1, 1:-1, fg_slices] = 2
    affine = torch.diag(torch.tensor([*spacing, 1.0]))
    return {
        "image": MetaTensor(torch.rand(1, *shape), affine=affine),
        "label": MetaTensor(label, affine=affine),
        "group": group,
    }


def test_dataset_items_and_sampler_batches_are_homogeneous():
    vols = [
        _volume((8, 10, 6), (2.0, 2.0, 2.0), "H", slice(1, 5)),
        _volume((8, 10, 6), (2.0, 2.0, 2.0), "H", slice(2, 4)),
        _volume((6, 7, 4), (3.0, 3.0, 3.0), "L", slice(0, 4)),
    ]
    ds = ThickSliceDataset(vols, "axial", thickness=3)
    assert len(ds) == 4 + 2 + 4  # only slices with foreground
    item = ds[len(ds) - 1]
    assert item["image"].shape == (3, 6, 7) and item["label"].shape == (1, 6, 7)
    assert item["group"] == "L" and item["plane"] == "axial"
    assert item["image"].pixdim.tolist() == [3.0, 3.0]
    sampler = SliceBatchSampler(ds, batch_size=3, seed=1)
    epochs = [list(sampler) for _ in range(2)]
    for batches in epochs:
        assert sorted(i for b in batches for i in b) == list(range(len(ds)))
        for b in batches:
            assert len({ds.keys[i] for i in b}) == 1
    assert epochs[0] != epochs[1]  # reshuffled per epoch
    assert [list(SliceBatchSampler(ds, 3, seed=1)) for _ in range(1)][0] == epochs[0]  # same seed, same order
    limited = SliceBatchSampler(ds, batch_size=2, slices_per_volume=1)
    assert sum(len(b) for b in limited) == 3
    ranks = [list(SliceBatchSampler(ds, 2, seed=0, num_replicas=2, rank=r)) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == len(SliceBatchSampler(ds, 2, num_replicas=2))
    assert not {i for b in ranks[0] for i in b} & {i for b in ranks[1] for i in b}


def test_prepare_batch_passes_spacing_and_plane():
    from monai.data import list_data_collate

    vols = [_volume((8, 10, 6), (1.5, 2.5, 2.0), "H", slice(0, 6))]
    ds = ThickSliceDataset(vols, "axial", thickness=1)
    batch = list_data_collate([ds[0], ds[1]])
    torch.testing.assert_close(slice_spacing(batch["image"]), torch.tensor([[1.5, 2.5], [1.5, 2.5]]))
    image, label, args, kwargs = prepare_slice_batch(batch)
    assert not isinstance(image, MetaTensor) and image.shape == (2, 1, 8, 10)
    assert kwargs["plane"] == "axial" and kwargs["spacing"].shape == (2, 2)


def test_inference_items_without_input_raises_unless_allowed_empty(tmp_path):
    from common.data.seg_slices import inference_items

    with pytest.raises(ValueError, match="--input_image"):
        inference_items("", "")
    assert inference_items("", "", allow_empty=True) == []
    image = tmp_path / "t1.nii.gz"
    image.write_bytes(b"x")
    assert inference_items(str(image), "", allow_empty=True) == [{"image": str(image)}]
    with pytest.raises(FileNotFoundError, match="missing.nii.gz"):
        inference_items(str(tmp_path / "missing.nii.gz"), "", allow_empty=True)


def test_approach_settings_say_what_each_approach_changes():
    from common.data.seg_slices import approach_settings

    assert approach_settings("vinn", 2.0, 0.3) == {
        "internal_spacing": 2.0,
        "zoom_prob": 0.0,
        "inference_spacing": [0.0, 0.0, 0.0],
    }
    assert approach_settings("scale_aug", 2.0, 0.3) == {
        "internal_spacing": None,
        "zoom_prob": 0.3,
        "inference_spacing": [2.0, 2.0, 2.0],
    }
    for approach in ("h_only", "resampled"):
        assert approach_settings(approach, 1.5, 0.3)["zoom_prob"] == 0.0
        assert approach_settings(approach, 1.5, 0.3)["internal_spacing"] is None
    with pytest.raises(ValueError, match="unknown approach 'vin'"):
        approach_settings("vin", 2.0, 0.3)


def test_panel_plane():
    from common.data.seg_slices import panel_plane

    assert panel_plane("coronal") == "coronal"
    assert panel_plane("all") == "axial"
    assert panel_plane(["sagittal"]) == "sagittal"

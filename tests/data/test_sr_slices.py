"""High-resolution MNI slices for super-resolution: determinism, ranges, slab splits, shapes, metadata."""

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from common.data import generate_sr_slices, validate_datalist
from common.data import sr_slices as sr

SPLITS = ("training", "validation", "test")


@pytest.fixture(scope="module")
def default_slices(tmp_path_factory):
    return generate_sr_slices(tmp_path_factory.mktemp("sr_a"), seed=3)


def _indices(datalist_path: Path) -> dict[str, list[int]]:
    d = json.loads(Path(datalist_path).read_text())
    return {s: [e["slice_index"] for e in d[s]] for s in SPLITS}


def test_same_parameters_give_the_same_bytes(default_slices, tmp_path):
    again = generate_sr_slices(tmp_path, seed=3)
    a_root, b_root = default_slices.parent, again.parent
    assert a_root.name == b_root.name  # cache folder keyed by the parameters
    a_files = sorted(p.relative_to(a_root) for p in a_root.rglob("*") if p.is_file())
    b_files = sorted(p.relative_to(b_root) for p in b_root.rglob("*") if p.is_file())
    assert a_files == b_files and len(a_files) > 10
    for rel in a_files:
        assert (a_root / rel).read_bytes() == (b_root / rel).read_bytes(), rel


def test_valid_datalist_with_intensities_in_unit_range(default_slices):
    d = validate_datalist(default_slices, label_key=None, spatial_dims=2, splits=SPLITS)
    maxima = []
    for split in SPLITS:
        assert len(d[split]) > 0
        for entry in d[split][::5]:
            img = nib.load(entry["image"])
            x = img.get_fdata()
            assert x.min() >= 0.0 and x.max() <= 1.0
            assert (x == 0).mean() > 0.2  # skull-stripped background stays 0
            assert img.shape[0] % 4 == 0 and img.shape[1] % 4 == 0
            np.testing.assert_allclose(img.header.get_zooms(), (1.0, 1.0))
            maxima.append(x.max())
    assert max(maxima) > 0.8  # the scaling uses the range, not a sliver of it


def test_splits_are_disjoint_slabs_separated_by_a_gap(default_slices):
    idx = _indices(default_slices)
    gap = json.loads(default_slices.read_text())["parameters"]["gap"]
    assert gap >= 1
    for a in SPLITS:
        for b in SPLITS:
            if a < b:
                dist = np.abs(np.subtract.outer(idx[a], idx[b]))
                assert dist.min() >= gap + 1, (a, b)
    counts = [len(idx[s]) for s in SPLITS]
    assert counts[0] > counts[1] > 0 and counts[2] > 0 and counts[0] % 8 == 0


def test_slice_matches_the_template_at_its_world_position(default_slices):
    d = json.loads(default_slices.read_text())
    entry = d["validation"][0]
    img = nib.load(default_slices.parent / entry["image"])
    volume, mask, affine = sr._load_template()
    lo, hi = np.percentile(volume[mask], (0.5, 99.5))
    ref = np.clip((volume - lo) / (hi - lo), 0, 1)
    # every pixel (i, j) of the slice maps through the two affines to the same template voxel
    i, j = np.meshgrid(np.arange(img.shape[0]), np.arange(img.shape[1]), indexing="ij")
    world = img.affine @ np.stack([i.ravel(), j.ravel(), np.zeros(i.size), np.ones(i.size)])
    vox = np.rint(np.linalg.inv(affine) @ world)[:3].astype(int)
    inside = np.all((vox >= 0) & (vox < np.array(volume.shape)[:, None]), axis=0)
    assert inside.mean() > 0.9 and np.all(vox[2] == entry["slice_index"])
    expected = ref[vox[0, inside], vox[1, inside], vox[2, inside]]
    np.testing.assert_allclose(img.get_fdata().ravel()[inside], expected, atol=1e-6)
    assert d["parameters"]["plane"] == "axial"


def test_cached_output_is_reused(default_slices, monkeypatch):
    def fail():
        raise AssertionError("template loaded again")

    monkeypatch.setattr(sr, "_load_template", fail)
    assert generate_sr_slices(default_slices.parent.parent, seed=3) == default_slices


def test_counts_plane_crop_and_seed(tmp_path):
    a = generate_sr_slices(tmp_path, seed=0, plane="coronal", num_slices=(10, 3, 3), crop_size=(96, 128))
    b = generate_sr_slices(tmp_path, seed=1, plane="coronal", num_slices=(10, 3, 3), crop_size=(96, 128))
    assert a != b
    ia, ib = _indices(a), _indices(b)
    assert [len(ia[s]) for s in SPLITS] == [10, 3, 3]
    assert ia != ib
    img = nib.load(a.parent / json.loads(a.read_text())["test"][0]["image"])
    assert img.shape == (96, 128)


def test_bad_parameters_are_rejected_before_work(tmp_path):
    with pytest.raises(ValueError, match="plane must be one of"):
        generate_sr_slices(tmp_path, plane="oblique")
    with pytest.raises(ValueError, match="crop_size must be 2 multiples of 4"):
        generate_sr_slices(tmp_path, crop_size=(98, 128))
    with pytest.raises(ValueError, match="slabs of 8 slices are available but the splits need"):
        generate_sr_slices(tmp_path, num_slices=(1000, 10, 10))
    assert not any(tmp_path.iterdir())

"""Label-error contracts found by mutation testing (tests/MUTANTS.md): the dictionary transform's keys, defaults and
random state, shift_labels' dtype, prepare_label_error_datalist's data sources and defaults, load_split."""

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from common.data import DatalistError, load_split
from common.data.label_error_datalist import prepare_label_error_datalist
from common.transforms.label_errors import (
    CorruptLabel,
    RandCorruptLabeld,
    shift_labels,
)
from tests.transforms.test_label_errors import _label, _write_datalist

SMALL_PHANTOM = {"num_train": 2, "num_val": 1, "num_test": 0, "size": 32}


def test_shift_labels_by_hand_keeps_dtype():
    lab = np.array([[0, 1, 2], [3, 4, 5]], dtype=np.uint8)
    out = shift_labels(lab, (0, 1))
    assert out.dtype == np.uint8
    assert out.tolist() == [[0, 0, 1], [0, 3, 4]]
    assert shift_labels(lab, (1, -1)).tolist() == [[0, 0, 0], [1, 2, 0]]
    big = _label().astype(np.int16) * 1000  # values a spline would not reproduce exactly
    np.testing.assert_array_equal(shift_labels(big, (2, -3)), np.pad(big, ((2, 0), (0, 3)))[:32, 3:])


def test_dictionary_transform_defaults():
    t = RandCorruptLabeld("label").set_random_state(5)
    assert t.corrupt.kind == "random" and t.prob == 0.5
    flags = [t({"label": torch.as_tensor(_label())[None]})["corrupted"] for _ in range(200)]
    assert 70 < sum(flags) < 130  # prob 0.5
    with pytest.raises(KeyError):
        RandCorruptLabeld("label")({"image": 1})
    out = RandCorruptLabeld("label", allow_missing_keys=True)({"image": 1})
    assert "label" not in out and out["image"] == 1


def test_dictionary_transform_passes_kind_and_arguments_and_always_corrupts_when_drawn():
    lab = _label()
    t = RandCorruptLabeld("label", kind="label_swap", prob=1.0, swap=(2, 3)).set_random_state(0)
    out = t({"label": lab})
    assert out["corrupted"] == 1
    np.testing.assert_array_equal(out["label"], CorruptLabel(kind="label_swap", swap=(2, 3))(lab))
    for seed in range(10):  # drawn to corrupt -> corrupted (the inner transform never skips)
        d = RandCorruptLabeld("label", kind="systematic", prob=0.5, structures=(1,)).set_random_state(seed)
        for _ in range(4):
            res = d({"label": lab})
            assert bool(res["corrupted"]) == (not np.array_equal(res["label"], lab))


def test_all_keys_get_the_same_error_and_the_clean_copy_is_of_the_first_key():
    lab = _label()
    t = RandCorruptLabeld(["a", "b"], kind="random", prob=1.0, clean_key="clean").set_random_state(3)
    for _ in range(5):
        out = t({"a": lab, "b": lab.copy()})
        np.testing.assert_array_equal(out["a"], out["b"])
        assert isinstance(out["clean"], np.ndarray) and out["clean"] is not lab
        np.testing.assert_array_equal(out["clean"], lab)
    no_copy = RandCorruptLabeld("a", prob=1.0)({"a": lab})
    assert set(no_copy) == {"a", "corrupted"}


def test_set_random_state_with_a_state_object():
    lab = torch.as_tensor(_label())[None]
    runs = []
    for _ in range(2):
        t = RandCorruptLabeld("label", prob=0.5).set_random_state(state=np.random.RandomState(42))
        runs.append([t({"label": lab}) for _ in range(8)])
    assert [d["corrupted"] for d in runs[0]] == [d["corrupted"] for d in runs[1]]
    assert all(torch.equal(a["label"], b["label"]) for a, b in zip(*runs))


def test_load_split(tmp_path):
    path = tmp_path / "d.json"
    path.write_text(json.dumps({"training": [{"image": "a"}], "validation": []}))
    assert load_split(path, "training") == [{"image": "a"}]
    assert load_split(str(path), "training") == [{"image": "a"}]
    for split in ("validation", "test"):
        with pytest.raises(ValueError, match=rf"^datalist {path} has no '{split}' entries$"):
            load_split(path, split)


def test_prepare_from_the_phantom_with_default_arguments(tmp_path):
    out = prepare_label_error_datalist(None, None, tmp_path, phantom=SMALL_PHANTOM)
    explicit = prepare_label_error_datalist(
        "", None, tmp_path, error_type="random", error_level=0.0, seed=0, phantom=SMALL_PHANTOM, num_classes=4
    )
    assert out == explicit
    data = json.loads(out.read_text())
    assert len(data["training"]) == 2 and sum(e["corrupted"] for e in data["training"]) == 0
    assert nib.load(data["training"][0]["image"]).shape[:2] == (32, 32)  # the phantom settings are used
    phantom_dirs = sorted(p.name for p in tmp_path.glob("echo_phantom_*"))
    assert len(phantom_dirs) == 1
    prepare_label_error_datalist(None, None, tmp_path, seed=1, phantom=SMALL_PHANTOM)
    assert len(list(tmp_path.glob("echo_phantom_*"))) == 2  # the seed reaches the phantom


def test_prepare_user_datalist_with_a_separate_dataset_dir_and_checks(tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    src = _write_datalist(data_dir, n=2)
    lists = tmp_path / "lists"
    lists.mkdir()
    moved = lists / "list.json"
    moved.write_text(src.read_text())  # relative paths now resolve against dataset_dir only
    out = prepare_label_error_datalist(str(moved), str(data_dir), tmp_path / "cache")
    entries = json.loads(out.read_text())["training"]
    assert [e["image"] for e in entries] == [str((data_dir / f"image_{i}.nii.gz").resolve()) for i in range(2)]
    with pytest.raises(FileNotFoundError, match=r"^datalist .*nope.json does not exist$"):
        prepare_label_error_datalist(str(tmp_path / "nope.json"), None, tmp_path / "cache")
    # a training label outside 0..3 is rejected by default (num_classes 4), even with nothing to corrupt
    nib.save(nib.Nifti1Image(np.full((32, 32), 4, np.uint8), np.eye(4)), data_dir / "label_1.nii.gz")
    with pytest.raises(DatalistError, match="label_1.nii.gz"):
        prepare_label_error_datalist(str(moved), str(data_dir), tmp_path / "cache2", error_level=0.0)
    assert prepare_label_error_datalist(str(moved), str(data_dir), tmp_path / "cache2", num_classes=5).is_file()


def test_erosion_uses_a_ball_and_keeps_the_image_border():
    from common.transforms.label_errors import erode_structure

    lab = np.full((11, 11), 2, np.int64)
    lab[2:9, 2:9] = 1  # a 7x7 square
    out = erode_structure(lab, 1, 2)  # a ball of radius 2 keeps the central 3x3, not the 5x5 a cross would
    assert (out == 1).sum() == 9 and (out[4:7, 4:7] == 1).all()
    assert set(np.unique(out[lab == 1][out[lab == 1] != 1])) == {2}  # freed pixels take the nearest other label
    edge = np.ones((5, 5), np.int64)
    edge[:, 4] = 2
    eroded = erode_structure(edge, 1, 1)  # the image border does not erode: only the column next to label 2
    assert (eroded[:, :3] == 1).all() and (eroded[:, 3] == 2).all()


def _corrupted_entries(path):
    return [e for e in json.loads(path.read_text())["training"] if e["corrupted"]]


def test_corrupt_datalist_is_reproducible_across_folders_and_records_its_settings(tmp_path):
    from common.transforms.label_errors import corrupt_datalist

    src = _write_datalist(tmp_path, n=6)
    kwargs = {"kind": "systematic", "error_level": 0.5, "seed": 3, "structures": (1,), "direction": "dilate"}
    first = corrupt_datalist(src, None, tmp_path / "one", **kwargs)
    second = corrupt_datalist(src, None, tmp_path / "two", **kwargs)
    a, b = _corrupted_entries(first), _corrupted_entries(second)
    assert [e["id"] for e in a] == [e["id"] for e in b] == ["image_1", "image_2", "image_5"]  # pinned selection
    for x, y in zip(a, b):
        raw = Path(x["label"]).read_bytes()
        assert raw == Path(y["label"]).read_bytes()  # same error, byte for byte
        assert raw[4:8] == b"\0\0\0\0"  # gzip header without a time stamp
    grown = [int((np.asarray(nib.load(e["label"]).dataobj) == 1).sum()) for e in a]
    assert grown == [189, 189, 149]  # pinned errors (seeded from (seed, index)); the clean structure has 113 px
    record = json.loads(first.read_text())["label_errors"]
    assert record == {"kind": "systematic", "error_level": 0.5, "seed": 3, "structures": [1], "direction": "dilate"}
    default_seed = corrupt_datalist(src, None, tmp_path / "one", kind="random", error_level=0.5)
    assert default_seed == corrupt_datalist(src, None, tmp_path / "one", kind="random", error_level=0.5, seed=0)


def test_corrupt_datalist_levels_0_and_1_and_argument_checks(tmp_path):
    from common.transforms.label_errors import corrupt_datalist

    src = _write_datalist(tmp_path, n=3)
    assert _corrupted_entries(corrupt_datalist(src, None, tmp_path / "c", error_level=0.0)) == []
    assert len(_corrupted_entries(corrupt_datalist(src, None, tmp_path / "c", error_level=1.0))) == 3
    with pytest.raises(ValueError, match="unknown label error kind 'bogus'"):
        corrupt_datalist(src, None, tmp_path / "d", kind="bogus", error_level=0.0)
    with pytest.raises(ValueError, match="direction must be"):
        corrupt_datalist(src, None, tmp_path / "d", error_level=0.0, direction="sideways")
    assert not (tmp_path / "d").exists()  # arguments are checked before any work
    with pytest.raises(ValueError, match=r"^datalist has no 'training' samples to corrupt$"):
        corrupt_datalist({"validation": []}, None, tmp_path / "d")


def test_corrupt_datalist_from_a_mapping_keeps_other_entries(tmp_path, monkeypatch):
    from common.transforms.label_errors import corrupt_datalist

    src = _write_datalist(tmp_path, n=2)
    data = json.loads(src.read_text())
    data["name"] = "phantom"
    data["test"] = [{"image": "image_0.nii.gz"}, "not-a-dict"]  # a test entry without a label is fine
    out = json.loads(corrupt_datalist(data, str(tmp_path), tmp_path / "cache", error_level=0.0).read_text())
    assert out["name"] == "phantom"
    assert out["test"] == [{"image": str((tmp_path / "image_0.nii.gz").resolve())}, "not-a-dict"]
    assert out["training"][1]["label"] == str((tmp_path / "label_1.nii.gz").resolve())
    monkeypatch.chdir(tmp_path)  # without dataset_dir, relative paths of a mapping resolve against "."
    again = json.loads(corrupt_datalist(data, None, tmp_path / "cache2", error_level=0.0).read_text())
    assert again["training"][0]["image"] == str((tmp_path / "image_0.nii.gz").resolve())


def test_ball_and_dilation_by_a_disk():
    from common.transforms.label_errors import _ball, dilate_structure

    assert _ball(1, 2).sum() == 5 and _ball(2, 2).sum() == 13 and _ball(3, 2).sum() == 29 and _ball(2, 3).sum() == 33
    dot = np.zeros((9, 9), np.int64)
    dot[4, 4] = 1
    assert (dilate_structure(dot, 1, 2) == 1).sum() == 13  # a disk of radius 2, not a cross or a square


def test_corrupt_label_channel_first_and_dtype():
    lab = _label().astype(np.uint8)
    for kind in ("boundary_shift", "random", "label_swap"):
        flat = CorruptLabel(kind=kind, radius=(2, 3))
        chan = CorruptLabel(kind=kind, radius=(2, 3))
        flat.set_random_state(4)
        chan.set_random_state(4)
        a, b = flat(lab), chan(lab[None])
        assert a.dtype == np.uint8 and b.dtype == np.uint8 and b.shape == (1, 32, 32)
        np.testing.assert_array_equal(b[0], a)  # the channel axis is not a spatial axis
        assert flat._plan == chan._plan
    as_tensor = CorruptLabel(kind="label_swap")(torch.as_tensor(lab)[None])
    assert isinstance(as_tensor, torch.Tensor) and as_tensor.dtype == torch.uint8


def test_boundary_shift_vector_has_the_image_rank_and_a_drawn_length():
    volume = np.zeros((1, 12, 12, 12), np.int64)
    volume[0, 4:8, 4:8, 4:8] = 1
    t = CorruptLabel(kind="boundary_shift", radius=(1, 3))
    t.set_random_state(0)
    out = t(volume)
    assert len(t._plan[0]) == 3 and out.shape == volume.shape
    t.randomize()  # no data: a 2D vector
    assert len(t._plan[0]) == 2
    lengths = []
    for seed in range(200):
        t.set_random_state(seed)
        t.randomize(2)
        lengths.append(float(np.hypot(*t._plan[0])))
    assert min(lengths) < 1.5 and max(lengths) > 2.5 and max(lengths) < 3.75  # lengths 1 .. 3 (rounded offsets)
    one = CorruptLabel(kind="boundary_shift", radius=(1, 1))
    for seed in range(50):
        one.set_random_state(seed)
        one.randomize(2)
        assert 0.9 < np.hypot(*one._plan[0]) < 1.5


def test_random_radii_cover_the_inclusive_range():
    t = CorruptLabel(kind="random", radius=(1, 3), structures=(1, 2, 3))
    t.set_random_state(0)
    radii = set()
    for _ in range(40):
        t.randomize(2)
        radii.update(r for _, _, r in t._plan)
    assert radii == {1, 2, 3}
    assert CorruptLabel(radius=2).radius == (2, 2)  # one number: a fixed radius
    assert CorruptLabel(radius=(0, 2)).radius == (0, 2)  # zero is allowed as the smallest radius
    never = CorruptLabel(prob=0.0)
    for _ in range(5):
        np.testing.assert_array_equal(never(_label()), _label())
        assert not never.corrupted


def test_corrupt_label_argument_messages():
    with pytest.raises(
        ValueError,
        match=r"^unknown label error kind 'x'; choose one of boundary_jitter, random_size_matched, systematic, boundary_shift, label_swap, random$",
    ):
        CorruptLabel(kind="x")
    for radius in ((1, 2, 3), (-1, 2), (3, 2)):
        with pytest.raises(ValueError, match=r"^radius must be \(min, max\) with 0 <= min <= max, got "):
            CorruptLabel(radius=radius)
    with pytest.raises(ValueError, match=r"^swap must name two different label values, got \(1, 1\)$"):
        CorruptLabel(kind="label_swap", swap=(1, 1))


def _datalist_with_splits(tmp_path, n=3):
    """Training entries 0 .. n-1; validation and test hold only entry 0 (so a bad file elsewhere is training's)."""
    src = _write_datalist(tmp_path, n=n)
    data = json.loads(src.read_text())
    data["validation"] = data["training"][:1]
    data["test"] = data["training"][:1]
    src.write_text(json.dumps(data))
    return src


@pytest.mark.parametrize("split", ["training", "validation", "test"])
def test_prepare_validates_every_split(tmp_path, split):
    src = _datalist_with_splits(tmp_path)
    data = json.loads(src.read_text())
    nib.save(nib.Nifti1Image(np.full((32, 32), 9, np.uint8), np.eye(4)), tmp_path / "bad.nii.gz")
    data[split] = data[split] + [{"image": "image_0.nii.gz", "label": "bad.nii.gz"}]
    src.write_text(json.dumps(data))
    with pytest.raises(DatalistError, match="bad.nii.gz"):
        prepare_label_error_datalist(str(src), None, tmp_path / "cache", error_level=0.0)


def test_prepare_rejects_3d_images_and_passes_kind_seed_and_options(tmp_path):
    src = _datalist_with_splits(tmp_path, n=4)
    out = prepare_label_error_datalist(
        str(src), None, tmp_path / "cache", error_type="label_swap", error_level=0.5, seed=1, swap=(1, 2)
    )
    data = json.loads(out.read_text())
    assert data["label_errors"] == {"kind": "label_swap", "error_level": 0.5, "seed": 1, "swap": [1, 2]}
    seed0 = prepare_label_error_datalist(
        str(src), None, tmp_path / "cache", error_type="label_swap", error_level=0.5, swap=(1, 2)
    )
    assert json.loads(seed0.read_text())["label_errors"]["seed"] == 0
    for entry in data["training"]:
        if entry["corrupted"]:
            clean = np.asarray(nib.load(entry["label_clean"]).dataobj)
            swapped = np.asarray(nib.load(entry["label"]).dataobj)
            np.testing.assert_array_equal(swapped == 2, clean == 1)
    nib.save(nib.Nifti1Image(np.zeros((32, 32, 3), np.float32), np.eye(4)), tmp_path / "image_1.nii.gz")
    nib.save(nib.Nifti1Image(np.zeros((32, 32, 3), np.uint8), np.eye(4)), tmp_path / "label_1.nii.gz")
    with pytest.raises(DatalistError, match="image_1.nii.gz"):
        prepare_label_error_datalist(str(src), None, tmp_path / "cache2", error_level=0.0)


def test_default_error_radius_message():
    from common.transforms.label_errors import default_error_radius

    with pytest.raises(
        ValueError,
        match=r"^unknown error type 'x'; expected one of boundary_jitter, random_size_matched, systematic, boundary_shift, label_swap, random$",
    ):
        default_error_radius("x")


def test_corrupted_labels_keep_the_source_header_and_a_second_pinned_selection(tmp_path):
    from common.transforms.label_errors import corrupt_datalist

    src = _write_datalist(tmp_path, n=8)
    for i in range(8):  # headers with units and a description, as scanners write them
        img = nib.load(tmp_path / f"label_{i}.nii.gz")
        header = img.header.copy()
        header.set_xyzt_units("mm", "sec")
        header["descrip"] = b"manual"
        nib.save(nib.Nifti1Image(np.asarray(img.dataobj), img.affine, header), tmp_path / f"label_{i}.nii.gz")
    out = corrupt_datalist(src, None, tmp_path / "cache", kind="label_swap", error_level=0.25, seed=3)
    corrupted = _corrupted_entries(out)
    assert [e["id"] for e in corrupted] == ["image_1", "image_4"]  # pinned: round(0.25 * 8) of them, by (seed, 7919)
    for e in corrupted:
        header = nib.load(e["label"]).header
        assert header.get_xyzt_units() == ("mm", "sec") and header["descrip"].tobytes().startswith(b"manual")


def test_corrupt_label_on_a_3d_map_without_channel():
    vol = np.stack([_label()] * 4)  # (D=4, H, W): no channel axis
    t = CorruptLabel(kind="boundary_shift", radius=(1, 1))
    t.set_random_state(2)
    out = t(vol)
    assert out.shape == vol.shape and len(t._plan[0]) == 3

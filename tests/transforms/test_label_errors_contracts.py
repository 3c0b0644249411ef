"""Label-error contracts found by mutation testing (tests/MUTANTS.md): the dictionary transform's keys, defaults and
random state, shift_labels' dtype, prepare_label_error_datalist's data sources and defaults, load_split."""

import json

import nibabel as nib
import numpy as np
import pytest
import torch

from common.data import DatalistError
from common.transforms.label_errors import (
    CorruptLabel,
    RandCorruptLabeld,
    load_split,
    prepare_label_error_datalist,
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

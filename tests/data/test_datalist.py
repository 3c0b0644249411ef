"""Datalist loading and validation: one failing case per kind of bad input, each naming file and problem."""

import json
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from common.data import DatalistError, load_datalist, validate_datalist
from common.data import datalist as datalist_module
from common.data.datalist import resolve_datalist

SHAPE = (6, 5, 4)


def _save(path: Path, data, affine=None) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(data), np.eye(4) if affine is None else affine), str(path))
    return path.name if path.parent.name == "" else str(path)


def _label(shape=SHAPE, num_classes=3, dtype=np.uint8):
    return (np.arange(int(np.prod(shape))) % num_classes).reshape(shape).astype(dtype)


def _image(shape=SHAPE):
    return np.linspace(0.0, 1.0, int(np.prod(shape)), dtype=np.float32).reshape(shape)


def _dataset(tmp_path: Path, n=2, groups=("H", "L")) -> Path:
    """A valid datalist with ``n`` entries per split, relative paths, groups cycled over ``groups``."""
    lists = {}
    for split in ("training", "validation"):
        entries = []
        for i in range(n):
            _save(tmp_path / f"{split}_{i}_img.nii.gz", _image())
            _save(tmp_path / f"{split}_{i}_lbl.nii.gz", _label())
            entries.append(
                {
                    "image": f"{split}_{i}_img.nii.gz",
                    "label": f"{split}_{i}_lbl.nii.gz",
                    "group": groups[i % len(groups)],
                    "subject": f"s{i}",
                }
            )
        lists[split] = entries
    path = tmp_path / "datalist.json"
    path.write_text(json.dumps(lists))
    return path


def _edit(path: Path, split="training", index=0, **changes) -> None:
    d = json.loads(path.read_text())
    d[split][index].update(changes)
    path.write_text(json.dumps(d))


def _problems(path, **kwargs) -> str:
    with pytest.raises(DatalistError) as err:
        validate_datalist(path, **kwargs)
    assert isinstance(err.value, ValueError)
    return str(err.value)


def test_valid_datalist_returns_absolute_paths_and_keeps_other_keys(tmp_path):
    path = _dataset(tmp_path)
    out = validate_datalist(path, num_classes=3, spatial_dims=3, group_key="group", required_groups=("H", "L"))
    first = out["training"][0]
    assert first["image"] == str((tmp_path / "training_0_img.nii.gz").resolve())
    assert first["label"] == str((tmp_path / "training_0_lbl.nii.gz").resolve())
    assert first["group"] == "H" and first["subject"] == "s0"
    assert len(out["validation"]) == 2
    assert load_datalist(path) == out


def test_dataset_dir_overrides_json_folder(tmp_path):
    path = _dataset(tmp_path / "data")
    moved = tmp_path / "lists" / "dl.json"
    moved.parent.mkdir()
    moved.write_text(path.read_text())
    assert validate_datalist(moved, tmp_path / "data")["training"][1]["label"].endswith("data/training_1_lbl.nii.gz")
    msg = _problems(moved)  # relative to lists/: files are not there
    assert f"{(tmp_path / 'lists' / 'training_0_img.nii.gz').resolve()}: file not found" in msg


def test_bare_string_test_entries_and_optional_test_labels(tmp_path):
    path = _dataset(tmp_path)
    _save(tmp_path / "test_img.nii.gz", _image())
    d = json.loads(path.read_text())
    d["test"] = ["test_img.nii.gz"]
    path.write_text(json.dumps(d))
    out = validate_datalist(path, splits=("training", "validation", "test"))
    assert out["test"] == [{"image": str((tmp_path / "test_img.nii.gz").resolve())}]


def test_datalist_file_missing(tmp_path):
    msg = _problems(tmp_path / "nope.json")
    assert "nope.json: datalist file not found" in msg


def test_datalist_not_valid_json(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"training": [}')
    msg = _problems(path)
    assert "bad.json: not valid JSON (line 1 column 15" in msg


def test_datalist_top_level_not_an_object(tmp_path):
    path = tmp_path / "list.json"
    path.write_text("[]")
    assert "list.json: top level must be a JSON object" in _problems(path)


def test_missing_required_split(tmp_path):
    path = _dataset(tmp_path)
    msg = _problems(path, splits=("training", "validation", "test"))
    assert f"{path.resolve()}: missing required split 'test'" in msg


def test_empty_split(tmp_path):
    path = _dataset(tmp_path)
    d = json.loads(path.read_text())
    d["validation"] = []
    path.write_text(json.dumps(d))
    assert f"{path.resolve()}: split 'validation' is empty" in _problems(path)


def test_missing_key(tmp_path):
    path = _dataset(tmp_path)
    d = json.loads(path.read_text())
    del d["training"][1]["label"]
    path.write_text(json.dumps(d))
    assert f"{path.resolve()}: training[1] has no 'label' key" in _problems(path)


def test_missing_file(tmp_path):
    path = _dataset(tmp_path)
    (tmp_path / "validation_1_lbl.nii.gz").unlink()
    msg = _problems(path)
    assert f"{(tmp_path / 'validation_1_lbl.nii.gz').resolve()}: file not found" in msg


def test_truncated_gz_is_caught_by_reading_the_voxels(tmp_path):
    path = _dataset(tmp_path)
    _save(tmp_path / "big.nii.gz", np.random.default_rng(0).random((32, 32, 16), dtype=np.float32))
    data = (tmp_path / "big.nii.gz").read_bytes()
    (tmp_path / "big.nii.gz").write_bytes(data[: len(data) // 2])
    assert nib.load(tmp_path / "big.nii.gz").shape == (32, 32, 16)  # the header alone still reads
    _edit(path, image="big.nii.gz", label="big.nii.gz")
    msg = _problems(path)
    assert f"{(tmp_path / 'big.nii.gz').resolve()}: unreadable or truncated image file" in msg


@pytest.mark.parametrize("cut", [1, 4, 8])
def test_gz_missing_only_its_trailer(tmp_path, cut):
    path = _dataset(tmp_path)
    data = (tmp_path / "training_1_lbl.nii.gz").read_bytes()
    (tmp_path / "training_1_lbl.nii.gz").write_bytes(data[:-cut])  # voxels intact, CRC/length trailer cut
    msg = _problems(path)
    assert f"{(tmp_path / 'training_1_lbl.nii.gz').resolve()}: unreadable or truncated image file" in msg


def test_truncated_uncompressed_nifti(tmp_path):
    path = _dataset(tmp_path)
    _save(tmp_path / "raw.nii", _image())
    data = (tmp_path / "raw.nii").read_bytes()
    (tmp_path / "raw.nii").write_bytes(data[:-40])
    _edit(path, image="raw.nii")
    assert f"{(tmp_path / 'raw.nii').resolve()}: unreadable or truncated image file" in _problems(path)


def test_empty_file(tmp_path):
    path = _dataset(tmp_path)
    (tmp_path / "training_1_img.nii.gz").write_bytes(b"")
    msg = _problems(path)
    assert f"{(tmp_path / 'training_1_img.nii.gz').resolve()}: empty file (0 bytes)" in msg


def test_not_a_nifti_file(tmp_path):
    path = _dataset(tmp_path)
    (tmp_path / "notes.nii.gz").write_bytes(b"this is not an image at all")
    _edit(path, image="notes.nii.gz")
    assert f"{(tmp_path / 'notes.nii.gz').resolve()}: unreadable or truncated image file" in _problems(path)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_voxels(tmp_path, bad):
    path = _dataset(tmp_path)
    img = _image()
    img[1, 2, 3] = bad
    img[0, 0, 0] = bad
    _save(tmp_path / "training_0_img.nii.gz", img)
    msg = _problems(path)
    assert f"{(tmp_path / 'training_0_img.nii.gz').resolve()}: 2 NaN/Inf voxel(s) out of 120" in msg


def test_shape_mismatch(tmp_path):
    path = _dataset(tmp_path)
    _save(tmp_path / "validation_0_img.nii.gz", _image((6, 5, 3)))
    msg = _problems(path)
    img, lbl = (tmp_path / "validation_0_img.nii.gz").resolve(), (tmp_path / "validation_0_lbl.nii.gz").resolve()
    assert f"{img}: image shape (6, 5, 3) does not match label {lbl} shape (6, 5, 4)" in msg


def test_affine_mismatch_beyond_tolerance(tmp_path):
    path = _dataset(tmp_path)
    shifted = np.eye(4)
    shifted[0, 3] = 0.5
    _save(tmp_path / "training_1_lbl.nii.gz", _label(), shifted)
    nearly = np.eye(4)
    nearly[1, 3] = 1e-5  # within tolerance: not a problem
    _save(tmp_path / "training_0_lbl.nii.gz", _label(), nearly)
    msg = _problems(path)
    img, lbl = (tmp_path / "training_1_img.nii.gz").resolve(), (tmp_path / "training_1_lbl.nii.gz").resolve()
    assert f"{img}: image affine differs from label {lbl} affine by up to 0.5 mm" in msg
    assert msg.count("\n  - ") == 1


def test_label_values_outside_classes(tmp_path):
    path = _dataset(tmp_path)
    validate_datalist(path, num_classes=3)
    _save(tmp_path / "training_0_lbl.nii.gz", _label(num_classes=5))
    msg = _problems(path, num_classes=3)
    assert f"{(tmp_path / 'training_0_lbl.nii.gz').resolve()}: label values span 0..4, outside 0..2" in msg


def test_negative_label_values(tmp_path):
    path = _dataset(tmp_path)
    lbl = _label(dtype=np.int16)
    lbl[0, 0, 0] = -1
    _save(tmp_path / "training_0_lbl.nii.gz", lbl)
    assert "training_0_lbl.nii.gz: label values span -1..2, outside 0..2" in _problems(path, num_classes=3)


def test_float_label_maps(tmp_path):
    path = _dataset(tmp_path)
    _save(tmp_path / "training_0_lbl.nii.gz", _label(dtype=np.float32))  # integral floats: fine
    validate_datalist(path, num_classes=3)
    interpolated = _label(dtype=np.float32)
    interpolated[2, 2, 2] = 0.5  # a linearly interpolated label map
    _save(tmp_path / "training_0_lbl.nii.gz", interpolated)
    msg = _problems(path, num_classes=3)
    assert f"{(tmp_path / 'training_0_lbl.nii.gz').resolve()}: label map holds non-integer values (e.g. 0.5)" in msg


def test_wrong_dimensionality(tmp_path):
    path = _dataset(tmp_path)
    _save(tmp_path / "training_0_img.nii.gz", np.zeros((*SHAPE, 2), np.float32))
    msg = _problems(path, spatial_dims=3)
    assert f"{(tmp_path / 'training_0_img.nii.gz').resolve()}: expected a 3D image, got 4D of shape (6, 5, 4, 2)" in msg


def test_singleton_channel_is_accepted(tmp_path):
    path = _dataset(tmp_path)
    _save(tmp_path / "training_0_img.nii.gz", _image()[..., None])
    assert nib.load(str(tmp_path / "training_0_img.nii.gz")).shape == (6, 5, 4, 1)
    for checked in (validate_datalist(path, spatial_dims=3, num_classes=3), validate_datalist(path)):
        assert sorted(checked) == ["training", "validation"]
        assert checked["training"][0]["image"] == str((tmp_path / "training_0_img.nii.gz").resolve())
        assert [e["subject"] for e in checked["training"]] == ["s0", "s1"]
    # a second channel is not a singleton: rejected
    _save(tmp_path / "training_0_img.nii.gz", np.stack([_image()] * 2, -1))
    with pytest.raises(DatalistError, match="expected a 3D image"):
        validate_datalist(path, spatial_dims=3, num_classes=3)


def test_2d_nifti(tmp_path):
    for name, arr in (("a_img.nii.gz", _image((8, 6))), ("a_lbl.nii.gz", _label((8, 6)))):
        _save(tmp_path / name, arr)
    _save(tmp_path / "b_img.nii.gz", _image((8, 6, 1)))
    _save(tmp_path / "b_lbl.nii.gz", _label((8, 6)))
    entries = [
        {"image": "a_img.nii.gz", "label": "a_lbl.nii.gz", "spacing": [1.0, 1.0]},
        {"image": "b_img.nii.gz", "label": "b_lbl.nii.gz"},
    ]
    path = tmp_path / "dl.json"
    path.write_text(json.dumps({"training": entries, "validation": entries[:1]}))
    validate_datalist(path, spatial_dims=2, num_classes=3)
    validate_datalist(path, num_classes=3)
    assert "expected a 3D image, got 2D" in _problems(path, spatial_dims=3)


def test_spacing_key_disagrees_with_header(tmp_path):
    path = _dataset(tmp_path)
    _edit(path, index=1, spacing=[1.0, 1.0, 1.0])
    validate_datalist(path)
    _edit(path, index=1, spacing=[1.0, 1.0, 3.0])
    msg = _problems(path)
    assert (
        f"{(tmp_path / 'training_1_img.nii.gz').resolve()}: training[1] 'spacing' [1.0, 1.0, 3.0] disagrees "
        "with the header voxel size [1.0, 1.0, 1.0] mm"
    ) in msg


def test_empty_group(tmp_path):
    path = _dataset(tmp_path, groups=("H",))
    msg = _problems(path, group_key="group", required_groups=("H", "L"))
    assert f"{path.resolve()}: split 'training' has no entry of group 'L' (empty group)" in msg
    assert "split 'validation' has no entry of group 'L'" in msg


def test_extra_image_keys(tmp_path):
    path = _dataset(tmp_path)
    _save(tmp_path / "lr.nii.gz", _image((3, 3, 2)))
    d = json.loads(path.read_text())
    for split in ("training", "validation"):
        for e in d[split]:
            e["image_lr"] = "lr.nii.gz"
    d["validation"][0]["image_lr"] = "missing_lr.nii.gz"
    path.write_text(json.dumps(d))
    msg = _problems(path, extra_image_keys=("image_lr",))
    assert f"{(tmp_path / 'missing_lr.nii.gz').resolve()}: file not found" in msg
    assert msg.count("\n  - ") == 1


def test_extra_label_keys_get_value_checks(tmp_path):
    path = _dataset(tmp_path)
    _save(tmp_path / "lbl_hr.nii.gz", _label((12, 10, 8), num_classes=4))
    d = json.loads(path.read_text())
    for split in ("training", "validation"):
        for e in d[split]:
            e["label_hr"] = "lbl_hr.nii.gz"
    path.write_text(json.dumps(d))
    validate_datalist(path, num_classes=4, extra_label_keys=("label_hr",))
    msg = _problems(path, num_classes=3, extra_label_keys=("label_hr",))
    assert f"{(tmp_path / 'lbl_hr.nii.gz').resolve()}: label values span 0..3, outside 0..2" in msg


@pytest.mark.parametrize("num_workers", [1, 2])
def test_all_problems_reported_at_once(tmp_path, num_workers):
    path = _dataset(tmp_path)
    (tmp_path / "training_1_img.nii.gz").unlink()
    bad = _image()
    bad[0, 0, 0] = np.nan
    _save(tmp_path / "validation_0_img.nii.gz", bad)
    with pytest.raises(DatalistError) as err:
        validate_datalist(path, num_workers=num_workers)
    assert len(err.value.problems) == 2
    msg = str(err.value)
    assert msg.startswith(f"invalid datalist {path.resolve()}: 2 problems")
    assert "training_1_img.nii.gz: file not found" in msg
    assert "validation_0_img.nii.gz: 1 NaN/Inf voxel(s)" in msg


def test_each_file_read_once(tmp_path, monkeypatch):
    path = _dataset(tmp_path)
    d = json.loads(path.read_text())
    d["validation"] = [dict(e) for e in d["training"]]  # the same files twice
    path.write_text(json.dumps(d))
    calls = []
    real_load = datalist_module._load_image
    monkeypatch.setattr(datalist_module, "_load_image", lambda p: calls.append(str(p)) or real_load(p))
    validate_datalist(path)
    assert sorted(calls) == sorted(set(calls)) and len(calls) == 4


def test_resolve_datalist_uses_default_only_when_empty(tmp_path):
    user = _dataset(tmp_path / "user")
    default = _dataset(tmp_path / "default")
    made = []

    def factory():
        made.append(1)
        return default

    for empty in ("", None):
        out = resolve_datalist(empty, "", factory, num_classes=3)
        assert out["training"][0]["image"] == str((tmp_path / "default" / "training_0_img.nii.gz").resolve())
    assert len(made) == 2
    out = resolve_datalist(str(user), None, factory)
    assert out["training"][0]["image"].startswith(str((tmp_path / "user").resolve()))
    assert len(made) == 2
    (tmp_path / "user" / "training_0_img.nii.gz").unlink()
    assert resolve_datalist(user, None, factory, validate=False)["validation"][0]["label"].endswith("lbl.nii.gz")
    with pytest.raises(DatalistError, match="training_0_img.nii.gz: file not found"):
        resolve_datalist(user, None, factory)
    with pytest.raises(ValueError, match="no default_factory"):
        resolve_datalist("", None, None)


def test_a_bad_file_shared_by_entries_is_reported_once(tmp_path):
    path = _dataset(tmp_path)
    _save(tmp_path / "shared_lbl.nii.gz", _label(num_classes=5))
    d = json.loads(path.read_text())
    for split in ("training", "validation"):
        for e in d[split]:
            e["label"] = "shared_lbl.nii.gz"
    path.write_text(json.dumps(d))
    with pytest.raises(DatalistError) as err:
        validate_datalist(path, num_classes=3)
    assert err.value.problems == [
        f"{(tmp_path / 'shared_lbl.nii.gz').resolve()}: label values span 0..4, outside 0..2 (num_classes=3)"
    ]


def test_inference_items_prefers_the_single_image_then_the_datalist(tmp_path):
    from common.data.datalist import inference_items

    assert inference_items() == []
    assert inference_items(input_image="a.nii.gz") == [{"image": os.path.abspath("a.nii.gz")}]
    (tmp_path / "list.json").write_text('{"test": [{"image": "x.nii.gz"}]}')
    assert inference_items(datalist=str(tmp_path / "list.json")) == [{"image": str(tmp_path / "x.nii.gz")}]

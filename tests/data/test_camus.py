"""CAMUS datalist from a tiny fake CAMUS tree."""

import json

import nibabel as nib
import numpy as np
import pytest

from common.data.camus import camus_datalist


def _tree(root, patients=10, views=("2CH", "4CH"), phases=("ED", "ES")):
    for p in range(1, patients + 1):
        folder = root / f"patient{p:04d}"
        folder.mkdir(parents=True)
        for v in views:
            for ph in phases:
                arr = np.zeros((6, 5), np.uint8)
                nib.save(nib.Nifti1Image(arr.astype(np.float32), np.eye(4)), folder / f"patient{p:04d}_{v}_{ph}.nii.gz")
                nib.save(nib.Nifti1Image(arr, np.eye(4)), folder / f"patient{p:04d}_{v}_{ph}_gt.nii.gz")
        (folder / "Info_2CH.cfg").write_text("ED: 1\n")  # other CAMUS files are ignored
    (root / "README.txt").write_text("not a patient")


def test_split_by_patient_and_written(tmp_path):
    _tree(tmp_path / "camus")
    out = tmp_path / "camus.json"
    dl = camus_datalist(tmp_path / "camus", val_fraction=0.1, test_fraction=0.2, seed=1, output_path=out)
    assert json.loads(out.read_text()) == dl
    sizes = {k: len(dl[k]) for k in ("training", "validation", "test")}
    assert sizes == {"training": 28, "validation": 4, "test": 8}  # 7 / 1 / 2 patients x 4 images
    patients = {k: {e["patient"] for e in dl[k]} for k in sizes}
    assert not (patients["training"] & patients["test"]) and not (patients["training"] & patients["validation"])
    e = dl["training"][0]
    assert e["label"] == e["image"].replace(".nii.gz", "_gt.nii.gz")
    assert (tmp_path / "camus" / e["image"]).is_file() and e["id"] == f"{e['patient']}_{e['view']}_{e['phase']}"
    assert camus_datalist(tmp_path / "camus", seed=1, val_fraction=0.1, test_fraction=0.2) == dl  # reproducible


def test_view_and_phase_selection(tmp_path):
    _tree(tmp_path / "c", patients=3)
    dl = camus_datalist(tmp_path / "c", views=("4CH",), phases=("ED",), val_fraction=0, test_fraction=0)
    assert len(dl["training"]) == 3 and {e["view"] for e in dl["training"]} == {"4CH"}
    with pytest.raises(ValueError, match="views"):
        camus_datalist(tmp_path / "c", views=("3CH",))


def test_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a directory"):
        camus_datalist(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no patientXXXX"):
        camus_datalist(tmp_path / "empty")
    _tree(tmp_path / "c", patients=2)
    (tmp_path / "c" / "patient0002" / "patient0002_4CH_ES_gt.nii.gz").unlink()
    with pytest.raises(ValueError, match="patient0002_4CH_ES.nii.gz: no ground-truth mask"):
        camus_datalist(tmp_path / "c")

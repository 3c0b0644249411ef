"""SR pair datalist: degradation assignment for single, combined and test sets."""

import json
from collections import Counter

import pytest

from common.data.sr_pairs import COMBINED_KINDS, assign_degradations, expand_test_degradations, sr_pair_datalist


def test_combined_set_has_the_same_size_and_equal_shares():
    entries = [{"image": f"{i}.nii.gz"} for i in range(60)]
    combined = assign_degradations(entries, "combined")
    assert len(combined) == len(entries)
    assert Counter(e["degradation"] for e in combined) == {k: 10 for k in COMBINED_KINDS}
    assert [e["image"] for e in combined] == [e["image"] for e in entries]
    assert all(e["degradation"] == "median" for e in assign_degradations(entries, "median"))
    assert "degradation" not in entries[0]  # copies, not in place
    from common.transforms.degradation import KSPACE_DEGRADATION_KINDS

    kspace = assign_degradations(entries[:50], "combined_kspace")
    assert Counter(e["degradation"] for e in kspace) == {k: 10 for k in KSPACE_DEGRADATION_KINDS}
    assert kspace[1]["degradation"] == KSPACE_DEGRADATION_KINDS[1]


def test_test_set_is_every_image_once_per_kind():
    entries = [{"image": "a"}, {"image": "b"}]
    out = expand_test_degradations(entries, ["gaussian", "mean"])
    assert [(e["image"], e["degradation"]) for e in out] == [
        ("a", "gaussian"),
        ("b", "gaussian"),
        ("a", "mean"),
        ("b", "mean"),
    ]
    with pytest.raises(ValueError, match="test_degradations"):
        expand_test_degradations(entries, ["gaussian", "nearest"])
    # a kind may name its sampling phase (the misregistration evaluation); unknown phases are refused
    legacy = expand_test_degradations(entries, ["gaussian@legacy"])
    assert [e["degradation"] for e in legacy] == ["gaussian@legacy"] * 2
    for bad in ("gaussian@corner", "nearest@legacy"):
        with pytest.raises(ValueError, match="test_degradations"):
            expand_test_degradations(entries, [bad])


def test_user_datalist_without_test_split_uses_validation(tmp_path):
    import nibabel as nib
    import numpy as np

    for name in ["t.nii.gz", "v.nii.gz"]:
        nib.save(
            nib.Nifti1Image(np.random.default_rng(0).random((16, 16)).astype(np.float32), np.eye(4)), tmp_path / name
        )
    (tmp_path / "list.json").write_text(
        json.dumps({"training": [{"image": "t.nii.gz"}], "validation": [{"image": "v.nii.gz"}]})
    )
    data = sr_pair_datalist(str(tmp_path / "list.json"), "", tmp_path / "cache", "combined", ["bicubic", "hann"])
    assert data["training"] == [{"image": str(tmp_path / "t.nii.gz"), "degradation": "bicubic"}]
    assert [e["degradation"] for e in data["test"]] == ["bicubic", "hann"]
    assert all(e["image"] == str(tmp_path / "v.nii.gz") for e in data["test"])

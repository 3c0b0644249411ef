"""Simulated label errors: morphology, flags, reproducibility, systematic direction, datalist injection."""

import json

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from common.transforms.label_errors import (
    CorruptLabel,
    RandCorruptLabeld,
    corrupt_datalist,
    dilate_structure,
    erode_structure,
)


def _label():
    lab = np.zeros((32, 32), np.int64)
    yy, xx = np.mgrid[:32, :32]
    r = np.hypot(yy - 14, xx - 16)
    lab[r <= 9] = 2
    lab[r <= 6] = 1
    lab[(np.hypot(yy - 27, xx - 16) <= 4) & (lab == 0)] = 3
    return lab


def test_dilate_and_erode_hand_case():
    lab = np.zeros((7, 7), np.int64)
    lab[3, 3] = 1
    grown = dilate_structure(lab, 1, 1)
    assert grown.sum() == 5  # the 4-neighbourhood ball of radius 1
    assert (erode_structure(grown, 1, 1) == lab).all()
    # Eroded LV pixels are handed to the surrounding myocardium, not to background.
    ring = _label()
    out = erode_structure(ring, 1, 2)
    freed = (ring == 1) & (out != 1)
    assert freed.any() and (out[freed] == 2).all()


def test_flags_and_reproducibility():
    lab = torch.as_tensor(_label())[None]
    outs = []
    for _ in range(2):
        t = RandCorruptLabeld("label", kind="random", prob=0.5).set_random_state(123)
        outs.append([t({"label": lab.clone()}) for _ in range(20)])
    for a, b in zip(*outs):
        assert a["corrupted"] == b["corrupted"]
        assert torch.equal(a["label"], b["label"])
    flags = [d["corrupted"] for d in outs[0]]
    assert 0 < sum(flags) < 20
    for d in outs[0]:
        assert torch.equal(d["label"], lab) != bool(d["corrupted"])
    other = RandCorruptLabeld("label", kind="random", prob=0.5).set_random_state(124)
    assert [other({"label": lab})["corrupted"] for _ in range(20)] != flags


def test_keeps_meta_tensor_and_records_clean_copy():
    lab = MetaTensor(torch.as_tensor(_label())[None].float(), affine=torch.diag(torch.tensor([2.0, 3.0, 1.0, 1.0])))
    t = RandCorruptLabeld("label", kind="systematic", prob=1.0, clean_key="label_clean").set_random_state(0)
    out = t({"label": lab})
    assert isinstance(out["label"], MetaTensor)
    torch.testing.assert_close(out["label"].affine, lab.affine)
    assert torch.equal(out["label_clean"], lab) and not torch.equal(out["label"], lab)


@pytest.mark.parametrize("direction, sign", [("dilate", 1), ("erode", -1)])
def test_systematic_direction_changes_area_one_way(direction, sign):
    lab = _label()
    t = CorruptLabel(kind="systematic", structures=(1,), direction=direction, radius=(1, 3))
    t.set_random_state(0)
    for _ in range(10):
        out = t(lab)
        assert sign * ((out == 1).sum() - (lab == 1).sum()) > 0


def test_random_errors_are_zero_mean_in_direction():
    lab = _label()
    t = CorruptLabel(kind="random", structures=(1,), radius=(2, 2))
    t.set_random_state(0)
    signs = [np.sign((t(lab) == 1).sum() - (lab == 1).sum()) for _ in range(200)]
    assert abs(np.mean(signs)) < 0.15 and set(signs) == {-1, 1}


def test_label_swap_and_boundary_shift():
    lab = _label()
    swapped = CorruptLabel(kind="label_swap", swap=(1, 3))(lab)
    assert ((swapped == 3) == (lab == 1)).all() and ((swapped == 1) == (lab == 3)).all()
    t = CorruptLabel(kind="boundary_shift", radius=(3, 3))
    t.set_random_state(1)
    shifted = t(lab)
    offset = t._plan[0]
    assert 2 <= np.hypot(*offset) <= 4
    np.testing.assert_array_equal(np.roll(lab, offset, axis=(0, 1)), shifted)  # nothing crosses the border here


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown label error kind"):
        CorruptLabel(kind="typo")
    with pytest.raises(ValueError, match="direction"):
        CorruptLabel(kind="systematic", direction="up")
    with pytest.raises(ValueError, match="radius"):
        CorruptLabel(radius=(3, 1))


def _write_datalist(tmp_path, n=8):
    entries = []
    for i in range(n):
        for kind in ("image", "label"):
            arr = (
                _label().astype(np.uint8) if kind == "label" else np.random.default_rng(i).random((32, 32), np.float32)
            )
            nib.save(nib.Nifti1Image(arr, np.eye(4)), tmp_path / f"{kind}_{i}.nii.gz")
        entries.append({"image": f"image_{i}.nii.gz", "label": f"label_{i}.nii.gz"})
    path = tmp_path / "list.json"
    path.write_text(json.dumps({"training": entries, "test": entries[:2]}))
    return path


def test_corrupt_datalist_exact_fraction_flags_and_reuse(tmp_path):
    src = _write_datalist(tmp_path)
    out = corrupt_datalist(
        src, None, tmp_path / "cache", kind="systematic", error_level=0.25, seed=3, structures=(1,), direction="dilate"
    )
    data = json.loads(out.read_text())
    train = data["training"]
    assert sum(e["corrupted"] for e in train) == 2  # exactly round(0.25 * 8)
    for e in train:
        clean = np.asarray(nib.load(e["label_clean"]).dataobj)
        lab = np.asarray(nib.load(e["label"]).dataobj)
        assert ((lab == 1).sum() > (clean == 1).sum()) == bool(e["corrupted"])
        np.testing.assert_array_equal(nib.load(e["label"]).affine, np.eye(4))
    assert len(data["test"]) == 2 and "corrupted" not in data["test"][0]
    again = corrupt_datalist(
        src, None, tmp_path / "cache", kind="systematic", error_level=0.25, seed=3, structures=(1,), direction="dilate"
    )
    assert again == out
    # Same seed, higher level: the corrupted set grows and contains the smaller one.
    more = json.loads(
        corrupt_datalist(
            src,
            None,
            tmp_path / "cache",
            kind="systematic",
            error_level=0.5,
            seed=3,
            structures=(1,),
            direction="dilate",
        ).read_text()
    )
    low = {e["id"] for e in train if e["corrupted"]}
    high = {e["id"] for e in more["training"] if e["corrupted"]}
    assert len(high) == 4 and low <= high
    with pytest.raises(ValueError, match="error_level"):
        corrupt_datalist(src, None, tmp_path / "cache", error_level=1.5)
    with pytest.raises(FileNotFoundError, match="missing.json"):
        corrupt_datalist(tmp_path / "missing.json", None, tmp_path / "cache")


def test_prepare_validates_user_datalist_before_work(tmp_path):
    from common.data import DatalistError
    from common.data.label_error_datalist import prepare_label_error_datalist

    src = _write_datalist(tmp_path, n=2)
    bad = np.full((32, 32), 7, np.uint8)
    nib.save(nib.Nifti1Image(bad, np.eye(4)), tmp_path / "label_1.nii.gz")
    with pytest.raises(DatalistError, match="label_1.nii.gz"):
        prepare_label_error_datalist(str(src), "", tmp_path / "cache", error_type="random", error_level=0.5)
    assert not (tmp_path / "cache").exists()  # nothing generated before the check
    nib.save(nib.Nifti1Image(_label().astype(np.uint8), np.eye(4)), tmp_path / "label_1.nii.gz")
    out = prepare_label_error_datalist(str(src), "", tmp_path / "cache", error_type="random", error_level=0.5)
    assert sum(e["corrupted"] for e in json.loads(out.read_text())["training"]) == 1


def test_default_error_radius_per_kind():
    from common.transforms.label_errors import default_error_radius

    assert default_error_radius("random") == default_error_radius("boundary_jitter") == [1, 1]
    assert default_error_radius("random_size_matched") == default_error_radius("systematic") == [2, 6]
    assert default_error_radius("systematic") == default_error_radius("label_swap") == [2, 6]
    with pytest.raises(ValueError, match="unknown error type 'noise'"):
        default_error_radius("noise")


def _mean_label_dice(kind: str, labels: list) -> float:
    from common.metrics import label_dice
    from common.transforms.label_errors import default_error_radius

    values = []
    for i, clean in enumerate(labels):
        corrupt = CorruptLabel(kind=kind, radius=default_error_radius(kind)).set_random_state(seed=i)
        values.append(label_dice(corrupt(clean), clean, [1, 2, 3]))
    return float(np.mean(values))


def test_size_matched_random_errors_match_systematic_label_dice_on_phantoms():
    from common.data.echo_phantom import echo_phantom_sample

    rng = np.random.default_rng(11)
    labels = [echo_phantom_sample(rng, 128)[1].astype(np.int64) for _ in range(12)]
    systematic = _mean_label_dice("systematic", labels)
    matched = _mean_label_dice("random_size_matched", labels)
    jitter = _mean_label_dice("boundary_jitter", labels)
    assert 0.5 < systematic < 0.85  # a real change, far from the clean label
    assert abs(matched - systematic) < 0.05
    assert jitter > systematic + 0.15 and jitter > matched + 0.15
    assert _mean_label_dice("random", labels) == pytest.approx(jitter)  # the old name is the jitter


def test_random_direction_kinds_draw_both_directions_and_systematic_only_one():
    directions = {}
    for kind in ("random_size_matched", "boundary_jitter", "systematic"):
        t = CorruptLabel(kind=kind).set_random_state(seed=0)
        seen = set()
        for _ in range(10):
            t.randomize(2)
            seen |= {d for _, d, _ in t._plan}
        directions[kind] = seen
    assert directions["random_size_matched"] == directions["boundary_jitter"] == {"dilate", "erode"}
    assert directions["systematic"] == {"erode"}

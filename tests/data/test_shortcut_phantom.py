"""The shortcut phantom: realised correlation, balanced test cells, the identity cue, determinism, user datalists."""

import json
from collections import Counter

import nibabel as nib
import numpy as np
import pytest

from common.data.datalist import DatalistError
from common.data.shortcut_phantom import (
    ALIGNED_SCENE,
    ShortcutPhantomConfig,
    assign_groups,
    generate_shortcut_phantom,
    prepare_shortcut_datalist,
    shortcut_phantom_sample,
)


@pytest.mark.parametrize("correlation, aligned_per_identity", [(0.5, 10), (0.75, 15), (0.9, 18), (1.0, 20)])
def test_realised_training_correlation_matches_the_setting(tmp_path, correlation, aligned_per_identity):
    cfg = ShortcutPhantomConfig(num_train=40, num_val=8, num_test=8, size=32, correlation=correlation)
    path = generate_shortcut_phantom(tmp_path, cfg, seed=3)
    data = json.loads(path.read_text())
    cells = Counter((e["identity"], e["scene"] == ALIGNED_SCENE[e["identity"]]) for e in data["training"])
    assert cells[(1, True)] == cells[(2, True)] == aligned_per_identity
    assert cells[(1, False)] == cells[(2, False)] == 20 - aligned_per_identity
    assert all(
        e["group"] == ("common" if e["scene"] == ALIGNED_SCENE[e["identity"]] else "rare") for e in data["training"]
    )
    for e in data["training"][:6]:  # the label file holds the entry's identity
        label = np.asarray(nib.load(path.parent / e["label"]).dataobj)
        assert set(np.unique(label).tolist()) == {0, e["identity"]}


def test_test_split_is_balanced_over_identity_and_scene(tmp_path):
    cfg = ShortcutPhantomConfig(num_train=8, num_val=4, num_test=12, size=32, correlation=0.99)
    data = json.loads(generate_shortcut_phantom(tmp_path, cfg, seed=0).read_text())
    cells = Counter((e["identity"], e["scene"]) for e in data["test"])
    assert cells == {(1, "sector"): 3, (1, "linear"): 3, (2, "sector"): 3, (2, "linear"): 3}
    groups = Counter(e["group"] for e in data["test"])
    assert groups == {"common": 6, "rare": 6}
    assert {(e["identity"], e["scene"]) for e in data["test"] if e["group"] == "rare"} == {(1, "linear"), (2, "sector")}
    with pytest.raises(ValueError, match="multiple of 4"):
        ShortcutPhantomConfig(num_test=10)
    with pytest.raises(ValueError, match="correlation must be in"):
        ShortcutPhantomConfig(correlation=1.5)


def _directional_variation(image, mask):
    """Mean |difference| between vertical neighbours and between horizontal neighbours, both inside ``mask``."""
    rows = np.abs(np.diff(image, axis=0))[mask[1:] & mask[:-1]].mean()
    cols = np.abs(np.diff(image, axis=1))[mask[:, 1:] & mask[:, :-1]].mean()
    return rows, cols


def test_the_identity_cue_is_present_and_differs_between_identities():
    ratios = {1: [], 2: []}
    for identity in (1, 2):
        for k in range(6):
            image, label = shortcut_phantom_sample(np.random.default_rng(k), identity, "linear", 64)
            rows, cols = _directional_variation(image, ndi_erode(label > 0))
            ratios[identity].append(rows / cols)
    # identity 1: stripes along the rows (intensity changes from row to row); identity 2: along the columns
    assert min(ratios[1]) > 1.2 and max(ratios[2]) < 1 / 1.2
    # without a cue the two identities are the same image up to the label value
    a, la = shortcut_phantom_sample(np.random.default_rng(5), 1, "sector", 64, cue_strength=0.0)
    b, lb = shortcut_phantom_sample(np.random.default_rng(5), 2, "sector", 64, cue_strength=0.0)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(la > 0, lb > 0)
    assert la.max() == 1 and lb.max() == 2


def ndi_erode(mask):
    from scipy import ndimage

    return ndimage.binary_erosion(mask, iterations=2)


def test_the_scene_changes_the_field_of_view():
    sector, _ = shortcut_phantom_sample(np.random.default_rng(0), 1, "sector", 64)
    linear, _ = shortcut_phantom_sample(np.random.default_rng(0), 1, "linear", 64)
    assert (sector[:20, :3] == 0).all() and (linear[:, :3] == 0).all()  # both have dark margins
    assert (sector[5, 28:36] > 0).all() and (sector[5, 10:16] == 0).all()  # the fan is narrow at the top
    assert (linear[5, 10:54] > 0).mean() > 0.95  # the linear field of view is a full-height rectangle


def test_same_seed_same_bytes_other_seed_other_images(tmp_path):
    cfg = ShortcutPhantomConfig(num_train=4, num_val=2, num_test=4, size=32)
    a = generate_shortcut_phantom(tmp_path / "a", cfg, seed=1)
    b = generate_shortcut_phantom(tmp_path / "b", cfg, seed=1)
    c = generate_shortcut_phantom(tmp_path / "c", cfg, seed=2)
    first = json.loads(a.read_text())["training"][0]["image"]
    assert (a.parent / first).read_bytes() == (b.parent / first).read_bytes()
    assert (a.parent / first).read_bytes() != (c.parent / first).read_bytes()


def _user_datalist(tmp_path, entries):
    tmp_path.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, items in entries.items():
        rows = []
        for i, (identity, scene) in enumerate(items):
            image, label = shortcut_phantom_sample(np.random.default_rng(i), identity, scene, 32)
            nib.save(nib.Nifti1Image(image, np.eye(4)), tmp_path / f"{split}{i}_img.nii.gz")
            nib.save(nib.Nifti1Image(label, np.eye(4)), tmp_path / f"{split}{i}_lab.nii.gz")
            row = {"image": f"{split}{i}_img.nii.gz", "label": f"{split}{i}_lab.nii.gz", "id": f"{split}{i}"}
            if identity is not None:
                row.update(identity=identity, scene=scene)
            rows.append(row)
        out[split] = rows
    path = tmp_path / "list.json"
    path.write_text(json.dumps(out))
    return path


def test_user_datalist_groups_follow_the_training_majority(tmp_path):
    train = [(1, "linear"), (1, "linear"), (1, "sector"), (2, "sector"), (2, "sector")]
    path = _user_datalist(tmp_path, {"training": train, "validation": [(1, "sector")],
                                     "test": [(1, "linear"), (1, "sector"), (2, "linear"), (2, "sector")]})  # fmt: skip
    data = json.loads(prepare_shortcut_datalist(str(path), None, tmp_path / "cache").read_text())
    assert [e["group"] for e in data["test"]] == ["common", "rare", "rare", "common"]
    assert data["validation"][0]["group"] == "rare"
    assert data["test"][0]["image"] == str((tmp_path / "test0_img.nii.gz").resolve())


def test_user_datalist_without_identity_is_a_clear_error(tmp_path):
    path = _user_datalist(tmp_path, {"training": [(1, "linear")], "validation": [(1, "linear")], "test": [(1, "sector")]})
    data = json.loads(path.read_text())
    del data["test"][0]["identity"]
    path.write_text(json.dumps(data))
    with pytest.raises(DatalistError, match=r"list\.json: test\[0\] has no 'identity' key"):
        prepare_shortcut_datalist(str(path), None, tmp_path / "cache")
    with pytest.raises(DatalistError, match="identity '3', which no training entry has"):
        assign_groups({"training": [{"identity": 1, "scene": "a"}], "test": [{"identity": 3, "scene": "a"}]}, "x.json")

"""Per-group segmentation metrics: hand-computed Dice, volumes, volume bias, oriented AUC and flip fractions."""

import json
import math

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from sklearn.metrics import roc_auc_score

from common.handlers.group_metrics import GroupSegmentationMetrics, subject_record, summarize_groups
from common.metrics.flip import flip_fractions

STRUCTS = ["a", "b"]


def test_subject_record_hand_computed():
    label = torch.zeros(1, 4, 4, 2)
    label[0, :2, :, 0] = 1  # 8 voxels of class 1
    label[0, 2:, :, 0] = 2  # 8 voxels of class 2
    pred = label.clone()
    pred[0, 0, :, 0] = 2  # 4 voxels of class 1 flipped to 2
    pred[0, 3, :, 0] = 0  # 4 voxels of class 2 missed
    rec = subject_record(pred, label, STRUCTS, spacing=(2.0, 1.0, 1.0))  # 2 mm^3 per voxel
    assert rec["dice"]["a"] == pytest.approx(2 * 4 / (4 + 8))
    assert rec["dice"]["b"] == pytest.approx(2 * 4 / (8 + 8))
    assert rec["volume_true"] == {"a": pytest.approx(0.016), "b": pytest.approx(0.016)}  # 8 voxels * 2 mm^3 = 0.016 ml
    assert rec["volume_pred"] == {"a": pytest.approx(0.008), "b": pytest.approx(0.016)}
    assert rec["flip_counts"] == [8.0, 4.0, 4.0, 16.0]
    assert rec["volume_bias"] == {"a": pytest.approx(-0.5), "b": pytest.approx(0.0)}  # 4 of 8 voxels left in a


def _subjects():
    rng = np.random.default_rng(0)
    subjects = []
    for g, true_a in (("H", 10.0), ("L", 9.0)):
        for i in range(5):
            t = true_a + rng.normal(0, 0.1)
            p = t * (1.2 if g == "L" else 1.0) + i * 0.01
            subjects.append(
                {
                    "subject": f"{g}{i}",
                    "group": g,
                    "dice": {"a": 0.9, "b": 0.8 if g == "H" else 0.6},
                    "volume_true": {"a": t, "b": 5.0},
                    "volume_pred": {"a": p, "b": 5.0 + i},
                    "volume_bias": {"a": (p - t) / t, "b": i / 5.0},
                    "flip_counts": [8, 1, 1, 10],
                }
            )
    return subjects


def test_summarize_groups_against_numpy_and_sklearn():
    subjects = _subjects()
    out = summarize_groups(subjects, STRUCTS, n_bootstrap=200, seed=0)
    for g in ("H", "L"):
        rows = [s for s in subjects if s["group"] == g]
        vb = [(s["volume_pred"]["a"] - s["volume_true"]["a"]) / s["volume_true"]["a"] for s in rows]
        entry = out["groups"][g]["volume_bias"]["a"]
        assert entry["values"] == pytest.approx(vb)
        assert entry["median"] == pytest.approx(np.median(vb))
        assert entry["ci95"][0] <= entry["median"] <= entry["ci95"][1]
    assert out["groups"]["L"]["dice"]["b"]["mean"] == pytest.approx(0.6)
    # H has larger true volumes of "a" -> H is the positive group for both AUCs
    auc = out["auc"]["a"]
    assert auc["positive"] == "H"
    y = [s["group"] == "H" for s in subjects]
    assert auc["manual"] == pytest.approx(roc_auc_score(y, [s["volume_true"]["a"] for s in subjects])) == 1.0
    assert auc["pred"] == pytest.approx(roc_auc_score(y, [s["volume_pred"]["a"] for s in subjects]))
    assert auc["pred"] < 0.5  # the +20% bias of group L reverses the true difference
    assert out["groups"]["H"]["flip"]["global"] == pytest.approx({"correct": 0.8, "flip": 0.1, "miss": 0.1})


def test_flip_fractions_per_image_vs_global():
    f = flip_fractions([[1, 1, 0, 2], [9, 0, 1, 10], [0, 0, 0, 0]])
    assert f["global"]["correct"] == pytest.approx(10 / 12)
    assert f["per_image"]["correct"] == pytest.approx((0.5 + 0.9) / 2)
    assert f["num_images"] == 2


def test_flip_fractions_asymmetric_hand_case():
    """Counts [correct, flip, miss, foreground]: 3 / 1 / 1 of 5, 1 / 2 / 5 of 8, and one subject without foreground."""
    f = flip_fractions([[3, 1, 1, 5], [1, 2, 5, 8], [0, 0, 0, 0]])
    assert f["global"] == pytest.approx({"correct": 4 / 13, "flip": 3 / 13, "miss": 6 / 13})
    assert f["per_image"] == pytest.approx({"correct": 0.3625, "flip": 0.225, "miss": 0.4125})
    assert f["num_images"] == 2
    single = flip_fractions([[3, 1, 1, 5]])
    assert single["global"] == pytest.approx({"correct": 0.6, "flip": 0.2, "miss": 0.2})
    assert single["per_image"] == pytest.approx({"correct": 0.6, "flip": 0.2, "miss": 0.2})
    empty = flip_fractions([[0, 0, 0, 0]])
    assert empty["num_images"] == 0
    assert all(math.isnan(v) for v in [*empty["global"].values(), *empty["per_image"].values()])


def test_flip_fractions_agree_with_flip_decomposition():
    from common.metrics.flip import flip_counts, flip_decomposition

    gen = torch.Generator().manual_seed(4)
    gt = torch.randint(0, 4, (5, 1, 6, 6), generator=gen)
    pred = torch.where(torch.rand(gt.shape, generator=gen) < 0.5, gt, torch.randint(0, 4, gt.shape, generator=gen))
    expected = flip_decomposition(pred, gt)
    got = flip_fractions(flip_counts(pred, gt).tolist())
    assert got["global"] == pytest.approx(expected["global"])
    assert got["per_image"] == pytest.approx(expected["per_image"])
    assert got["num_images"] == expected["num_images"]


def test_handler_on_an_evaluator(tmp_path):
    from ignite.engine import Engine

    structs = ["a", "b"]
    affine = torch.diag(torch.tensor([2.0, 2.0, 2.0, 1.0]))

    def step(engine, batch):
        return [
            {"pred": MetaTensor(b["label"].clone(), affine=affine), "label": MetaTensor(b["label"], affine=affine)}
            for b in batch
        ]

    data = []
    for g, n in (("H", 6), ("L", 4)):
        lab = torch.zeros(1, 4, 4, 4)
        lab[0, :2] = 1
        lab[0, 2:, :n] = 2
        data.append([{"label": lab, "group": g, "subject": f"s{g}"}])
    engine = Engine(step)

    handler = GroupSegmentationMetrics(
        structs, output_file=tmp_path / "metrics.json", settings={"x": 1}, n_bootstrap=50
    )
    handler.attach(engine)
    engine.run(data, max_epochs=1)
    assert engine.state.metrics["dice_a_H"] == pytest.approx(1.0)
    assert engine.state.metrics["volume_bias_b_L"] == pytest.approx(0.0)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["settings"] == {"x": 1}
    assert set(saved) == {"settings", "metrics", "per_sample", "extra"}
    assert [(s["id"], s["group"]) for s in saved["per_sample"]] == [("sH", "H"), ("sL", "L")]
    assert saved["per_sample"][0]["volume_true"]["a"] == pytest.approx(32 * 8 / 1000)
    assert saved["metrics"]["dice_a_H"] == pytest.approx(1.0) and saved["metrics"]["volume_bias_b_L"] == 0.0
    assert saved["extra"]["groups"]["L"]["n"] == 1 and saved["extra"]["structures"] == list(structs)


def test_balanced_dice_weighs_groups_equally_whatever_their_size():
    subjects = _subjects()[:5] + _subjects()[5:6]  # 5 subjects of H, 1 of L
    out = summarize_groups(subjects, STRUCTS, n_bootstrap=10, seed=0)
    h, low = (0.9 + 0.8) / 2, (0.9 + 0.6) / 2
    assert out["balanced_dice"] == pytest.approx((h + low) / 2)  # 0.8
    assert out["mean_dice"] == pytest.approx((5 * h + low) / 6)  # pooled: pulled towards group H
    assert out["balanced_dice"] < out["mean_dice"]


def test_summary_flip_of_a_group_without_foreground_is_json_null():
    """A group whose subjects have no foreground gets ``None`` fractions (valid JSON), and an int image count."""
    subjects = _subjects()
    for s in subjects:
        if s["group"] == "L":
            s["flip_counts"] = [0, 0, 0, 0]
    out = summarize_groups(subjects, STRUCTS, n_bootstrap=10)
    flip_l, flip_h = out["groups"]["L"]["flip"], out["groups"]["H"]["flip"]
    assert flip_l["global"] == {"correct": None, "flip": None, "miss": None}
    assert flip_l["num_images"] == 0 and isinstance(flip_h["num_images"], int)
    assert flip_h["global"] == pytest.approx({"correct": 0.8, "flip": 0.1, "miss": 0.1})
    json.dumps(out, allow_nan=False)

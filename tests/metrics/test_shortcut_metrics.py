"""Shortcut metrics: average precision, flip-risk detection, per-group summaries, identity uncertainty, metrics.json."""

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from common.metrics.flip import flip_risk
from common.metrics.shortcut import (
    average_precision,
    flip_risk_detection,
    group_summary,
    identity_uncertainty,
    write_shortcut_metrics,
)
from common.transforms import IdentityUncertaintyd


def test_average_precision_known_values():
    # ranks 1 and 3 are positive: AP = 1/2 * 1 + 1/2 * 2/3
    assert average_precision([0.9, 0.8, 0.7, 0.6], [1, 0, 1, 0]) == pytest.approx(5 / 6)
    # order of the input does not matter, only the scores
    assert average_precision([0.6, 0.7, 0.8, 0.9], [0, 1, 0, 1]) == pytest.approx(5 / 6)
    # a tie enters together: threshold 0.5 gives P = 1/2, R = 1/2; threshold 0.1 gives P = 2/3, R = 1
    assert average_precision([0.5, 0.5, 0.1], [1, 0, 1]) == pytest.approx(0.25 + 1 / 3)
    assert average_precision([0.1, 0.2], [0, 0]) != average_precision([0.1, 0.2], [0, 0])  # NaN without positives
    assert average_precision([0.3, 0.9], [0, 1]) == 1.0 and average_precision([0.9, 0.3], [0, 1]) == pytest.approx(0.5)


def test_flip_risk_detection_auroc_by_hand():
    records = [
        {"flip": 0.6, "flip_risk": 0.9},  # flip-prone
        {"flip": 0.3, "flip_risk": 0.4},  # flip-prone
        {"flip": 0.1, "flip_risk": 0.5},
        {"flip": 0.0, "flip_risk": 0.1},
        {"flip": None, "flip_risk": 0.8},  # no foreground: left out
    ]
    det = flip_risk_detection(records, threshold=0.25)
    # pairs (pos, neg): 0.9 > 0.5, 0.9 > 0.1, 0.4 < 0.5, 0.4 > 0.1 -> 3 / 4
    assert det["auroc"] == pytest.approx(0.75)
    # ranking 0.9 (+), 0.5 (-), 0.4 (+), 0.1 (-): AP = 1/2 * 1 + 1/2 * 2/3
    assert det["ap"] == pytest.approx(5 / 6)
    assert det["num_positive"] == 2 and det["num_images"] == 4
    assert math.isnan(flip_risk_detection(records, threshold=0.9)["auroc"])  # nobody flip-prone


def test_group_summary_means_and_skips_absent_classes():
    names = ["identity_1", "identity_2"]
    records = [
        {"dice_identity_1": 0.8, "dice_identity_2": None, "correct": 0.9, "flip": 0.05, "miss": 0.05, "flip_risk": 0.2},
        {"dice_identity_1": float("nan"), "dice_identity_2": 0.4, "correct": 0.3, "flip": 0.6, "miss": 0.1,
         "flip_risk": 0.6},
    ]  # fmt: skip
    s = group_summary(records, names)
    assert s["dice"] == {"identity_1": 0.8, "identity_2": 0.4}
    assert s["dice_mean"] == pytest.approx(0.6)
    assert (s["correct"], s["flip"], s["miss"]) == pytest.approx((0.6, 0.325, 0.075))
    assert s["flip_risk_mean"] == pytest.approx(0.4) and s["num_images"] == 2


def test_identity_uncertainty_is_the_map_behind_flip_risk():
    probs = torch.zeros(3, 2, 2)
    probs[:, 0, 0] = torch.tensor([0.2, 0.4, 0.4])  # foreground, identities tied: entropy 1
    probs[:, 0, 1] = torch.tensor([0.1, 0.9, 0.0])  # foreground, certain: entropy 0
    probs[:, 1, 0] = torch.tensor([0.8, 0.1, 0.1])  # background: 0
    probs[:, 1, 1] = torch.tensor([0.3, 0.6, 0.1])
    unc = identity_uncertainty(probs)
    p = torch.tensor([6 / 7, 1 / 7])
    h = float(-(p * p.log()).sum() / math.log(2))
    np.testing.assert_allclose(unc[0].numpy(), [[1.0, 0.0], [0.0, h]], atol=1e-6)
    assert float(unc[0][probs.argmax(0) != 0].mean()) == pytest.approx(float(flip_risk(probs[None])[0]), abs=1e-6)
    out = IdentityUncertaintyd(keys="pred")({"pred": probs})
    assert out["identity_uncertainty"].shape == (1, 2, 2)
    with pytest.raises(ValueError, match="C>=3"):
        identity_uncertainty(torch.rand(2, 4, 4))


def test_write_shortcut_metrics_groups_the_segmentation_report(tmp_path):
    from common.handlers import SegmentationReport

    # two 1x4 images: "a" (common, identity 1) fully correct; "b" (rare, identity 2) half flipped to identity 1
    label = torch.tensor([[[[1, 1, 0, 0]]], [[[2, 2, 2, 2]]]]).float()
    hard = torch.tensor([[1, 1, 0, 0], [1, 1, 2, 2]])
    logits = torch.nn.functional.one_hot(hard, 3).movedim(-1, 1).float()[:, :, None] * 10
    report = SegmentationReport(num_classes=3, class_names=["identity_1", "identity_2"])
    engine = SimpleNamespace(state=SimpleNamespace(output={"pred": logits, "label": label}, batch={"id": ["a", "b"]}))
    report(engine)
    datalist = tmp_path / "list.json"
    datalist.write_text(json.dumps({"test": [{"id": "a", "group": "common", "identity": 1, "scene": "sector"},
                                             {"id": "b", "group": "rare", "identity": 2, "scene": "sector"}]}))  # fmt: skip
    path = write_shortcut_metrics(tmp_path, report, datalist, {"correlation": 0.9}, flip_threshold=0.25)
    m = json.loads(path.read_text())
    assert m["settings"] == {"correlation": 0.9}
    assert m["metrics"]["flip_flip_common"] == 0.0 and m["metrics"]["flip_flip_rare"] == pytest.approx(0.5)
    assert m["metrics"]["flip_gap"] == pytest.approx(0.5)
    assert m["metrics"]["dice_identity_1_common"] == pytest.approx(1.0)
    assert m["metrics"]["dice_identity_2_rare"] == pytest.approx(2 * 2 / (2 + 4))  # 2 right of 2 predicted, 4 true
    assert m["metrics"]["dice_identity_1_rare"] is None  # identity 1 absent from the rare image
    assert m["metrics"]["dice_gap"] == pytest.approx(1.0 - 2 / 3)
    assert [p["group"] for p in m["per_sample"]] == ["common", "rare"]
    assert m["extra"]["flip_risk_detection"]["num_positive"] == 1

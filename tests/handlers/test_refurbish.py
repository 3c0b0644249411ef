"""Detection scoring, pseudo-label refurbishment in a cached dataset, and the per-image test report."""

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from ignite.engine import Engine, Events
from monai.data import CacheDataset, MetaTensor
from sklearn.metrics import average_precision_score, roc_auc_score

from common.handlers.refurbish import RefurbishHandler, SegmentationReport, detection_metrics, write_label_error_metrics


class ThresholdNet(torch.nn.Module):
    """Two-class logits: class 1 where the image is above 0.5 (confidently)."""

    def forward(self, x):
        return torch.cat([torch.zeros_like(x), 20 * (x - 0.5)], 1)


class FixedScores:
    def __init__(self, scores):
        self._scores = scores

    def all_scores(self, upto_epoch=None):
        return {"loss": self._scores}


def test_detection_metrics_match_sklearn():
    scores = {"a": 0.9, "b": 0.2, "c": 0.5, "d": 0.4, "e": 0.7}
    flags = {"a": 1, "b": 0, "c": 1, "d": 0, "e": 0}
    out = detection_metrics(scores, flags)
    y, s = [flags[k] for k in scores], list(scores.values())
    assert out["auroc"] == pytest.approx(roc_auc_score(y, s)) == pytest.approx(5 / 6)
    assert out["ap"] == pytest.approx(average_precision_score(y, s))
    assert detection_metrics(scores, dict.fromkeys(scores, 0))["auroc"] is None


def _dataset():
    items = []
    for i in range(4):
        image = torch.zeros(1, 4, 4)
        image[:, : i + 1] = 1.0
        clean = (image > 0.5).float()
        wrong = torch.zeros(1, 4, 4) if i < 2 else clean.clone()
        items.append({"image": image, "label": wrong, "label_clean": clean, "id": f"s{i}", "corrupted": int(i < 2)})
    return CacheDataset(items, transform=None, progress=False)


def test_refurbish_replaces_only_flagged_labels(tmp_path):
    ds = _dataset()
    scores = {"s0": 3.0, "s1": 2.0, "s2": 1.0, "s3": 0.0}
    handler = RefurbishHandler({"loss": FixedScores(scores)}, ds, ThresholdNet(), epoch=5, output_dir=tmp_path)
    result = handler.run()
    assert result["flagged"] == ["s0", "s1"]
    assert result["metrics"]["loss"]["auroc"] == 1.0
    for i in range(4):
        item = ds[i]
        torch.testing.assert_close(item["label"], item["label_clean"])  # flagged fixed, others were clean already
    q = result["label_quality"]
    assert (
        q["num_refurbished"] == 2 and q["label_dice_vs_clean_before"] == 0.0 and q["label_dice_vs_clean_after"] == 1.0
    )
    saved = json.loads((tmp_path / "detection.json").read_text())
    assert saved["flags"] == {"s0": 1, "s1": 1, "s2": 0, "s3": 0}


def test_confidence_keeps_original_where_unsure(tmp_path):
    ds = _dataset()
    ds._cache[0]["image"][:, 0, 0] = 0.5  # logits 0/0: probability 0.5 < 0.9 -> keep the old label there
    handler = RefurbishHandler({"loss": FixedScores({"s0": 1.0, "s1": 0.0, "s2": 0.0, "s3": 0.0})}, ds,
                               ThresholdNet(), epoch=1, flag_fraction=0.25, confidence=0.9, output_dir=tmp_path)  # fmt: skip
    handler.run()
    lab = ds[0]["label"][0]
    assert lab[0, 0] == 0 and lab[0, 1:].eq(1).all() and lab[1:].eq(0).all()


def test_no_refurbish_only_scores(tmp_path):
    ds = _dataset()
    before = [ds[i]["label"].clone() for i in range(4)]
    RefurbishHandler({"loss": FixedScores({"s0": 1.0, "s1": 0.9, "s2": 0.1, "s3": 0.0})}, ds, ThresholdNet(), epoch=1,
                     refurbish=False, output_dir=tmp_path).run()  # fmt: skip
    assert all(torch.equal(ds[i]["label"], before[i]) for i in range(4))
    with pytest.raises(ValueError, match="unknown detector"):
        RefurbishHandler({"loss": FixedScores({"s0": 1.0})}, ds, ThresholdNet(), epoch=1, detector="vog").run()


def test_segmentation_report_hand_case(tmp_path):
    label = torch.tensor([[1, 1, 2, 0], [2, 2, 0, 0]])[None]
    pred_idx = torch.tensor([[1, 2, 2, 0], [0, 1, 0, 1]])
    logits = torch.nn.functional.one_hot(pred_idx, 3).permute(2, 0, 1).float() * 10
    report = SegmentationReport(num_classes=3, class_names=["a", "b"])
    engine = SimpleNamespace(
        state=SimpleNamespace(batch={"id": ["x"]}, output={"pred": logits[None], "label": label[None]})
    )
    report(engine)
    res = report.results()
    # class a: pred {(0,0),(1,1),(1,3)} vs gt {(0,0),(0,1)} -> 2*1/5; class b: pred {(0,1),(0,2)} vs gt {(0,2),(1,0),(1,1)} -> 2/5
    assert res["dice"] == pytest.approx({"a": 0.4, "b": 0.4})
    assert res["flip"]["global"] == pytest.approx({"correct": 0.4, "flip": 0.4, "miss": 0.2})
    assert res["per_image"][0]["id"] == "x" and 0.0 <= res["per_image"][0]["flip_risk"] < 0.01
    path = write_label_error_metrics(tmp_path, report, {"error_type": "random"})
    saved = json.loads(path.read_text())
    assert saved["settings"] == {"error_type": "random"} and "detection" not in saved["extra"]
    assert np.isclose(saved["extra"]["test"]["dice_mean"], 0.4) and np.isclose(saved["metrics"]["dice_mean"], 0.4)
    assert saved["metrics"]["dice_a"] == pytest.approx(0.4) and saved["metrics"]["flip_miss"] == pytest.approx(0.2)
    assert [p["id"] for p in saved["per_sample"]] == [r["id"] for r in res["per_image"]]


def test_segmentation_report_asymmetric_flip_fractions_per_image_and_pooled():
    """Image A: 3 correct / 1 flip / 1 miss of 5; image B: 1 / 2 / 5 of 8; image C: no foreground."""
    labels = torch.tensor(
        [
            [[1, 1, 2, 3], [2, 0, 0, 0]],
            [[1, 2, 2, 2], [3, 3, 3, 3]],
            [[0, 0, 0, 0], [0, 0, 0, 0]],
        ]
    )[:, None]
    pred_idx = torch.tensor(
        [
            [[1, 1, 2, 1], [0, 0, 3, 0]],
            [[1, 1, 3, 0], [0, 0, 0, 0]],
            [[2, 2, 0, 0], [0, 0, 0, 1]],
        ]
    )
    logits = torch.nn.functional.one_hot(pred_idx, 4).permute(0, 3, 1, 2).float() * 10
    report = SegmentationReport(num_classes=4, class_names=["a", "b", "c"])
    engine = SimpleNamespace(
        state=SimpleNamespace(batch={"id": ["A", "B", "C"]}, output={"pred": logits, "label": labels})
    )
    report(engine)
    res = report.results()
    rows = {r["id"]: r for r in res["per_image"]}
    assert {k: rows["A"][k] for k in ("correct", "flip", "miss")} == pytest.approx(
        {"correct": 0.6, "flip": 0.2, "miss": 0.2}
    )
    assert {k: rows["B"][k] for k in ("correct", "flip", "miss")} == pytest.approx(
        {"correct": 0.125, "flip": 0.25, "miss": 0.625}
    )
    assert rows["C"]["correct"] is None and rows["C"]["flip"] is None and rows["C"]["miss"] is None
    assert res["flip"]["global"] == pytest.approx({"correct": 4 / 13, "flip": 3 / 13, "miss": 6 / 13})
    assert res["flip"]["per_image"] == pytest.approx(
        {"correct": (0.6 + 0.125) / 2, "flip": (0.2 + 0.25) / 2, "miss": (0.2 + 0.625) / 2}
    )
    assert res["flip"]["num_images"] == 2 and res["num_images"] == 3
    # the per-image mean of the records equals the report's per_image view
    for k in ("correct", "flip", "miss"):
        assert np.mean([rows[i][k] for i in ("A", "B")]) == pytest.approx(res["flip"]["per_image"][k])


class RecordingDetector:
    """A detector handler that records when it runs and scores every sample 1.0."""

    def __init__(self, log):
        self.log = log

    def attach(self, engine):
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def __call__(self, engine):
        self.log.append(("detector", engine.state.epoch))

    def all_scores(self, upto_epoch=None):
        return {"loss": {f"s{i}": float(i) for i in range(4)}}


def test_attach_adds_detectors_once_and_before_detection(tmp_path):
    log = []
    detector = RecordingDetector(log)
    plain = SimpleNamespace(all_scores=lambda upto_epoch=None: {"other": {"s0": 1.0}})  # no attach: left alone
    handler = RefurbishHandler({"loss": detector, "plain": plain}, _dataset(), ThresholdNet(), epoch=2,
                               refurbish=False, output_dir=tmp_path)  # fmt: skip
    original_run = handler.run
    handler.run = lambda global_step=None: log.append(("detect", global_step)) or original_run(global_step)
    engine = Engine(lambda e, b: None)
    detector.attach(engine)  # attached already: not attached twice
    handler.attach(engine)
    engine.run([0], max_epochs=3)
    assert log == [("detector", 1), ("detector", 2), ("detect", 2), ("detector", 3)]
    saved = json.loads((tmp_path / "detection.json").read_text())
    assert saved["flagged"] == ["s3", "s2"] and set(saved["scores"]) == {"loss", "other"}


def test_items_without_ids_are_keyed_by_source_file(tmp_path):
    ds = _dataset()
    for i, item in enumerate(ds._cache):
        del item["id"]
        item["image"] = MetaTensor(item["image"], meta={"filename_or_obj": f"/studies/s{i}.nii.gz"})
    scores = {f"/studies/s{i}.nii.gz": float(3 - i) for i in range(4)}
    result = RefurbishHandler({"loss": FixedScores(scores)}, ds, ThresholdNet(), epoch=1, output_dir=tmp_path).run()
    assert result["flagged"] == ["/studies/s0.nii.gz", "/studies/s1.nii.gz"]
    assert result["flags"] == {f"/studies/s{i}.nii.gz": int(i < 2) for i in range(4)}
    assert result["metrics"]["loss"]["auroc"] == 1.0 and result["label_quality"]["num_refurbished"] == 2


def test_cached_labels_restore_refurbished_labels_from_a_weights_only_checkpoint(tmp_path):
    from common.handlers.refurbish import CachedLabels

    ds = _dataset()
    handler = RefurbishHandler({"loss": FixedScores({"s0": 3.0, "s1": 2.0, "s2": 1.0, "s3": 0.0})}, ds, ThresholdNet(),
                               epoch=5, output_dir=tmp_path)  # fmt: skip
    handler.run()
    refurbished = [ds[i]["label"].clone() for i in range(4)]
    torch.save(CachedLabels(ds).state_dict(), tmp_path / "labels.pt")

    fresh = _dataset()  # a new process rebuilds the cache from the original (wrong) labels
    assert not torch.equal(fresh[0]["label"], refurbished[0])
    CachedLabels(fresh).load_state_dict(torch.load(tmp_path / "labels.pt", weights_only=True))
    for i in range(4):
        assert torch.equal(fresh[i]["label"], refurbished[i]) and fresh[i]["label"].dtype == torch.float32
    with pytest.raises(KeyError, match="does not hold"):
        CachedLabels(fresh).load_state_dict({"nope": torch.zeros(1, 4, 4, dtype=torch.uint8)})
    with pytest.raises(ValueError, match="s0: saved label shape"):
        CachedLabels(fresh).load_state_dict({"s0": torch.zeros(1, 2, 2, dtype=torch.uint8)})


def test_error_size_measures_only_corrupted_samples_by_hand(tmp_path):
    def item(sid, label_rows, clean_rows, corrupted):
        label, clean = torch.zeros(1, 4, 4), torch.zeros(1, 4, 4)
        label[:, :label_rows], clean[:, :clean_rows] = 1, 1
        return {"image": torch.zeros(1, 4, 4), "label": label, "label_clean": clean, "id": sid, "corrupted": corrupted}

    # s0: 4 of 8 clean pixels kept -> Dice 2*4/(4+8) = 2/3, area change 4/8; s1: 8 labelled over 4 clean ->
    # Dice 2/3, area change 4/4; s2 differs from its clean label but is not flagged corrupted: left out.
    ds = CacheDataset([item("s0", 1, 2, 1), item("s1", 2, 1, 1), item("s2", 4, 1, 0)], transform=None, progress=False)
    result = RefurbishHandler({"loss": FixedScores({"s0": 1.0, "s1": 0.5, "s2": 0.0})}, ds, ThresholdNet(), epoch=1,
                              refurbish=False, output_dir=tmp_path).run()  # fmt: skip
    size = result["error_size"]
    assert size["num_corrupted"] == 2
    assert size["label_dice_vs_clean"] == pytest.approx(2 / 3)
    assert size["relative_area_change"] == pytest.approx((0.5 + 1.0) / 2)

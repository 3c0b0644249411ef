"""SR handlers: per-degradation metrics against hand-computed values, and the LR/bicubic/SR/HR panel."""

import json
import math

import pytest
import torch
import torch.nn.functional as F
from ignite.engine import Engine

from common.handlers import SRImagePanels, SRMetricsByDegradation
from common.handlers.sr_images import sr_panel
from common.metrics import SRQualityMetric, hfen, nrmse


def _engine(batches):
    """An engine whose output is the MONAI evaluator's decollated list of {image, label, pred} per item."""

    def step(engine, batch):
        engine.state.batch = batch
        return [{"image": b["image"], "label": b["label"], "pred": b["pred"]} for b in batch]

    return Engine(step)


def _item(kind, offset, seed):
    g = torch.Generator().manual_seed(seed)
    hr = F.avg_pool2d(torch.rand(1, 1, 32, 32, generator=g), 3, 1, 1)[0] * 0.8 + 0.1
    return {"image": hr[:, ::2, ::2].clone(), "label": hr, "pred": hr + offset, "degradation": kind}


def test_metrics_per_degradation_match_hand_computed_values(tmp_path):
    batches = [[_item("gaussian", 0.01, 0), _item("mean", 0.1, 1)], [_item("gaussian", 0.03, 2)]]
    engine = _engine(batches)
    handler = SRMetricsByDegradation(scale=2, output_file=tmp_path / "metrics.json", extra={"model": "srcnn"})
    handler.attach(engine)
    engine.run(batches, max_epochs=1)
    record = json.loads((tmp_path / "metrics.json").read_text())
    assert set(record) == {"settings", "metrics", "per_sample", "extra"}
    assert record["settings"] == {"model": "srcnn"}
    res = record["extra"]
    assert res["num_images"] == {"gaussian": 2, "mean": 1}
    # a constant offset d gives MSE d^2: PSNR = -20 log10(d)
    expected = (-20 * math.log10(0.01) - 20 * math.log10(0.03)) / 2
    assert abs(res["mean"]["psnr"]["gaussian"] - expected) < 1e-3
    assert abs(res["mean"]["psnr"]["mean"] - 20.0) < 1e-3
    assert abs(res["mean"]["ssim"]["gaussian"] - 1.0) < 0.01  # SSIM hardly sees a small offset
    item = batches[0][1]
    ref_nrmse = float(nrmse(item["pred"][None], item["label"][None]))
    assert abs(res["mean"]["nrmse"]["mean"] - ref_nrmse) < 1e-6
    assert res["mean"]["hfen"]["mean"] < 1e-3  # LoG is zero-mean: a constant offset has no high frequencies
    up = F.interpolate(item["image"][None], scale_factor=2, mode="bicubic", align_corners=False).clamp(0, 1)
    assert abs(res["bicubic_interpolation"]["hfen"]["mean"] - float(hfen(up, item["label"][None]))) < 1e-5
    mse = float(F.mse_loss(up, item["label"][None]))
    assert abs(res["bicubic_interpolation"]["psnr"]["mean"] - 10 * math.log10(1 / mse)) < 1e-3
    assert engine.state.metrics["psnr_mean"] == res["mean"]["psnr"]["mean"]
    assert record["metrics"]["psnr_mean"] == res["mean"]["psnr"]["mean"]
    assert record["metrics"]["bicubic_hfen_mean"] == res["bicubic_interpolation"]["hfen"]["mean"]
    samples = record["per_sample"]
    assert [(p["id"], p["kind"]) for p in samples] == [
        ("gaussian_0", "gaussian"),
        ("mean_0", "mean"),
        ("gaussian_1", "gaussian"),
    ]
    assert samples[2]["psnr"] == pytest.approx(-20 * math.log10(0.03), abs=1e-3)  # the second Gaussian image
    assert (samples[0]["psnr"] + samples[2]["psnr"]) / 2 == pytest.approx(res["mean"]["psnr"]["gaussian"])
    assert samples[1]["bicubic_psnr"] == pytest.approx(res["bicubic_interpolation"]["psnr"]["mean"])


def test_predictions_are_clipped_to_the_unit_range():
    item = _item("hann", 0.0, 3)
    item["pred"] = item["label"].clone()
    item["pred"][0, 0, 0] = 5.0  # clipped to 1.0
    metric = SRQualityMetric()
    metric(item["pred"][None], item["label"][None], groups=["hann"])
    mse = float((1.0 - item["label"][0, 0, 0]) ** 2) / item["label"].numel()
    assert abs(metric.aggregate()["psnr"]["hann"] - 10 * math.log10(1 / mse)) < 1e-2


class _Writer:
    def __init__(self):
        self.images = {}

    def add_image(self, tag, img, step, dataformats):
        self.images[tag] = (img, step, dataformats)

    def flush(self):
        pass


def test_image_panels_one_per_degradation():
    batches = [[_item("gaussian", 0.0, 0), _item("gaussian", 0.0, 1), _item("median", 0.0, 2)]]
    writer = _Writer()
    engine = _engine(batches)
    SRImagePanels(writer, scale=2, tag_prefix="test").attach(engine)
    engine.run(batches, max_epochs=1)
    assert set(writer.images) == {"test/gaussian", "test/median"}
    panel, step, fmt = writer.images["test/median"]
    assert fmt == "CHW" and step == 1 and panel.shape == (1, 32, 128)
    item = batches[0][2]
    torch.testing.assert_close(panel[..., 96:], item["label"])  # HR on the right
    torch.testing.assert_close(panel[..., :2, :2], item["image"][..., :1, :1].expand(1, 2, 2))  # LR, nearest


def test_sr_panel_pads_an_odd_sized_target():
    panel = sr_panel(torch.rand(1, 5, 5), torch.rand(1, 10, 10), torch.rand(1, 11, 11), 2)
    assert panel.shape == (1, 11, 44)


def test_downstream_grey_matter_effect_per_kind():
    """A perfect prediction: area bias 0 and Dice 1; a prediction 0.2 too bright moves grey into white matter."""
    from common.metrics.tissue_area import segment_grey_matter

    exact, bright = _item("gaussian", 0.0, 5), _item("mean", 0.2, 6)
    batches = [[exact, bright]]
    engine = _engine(batches)
    handler = SRMetricsByDegradation(scale=2, grey_matter_thresholds=(0.35, 0.55))
    handler.attach(engine)
    engine.run(batches, max_epochs=1)
    down = handler.results["extra"]["downstream"]
    assert down["gm_area_bias"]["gaussian"] == 0.0 and down["gm_dice"]["gaussian"] == 1.0
    true_area = int(segment_grey_matter(bright["label"], (0.35, 0.55)).sum())
    pred_area = int(segment_grey_matter(bright["pred"].clamp(0, 1), (0.35, 0.55)).sum())
    assert down["gm_area_bias"]["mean"] == pytest.approx((pred_area - true_area) / true_area)
    assert down["gm_area_bias"]["mean"] < 0
    assert set(handler.results["extra"]["downstream_bicubic_interpolation"]["gm_dice"]) == {"gaussian", "mean"}
    assert "downstream" not in SRMetricsByDegradation().results.get("extra", {})

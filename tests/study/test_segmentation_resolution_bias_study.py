"""Smoke study of segmentation_resolution_bias: results.json with the summary block, report.md and figures."""

import json

import pytest

from common.study import segmentation_resolution_bias as study


def test_grid_shapes():
    quick = study.grid("quick")
    main = [r for r in quick if r["table"] == "approaches"]
    assert [r["approach"] for r in main] == list(study.APPROACHES)
    pooling = [r for r in quick if r["table"] == "pooling"]
    assert {(r["downsample"], r["approach"]) for r in pooling} == {
        (op, a) for op in study.DOWNSAMPLE_OPS for a in ("h_only", "scale_aug")
    }
    full = study.grid("full")
    assert {tuple(r["pair"]) for r in full} == {(1.0, 1.4), (2.0, 3.0), (3.0, 4.0)}
    assert study.PROFILES["full"]["settings"]["plane"] == "all"
    with pytest.raises(ValueError, match="unknown profile"):
        study.grid("huge")


def test_summary_from_synthetic_runs():
    def metrics(vb_l, auc):
        groups = {
            "L": {"volume_bias": {"grey_matter": {"median": vb_l}}, "dice": {"grey_matter": {"mean": 0.7}}},
            "H": {"volume_bias": {"grey_matter": {"median": 0.01}}, "dice": {"grey_matter": {"mean": 0.9}}},
        }
        auc = {"grey_matter": {"pred": auc, "manual": 1.0, "positive": "H"}}
        return {"settings": {}, "metrics": {}, "per_sample": [], "extra": {"groups": groups, "auc": auc}}

    results = [
        {
            "table": "approaches",
            "approach": "h_only",
            "pair": [2.0, 3.0],
            "downsample": "maxpool",
            "metrics": metrics(0.2, 0.4),
        },
        {
            "table": "approaches",
            "approach": "vinn",
            "pair": [2.0, 3.0],
            "downsample": "maxpool",
            "metrics": metrics(0.01, 0.95),
        },
        {
            "table": "pooling",
            "approach": "h_only",
            "pair": [2.0, 3.0],
            "downsample": "flc",
            "metrics": metrics(0.5, 0.1),
        },
    ]
    s = study.summarize(results, (2.0, 3.0))
    assert s["volume_bias_L"] == {"h_only": 0.2, "vinn": 0.01}
    assert s["auc"] == {"h_only": 0.4, "vinn": 0.95, "manual": 1.0}
    assert s["dice_L"] == {"h_only": 0.7, "vinn": 0.7} and s["dice_H"] == {"h_only": 0.9, "vinn": 0.9}
    assert s["volume_bias_H"] == {"h_only": 0.01, "vinn": 0.01}


@pytest.mark.slow
def test_smoke_study(tmp_path):
    report = study.run_study("smoke", tmp_path / "segmentation_resolution_bias", seeds=(0,))
    out = report.parent
    results = json.loads((out / "results.json").read_text())
    summary = results["summary"]
    for approach in study.APPROACHES:
        assert approach in summary["volume_bias_L"]
        assert approach in summary["dice_L"]
        assert 0.0 <= summary["auc"][approach] <= 1.0
    assert summary["auc"]["manual"] == pytest.approx(1.0)  # the embedded groups differ by ~10% grey matter
    assert results["environment"]["seed"] == 0
    assert "common.study segmentation_resolution_bias --profile smoke" in results["command"]
    assert len(results["runs"]) == 4
    for run in results["runs"]:
        subjects = run["metrics"]["per_sample"]
        vb = [
            (s["volume_pred"]["grey_matter"] - s["volume_true"]["grey_matter"]) / s["volume_true"]["grey_matter"]
            for s in subjects
            if s["group"] == "L"
        ]
        assert run["metrics"]["extra"]["groups"]["L"]["volume_bias"]["grey_matter"]["values"] == pytest.approx(vb)
    text = report.read_text()
    assert "Table 1" in text and "manual" in text and "--profile smoke" in text
    for fig in ("fig3_volume_distributions.png", "fig4_dice.png", "fig5_volume_bias.png"):
        assert (out / fig).stat().st_size > 1000

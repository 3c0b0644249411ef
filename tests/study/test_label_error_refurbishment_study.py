"""Smoke study of label_error_refurbishment: results.json summary, report.md and figures."""

import json

import pytest

from common.study.label_error_refurbishment import PROFILES, _settings, run_study


def test_quick_grid_covers_types_levels_and_both_detectors():
    runs = _settings("quick")
    names = {r["name"] for r in runs}
    assert "clean" in names and "systematic_75_refurbished_vog" in names
    for kind in PROFILES["quick"]["types"]:
        for lv in (25, 50, 75):
            assert {f"{kind}_{lv}_noisy", f"{kind}_{lv}_refurbished_loss"} <= names


@pytest.mark.slow
def test_smoke_study(tmp_path):
    report = run_study("smoke", tmp_path / "label_error_refurbishment", seeds=(0,))
    out = report.parent
    results = json.loads((out / "results.json").read_text())
    summary = results["summary"]
    auroc = summary["detection_auroc"]["systematic"]
    assert set(auroc) == {"loss", "vog"} and all(v is None or 0.0 <= v <= 1.0 for v in auroc.values())
    assert set(summary["dice"]["systematic"]) >= {"clean", "noisy", "refurbished"}
    assert all(0.0 <= summary["dice"]["systematic"][k] <= 1.0 for k in ("clean", "noisy", "refurbished"))
    assert results["environment"]["seed"] == 0 and "common.study" in results["command"]
    text = report.read_text()
    assert "Test Dice" in text and "AUROC" in text and results["command"] in text
    for png in ("dice_vs_error_level.png", "roc_curves.png", "flip_risk_vs_flip.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"

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


def _hand_runs():
    """One seed's runs, every number different so a swap shows: random and systematic at 50% and 75%."""
    from common.study.label_error_refurbishment import _settings

    dice = {"clean": 0.90, "random_50_noisy": 0.89, "random_75_noisy": 0.88, "random_75_refurbished_loss": 0.87,
            "systematic_50_noisy": 0.80, "systematic_75_noisy": 0.70, "systematic_75_refurbished_loss": 0.76,
            "systematic_75_refurbished_vog": 0.73, "random_50_refurbished_loss": 0.86,
            "systematic_50_refurbished_loss": 0.79}  # fmt: skip
    auroc = {"random": {"loss": 0.55, "vog": 0.45, "vog_all_raw_image": 0.4},
             "systematic": {"loss": 0.95, "vog": 0.65, "vog_all_raw_image": 0.6}}  # fmt: skip
    runs = []
    for r in _settings("quick"):
        if r["name"] not in dice:
            continue
        per_image = [{"flip_risk": x, "flip": y} for x, y in ((0.1, 0.0), (0.3, 0.2), (0.2, 0.1))]
        extra = {"test": {"dice_mean": dice[r["name"]]}}
        if r["error_level"] > 0:
            kind = r["error_type"]
            extra["detection"] = {"metrics": {k: {"auroc": v, "ap": v / 2} for k, v in auroc[kind].items()}}
        metrics = {"settings": {}, "metrics": {}, "per_sample": per_image, "extra": extra}
        runs.append({**r, "seed": 0, "metrics": metrics})
    return runs


def test_summary_from_hand_made_runs():
    from common.study.engine import evaluate_claims
    from common.study.label_error_refurbishment import CLAIMS, summarize

    s = summarize(_hand_runs())
    assert s["detection_level"] == 0.5 and s["highest_level"] == 0.75
    assert s["dice"]["systematic"] == {"clean": 0.90, "noisy": 0.70, "refurbished": 0.76, "refurbished_vog": 0.73}
    assert s["dice"]["random"] == {"clean": 0.90, "noisy": 0.88, "refurbished": 0.87, "refurbished_vog": None}
    assert s["noisy_dice"]["systematic"] == {"50%": 0.80, "75%": 0.70}
    assert s["detection_auroc"]["systematic"] == {"loss": 0.95, "vog": 0.65}
    assert s["detection_ap"]["random"] == {"loss": 0.275, "vog": 0.225}
    assert s["vog_variants_auroc"]["systematic"]["vog_all_raw_image"] == 0.6
    assert s["flip_risk_spearman"] == pytest.approx(1.0)  # risk order 0.1 < 0.2 < 0.3 matches flip order
    claims = {c["id"]: c for c in evaluate_claims(CLAIMS, {"0": s})}
    assert claims["random_errors_harmless"]["median"] == pytest.approx(1.0)  # 0.90 - 0.89, in points
    assert claims["systematic_errors_harmful"]["median"] == pytest.approx(10.0)
    assert claims["refurbishment_helps_systematic"]["median"] == pytest.approx(6.0)  # 0.76 - 0.70
    assert claims["loss_detects_systematic"]["holds_in"] == 1 and claims["vog_detects_systematic"]["holds_in"] == 0

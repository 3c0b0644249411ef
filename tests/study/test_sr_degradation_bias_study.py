"""Study ``sr_degradation_bias``: the Table I checks on hand-made matrices, and a smoke study end to end."""

from __future__ import annotations

import json

import pytest

from common.study.sr_degradation_bias import METRICS, TEST_KINDS, matrices, run_study, table_checks


def _biased_matrix() -> dict[str, dict[str, float]]:
    """Each single model 34 dB on its own kind, 26 on the others; combined 31 everywhere; bicubic 28."""
    psnr = {t: {k: (34.0 if k == t else 26.0) for k in TEST_KINDS} for t in TEST_KINDS}
    psnr["combined"] = {k: 31.0 for k in TEST_KINDS}
    psnr["bicubic_interpolation"] = {k: 28.0 for k in TEST_KINDS}
    return psnr


def test_table_checks_on_the_seed_pattern():
    checks = table_checks(_biased_matrix())
    assert checks["own_degradation_best_columns"] == 6
    assert checks["best_model_per_test_set"] == {k: k for k in TEST_KINDS}
    assert checks["worst_psnr_per_training_set"]["combined"] == 31.0
    assert checks["combined_worst_above_every_single_worst"] is True
    assert all(checks["beats_bicubic_on_own_degradation"].values())


def test_table_checks_detect_a_failure():
    psnr = _biased_matrix()
    psnr["gaussian"]["hann"] = 35.0  # the Gaussian model wins the Hann column
    psnr["combined"]["median"] = 20.0  # and the combined model has the worst cell
    psnr["mean"]["mean"] = 27.0  # below bicubic interpolation's 28 (and the combined model's 31)
    checks = table_checks(psnr)
    assert checks["own_degradation_best_columns"] == 4
    assert checks["best_model_per_test_set"]["hann"] == "gaussian"
    assert checks["best_model_per_test_set"]["mean"] == "combined"
    assert checks["combined_worst_above_every_single_worst"] is False
    assert checks["beats_bicubic_on_own_degradation"]["mean"] is False


def test_matrices_collects_runs_by_training_set():
    def run(train, base):
        per = {m: {k: base + i for i, k in enumerate(TEST_KINDS)} for m in METRICS}
        return {"overrides": {"train_degradation": train}, "metrics": {"metrics": per, "bicubic_interpolation": per}}

    mats = matrices([run("gaussian", 30.0), run("combined", 31.0)])
    assert mats["psnr"]["gaussian"]["hann"] == 31.0
    assert mats["hfen"]["combined"]["median"] == 36.0
    assert list(mats["ssim"]) == ["gaussian", "combined", "bicubic_interpolation"]


@pytest.mark.slow
def test_smoke_study_writes_results_report_and_figures(tmp_path):
    out = tmp_path / "sr_degradation_bias"
    report = run_study("smoke", out, seed=0)
    results = json.loads((out / "results.json").read_text())
    summary = results["summary"]
    for m in METRICS:
        assert set(summary[m]) == {"bicubic", "combined", "bicubic_interpolation"}
        for row in summary[m].values():
            assert set(row) == set(TEST_KINDS)
    assert 10 < summary["psnr"]["bicubic"]["bicubic"] < 60
    assert 0 < summary["ssim"]["combined"]["mean"] <= 1
    assert "own_degradation_best_columns" in summary["checks"]
    assert results["environment"]["seed"] == 0
    assert results["command"].startswith("python -m common.study sr_degradation_bias --profile smoke")
    assert all(r["metrics"]["_run"]["command"] for r in results["runs"])
    text = report.read_text()
    assert "Table I" in text and "Bicubic interpolation" in text and results["command"] in text
    for name in ["heatmap_psnr.png", "heatmap_ssim.png", "heatmap_nrmse.png", "heatmap_hfen.png", "hfen_boxplots.png"]:
        assert (out / name).read_bytes()[:4] == b"\x89PNG", name

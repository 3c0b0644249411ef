"""Study of shortcut_label_flips: grid, summary and claims from hand-made runs, smoke study end to end."""

import json

import pytest

from common.study.engine import evaluate_claims, run_study
from common.study.report import render_report
from common.study.shortcut_label_flips import CLAIMS, PROFILES, SPEC, summarize


def test_quick_grid_is_the_correlations_times_seeds():
    study = SPEC.study("quick", (0, 1, 2))
    assert [r.overrides["correlation"] for r in study.runs] == [0.5, 0.75, 0.9, 0.99]
    assert study.seeds == (0, 1, 2) and all(r.overrides["num_threads"] == 1 for r in study.runs)
    with pytest.raises(ValueError, match="unknown profile"):
        SPEC.study("huge", (0,))


def _run(correlation, dice_common, dice_rare, flip_common, flip_rare, per_sample, auroc=None):
    m = {"dice_mean_common": dice_common, "dice_mean_rare": dice_rare, "flip_flip_common": flip_common,
         "flip_flip_rare": flip_rare, "dice_gap": dice_common - dice_rare, "flip_gap": flip_rare - flip_common,
         "flip_risk_auroc": auroc, "flip_risk_ap": None}  # fmt: skip
    metrics = {"settings": {"flip_threshold": 0.25}, "metrics": m, "per_sample": per_sample, "extra": {}}
    return {"name": f"corr_{correlation}", "correlation": correlation, "seed": 0, "metrics": metrics}


def test_summary_and_claims_from_hand_made_runs():
    sample = lambda flip, risk: {"id": "x", "flip": flip, "flip_risk": risk}  # noqa: E731
    runs = [  # given out of order: the summary sorts by correlation
        _run(0.9, 0.95, 0.70, 0.01, 0.30, [sample(0.4, 0.7), sample(0.0, 0.1)], auroc=0.9),
        _run(0.5, 0.94, 0.93, 0.02, 0.03, [sample(0.0, 0.2), sample(0.1, 0.3)]),
        _run(0.99, 0.96, 0.20, 0.00, 0.80, [sample(0.9, 0.2), sample(0.3, 0.8)], auroc=0.5),
        _run(0.75, 0.95, 0.90, 0.02, 0.08, [sample(0.0, 0.05)], auroc=0.85),
    ]
    s = summarize(runs)
    assert list(s["per_correlation"]) == ["0.5", "0.75", "0.9", "0.99"]
    assert s["per_correlation"]["0.99"]["flip_rare"] == 0.80 and s["per_correlation"]["0.5"]["dice_common"] == 0.94
    assert s["rare_flip_spearman"] == pytest.approx(1.0) and s["dice_gap_spearman"] == pytest.approx(1.0)
    assert s["flip_gap_at_highest"] == pytest.approx(0.80)
    # pooled: positives (flip > 0.25) have risks 0.7, 0.2, 0.8; negatives 0.1, 0.2, 0.3, 0.05
    # pairs won: 0.7 -> 4, 0.8 -> 4, 0.2 -> 1 (0.05) + 1/2 (tie 0.2) + 1 (0.1) = 2.5; AUROC = 10.5 / 12
    assert s["flip_risk_auroc_pooled"] == pytest.approx(10.5 / 12)
    assert s["flip_risk_auroc_median"] == pytest.approx(0.85)  # of 0.85, 0.9, 0.5 (undefined at 0.5 left out)
    claims = {c["id"]: c for c in evaluate_claims(CLAIMS, {"0": s})}
    assert claims["rare_flips_rise"]["holds_in"] == 1 and claims["flip_risk_flags_flips"]["holds_in"] == 1
    # the rare flips falling with correlation: the claim fails
    flipped = summarize([_run(c, 0.9, 0.9, 0.0, f, []) for c, f in ((0.5, 0.4), (0.75, 0.3), (0.9, 0.2))])
    assert flipped["rare_flip_spearman"] == pytest.approx(-1.0)
    assert evaluate_claims(CLAIMS[:1], {"0": flipped})[0]["holds_in"] == 0


def test_report_renders_without_per_sample_records():
    s = summarize([_run(c, 0.9, 0.8, 0.0, 0.1 * i, []) for i, c in enumerate((0.5, 0.75, 0.9, 0.99))])
    record = {"profile": "quick", "seeds": [0], "runs": [{"name": "a"}], "seconds": 60.0, "run_seconds": 100.0,
              "code_fingerprint": "f", "command": "python -m common.study shortcut_label_flips", "claims": [],
              "profile_settings": {"settings": PROFILES["quick"].settings, "axes": PROFILES["quick"].axes, "jobs": 2},
              "summary": {**s, "per_seed": {"0": s}}}  # fmt: skip
    text = render_report(SPEC, record, ["results/shortcut_vs_correlation.png"])
    assert "| 0.99 | 0.900 | 0.800 | 0.100 | 0.000 | 0.300 |" in text
    assert "![shortcut_vs_correlation.png](results/shortcut_vs_correlation.png)" in text


@pytest.mark.slow
def test_smoke_study(tmp_path):
    report = run_study(SPEC, "smoke", tmp_path / "shortcut_label_flips", seeds=(0,))
    out = report.parent
    results = json.loads((out / "results.json").read_text())
    per_corr = results["summary"]["per_correlation"]
    assert set(per_corr) == {"0.5", "0.99"}
    assert all(0.0 <= per_corr[c][f"flip_{g}"] <= 1.0 for c in per_corr for g in ("common", "rare"))
    assert {c["id"] for c in results["claims"]} == {c.id for c in CLAIMS}
    assert results["command"] in report.read_text()
    for png in ("shortcut_vs_correlation.png", "example_panels.png"):
        assert png in results["figures"] and (out / png).read_bytes()[:4] == b"\x89PNG"

"""Study of biomarker_precision: grid, summary and claims from a hand-made run, smoke study end to end."""

import json

import pytest

from common.metrics.precision import precision_summary
from common.study.biomarker_precision import CLAIMS, SPEC, summarize
from common.study.engine import evaluate_claims, run_study

ESTIMATORS = ("ensemble", "tta", "mc_dropout")


def test_grid_is_one_run_per_seed_with_every_estimator():
    study = SPEC.study("quick", (0, 1, 2))
    assert [r.name for r in study.runs] == ["precision"] and study.seeds == (0, 1, 2)
    run = study.runs[0]
    assert run.overrides["estimators"] == list(ESTIMATORS) and run.overrides["num_threads"] == 1
    assert run.overrides["num_members"] >= 5  # a 5-vs-5 KS test can reach p < 0.05 (least p 2/252)
    assert list(study.configs) == ["train.yaml", "evaluate.yaml"]


def _row(subject, est, group, scan, rescan, true):
    return {"id": f"{subject}/{est}", "subject": subject, "estimator": est, "group": group,
            **{f"{b}_true": true for b in ("edv", "esv", "ef")},
            **{f"{b}_scan_samples": scan for b in ("edv", "esv", "ef")},
            **{f"{b}_rescan_samples": rescan for b in ("edv", "esv", "ef")}}  # fmt: skip


def _run():
    # ensemble: narrow, disjoint intervals (overlap 0) for every heart; TTA: identical wide intervals for hearts
    # a, b (overlap 1) and disjoint for c, d; MC dropout like the ensemble. Low-quality hearts c, d: twice as wide.
    hearts = {"a": ("normal", 0.5, 0.1), "b": ("normal", 0.6, 0.1), "c": ("low", 0.4, 0.2), "d": ("low", 0.55, 0.2)}
    rows = []
    for s, (g, ef, w) in hearts.items():
        narrow = [ef - w / 2, ef, ef + w / 2]
        rows.append(_row(s, "ensemble", g, narrow, [v + 0.3 for v in narrow], ef))
        rows.append(_row(s, "mc_dropout", g, narrow, [v + 0.3 for v in narrow], ef))
        same = s in ("a", "b")
        rows.append(_row(s, "tta", g, narrow, narrow if same else [v + 0.3 for v in narrow], ef))
    metrics = {f"dice_{n}_{e}": d for e in ESTIMATORS for n, d in (("lv_cavity", 0.9), ("myocardium", 0.8),
                                                                     ("left_atrium", 0.85))}  # fmt: skip
    metrics.update({f"dice_mean_{e}": 0.85 for e in ESTIMATORS})
    record = {"settings": {}, "metrics": metrics, "per_sample": rows,
              "extra": {"estimators": list(ESTIMATORS), "level": 0.95}}  # fmt: skip
    return [{"name": "precision", "grid": "precision", "seed": 0, "metrics": record}]


def test_summary_and_claims_from_a_hand_made_run():
    s = summarize(_run())
    ens = s["per_estimator"]["ensemble"]
    rows = _run()[0]["metrics"]["per_sample"]
    assert ens["ef"] == precision_summary([r for r in rows if r["estimator"] == "ensemble"], "ef")
    assert ens["ef"]["share_overlap_above"] == 0.0 and ens["ef"]["bias"] == pytest.approx(-0.3)
    assert s["per_estimator"]["tta"]["ef"]["share_overlap_above"] == 0.5
    assert s["worst_share_overlap"] == 0.5  # the largest over estimators: TTA
    assert ens["dice_mean"] == 0.85 and ens["dice"] == {"lv_cavity": 0.9, "myocardium": 0.8, "left_atrium": 0.85}
    assert s["low_over_normal_width"] == pytest.approx(2.0)  # widths 0.19 (low) over 0.095 (normal)
    assert set(s["by_group"]["ensemble"]) == {"normal", "low"}
    claims = {c["id"]: c for c in evaluate_claims(CLAIMS, {0: s, 1: s})}
    assert claims["accurate"]["holds_in"] == 2 and claims["intervals_rarely_overlap"]["holds_in"] == 0
    assert claims["distributions_differ"]["holds_in"] == 0  # 3-vs-3 samples: the KS test never reaches p < 0.05
    values = {c.id: c.value(s) for c in CLAIMS}
    assert values["accurate"] == 0.85 and values["intervals_rarely_overlap"] == 0.5
    assert values["ef_bias_small"] == pytest.approx(0.3) and values["low_quality_wider"] == pytest.approx(2.0)
    assert not CLAIMS[1].holds(values["intervals_rarely_overlap"])  # 0.5 is not below the 0.5 margin
    assert {c.id for c in CLAIMS if c.primary} == {"accurate", "intervals_rarely_overlap", "distributions_differ"}


@pytest.mark.slow
def test_smoke_study(tmp_path):
    report = run_study(SPEC, "smoke", tmp_path / "biomarker_precision", seeds=(0,))
    out = report.parent
    results = json.loads((out / "results.json").read_text())
    per_est = results["summary"]["per_seed"]["0"]["per_estimator"]
    assert set(per_est) == set(ESTIMATORS)
    assert all(per_est[e][b]["n_subjects"] == 3 for e in ESTIMATORS for b in ("edv", "esv", "ef"))
    assert {c["id"] for c in results["claims"]} == {c.id for c in CLAIMS}
    text = report.read_text()
    assert "## Scan-rescan precision per estimator and biomarker" in text and results["command"] in text
    for png in ("bland_altman_ef.png", "interval_overlap.png"):
        assert png in results["figures"] and (out / png).read_bytes()[:4] == b"\x89PNG"

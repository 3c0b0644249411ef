"""Smoke study of segmentation_resolution_bias: results.json with the summary block, report.md and figures."""

import json
import math

import pytest

from common.study import engine
from common.study import segmentation_resolution_bias as study
from common.study import segmentation_resolution_bias_report as study_report


def test_grid_shapes():
    quick = study.grid_points(study.PROFILES["quick"])
    main = [r for r in quick if r["table"] == "approaches"]
    assert [(r["approach"], r["pair"]) for r in main] == [
        (a, pair) for pair in ((3.0, 4.0), (2.0, 3.0)) for a in study.APPROACHES
    ]  # the paper's 3/4 mm pair first: the main pair, where the control arm runs
    assert {r["pair"] for r in quick if r["table"] == "control"} == {(3.0, 4.0)}
    control = [r for r in quick if r["table"] == "control"]
    assert [r["approach"] for r in control] == ["resampled", "scale_aug", "vinn"]  # H-only never sees group L
    assert not [r for r in quick if r["table"] == "pooling"]  # the pooling table is its own grid
    pooling = study.grid_points(study.PROFILES["quick"], "pooling")
    assert {(r["downsample"], r["approach"]) for r in pooling} == {
        (op, a) for op in study.DOWNSAMPLE_OPS for a in ("h_only", "scale_aug")
    }
    full = study.grid_points(study.PROFILES["full"])
    assert {tuple(r["pair"]) for r in full if r["table"] == "approaches"} == {(1.0, 1.4), (2.0, 3.0), (3.0, 4.0)}
    assert {r["table"] for r in full} == {"approaches", "control", "pooling"}  # full runs everything
    assert study.PROFILES["full"].settings["plane"] == "all"
    with pytest.raises(ValueError, match="unknown profile"):
        study.SPEC.study("huge", (0,))
    with pytest.raises(ValueError, match="unknown grid 'ops'"):
        study.grid_points(study.PROFILES["quick"], "ops")
    with pytest.raises(ValueError, match="no grid 'ops'"):
        study.SPEC.study("quick", (0,), "ops")


def test_control_runs_acquire_group_l_at_the_high_resolution():
    built = study.SPEC.study("quick", (0, 1, 2))
    by_table = {}
    for run in built.runs:
        by_table.setdefault(run.labels["table"], []).append(run)
    assert all(r.overrides["simulate_low_resolution"] is False for r in by_table["control"])
    assert all("simulate_low_resolution" not in r.overrides for r in by_table["approaches"])
    assert built.seeds == (0, 1, 2) and len(built.runs) == 11
    assert "simulate_low_resolution" in built.data_keys  # the two arms use different generated populations


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
    results.append(
        {
            "table": "control",
            "approach": "vinn",
            "pair": [2.0, 3.0],
            "downsample": "maxpool",
            "metrics": metrics(-0.03, 0.97),
        }
    )
    s = study.summarize(results, (2.0, 3.0))
    assert s["volume_bias_L_control"] == {"h_only": 0.2, "vinn": -0.03}  # H-only's control is its main run
    assert s["resolution_part_L"]["vinn"] == pytest.approx(0.04)  # main minus control, not the reverse
    assert s["resolution_part_L"]["h_only"] == 0.0
    assert s["pooling"] == {"flc": {"h_only": {"volume_bias_L": 0.5, "dice_L": 0.7, "auc": 0.1}}}
    assert s["volume_bias_L"] == {"h_only": 0.2, "vinn": 0.01}
    assert s["auc"] == {"h_only": 0.4, "vinn": 0.95, "manual": 1.0}
    assert s["dice_L"] == {"h_only": 0.7, "vinn": 0.7} and s["dice_H"] == {"h_only": 0.9, "vinn": 0.9}
    assert s["volume_bias_H"] == {"h_only": 0.01, "vinn": 0.01}


@pytest.mark.slow
def test_smoke_study(tmp_path):
    report = engine.run_study(study.SPEC, "smoke", tmp_path / "segmentation_resolution_bias", seeds=(0,))
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
    assert len(results["runs"]) == 4  # smoke: the approach grid without its control arm
    assert {c["id"] for c in results["claims"]} == {c.id for c in study.CLAIMS}
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


def test_claims_by_hand():
    summary = {
        "volume_bias_L": {"h_only": 0.3, "resampled": 0.2, "scale_aug": -0.1, "vinn": 0.2},
        "auc": {"h_only": 0.6, "scale_aug": 0.95, "vinn": 0.75, "manual": 0.97},
        "pooling": {
            "maxpool": {"h_only": {"volume_bias_L": -0.3}},
            "blurpool": {"h_only": {"volume_bias_L": 0.1}},
            "flc": {"h_only": {"volume_bias_L": -0.2}},
            "asap": {"h_only": {"volume_bias_L": 0.4}},
        },
    }
    claims = study.SPEC.grids["all"]
    assert [c.id for c in claims] == [c.id for c in (*study.CLAIMS, *study.POOLING_CLAIMS)]
    values = {c.id: c.value(summary) for c in claims}
    # the |bias| ratios are now claimed on the log scale against log 2 (a ratio of 2)
    assert values["h_only_bias_vs_vinn"] == pytest.approx(math.log(1.5))  # |0.3| / |0.2|
    assert values["h_only_bias_vs_scale_aug"] == pytest.approx(math.log(3.0))  # |0.3| / |-0.1|
    # the separation claims compare each approach's group AUC with the manual volumes' on the same subjects
    assert values["scale_aug_keeps_separation"] == pytest.approx(0.95 - 0.97)
    assert values["vinn_keeps_separation"] == pytest.approx(0.75 - 0.97)
    assert values["h_only_loses_separation"] == pytest.approx(0.6 - 0.97)
    assert values["resampled_not_enough"] == pytest.approx(0.0)  # log of |0.2| / |0.2|
    assert values["anti_aliasing_h_only"] == pytest.approx(0.3 - 0.2)  # median |bias| of 0.1, 0.2, 0.4
    assert values["anti_aliasing_scale_aug"] is None
    holds = {c.id: c.holds(values[c.id]) for c in claims if values[c.id] is not None}
    assert holds == {
        "h_only_bias_vs_vinn": False,  # a ratio of 1.5, not 2
        "h_only_bias_vs_scale_aug": True,
        "scale_aug_keeps_separation": True,  # 0.02 below the manual AUC, within the 0.05 margin
        "vinn_keeps_separation": False,
        # stated in the loss direction ('<' -0.05): H-only's AUC falls more than 0.05 below the manual one
        "h_only_loses_separation": True,
        "resampled_not_enough": False,  # equal |bias|: not larger
        "anti_aliasing_h_only": True,
    }
    assert {c.id: c.direction for c in claims if c.direction == "<"} == {"h_only_loses_separation": "<"}
    # without the manual AUC the separation claims have no value (a missing seed, not a failure)
    no_manual = {**summary, "auc": {k: v for k, v in summary["auc"].items() if k != "manual"}}
    assert [c.value(no_manual) for c in claims if c.id.endswith("separation")] == [None, None, None]


def test_pooling_ranking_noise_orders_by_absolute_bias():
    ops = ["maxpool", "avgpool", "blurpool"]

    def seed(biases, offset=0.0):
        return {"pooling": {op: {"h_only": {"volume_bias_L": b + offset}} for op, b in zip(ops, biases)}}

    # by |bias|: avgpool (0.05) < blurpool (0.1) < maxpool (-0.3) in every seed; signed values would put maxpool first
    per_seed = {"0": seed([-0.30, 0.05, 0.10]), "1": seed([-0.32, 0.04, 0.12]), "2": seed([-0.28, 0.06, 0.11])}
    out = study_report.pooling_ranking_noise(per_seed, ops, "h_only")
    assert out["kendall_w"] == pytest.approx(1.0)
    assert out["p_value"] == pytest.approx(1 / 36, abs=0.004)  # 3 items, 3 seeds: (1 / 3!) ** 2
    assert out["median_range"] == pytest.approx(0.30 - 0.05)
    assert out["seed_range"] == pytest.approx(0.02)  # item ranges 0.04, 0.02, 0.02
    assert study_report.pooling_ranking_noise(per_seed, ops, "scale_aug") is None


def test_report_states_whether_the_pooling_ranking_is_above_noise():
    ops = ["maxpool", "avgpool", "blurpool"]
    per_seed = {
        s: {"pooling": {op: {"h_only": {"volume_bias_L": v}} for op, v in zip(ops, vals)}}
        for s, vals in {"0": [0.3, 0.1, 0.2], "1": [0.1, 0.3, 0.2], "2": [0.2, 0.1, 0.3]}.items()
    }
    text = "\n".join(study_report._pooling_noise_lines(per_seed, ops))
    assert "Is the operator ranking above seed noise?" in text
    row = next(line for line in text.splitlines() if line.startswith("| (a) H-only"))
    assert row.rstrip(" |").endswith("no")


def test_difference_kept_is_the_predicted_over_the_true_group_difference():
    def subject(group, pred, true):
        return {"group": group, "volume_pred": {"grey_matter": pred}, "volume_true": {"grey_matter": true}}

    # true means H 100, L 90 (difference 10); predicted means H 101, L 97 (difference 4): 0.4 of it kept
    subjects = [
        subject("H", 100.0, 98.0),
        subject("H", 102.0, 102.0),
        subject("L", 96.0, 89.0),
        subject("L", 98.0, 91.0),
    ]
    assert study._difference_kept(subjects) == pytest.approx(0.4)
    swapped = [{**s, "volume_pred": s["volume_true"], "volume_true": s["volume_pred"]} for s in subjects]
    assert study._difference_kept(swapped) == pytest.approx(2.5)  # not symmetric in pred and true
    assert study._difference_kept([s for s in subjects if s["group"] == "H"]) is None


def test_resampling_claim_at_the_second_pair_reads_that_pair():
    summary = {"by_pair": {"2/3": {"volume_bias_L": {"resampled": 0.02, "vinn": 0.08}}}}
    claim = next(c for c in study.CLAIMS if c.id == "resampled_not_enough_2_3mm")
    assert claim.value(summary) == pytest.approx(math.log(0.25))
    assert not claim.primary
    assert next(c for c in study.CLAIMS if c.id == "resampled_not_enough").primary  # decided at 3/4 mm


# Within-run bootstrap: four test subjects, grey matter (and one other structure, which the summary never reads).
# Grey matter: H000 Dice 0.9, 110 ml predicted of 100 (bias +0.1); H001 0.8, 95 of 100 (-0.05);
# L000 0.7, 96 of 80 (+0.2); L001 0.6, 99 of 90 (+0.1).
_SUBJECTS = [("test_H000", "H", 0.9, 110.0, 100.0), ("test_H001", "H", 0.8, 95.0, 100.0),
             ("test_L000", "L", 0.7, 96.0, 80.0), ("test_L001", "L", 0.6, 99.0, 90.0)]  # fmt: skip


def _evaluated_run(tmp_path, approach, table="approaches", seed=0, downsample="maxpool"):
    """A run whose metrics.json the bundle's own evaluation handler wrote from the four subjects above."""
    from types import SimpleNamespace

    from common.handlers.group_metrics import GroupSegmentationMetrics

    structures = ["other_csf", "grey_matter"]
    path = tmp_path / f"{table}_{approach}_{downsample}.json"
    handler = GroupSegmentationMetrics(structures, path, {"seed": seed}, seed=seed)
    handler.subjects = [
        {"subject": sid, "group": g, "dice": {"other_csf": 0.5, "grey_matter": d},
         "volume_pred": {"other_csf": 10.0, "grey_matter": p}, "volume_true": {"other_csf": 12.0, "grey_matter": t},
         "volume_bias": {"other_csf": -1 / 6, "grey_matter": (p - t) / t}, "flip_counts": [90.0, 8.0, 2.0, 100.0]}
        for sid, g, d, p, t in _SUBJECTS
    ]  # fmt: skip
    handler.complete(SimpleNamespace(state=SimpleNamespace(metrics={})))
    metrics = json.loads(path.read_text())
    labels = {"table": table, "approach": approach, "pair": [3.0, 4.0], "downsample": downsample}
    return {**labels, "name": f"{table}_{approach}", "seed": seed, "metrics": metrics}


def test_within_run_resampling_is_by_subject_within_group():
    r = study.SPEC.resampling
    assert (r.unit, r.strata, r.from_samples) == ("id", "group", study.main_metrics_from_samples)


def test_from_samples_round_trip(tmp_path):
    runs = [_evaluated_run(tmp_path, a) for a in ("h_only", "vinn")] + [_evaluated_run(tmp_path, "vinn", "control")]
    runs.append(_evaluated_run(tmp_path, "h_only", "pooling", downsample="flc"))
    extra = runs[0]["metrics"]["extra"]
    # the evaluation's numbers, by hand: H Dice (0.9 + 0.8) / 2, median bias (0.1 - 0.05) / 2; L 0.65, 0.15;
    # AUC with H positive (larger true volumes): manual 100, 100 vs 80, 90: 1; predicted 110, 95 vs 96, 99: 2 of 4
    assert extra["groups"]["H"]["dice"]["grey_matter"]["mean"] == pytest.approx(0.85)
    assert extra["groups"]["H"]["volume_bias"]["grey_matter"]["median"] == pytest.approx(0.025)
    assert extra["groups"]["L"]["dice"]["grey_matter"]["mean"] == pytest.approx(0.65)
    assert extra["groups"]["L"]["volume_bias"]["grey_matter"]["median"] == pytest.approx(0.15)
    assert extra["auc"]["grey_matter"] == {"pred": 0.5, "manual": 1.0, "positive": "H"}
    # the full recomputation gives the evaluation's record back, bootstrap intervals and flip fractions included
    for run in runs:
        assert study.metrics_from_samples(run) == run
    # the bootstrap's hook: only what the summary reads, with the same values, so the same summary
    lean = [study.main_metrics_from_samples(run) for run in runs]
    assert study.summarize(lean) == study.summarize(runs)
    for run, new in zip(runs, lean):
        for key, value in new["metrics"]["metrics"].items():
            assert value == run["metrics"]["metrics"][key]
        assert set(new["metrics"]["metrics"]) == {"dice_grey_matter_H", "dice_grey_matter_L", "volume_bias_grey_matter_H",
                                                  "volume_bias_grey_matter_L", "auc_grey_matter"}  # fmt: skip
    s = study.summarize(lean)
    assert s["volume_bias_L"] == {"h_only": pytest.approx(0.15), "vinn": pytest.approx(0.15)}
    assert s["auc"] == {"h_only": 0.5, "vinn": 0.5, "manual": 1.0}
    assert s["difference_kept"]["vinn"] == pytest.approx((102.5 - 97.5) / (100 - 85))
    assert s["resolution_part_L"]["vinn"] == pytest.approx(0.0)
    assert s["pooling"]["flc"]["h_only"] == {"volume_bias_L": pytest.approx(0.15), "dice_L": pytest.approx(0.65),
                                             "auc": 0.5}  # fmt: skip


def _read(run):
    """What the summary reads of a run's grey-matter metrics: each group's mean Dice and median bias, the AUCs."""
    extra = run["metrics"]["extra"]
    groups = {g: (e["dice"]["grey_matter"]["mean"], e["volume_bias"]["grey_matter"]["median"])
              for g, e in extra["groups"].items()}  # fmt: skip
    auc = extra["auc"]["grey_matter"]
    return groups, auc["pred"], auc["manual"], auc["positive"]


class _FixedDraws:
    """Stands in for the generator: each stratum (H, then L) draws the given member indices."""

    def __init__(self, *draws):
        self.draws = list(draws)

    def integers(self, low, high, size):
        return self.draws.pop(0)


def test_redraw_keeping_one_subject_per_group(tmp_path):
    from common.study.within import redraw_runs

    runs = [_evaluated_run(tmp_path, a) for a in ("h_only", "vinn")] + [_evaluated_run(tmp_path, "vinn", "control")]
    # one draw for the three runs of a seed (same subjects, paired): H000 twice, L001 twice; the groups keep 2 + 2
    redrawn = redraw_runs(runs, study.SPEC.resampling, _FixedDraws([0, 0], [1, 1]))
    for run in redrawn:
        rows = run["metrics"]["per_sample"]
        assert [r["id"] for r in rows] == ["test_H000", "test_H000#1", "test_L001", "test_L001#1"]
        groups = run["metrics"]["extra"]["groups"]
        assert (groups["H"]["n"], groups["L"]["n"]) == (2, 2)
        # H000 alone: Dice 0.9, bias +0.1; L001 alone: Dice 0.6, bias +0.1
        assert groups["H"]["dice"]["grey_matter"]["mean"] == pytest.approx(0.9)
        assert groups["H"]["volume_bias"]["grey_matter"]["median"] == pytest.approx(0.1)
        assert groups["L"]["dice"]["grey_matter"]["mean"] == pytest.approx(0.6)
        assert groups["L"]["volume_bias"]["grey_matter"]["median"] == pytest.approx(0.1)
        # predicted 110 vs 99 and manual 100 vs 90: both groups told apart
        assert run["metrics"]["extra"]["auc"]["grey_matter"] == {"pred": 1.0, "manual": 1.0, "positive": "H"}
        # the lean hook agrees with the full recomputation on the redrawn records
        full = study.metrics_from_samples({**run, "metrics": {**run["metrics"], "extra": runs[0]["metrics"]["extra"]}})
        assert _read(full) == _read(run)
    s = study.summarize(redrawn)
    assert s["dice_L"] == {"h_only": pytest.approx(0.6), "vinn": pytest.approx(0.6)}
    assert s["volume_bias_H"]["h_only"] == pytest.approx(0.1)
    assert s["difference_kept"]["h_only"] == pytest.approx((110 - 99) / (100 - 90))
    assert s["auc"] == {"h_only": 1.0, "vinn": 1.0, "manual": 1.0}
    # another draw: H001 twice and L000 twice: H 95 vs L 96 predicted reverses the manual order (100 vs 80)
    other = redraw_runs(runs, study.SPEC.resampling, _FixedDraws([1, 1], [0, 0]))
    s = study.summarize(other)
    assert s["auc"]["vinn"] == 0.0 and s["auc"]["manual"] == 1.0
    assert s["volume_bias_L"]["vinn"] == pytest.approx(0.2)
    assert s["difference_kept"]["vinn"] == pytest.approx((95 - 96) / (100 - 80))


def test_lean_hook_matches_the_evaluation_code_with_missing_values(tmp_path):
    run = _evaluated_run(tmp_path, "h_only")
    rows = [dict(r) for r in run["metrics"]["per_sample"]]
    # a third L subject without grey matter in its ground truth (bias None) and a Dice the evaluation left None
    rows.append({**rows[3], "id": "test_L002", "dice": {"other_csf": 0.5, "grey_matter": None},
                 "volume_bias": {"other_csf": -1 / 6, "grey_matter": None}})  # fmt: skip
    run = {**run, "metrics": {**run["metrics"], "per_sample": rows}}
    full, lean = study.metrics_from_samples(run), study.main_metrics_from_samples(run)
    assert _read(lean) == _read(full)
    assert lean["metrics"]["extra"]["auc"] == {"grey_matter": full["metrics"]["extra"]["auc"]["grey_matter"]}
    assert lean["metrics"]["extra"]["groups"]["L"]["dice"]["grey_matter"]["mean"] == pytest.approx(0.65)  # None skipped
    assert lean["metrics"]["extra"]["groups"]["L"]["volume_bias"]["grey_matter"]["median"] == pytest.approx(0.15)

"""The within-run bootstrap (common.study.within) and the random-effects claim interval that uses it."""

import math

import numpy as np
import pytest

from common.study.engine import Claim, evaluate_claims
from common.study.stats import claim_interval
from common.study.within import TestResampling, redraw_runs, within_run_sd


def _run(name, values, groups=None, seed=0):
    rows = [{"id": f"s{i}", "x": v, **({"group": groups[i]} if groups else {})} for i, v in enumerate(values)]
    return {"name": name, "seed": seed, "metrics": {"per_sample": rows}}


def test_runs_with_the_same_units_are_redrawn_together_and_copies_are_renamed():
    a = _run("a", [0.0, 1.0, 2.0, 3.0, 4.0])
    b = _run("b", [10.0, 11.0, 12.0, 13.0, 14.0])
    c = {"name": "c", "seed": 0, "metrics": {"per_sample": [{"id": "t0", "x": 5.0}, {"id": "t1", "x": 6.0}]}}
    ra, rb, rc = redraw_runs([a, b, c], TestResampling(), np.random.default_rng(3))
    ids_a = [r["id"].split("#")[0] for r in ra["metrics"]["per_sample"]]
    assert ids_a == [r["id"].split("#")[0] for r in rb["metrics"]["per_sample"]]  # paired: the same draw
    assert [r["x"] + 10 for r in ra["metrics"]["per_sample"]] == [r["x"] for r in rb["metrics"]["per_sample"]]
    assert len(ra["metrics"]["per_sample"]) == 5 and len(rc["metrics"]["per_sample"]) == 2
    assert {r["id"].split("#")[0] for r in rc["metrics"]["per_sample"]} <= {"t0", "t1"}  # its own units only
    names = [r["id"] for r in ra["metrics"]["per_sample"]]
    assert len(set(names)) == 5  # every copy keeps a distinct name
    for name in names:
        if "#" in name:
            base, k = name.split("#")
            assert f"{base}#{int(k) - 1}" in names or (k == "1" and base in names)
    assert a["metrics"]["per_sample"][0]["id"] == "s0"  # the input is left as it was


def test_strata_keep_their_counts():
    run = _run("a", [1.0] * 3 + [2.0] * 7, groups=["L"] * 3 + ["H"] * 7)
    rng = np.random.default_rng(0)
    for _ in range(20):
        rows = redraw_runs([run], TestResampling(strata="group"), rng)[0]["metrics"]["per_sample"]
        assert sum(r["group"] == "L" for r in rows) == 3 and sum(r["group"] == "H" for r in rows) == 7
        assert all(r["x"] == (1.0 if r["group"] == "L" else 2.0) for r in rows)


def test_every_record_of_a_unit_moves_with_it_and_from_samples_recomputes():
    rows = [{"subject": s, "estimator": e, "x": v} for s, v in (("h0", 1.0), ("h1", 5.0)) for e in ("a", "b")]
    run = {"name": "r", "seed": 0, "metrics": {"per_sample": rows, "metrics": {}}}

    def mean_x(r):
        xs = [row["x"] for row in r["metrics"]["per_sample"]]
        return {**r, "metrics": {**r["metrics"], "metrics": {"mean": sum(xs) / len(xs)}}}

    seen = set()
    rng = np.random.default_rng(1)
    for _ in range(30):
        out = redraw_runs([run], TestResampling(unit="subject", from_samples=mean_x), rng)[0]
        rows_out = out["metrics"]["per_sample"]
        assert len(rows_out) == 4 and sorted(r["estimator"] for r in rows_out) == ["a", "a", "b", "b"]
        seen.add(out["metrics"]["metrics"]["mean"])
    assert seen == {1.0, 3.0, 5.0}  # both copies of h0, one of each, both of h1


def test_within_run_sd_of_a_mean_matches_the_bootstrap_standard_error():
    from scipy import stats as st

    x = np.random.default_rng(7).normal(10.0, 2.0, size=40)
    claim = Claim("mean", "the mean exceeds 0", lambda s: s["mean"], 0.0, ">")

    def summarize(runs):
        return {"mean": float(np.mean([r["x"] for r in runs[0]["metrics"]["per_sample"]]))}

    sd = within_run_sd([claim], summarize, [_run("a", list(x))], TestResampling(draws=2000), seed=5)["mean"]
    plug_in = float(np.std(x, ddof=0) / math.sqrt(x.size))  # the bootstrap's own target
    assert sd == pytest.approx(plug_in, rel=0.06)
    reference = st.bootstrap((x,), np.mean, n_resamples=2000, random_state=0).standard_error
    assert sd == pytest.approx(reference, rel=0.08)
    again = within_run_sd([claim], summarize, [_run("a", list(x))], TestResampling(draws=2000), seed=5)["mean"]
    assert again == sd  # seeded: the published value recomputes exactly


def test_the_within_run_variance_is_a_floor_of_the_interval():
    # three seeds agree exactly: over seeds alone the interval is the point
    assert claim_interval([0.3, 0.3, 0.3], 0.0)["ci95"] == [0.3, 0.3]
    iv = claim_interval([0.3, 0.3, 0.3], 0.0, within_sds=[0.1, 0.1, 0.1])
    half = 4.302653 * 0.1 / math.sqrt(3)
    assert iv["ci95"] == pytest.approx([0.3 - half, 0.3 + half], rel=1e-6)
    assert iv["sd_within"] == pytest.approx(0.1) and iv["sd_training"] == 0.0 and iv["sd_seeds"] == 0.0
    # a seed spread above the test-set part: the interval is the seed-level one; the training part is the rest
    iv = claim_interval([1.0, 2.0, 3.0], 0.0, within_sds=[0.6, 0.6, None])
    assert iv["ci95"] == pytest.approx(claim_interval([1.0, 2.0, 3.0], 0.0)["ci95"])
    assert iv["sd_training"] == pytest.approx(0.8)
    # the root mean of the variances, not the mean of the sds: sds 0 and 2 give sqrt(2)
    assert claim_interval([1.0, 1.0], 0.0, within_sds=[0.0, 2.0])["sd_within"] == pytest.approx(math.sqrt(2))


def test_evaluate_claims_uses_each_seeds_within_run_sd():
    claim = Claim("gap", "a gap exceeds 0.25", lambda s: s["gap"], 0.25, ">")
    per_seed = {"0": {"gap": 0.3}, "1": {"gap": 0.3}, "2": {"gap": 0.3}}
    alone = evaluate_claims([claim], per_seed)[0]
    assert alone["verdict"] == "supported" and alone["within_per_seed"] is None
    floored = evaluate_claims([claim], per_seed, {"gap": {"0": 0.1, "1": 0.1, "2": 0.1}})[0]
    assert floored["verdict"] == "inconclusive"  # 0.3 - 4.30 * 0.1 / sqrt(3) = 0.05 < 0.25
    assert floored["within_per_seed"] == {"0": 0.1, "1": 0.1, "2": 0.1}


def test_a_units_stratum_comes_from_any_run_of_the_seed_that_knows_it():
    # the first run (a classifier) has no group in its records; the second does: both keep 2 L and 3 H
    groups = ["L", "L", "H", "H", "H"]
    first = {"name": "scene", "seed": 0, "metrics": {"per_sample": [{"id": f"s{i}", "x": 0.0} for i in range(5)]}}
    second = _run("seg", [1.0] * 5, groups=groups)
    rng = np.random.default_rng(4)
    for _ in range(20):
        a, b = redraw_runs([first, second], TestResampling(strata="group"), rng)
        drawn = [r["id"].split("#")[0] for r in b["metrics"]["per_sample"]]
        assert sorted(groups[int(u[1:])] for u in drawn) == ["H", "H", "H", "L", "L"]
        assert [r["id"] for r in a["metrics"]["per_sample"]] == [r["id"] for r in b["metrics"]["per_sample"]]


def test_a_value_that_redraws_move_by_rounding_only_has_no_within_run_spread():
    claim = Claim("auc", "an AUROC exceeds 0.8", lambda s: s["auc"], 0.8, ">")
    run = _run("a", [1.0, 2.0, 3.0, 4.0])

    def summarize(runs):  # 0.9 plus a rounding-size wobble that depends on the draw (a sum taken in another order)
        return {"auc": 0.9 + 1e-17 * runs[0]["metrics"]["per_sample"][0]["x"]}

    assert within_run_sd([claim], summarize, [run], TestResampling(draws=50), seed=1)["auc"] == 0.0

    def summarize_moving(runs):  # a real dependence on the draw keeps its spread
        return {"auc": 0.9 + 0.01 * runs[0]["metrics"]["per_sample"][0]["x"]}

    moved = within_run_sd([claim], summarize_moving, [run], TestResampling(draws=50), seed=1)["auc"]
    assert moved > 0.001


def test_prepare_runs_once_per_seed_and_its_records_move_with_their_units():
    calls = []

    def prepare(runs):  # a per-unit statistic a redraw cannot change, stored once
        calls.append(len(runs))
        return [{**r, "metrics": {"per_sample": [{**row, "sq": row["x"] ** 2} for row in r["metrics"]["per_sample"]]}}
                for r in runs]  # fmt: skip

    claim = Claim("sq", "a mean square exceeds 0", lambda s: s["sq"], 0.0, ">")

    def summarize(runs):
        rows = runs[0]["metrics"]["per_sample"]
        assert all(row["sq"] == row["x"] ** 2 for row in rows)
        return {"sq": float(np.mean([row["sq"] for row in rows]))}

    sd = within_run_sd([claim], summarize, [_run("a", [1.0, 2.0, 3.0])], TestResampling(draws=30, prepare=prepare), 0)
    assert calls == [1] and sd["sq"] > 0

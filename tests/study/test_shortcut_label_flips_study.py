"""Study of shortcut_label_flips: grid, summary and claims from hand-made runs (OSCAR from hand-made rank files),
smoke study end to end."""

import json
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import rankdata

from common.attribution import regions, statistics
from common.attribution.handlers import ATTRIBUTION_FILE
from common.study.engine import Profile, evaluate_claims, run_study
from common.study.report import render_report
from common.study.shortcut_label_flips import CLAIMS, PROFILES, SPEC, OscarInputError, oscar_summary, summarize


def test_quick_grid_is_the_scene_model_then_the_correlations_times_seeds():
    study = SPEC.study("quick", (0, 1, 2))
    assert [r.name for r in study.runs] == ["scene", "corr_0p5", "corr_0p75", "corr_0p9", "corr_0p99"]
    scene = study.runs[0]
    assert scene.overrides["run_id"] == "run_scene" and scene.overrides["correlation"] == 0.5
    assert scene.labels["model"] == "scene" and scene.labels["correlation"] is None
    assert [r.overrides["correlation"] for r in study.runs[1:]] == [0.5, 0.75, 0.9, 0.99]
    assert all("run_id" not in r.overrides and r.labels["model"] == "segmentation" for r in study.runs[1:])
    assert study.seeds == (0, 1, 2) and all(r.overrides["num_threads"] == 1 for r in study.runs)
    assert list(study.configs) == ["train.yaml", "evaluate.yaml", "train_scene.yaml", "oscar.yaml"]
    with pytest.raises(ValueError, match="unknown profile"):
        SPEC.study("huge", (0,))
    with pytest.raises(ValueError, match="OSCAR needs the baseline correlation 0.5 in the grid"):
        SPEC.runs(Profile(settings={}, axes={"correlation": (0.75, 0.99)}), None)


# Hand-made OSCAR rank files: 12 images, an 8 x 8 grid and a 20-region "slic" partition. The object covers the
# central regions; the scene model attributes the border columns (where the fields of view differ), the baseline
# the object, and the test model at correlation c mixes them with weight W[c] on the scene model's scores.
N_IMAGES, GRID = 12, 8
W = {0.5: 0.0, 0.75: 0.2, 0.9: 0.5, 0.99: 0.9}
_yy, _xx = np.mgrid[0:GRID, 0:GRID]
SCENE_SCORE = (np.minimum(_xx, GRID - 1 - _xx) == 0).astype(float).ravel()  # border columns
OBJECT_SCORE = np.exp(-((_yy - 3.5) ** 2 + (_xx - 3.5) ** 2) / 4.0).ravel()


def _ranks(score, rng):
    noisy = score[None] + 0.3 * rng.standard_normal((N_IMAGES, len(score)))
    return rankdata(-noisy, axis=1).astype(np.float32)


def _write_ranks(folder, mix, rng, ids=None):
    folder.mkdir(parents=True, exist_ok=True)
    slic_of = np.arange(GRID * GRID) % 20
    score = mix * SCENE_SCORE + (1 - mix) * OBJECT_SCORE
    slic_score = np.bincount(slic_of, weights=score, minlength=20) / np.bincount(slic_of, minlength=20)
    coverage = OBJECT_SCORE / OBJECT_SCORE.max()
    arrays = {
        "ids": np.array(ids or [f"test_{i:04d}" for i in range(N_IMAGES)]),
        "scene": np.array(["sector", "linear"] * (N_IMAGES // 2)),
        "identity": np.array([1, 2] * (N_IMAGES // 2)),
        "mean_image": np.zeros((32, 32), np.float32),
        "ranks__occlusion__grid8": _ranks(score, rng),
        "ranks__occlusion__slic": _ranks(slic_score, rng),
        "object_coverage__grid8": coverage.astype(np.float32),
        "object_coverage__slic": np.bincount(slic_of, weights=coverage, minlength=20).astype(np.float32) / 3.2,
        "fov_difference__grid8": SCENE_SCORE.astype(np.float32),
        "fov_difference__slic": np.zeros(20, np.float32),
        "partition__grid8": regions.grid_partition((32, 32), GRID).astype(np.int32),
        "meta": np.array(json.dumps({"target": "identity", "methods": ["occlusion"], "num_images": N_IMAGES,
                                     "partitions": {"grid8": 64, "slic": 20}, "object_fraction": 0.3})),
    }  # fmt: skip
    np.savez_compressed(folder / ATTRIBUTION_FILE, **arrays)


def _oscar_runs(tmp_path, seed=0, with_scene=True, scene_ids=None):
    rng = np.random.default_rng(seed)
    runs = []
    if with_scene:
        _write_ranks(tmp_path / "scene", 1.0, rng, scene_ids)
        metrics = {"settings": {}, "metrics": {"scene_accuracy": 1.0}, "per_sample": [], "extra": {}}
        runs.append({"name": "scene", "model": "scene", "correlation": None, "seed": seed, "metrics": metrics,
                     "overrides": {"output_dir": str(tmp_path / "scene")}})  # fmt: skip
    for c, mix in W.items():
        _write_ranks(tmp_path / f"c{c}", mix, rng)
        runs.append(
            {"name": f"corr_{c}", "correlation": c, "seed": seed, "overrides": {"output_dir": str(tmp_path / f"c{c}")}}
        )
    return runs


def _run(correlation, dice_common, dice_rare, flip_common, flip_rare, per_sample, auroc=None, oscar=None):
    m = {"dice_mean_common": dice_common, "dice_mean_rare": dice_rare, "flip_flip_common": flip_common,
         "flip_flip_rare": flip_rare, "dice_gap": dice_common - dice_rare, "flip_gap": flip_rare - flip_common,
         "flip_risk_auroc": auroc, "flip_risk_ap": None}  # fmt: skip
    metrics = {"settings": {"flip_threshold": 0.25}, "metrics": m, "per_sample": per_sample, "extra": {}}
    run = {"name": f"corr_{correlation}", "correlation": correlation, "seed": 0, "metrics": metrics}
    return {**run, "overrides": oscar[correlation]["overrides"]} if oscar else run


def _with_scene(runs, oscar):
    return [oscar["scene"], *runs]


@pytest.fixture
def oscar_runs(tmp_path):
    return {r["correlation"] if r["name"] != "scene" else "scene": r for r in _oscar_runs(tmp_path)}


def test_oscar_summary_recomputed_from_saved_ranks(tmp_path):
    runs = _oscar_runs(tmp_path)
    o = oscar_summary(runs)
    assert list(o["per_correlation"]) == ["0.75", "0.9", "0.99"]  # the baseline is not a test model of itself
    assert o["primary"] == "occlusion/grid8" and o["num_images"] == N_IMAGES and o["scene_accuracy"] == 1.0
    # the summary's numbers are the library's on the saved ranks
    load = lambda name: np.load(tmp_path / name / ATTRIBUTION_FILE)["ranks__occlusion__grid8"]  # noqa: E731
    ts, sa, ba = load("c0.99"), load("scene"), load("c0.5")
    top = o["per_correlation"]["0.99"]["occlusion/grid8"]
    profiles = [regions.median_rank_profile(x) for x in (ts, sa, ba)]
    assert top["partial_r"] == pytest.approx(statistics.partial_correlation(*profiles))
    assert top["r_ts_sa"] == pytest.approx(np.corrcoef(profiles[0], profiles[1])[0, 1])
    assert top["partial_lo"] <= top["partial_r"] <= top["partial_hi"]
    assert 0.0 < top["p_ts_sa"] <= 1.0
    assert o["profiles"]["ba"] == pytest.approx(list(profiles[2])) and len(o["profiles"]["localisation"]) == 64
    # the test model follows the scene model more as the mixing weight rises
    assert o["partial_r_spearman"]["occlusion/grid8"] == pytest.approx(1.0)
    assert o["partial_r_at_highest"] > 0.5
    # the top-decile regions (k = 6 of 64) lie on the border columns, off the object
    assert top["k"] == 7 and top["fov_chance"] == 0.25 and top["fov_share"] >= 5 / 7  # k = ceil(64 / 10)
    assert top["off_object_share"] >= 5 / 6 > top["off_object_chance"]
    assert o["off_object_excess_at_highest"] == pytest.approx(top["off_object_share"] - top["off_object_chance"])
    assert o["partition_difference_at_highest"] == pytest.approx(
        abs(top["partial_r"] - o["per_correlation"]["0.99"]["occlusion/slic"]["partial_r"])
    )
    claims = {c["id"]: c for c in evaluate_claims(CLAIMS, {"0": summarize(_hand_made(runs))})}
    assert claims["oscar_partial_r_rises"]["holds_in"] == 1 and claims["oscar_regions_off_object"]["holds_in"] == 1
    assert claims["oscar_partial_r_positive"]["holds_in"] == 1


def _hand_made(oscar_list):
    oscar = {r["correlation"] if r["name"] != "scene" else "scene": r for r in oscar_list}
    return _with_scene([_run(c, 0.9, 0.9 - c / 2, 0.0, c / 2, [], oscar=oscar) for c in W], oscar)


def test_oscar_fails_fast_on_a_missing_scene_model_or_rank_file(tmp_path):
    with pytest.raises(OscarInputError, match=r"seed 0 has no scene-model \(SA\) run"):
        oscar_summary(_oscar_runs(tmp_path / "a", with_scene=False))
    runs = _oscar_runs(tmp_path / "b")
    (tmp_path / "b" / "c0.9" / ATTRIBUTION_FILE).unlink()
    with pytest.raises(FileNotFoundError, match=r"c0\.9/attribution_ranks\.npz do not exist"):
        oscar_summary(runs)
    other = [f"test_{i:04d}" for i in range(1, N_IMAGES + 1)]
    with pytest.raises(OscarInputError, match="SA ranked other test images than BA"):
        oscar_summary(_oscar_runs(tmp_path / "c", scene_ids=other))
    no_baseline = [r for r in _oscar_runs(tmp_path / "d") if r["correlation"] != 0.5]
    with pytest.raises(OscarInputError, match="no baseline"):
        oscar_summary(no_baseline)


def test_summary_and_claims_from_hand_made_runs(oscar_runs):
    sample = lambda flip, risk: {"id": "x", "flip": flip, "flip_risk": risk}  # noqa: E731
    runs = [  # given out of order: the summary sorts by correlation
        _run(0.9, 0.95, 0.70, 0.01, 0.30, [sample(0.4, 0.7), sample(0.0, 0.1)], auroc=0.9, oscar=oscar_runs),
        _run(0.5, 0.94, 0.93, 0.02, 0.03, [sample(0.0, 0.2), sample(0.1, 0.3)], oscar=oscar_runs),
        _run(0.99, 0.96, 0.20, 0.00, 0.80, [sample(0.9, 0.2), sample(0.3, 0.8)], auroc=0.5, oscar=oscar_runs),
        _run(0.75, 0.95, 0.90, 0.02, 0.08, [sample(0.0, 0.05)], auroc=0.85, oscar=oscar_runs),
    ]
    s = summarize(_with_scene(runs, oscar_runs))
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
    flipped = summarize(_with_scene([_run(c, 0.9, 0.9, 0.0, f, [], oscar=oscar_runs)
                                     for c, f in ((0.5, 0.4), (0.75, 0.3), (0.9, 0.2))], oscar_runs))  # fmt: skip
    assert flipped["rare_flip_spearman"] == pytest.approx(-1.0)
    assert evaluate_claims(CLAIMS[:1], {"0": flipped})[0]["holds_in"] == 0


def test_report_renders_without_per_sample_records(oscar_runs):
    s = summarize(_with_scene([_run(c, 0.9, 0.8, 0.0, 0.1 * i, [], oscar=oscar_runs)
                               for i, c in enumerate((0.5, 0.75, 0.9, 0.99))], oscar_runs))  # fmt: skip
    record = {"profile": "quick", "seeds": [0], "runs": [{"name": "a"}], "seconds": 60.0, "run_seconds": 100.0,
              "code_fingerprint": "f", "command": "python -m common.study shortcut_label_flips", "claims": [],
              "profile_settings": {"settings": PROFILES["quick"].settings, "axes": PROFILES["quick"].axes, "jobs": 2},
              "summary": {**s, "per_seed": {"0": s}}}  # fmt: skip
    text = render_report(SPEC, record, ["results/shortcut_vs_correlation.png"])
    assert "| 0.99 | 0.900 | 0.800 | 0.100 | 0.000 | 0.300 |" in text
    assert "![shortcut_vs_correlation.png](results/shortcut_vs_correlation.png)" in text
    assert "## OSCAR: where the test model's attribution follows the scene" in text
    assert "| occlusion/grid8 |" in text and "| occlusion/slic |" in text


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
    assert [r["name"] for r in results["runs"]] == ["scene", "corr_0p5", "corr_0p99"]
    oscar = results["summary"]["per_seed"]["0"]["oscar"]
    assert oscar["num_images"] == PROFILES["smoke"].settings["num_attribution"] and 0 <= oscar["scene_accuracy"] <= 1
    row = oscar["per_correlation"]["0.99"]
    assert set(row) == {"gradcam/grid8", "gradcam/grid16", "gradcam/slic", "occlusion/grid8", "occlusion/slic"}
    assert all(-1 <= v["r_ts_ba"] <= 1 and v["k"] >= 1 for v in row.values())
    assert "## OSCAR" in report.read_text()
    att = results["summary"]["per_seed"]["0"]["per_correlation"]["0.99"]["attenuation"]
    assert results["summary"]["per_seed"]["0"]["per_correlation"]["0.5"]["attenuation"] is None
    assert att["k"] == 7 and att["dice_narrowing"] == pytest.approx(att["dice_gap_plain"] - att["dice_gap_attenuated"])
    ts_dir = next(r["overrides"]["output_dir"] for r in results["runs"] if r["name"] == "corr_0p99")
    assert json.loads((Path(ts_dir) / "attenuation.json").read_text())["k"] == 7
    assert "## Test-time attenuation of the top shortcut regions" in report.read_text()
    pngs = ("shortcut_vs_correlation.png", "example_panels.png", "oscar_profiles.png", "oscar_partial_r.png",
            "oscar_attenuation.png")  # fmt: skip
    for png in pngs:
        assert png in results["figures"] and (out / png).read_bytes()[:4] == b"\x89PNG"


def test_test_models_run_after_the_baseline_and_the_scene_model(tmp_path):
    from common.study.engine import _tasks

    study = SPEC.study("quick", (0, 1))
    after = {r.name: dict(r.after) for r in study.runs}
    assert after["scene"] == {} and after["corr_0p5"] == {}  # SA and BA read nothing
    reads = {"oscar_ba_dir": "corr_0p5", "oscar_sa_dir": "scene"}
    assert after["corr_0p75"] == after["corr_0p9"] == after["corr_0p99"] == reads
    tasks = {(t["run"].name, t["seed"]): t for t in _tasks(study, tmp_path, "fp")}
    ts = tasks["corr_0p99", 1]
    assert ts["overrides"]["oscar_ba_dir"] == str(tasks["corr_0p5", 1]["run_dir"])
    assert ts["overrides"]["oscar_sa_dir"] == str(tasks["scene", 1]["run_dir"])
    assert "oscar_ba_dir" not in tasks["corr_0p5", 1]["overrides"]


def _attenuation(dice, flip):
    """A hand-made ``extra.oscar_attenuation``: ``dice``/``flip`` are (plain, attenuated, random) gaps."""
    ways = ("plain", "attenuated", "random")
    out = {w: {"dice_gap": d, "flip_gap": f} for w, d, f in zip(ways, dice, flip)}
    out["narrowing"] = {"dice_gap": dice[0] - dice[1], "flip_gap": flip[0] - flip[1]}
    out["beyond_random"] = {"dice_gap": dice[2] - dice[1], "flip_gap": flip[2] - flip[1]}
    return {"k": 7, "num_regions": 64, **out}


def test_summary_claims_and_report_of_test_time_attenuation(oscar_runs, tmp_path):
    from common.study.shortcut_label_flips import figures

    runs = [_run(c, 0.9, 0.9 - c / 2, 0.0, c / 2, [], oscar=oscar_runs) for c in W]
    extra = {0.75: _attenuation((0.30, 0.20, 0.10), (0.40, 0.30, 0.35)),  # narrows, but less than random regions
             0.99: _attenuation((0.50, 0.20, 0.45), (0.60, 0.10, 0.50))}  # fmt: skip
    for r in runs:
        if r["correlation"] in extra:
            r["metrics"]["extra"]["oscar_attenuation"] = extra[r["correlation"]]
    s = summarize(_with_scene(runs, oscar_runs))
    assert s["per_correlation"]["0.5"]["attenuation"] is None and s["per_correlation"]["0.9"]["attenuation"] is None
    row = s["per_correlation"]["0.99"]["attenuation"]
    assert row["dice_gap_plain"] == 0.50 and row["dice_gap_attenuated"] == 0.20 and row["dice_gap_random"] == 0.45
    assert row["dice_narrowing"] == pytest.approx(0.30) and row["dice_beyond_random"] == pytest.approx(0.25)
    assert row["flip_narrowing"] == pytest.approx(0.50) and row["flip_beyond_random"] == pytest.approx(0.40)
    assert s["attenuation_dice_narrowing_at_highest"] == pytest.approx(0.30)
    assert s["attenuation_dice_beyond_random_at_highest"] == pytest.approx(0.25)
    low = s["per_correlation"]["0.75"]["attenuation"]
    assert low["dice_narrowing"] == pytest.approx(0.10) and low["dice_beyond_random"] == pytest.approx(-0.10)
    claims = {c["id"]: c for c in evaluate_claims(CLAIMS, {"0": s})}
    assert (
        claims["attenuation_narrows_dice_gap"]["holds_in"] == 1
        and not claims["attenuation_narrows_dice_gap"]["primary"]
    )
    assert claims["attenuation_beyond_random"]["holds_in"] == 1 and not claims["attenuation_beyond_random"]["primary"]
    # at the highest correlation the random regions narrow the gap more: the control claim fails
    runs[-1]["metrics"]["extra"]["oscar_attenuation"] = _attenuation((0.50, 0.20, 0.10), (0.60, 0.10, 0.05))
    worse = summarize(_with_scene(runs, oscar_runs))
    claims = {c["id"]: c for c in evaluate_claims(CLAIMS, {"0": worse})}
    assert (
        claims["attenuation_narrows_dice_gap"]["holds_in"] == 1 and claims["attenuation_beyond_random"]["holds_in"] == 0
    )
    record = {"profile": "quick", "seeds": [0], "runs": [], "seconds": 60.0, "run_seconds": 100.0,
              "code_fingerprint": "f", "command": "python -m common.study shortcut_label_flips", "claims": [],
              "profile_settings": {"settings": PROFILES["quick"].settings, "axes": PROFILES["quick"].axes, "jobs": 2},
              "summary": {**s, "per_seed": {"0": s}}}  # fmt: skip
    text = render_report(SPEC, record, [])
    assert "## Test-time attenuation of the top shortcut regions" in text
    assert "| 0.99 | 7 | 0.500 | 0.200 | 0.450 | 0.300 | 0.250 | 0.600 | 0.100 | 0.500 | 0.500 | 0.400 |" in text
    assert "| 0.75 | 7 | 0.300 | 0.200 | 0.100 | 0.100 | -0.100 |" in text and "| 0.9 | 7 |" not in text
    names = figures(record, tmp_path)
    assert "oscar_attenuation.png" in names and (tmp_path / "oscar_attenuation.png").read_bytes()[:4] == b"\x89PNG"


# Within-run bootstrap: four hand-made test images (two common, two rare), written by the bundle's own writer.
# identity, group, Dice of identity 1 / 2 (None: absent), correct / flip / miss fractions, flip-risk
IMAGES = {
    "a": (1, "common", 0.9, None, 0.9, 0.0, 0.1, 0.1),
    "b": (2, "common", None, 0.8, 0.8, 0.1, 0.1, 0.2),
    "c": (1, "rare", 0.5, None, 0.5, 0.4, 0.1, 0.6),
    "d": (2, "rare", None, 0.3, 0.3, 0.6, 0.1, 0.5),
}


def _written_run(tmp_path, correlation=0.99, images=IMAGES, oscar=None):
    """A segmentation run whose ``metrics.json`` is what ``write_shortcut_metrics`` writes for ``images``."""
    from types import SimpleNamespace

    from common.metrics.shortcut import write_shortcut_metrics

    folder = tmp_path / f"written_{correlation}"
    folder.mkdir(parents=True, exist_ok=True)
    per_image = [{"id": k, "dice_identity_1": d1, "dice_identity_2": d2, "correct": c, "flip": f, "miss": m,
                  "flip_risk": risk} for k, (_, _, d1, d2, c, f, m, risk) in images.items()]  # fmt: skip
    test = [{"id": k, "identity": i, "scene": "sector" if (i == 1) == (g == "common") else "linear", "group": g}
            for k, (i, g, *_) in images.items()]  # fmt: skip
    (folder / "datalist.json").write_text(json.dumps({"test": test}))
    dice = {n: [r[f"dice_{n}"] for r in per_image if r[f"dice_{n}"] is not None] for n in ("identity_1", "identity_2")}
    report = SimpleNamespace(class_names=["identity_1", "identity_2"], results=lambda: {
        "per_image": per_image, "dice_mean": float(np.mean([np.mean(v) for v in dice.values()])), "flip": None})  # fmt: skip
    write_shortcut_metrics(folder, report, folder / "datalist.json", {"flip_threshold": 0.25})
    metrics = json.loads((folder / "metrics.json").read_text())
    run = {"name": f"corr_{correlation}", "model": "segmentation", "correlation": correlation, "seed": 0,
           "metrics": metrics}  # fmt: skip
    return {**run, "overrides": oscar[correlation]["overrides"]} if oscar else run


def test_metrics_from_samples_reproduces_the_written_metrics(tmp_path):
    from common.study.shortcut_label_flips import metrics_from_samples

    run = _written_run(tmp_path)
    m = run["metrics"]["metrics"]
    # by hand: common Dice (0.9 + 0.8) / 2, rare (0.5 + 0.3) / 2; flips common (0 + 0.1) / 2, rare (0.4 + 0.6) / 2
    assert m["dice_mean_common"] == pytest.approx(0.85) and m["dice_mean_rare"] == pytest.approx(0.4)
    assert m["flip_flip_common"] == pytest.approx(0.05) and m["flip_flip_rare"] == pytest.approx(0.5)
    assert m["dice_gap"] == pytest.approx(0.45) and m["flip_gap"] == pytest.approx(0.45)
    assert m["flip_risk_auroc"] == 1.0 and m["flip_prone_fraction"] == 0.5  # c, d flip-prone, riskier than a, b
    again = metrics_from_samples(run)
    assert again["metrics"]["metrics"] == m  # the same numbers, every key
    assert again["metrics"]["per_sample"] == run["metrics"]["per_sample"] and again["metrics"]["extra"] is not None


def test_metrics_from_samples_of_a_redraw_keeping_one_image_per_group(tmp_path):
    from common.study.shortcut_label_flips import metrics_from_samples

    run = _written_run(tmp_path)
    rows = {r["id"]: r for r in run["metrics"]["per_sample"]}
    drawn = [rows["a"], {**rows["a"], "id": "a#1"}, rows["d"], {**rows["d"], "id": "d#1"}]
    m = metrics_from_samples({**run, "metrics": {**run["metrics"], "per_sample": drawn}})["metrics"]["metrics"]
    # common: only image a (identity 1): its Dice 0.9, no identity-2 image; rare: only d (identity 2, Dice 0.3)
    assert m["dice_identity_1_common"] == pytest.approx(0.9) and m["dice_identity_2_common"] is None
    assert m["dice_mean_common"] == pytest.approx(0.9) and m["dice_mean_rare"] == pytest.approx(0.3)
    assert m["flip_flip_common"] == 0.0 and m["flip_flip_rare"] == pytest.approx(0.6)
    assert m["flip_miss_rare"] == pytest.approx(0.1) and m["flip_risk_rare"] == pytest.approx(0.5)
    assert m["dice_gap"] == pytest.approx(0.6) and m["flip_gap"] == pytest.approx(0.6)
    assert m["dice_mean"] == pytest.approx((0.9 + 0.3) / 2)  # identity 1 from a, identity 2 from d
    assert m["flip_risk_auroc"] == 1.0 and m["flip_prone_fraction"] == 0.5
    # nothing flip-prone left (a twice): AUROC undefined, as the evaluation writes it
    only_a = [rows["a"], {**rows["a"], "id": "a#1"}]
    m = metrics_from_samples({**run, "metrics": {**run["metrics"], "per_sample": only_a}})["metrics"]["metrics"]
    assert m["flip_risk_auroc"] is None and m["flip_prone_fraction"] == 0.0


def test_scene_accuracy_recomputed_from_its_images():
    from common.study.shortcut_label_flips import metrics_from_samples

    rows = [{"id": "x", "scene": "sector", "identity": 1, "pred_scene": "sector"},
            {"id": "y", "scene": "linear", "identity": 2, "pred_scene": "sector"}]  # fmt: skip
    run = {"name": "scene", "model": "scene", "seed": 0,
           "metrics": {"settings": {}, "metrics": {"scene_accuracy": 0.5}, "per_sample": rows, "extra": {}}}  # fmt: skip
    assert metrics_from_samples(run)["metrics"]["metrics"] == {"scene_accuracy": 0.5}
    drawn = [rows[0], rows[1], {**rows[1], "id": "y#1"}]
    redrawn = metrics_from_samples({**run, "metrics": {**run["metrics"], "per_sample": drawn}})
    assert redrawn["metrics"]["metrics"]["scene_accuracy"] == pytest.approx(1 / 3)


def test_redraw_pairs_the_runs_and_keeps_the_group_sizes(tmp_path):
    from common.study.shortcut_label_flips import RESAMPLING
    from common.study.within import redraw_runs

    assert (RESAMPLING.unit, RESAMPLING.strata) == ("id", "group")
    images = {**IMAGES, "e": (1, "common", 0.7, None, 0.7, 0.0, 0.3, 0.3)}  # three common, two rare
    runs = [_written_run(tmp_path, c, images) for c in (0.5, 0.99)]
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(20):
        out = redraw_runs(runs, RESAMPLING, rng)
        ids = [[r["id"] for r in o["metrics"]["per_sample"]] for o in out]
        assert ids[0] == ids[1]  # one draw for both models: paired
        groups = [r["group"] for r in out[0]["metrics"]["per_sample"]]
        assert groups.count("common") == 3 and groups.count("rare") == 2
        seen.add(tuple(sorted(i.split("#")[0] for i in ids[0])))
        rows = out[0]["metrics"]["per_sample"]
        common = [r["flip"] for r in rows if r["group"] == "common"]
        assert out[0]["metrics"]["metrics"]["flip_flip_common"] == pytest.approx(np.mean(common))
    assert len(seen) > 1  # the redraws differ


def test_oscar_is_computed_once_per_seed_for_the_bootstrap(tmp_path, monkeypatch):
    import common.study.shortcut_label_flips as study

    runs = _oscar_runs(tmp_path)
    first = oscar_summary(runs)
    prepared = study.oscar_once(runs)  # the within-run bootstrap's prepare: once per seed
    assert study.RESAMPLING.prepare is study.oscar_once
    calls = []
    compute = study._oscar_from_ranks
    monkeypatch.setattr(study, "_oscar_from_ranks", lambda r: calls.append(1) or compute(r))
    prepared[0]["metrics"]["metrics"]["scene_accuracy"] = 0.75  # read from the run, not kept
    second = oscar_summary(prepared)
    assert calls == [] and second == {**first, "scene_accuracy": 0.75}
    second["per_correlation"]["0.99"]["occlusion/grid8"]["partial_r"] = 9.0  # a copy: the stored result is untouched
    assert oscar_summary(prepared)["per_correlation"]["0.99"]["occlusion/grid8"]["partial_r"] == first[
        "per_correlation"]["0.99"]["occlusion/grid8"]["partial_r"]  # fmt: skip
    _write_ranks(tmp_path / "c0.99", 0.0, np.random.default_rng(5))  # runs without it read the rank files again
    third = oscar_summary(runs)
    assert calls == [1] and third["per_correlation"]["0.99"] != first["per_correlation"]["0.99"]
    assert study.oscar_once(_oscar_runs(tmp_path / "a", with_scene=False))[0].get(study.OSCAR_KEY) is None


def test_within_run_sd_of_the_claims(oscar_runs, tmp_path):
    from dataclasses import replace

    from common.study.shortcut_label_flips import RESAMPLING, metrics_from_samples
    from common.study.within import within_run_sd

    runs = [oscar_runs["scene"], *(_written_run(tmp_path, c, oscar=oscar_runs) for c in W)]
    runs[0] = {**runs[0], "metrics": {**runs[0]["metrics"], "per_sample": []}}  # no scene per-sample: not redrawn
    # the round trip through the summary: untouched runs give the published summary
    assert summarize([metrics_from_samples(r) if r["metrics"]["per_sample"] else r for r in runs]) == summarize(runs)
    sds = within_run_sd(CLAIMS, summarize, runs, replace(RESAMPLING, draws=20), seed=0)
    # every model scores the same images the same way here: the gap moves with the redraw, the Spearman rho and
    # everything OSCAR and attenuation report do not
    assert sds["rare_flips_exceed_common"] > 0
    assert sds["oscar_partial_r_positive"] == pytest.approx(0.0, abs=1e-12)  # one value, 20 times
    assert sds["oscar_partial_r_rises"] == pytest.approx(0.0, abs=1e-12)
    assert sds["rare_flips_rise"] is None  # constant rare flips over the grid: rho undefined in every redraw
    assert sds["attenuation_narrows_dice_gap"] is None  # no attenuation in these runs

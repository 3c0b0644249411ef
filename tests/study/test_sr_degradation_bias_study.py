"""Study ``sr_degradation_bias``: the Table I checks on hand-made matrices, and a smoke study end to end."""

from __future__ import annotations

import json

import pytest

from common.study import engine
from common.study.sr_degradation_bias import KSPACE_KINDS, METRICS, SPEC, TEST_KINDS, matrices, table_checks


def _biased_matrix() -> dict[str, dict[str, float]]:
    """Each single model 34 dB on its own kind, 26 on the others; combined 31 everywhere; bicubic 28."""
    psnr = {t: {k: (34.0 if k == t else 26.0) for k in TEST_KINDS} for t in TEST_KINDS}
    psnr["combined"] = {k: 31.0 for k in TEST_KINDS}
    psnr["bicubic_interpolation"] = {k: 28.0 for k in TEST_KINDS}
    return psnr


def test_table_checks_on_the_papers_pattern():
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
        bicubic = {m: {k: base - 10 for k in TEST_KINDS} for m in METRICS}
        extra = {"mean": per, "bicubic_interpolation": bicubic}
        return {"overrides": {"train_degradation": train}, "metrics": {"extra": extra}}

    mats = matrices([run("gaussian", 30.0), run("combined", 31.0)])
    assert mats["psnr"]["gaussian"]["hann"] == 31.0
    assert mats["hfen"]["combined"]["median"] == 36.0
    assert mats["psnr"]["bicubic_interpolation"]["hann"] == 20.0  # the first run's baseline
    assert list(mats["ssim"]) == ["gaussian", "combined", "bicubic_interpolation"]


@pytest.mark.slow
def test_smoke_study_writes_results_report_and_figures(tmp_path):
    out = tmp_path / "sr_degradation_bias"
    report = engine.run_study(SPEC, "smoke", out, seeds=(0,))
    results = json.loads((out / "results.json").read_text())
    summary = results["summary"]
    for m in METRICS:
        assert set(summary[m]) == {"bicubic", "combined", "bicubic_interpolation"}
        for row in summary[m].values():
            assert set(row) == set(TEST_KINDS)
    assert 10 < summary["psnr"]["bicubic"]["bicubic"] < 60
    assert 0 < summary["ssim"]["combined"]["mean"] <= 1
    assert "own_degradation_best_columns" in summary["checks"]
    mis = summary["misregistration"]  # the centred models on the legacy grid, and a model trained on it
    assert set(mis["test_on_legacy"]) == {"bicubic", "combined", "bicubic_interpolation"}
    assert set(mis["test_on_legacy"]["bicubic"]) == {"gaussian", "hann", "hamming", "mean", "median"}
    trained = mis["trained_on_legacy"]["gaussian"]
    assert trained["psnr_legacy"]["bicubic"] == trained["psnr_centred"]["bicubic"]  # bicubic: one grid
    assert trained["psnr_legacy"]["gaussian"] != trained["psnr_centred"]["gaussian"]
    assert summary["seeds"] == [0] and summary["per_seed"]["0"]["psnr"] == summary["psnr"]
    assert {c["id"] for c in results["claims"]} == {
        "own_degradation_best",
        "combined_most_robust",
        "combined_smallest_worst_loss",
        "beats_bicubic_on_own",
        "kspace_own_degradation_best",
        "kspace_combined_most_robust",
        "kspace_beats_bicubic_on_own",
    }
    assert set(summary["kspace"]["psnr"]) == {"kspace_truncation", "combined_kspace", "bicubic_interpolation"}
    down = summary["downstream"]  # the grey-matter segmentation of every SR output
    assert set(down["gm_dice"]) == {"bicubic", "combined", "bicubic_interpolation"}
    assert all(0 < v <= 1 for row in down["gm_dice"].values() for v in row.values())
    assert all(-1 <= v < 5 for row in down["gm_area_bias"].values() for v in row.values())
    assert set(summary["kspace"]["psnr"]["combined_kspace"]) == set(KSPACE_KINDS)
    assert results["environment"]["seed"] == 0
    assert results["command"].startswith("python -m common.study sr_degradation_bias --profile smoke")
    assert all(r["metrics"]["_run"]["command"] for r in results["runs"])
    text = report.read_text()
    assert "Table I" in text and "Bicubic interpolation" in text and results["command"] in text
    for name in ["heatmap_psnr.png", "heatmap_ssim.png", "heatmap_nrmse.png", "heatmap_hfen.png", "hfen_boxplots.png"]:
        assert (out / name).read_bytes()[:4] == b"\x89PNG", name

    # the same seeds at the same code give the same numbers, run again from scratch in another folder
    again_dir = tmp_path / "again" / "sr_degradation_bias"
    engine.run_study(SPEC, "smoke", again_dir, seeds=(0,))
    again = json.loads((again_dir / "results.json").read_text())
    assert not any(r["reused"] for r in again["runs"])
    assert again["summary"] == summary and again["claims"] == results["claims"]
    assert again["code_fingerprint"] == results["code_fingerprint"]


@pytest.mark.slow
def test_full_profile_grids_and_report_with_stubbed_runs(tmp_path, monkeypatch):
    """The full profile's loss and architecture grids reach results.json and report.md over three seeds (runs
    stubbed: seed s adds s - 4 dB, so the medians are seed 4's numbers)."""
    import common.data.sr_slices as sr_slices

    def fake_run(name, configs, overrides, output_dir):
        assert configs == ["train.yaml", "evaluate.yaml"] and overrides["train_first"] is True
        train = overrides["train_degradation"]
        bonus = {"mse": 0.0, "l1": 0.5, "ssim": 1.0}[overrides.get("loss", "mse")] + overrides["seed"] - 4
        plain_kinds = [k for k in overrides.get("test_degradations", TEST_KINDS) if "@" not in k]
        psnr = {k: (34.0 if k == train else 28.0) + bonus for k in plain_kinds}
        if train == "combined_kspace":
            psnr = {k: 31.0 + bonus for k in plain_kinds}
        legacy_model = overrides.get("phase") == "legacy"
        for k in overrides.get("test_degradations", ()):  # the other grid: 1.5 dB off, or 2 dB for legacy models
            if "@" in k:
                assert k.endswith("@centred" if legacy_model else "@legacy"), k
                psnr[k] = psnr[k.split("@")[0]] - (2.0 if legacy_model else 1.5)
        per = {m: {k: psnr[k] if m == "psnr" else 0.5 for k in psnr} for m in METRICS}
        samples = [
            {"id": f"{k}_{i}", "kind": k, "hfen": 0.1 * (i + 1), "bicubic_hfen": 0.3}
            for k in plain_kinds
            for i in (0, 1)
        ]
        extra = {"mean": per, "bicubic_interpolation": per}
        # downstream: the matched model has no grey-matter bias, the others +5 %; bicubic interpolation -10 %
        extra["downstream"] = {
            "gm_area_bias": {k: 0.0 if k == train else 0.05 for k in plain_kinds},
            "gm_dice": {k: 0.95 if k == train else 0.85 for k in plain_kinds},
        }
        extra["downstream_bicubic_interpolation"] = {
            "gm_area_bias": {k: -0.1 for k in plain_kinds},
            "gm_dice": {k: 0.8 for k in plain_kinds},
        }
        return {"settings": {}, "metrics": {}, "per_sample": samples, "extra": extra, "_run": {"seconds": 1.0}}

    monkeypatch.setattr(engine, "run_bundle", fake_run)
    monkeypatch.setattr(sr_slices, "generate_sr_slices", lambda *a, **k: tmp_path / "datalist.json")
    report = engine.run_study(SPEC, "full", tmp_path / "sr_degradation_bias", seeds=(3, 5, 4))
    results = json.loads((tmp_path / "sr_degradation_bias" / "results.json").read_text())
    summary = results["summary"]
    assert set(summary["loss_grid"]) == {"mse", "l1", "ssim"}
    assert set(summary["architecture_grid"]) == {"srdensenet", "srcnn", "rrdbnet"}
    assert summary["loss_grid"]["ssim"]["psnr"]["mean"]["mean"] == 35.0  # median of 34, 36, 35
    assert summary["per_seed"]["3"]["loss_grid"]["ssim"]["psnr"]["mean"]["mean"] == 34.0
    assert summary["per_seed"]["5"]["psnr"]["gaussian"]["gaussian"] == 35.0
    assert len(results["runs"]) == (7 * 5 + 5 + 6) * 3  # + five models on the legacy grid, six on k-space kinds
    down = summary["downstream"]
    assert down["gm_area_bias"]["hann"]["hann"] == 0.0 and down["gm_area_bias"]["hann"]["mean"] == 0.05
    assert down["gm_dice"]["bicubic_interpolation"]["median"] == 0.8
    assert set(down["gm_dice"]["gaussian"]) == set(TEST_KINDS)  # the legacy test kinds stay out
    assert summary["kspace"]["downstream"]["gm_area_bias"]["undersample"]["undersample"] == 0.0
    kspace = summary["kspace"]
    assert set(kspace["psnr"]) == {*KSPACE_KINDS, "combined_kspace", "bicubic_interpolation"}
    assert kspace["psnr"]["partial_fourier"]["partial_fourier"] == 34.0
    assert kspace["checks"]["own_degradation_best_columns"] == 5
    assert kspace["checks"]["combined_worst_above_every_single_worst"] is True
    by_id = {c["id"]: c for c in results["claims"]}
    assert (
        by_id["kspace_own_degradation_best"]["median"] == 5.0 and by_id["kspace_own_degradation_best"]["holds_in"] == 3
    )
    assert by_id["kspace_combined_most_robust"]["median"] == 3.0  # 31 - 28
    # the stubbed mix ("combined": 28 dB on every kind) is 6 dB below each column's best, as every single model is
    # somewhere: no smaller worst-case loss
    assert by_id["combined_smallest_worst_loss"]["median"] == 0.0
    mis = summary["misregistration"]
    assert set(mis["test_on_legacy"]) == {*TEST_KINDS, "combined", "bicubic_interpolation"}
    assert mis["test_on_legacy"]["bicubic"]["gaussian"] == 1.5 and "bicubic" not in mis["test_on_legacy"]["mean"]
    legacy_gauss = mis["trained_on_legacy"]["gaussian"]
    assert legacy_gauss["psnr_legacy"]["gaussian"] == 34.0 and legacy_gauss["psnr_centred"]["gaussian"] == 32.0
    assert legacy_gauss["psnr_legacy"]["bicubic"] == legacy_gauss["psnr_centred"]["bicubic"] == 28.0
    assert legacy_gauss["drop"]["hann"] == 2.0 and "bicubic" not in legacy_gauss["drop"]
    assert summary["psnr"]["gaussian"].keys() == set(TEST_KINDS)  # the legacy columns stay out of Table I
    assert summary["checks"]["own_degradation_best_columns"] == 6
    assert results["environment"]["seed"] == 3 and results["seeds"] == [3, 5, 4]
    assert results["command"].endswith("--profile full --output " + str(tmp_path) + " --seeds 3 5 4")
    assert set(results["git"]) == {"commit", "dirty"} and len(results["code_fingerprint"]) == 16
    own = next(c for c in results["claims"] if c["id"] == "own_degradation_best")
    assert own["holds_in"] == 3 and own["of"] == 3 and own["median"] == 6.0  # columns of 6
    text = report.read_text()
    assert "Table II (loss): ssim" in text and "Table III (architecture): rrdbnet" in text
    assert "Downstream: what each model does to a grey-matter segmentation" in text
    assert "| Bicubic interpolation (no network) | -10.0 |" in text
    assert "tested on the legacy grid" in text and "| Gaussian (legacy grid) | legacy test grid | 34.00 |" in text

    def must_not_run(*args, **kwargs):
        raise AssertionError("a finished setting was run again")

    monkeypatch.setattr(engine, "run_bundle", must_not_run)  # a rerun reuses every finished setting
    engine.run_study(SPEC, "full", tmp_path / "sr_degradation_bias", seeds=(3, 5, 4))
    again = json.loads((tmp_path / "sr_degradation_bias" / "results.json").read_text())
    assert again["summary"]["psnr"] == results["summary"]["psnr"]


def _scored_run(train: str, psnr: dict[str, list[float]], bicubic: float = 28.0) -> dict:
    """A hand-made table1 run: per test kind, its images' PSNR (SSIM 0.875, NRMSE 0.0625, HFEN 0.125 each:
    binary fractions, so that every mean is exact), bicubic
    interpolation ``bicubic`` dB on every image; the record's means as the evaluation writes them."""
    rows = [
        {"id": f"{k}_{i}", "kind": k, "psnr": v, "ssim": 0.875, "nrmse": 0.0625, "hfen": 0.125,
         "bicubic_psnr": bicubic, "bicubic_ssim": 0.75, "bicubic_nrmse": 0.125, "bicubic_hfen": 0.375}
        for k, values in psnr.items()
        for i, v in enumerate(values)
    ]  # fmt: skip
    other = {"ssim": 0.875, "nrmse": 0.0625, "hfen": 0.125}
    mean = {
        "psnr": {k: sum(v) / len(v) for k, v in psnr.items()},
        **{m: {k: x for k in psnr} for m, x in other.items()},
    }
    base = {"psnr": bicubic, "ssim": 0.75, "nrmse": 0.125, "hfen": 0.375}
    extra = {
        "mean": mean,
        "num_images": {k: len(v) for k, v in psnr.items()},
        "bicubic_interpolation": {m: {k: x for k in psnr} for m, x in base.items()},
        "downstream": {"gm_dice": {k: 0.9 for k in psnr}},
    }
    flat = {f"{m}_{k}": v for m, row in mean.items() for k, v in row.items()}
    flat |= {f"bicubic_{m}_{k}": v for m, row in extra["bicubic_interpolation"].items() for k, v in row.items()}
    metrics = {"settings": {}, "metrics": flat, "per_sample": rows, "extra": extra}
    return {"name": f"srcnn_mse_{train}", "seed": 0, "grid": "table1", "overrides": {"train_degradation": train},
            "metrics": metrics}  # fmt: skip


def test_resampling_redraws_test_slices_with_every_degradation_of_them():
    import numpy as np

    from common.study.sr_degradation_bias import metrics_from_samples, slice_of
    from common.study.within import redraw_runs

    assert SPEC.resampling.unit is slice_of and SPEC.resampling.strata is None
    assert SPEC.resampling.from_samples is metrics_from_samples
    assert slice_of({"id": "kspace_hann_7"}) == "7" and slice_of({"id": "gaussian@legacy_3"}) == "3"
    run = _scored_run("gaussian", {"gaussian": [30.0, 34.0, 38.0], "hann": [20.0, 22.0, 24.0]})
    for seed in range(10):
        rows = redraw_runs([run], SPEC.resampling, np.random.default_rng(seed))[0]["metrics"]["per_sample"]
        slices = lambda kind: sorted(slice_of({"id": r["id"].split("#")[0]}) for r in rows if r["kind"] == kind)  # noqa: E731
        assert slices("gaussian") == slices("hann") and len(slices("hann")) == 3  # a slice moves in every column


def test_metrics_from_samples_of_an_untouched_run_is_the_run():
    from common.study.sr_degradation_bias import metrics_from_samples

    run = _scored_run("gaussian", {"gaussian": [30.0, 34.0], "hann": [20.0, 22.0, 27.0]})
    again = metrics_from_samples(run)
    assert again["metrics"] == run["metrics"]
    assert list(again["metrics"]["extra"]["mean"]["psnr"]) == ["gaussian", "hann"]
    assert again["metrics"]["extra"]["mean"]["psnr"] == {"gaussian": 32.0, "hann": 23.0}


def test_metrics_from_samples_of_a_redraw():
    """A redraw that keeps the second Gaussian image twice and the first Hann image, then the second, then itself
    again (listed Hann first): each kind's mean is the mean of its drawn copies, and the kinds keep their order."""
    from common.study.sr_degradation_bias import metrics_from_samples

    run = _scored_run("gaussian", {"gaussian": [30.0, 34.0], "hann": [20.0, 22.0, 27.0]})
    rows = {r["id"]: r for r in run["metrics"]["per_sample"]}
    drawn = [rows["hann_0"], rows["hann_1"], {**rows["hann_0"], "id": "hann_0#1", "psnr": 20.0}]
    drawn += [rows["gaussian_1"], {**rows["gaussian_1"], "id": "gaussian_1#1"}]
    new = metrics_from_samples({**run, "metrics": {**run["metrics"], "per_sample": drawn}})["metrics"]
    assert new["extra"]["mean"]["psnr"] == {"gaussian": 34.0, "hann": 62.0 / 3}
    assert list(new["extra"]["mean"]["psnr"]) == ["gaussian", "hann"]
    assert new["extra"]["num_images"] == {"gaussian": 2, "hann": 3}
    assert new["metrics"]["psnr_gaussian"] == 34.0 and new["metrics"]["bicubic_psnr_hann"] == 28.0
    assert new["extra"]["mean"]["ssim"] == {"gaussian": 0.875, "hann": 0.875}
    assert new["extra"]["downstream"] == run["metrics"]["extra"]["downstream"]  # no per-sample records: kept
    assert run["metrics"]["extra"]["mean"]["psnr"] == {"gaussian": 32.0, "hann": 23.0}  # the input is untouched


def test_metrics_from_samples_recomputes_only_the_scores_every_record_holds():
    from common.study.sr_degradation_bias import metrics_from_samples

    rows = [{"id": "hann_0", "kind": "hann", "hfen": 0.2}, {"id": "hann_0#1", "kind": "hann", "hfen": 0.2}]
    rows.append({"id": "mean_0", "kind": "mean", "hfen": 0.5})
    extra = {"mean": {"psnr": {"hann": 30.0, "mean": 31.0}, "hfen": {"hann": 0.4, "mean": 0.5}}}
    new = metrics_from_samples({"metrics": {"metrics": {}, "per_sample": rows, "extra": extra}})["metrics"]["extra"]
    assert new["mean"] == {"psnr": {"hann": 30.0, "mean": 31.0}, "hfen": {"hann": 0.2, "mean": 0.5}}
    assert new["num_images"] == {"hann": 2, "mean": 1}
    assert "bicubic_interpolation" not in new


def test_redraw_is_paired_across_models_and_keeps_each_column():
    """Two models scored on the same images get one draw; each test kind keeps its two images; the summary's
    PSNR cells are the means of the drawn images' PSNR."""
    import numpy as np

    from common.study.within import redraw_runs

    psnr = {"gaussian": {"gaussian": [30.0, 34.0], "hann": [20.0, 24.0]},
            "combined": {"gaussian": [31.0, 33.0], "hann": [26.0, 29.0]}}  # fmt: skip
    runs = [_scored_run(t, p) for t, p in psnr.items()]
    for seed in range(5):
        new = redraw_runs(runs, SPEC.resampling, np.random.default_rng(seed))
        ids = [[r["id"].split("#")[0] for r in run["metrics"]["per_sample"]] for run in new]
        assert ids[0] == ids[1]  # paired
        assert sorted(r["kind"] for r in new[0]["metrics"]["per_sample"]) == ["gaussian"] * 2 + ["hann"] * 2
        summary = SPEC.summarize(new)
        for train in psnr:
            for kind in ("gaussian", "hann"):
                drawn = [psnr[train][kind][int(i.split("_")[1])] for i in ids[0] if i.startswith(kind)]
                assert summary["psnr"][train][kind] == sum(drawn) / 2
        assert summary["psnr"]["bicubic_interpolation"] == {"gaussian": 28.0, "hann": 28.0}

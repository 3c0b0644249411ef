"""Published results: the docs equal the rendering of the committed results files; staleness is detected."""

from __future__ import annotations

import json
import shutil

import pytest

from common.study import render
from common.study.engine import code_fingerprint
from common.study.runner import BUNDLE_NAMES, REPO_ROOT


def test_docs_equal_the_rendering_of_the_committed_results():
    for path, text in render.rendered_documents().items():
        assert path.read_text() == text, (
            f"{path} is not the rendering of the committed results: python -m common.study.render"
        )


def test_committed_results_are_three_seed_quick_studies():
    for bundle in BUNDLE_NAMES:
        record = render.load_results(bundle)
        if record is None:
            continue
        assert record["profile"] == "quick" and record["seeds"] == [0, 1, 2], bundle
        assert set(record["summary"]["per_seed"]) == {"0", "1", "2"}, bundle
        for claim in record["claims"]:
            assert 0 <= claim["holds_in"] <= claim["of"] == 3
        for figure in record["figures"]:
            assert (render.results_dir(bundle) / figure).read_bytes()[:4] == b"\x89PNG"


def _tree(tmp_path):
    """A copy of the code, configs and docs the renderer reads."""
    for sub in ("common", "bundles"):
        shutil.copytree(REPO_ROOT / sub, tmp_path / sub, ignore=shutil.ignore_patterns("__pycache__", "models"))
    shutil.copyfile(REPO_ROOT / "README.md", tmp_path / "README.md")
    return tmp_path


def _record(bundle, fingerprint):
    return {"profile": "quick", "code_fingerprint": fingerprint, "claims": [], "runs": [], "figures": []}


def test_stale_results_name_the_file_and_both_fingerprints(tmp_path):
    root = _tree(tmp_path)
    for bundle in BUNDLE_NAMES:  # the named grids' staleness has its own test
        for grid in render.named_grids(bundle, root):
            (render.results_dir(bundle, root) / f"{grid}.json").unlink(missing_ok=True)
    current = {bundle: code_fingerprint(root, bundle=bundle) for bundle in BUNDLE_NAMES}
    for bundle in BUNDLE_NAMES:
        render.results_dir(bundle, root).mkdir(parents=True, exist_ok=True)
        fp = current[bundle] if bundle != "sr_degradation_bias" else "0123456789abcdef"
        (render.results_dir(bundle, root) / "quick.json").write_text(json.dumps(_record(bundle, fp)))
    problems = render.stale_results(root)
    assert len(problems) == 1
    assert "sr_degradation_bias/docs/results/quick.json: stale" in problems[0]
    assert "0123456789abcdef" in problems[0] and current["sr_degradation_bias"] in problems[0]
    # a change to one bundle's configs makes only that bundle's file stale
    cfg = root / "bundles/label_error_refurbishment/configs/metadata.json"
    cfg.write_text(cfg.read_text() + "\n")
    assert len(render.stale_results(root)) == 2
    (root / "common" / "study" / "report.py").write_text((root / "common/study/report.py").read_text() + "\n# x\n")
    grid_files = [
        (b, g) for b in BUNDLE_NAMES for g in render.named_grids(b, root) if render.load_grid_results(b, g, root)
    ]
    # a change to common makes every file stale, the named grids' (e.g. the segmentation pooling grid) included
    assert len(render.stale_results(root)) == len(BUNDLE_NAMES) + len(grid_files)


def test_a_doc_without_markers_is_a_clear_error(tmp_path):
    root = _tree(tmp_path)
    doc = root / "bundles/sr_degradation_bias/docs/README.md"
    doc.write_text(doc.read_text().replace(render.BEGIN, ""))
    with pytest.raises(ValueError, match="sr_degradation_bias/docs/README.md: no <!-- results:begin -->"):
        render.rendered_documents(root)


def test_rendering_replaces_only_the_marked_section(tmp_path):
    root = _tree(tmp_path)
    doc = root / "bundles/sr_degradation_bias/docs/README.md"
    before, after = doc.read_text().split(render.BEGIN)[0], doc.read_text().split(render.END)[1]
    doc.write_text(before + render.BEGIN + "\nhand-typed table\n" + render.END + after)
    text = render.rendered_documents(root)[doc]
    assert text.startswith(before) and text.endswith(after) and "hand-typed table" not in text
    assert render.NOTE in text


def test_import_copies_a_slim_record_and_its_figures(tmp_path):
    root = _tree(tmp_path / "repo")
    source = tmp_path / "runs"
    (source / "label_error_refurbishment").mkdir(parents=True)
    detection = {"scores": {"loss": {"a": 1.0}}, "metrics": {"loss": 0.9}}
    run = {
        "name": "x",
        "seed": 1,
        "metrics": {"per_sample": [{"id": "a", "dice": {"lv": 0.5}}, {"id": "b", "group": "L", "dice": {"lv": 0.75}}],
                    "metrics": {"d": 1.0}, "extra": {"detection": detection}},
    }  # fmt: skip
    record = {"profile": "quick", "runs": [run], "figures": ["roc.png"], "summary": {"a": 1}}
    (source / "label_error_refurbishment" / "results.json").write_text(json.dumps(record))
    (source / "label_error_refurbishment" / "roc.png").write_bytes(b"\x89PNG....")
    assert render.import_results(source, root) == ["label_error_refurbishment"]
    dest = render.results_dir("label_error_refurbishment", root)
    text = (dest / "quick.json").read_text()
    assert text.endswith("}\n") and '\n    "summary": {\n        "a": 1\n    }' in text  # 4-space indent, final newline
    assert "runs" not in json.loads(text)  # they go to the gzipped file beside it
    saved = render.load_results("label_error_refurbishment", root)
    assert saved["runs"][0]["metrics"] == {"metrics": {"d": 1.0}, "extra": {"detection": {"metrics": {"loss": 0.9}}}}
    assert saved["summary"] == {"a": 1} and (dest / "roc.png").read_bytes() == b"\x89PNG...."
    rows = render.read_per_sample(dest / "quick_per_sample.csv.gz")
    assert rows == [{"run": "x", "seed": "1", "id": "a", "dice.lv": "0.5", "group": ""},
                    {"run": "x", "seed": "1", "id": "b", "dice.lv": "0.75", "group": "L"}]  # fmt: skip
    first = (dest / "quick_runs.json.gz").read_bytes()
    render.import_results(source, root)  # the same record twice: the same bytes (no time stamp)
    assert (dest / "quick_runs.json.gz").read_bytes() == first
    assert record["runs"][0]["metrics"]["extra"]["detection"]["scores"]  # the source record is left whole


def test_import_refuses_a_profile_other_than_quick(tmp_path):
    root = _tree(tmp_path / "repo")
    (tmp_path / "runs" / "sr_degradation_bias").mkdir(parents=True)
    (tmp_path / "runs" / "sr_degradation_bias" / "results.json").write_text(json.dumps({"profile": "smoke"}))
    with pytest.raises(ValueError, match="profile 'smoke'; the published results are the quick profile"):
        render.import_results(tmp_path / "runs", root)


def _convergence_report():
    def recipe(times, test):
        per_seed = {
            str(s): {"cpu_seconds_to_target": t, "test": {"balanced_dice": d}, "curve": []}
            for s, t, d in zip((100, 101, 102), times, test)
        }
        present = sorted(t for t in times if t is not None)
        return {"per_seed": per_seed, "median_cpu_seconds_to_target": present[len(present) // 2],
                "median_test": {"balanced_dice": sorted(test)[1]}}  # fmt: skip

    return {
        "metric": "val_balanced_dice",
        "seeds": [100, 101, 102],
        "target_fraction": 0.99,
        "recipes": {"old": {"batch_size": 16}, "new": {"batch_size": 4}},
        "cases": {
            "vinn": {
                "target": 0.75,
                "recipes": {
                    "old": recipe([80.0, 90.0, 100.0], [0.7, 0.8, 0.9]),
                    "new": recipe([30.0, None, 45.0], [0.75, 0.85, 0.8]),
                },  # fmt: skip
                "ratio_new_over_old": 45.0 / 90.0,
            }
        },
    }


def test_convergence_table_names_both_recipes_every_seed_and_the_ratio():
    text = render.render_convergence_section(_convergence_report())
    row = next(line for line in text.splitlines() if line.startswith("| vinn"))
    assert "| 0.750 |" in row
    assert "90 s (80 / 90 / 100)" in row and "45 s (30 / - / 45)" in row  # old before new, a miss shown as -
    assert "| 0.50 |" in row and "balanced_dice 0.800 -> 0.800" in row
    assert "`batch_size` 16" in text and "`batch_size` 4" in text and "results/convergence.png" in text


def test_convergence_table_of_one_current_recipe_has_no_ratio_column():
    report = _convergence_report()
    report["recipes"] = {"current": {"epochs": 28}}
    report["cases"]["vinn"]["recipes"] = {"current": report["cases"]["vinn"]["recipes"]["old"]}
    del report["cases"]["vinn"]["ratio_new_over_old"]
    text = render.render_convergence_section(report, figure=None)
    header = next(line for line in text.splitlines() if line.startswith("| case"))
    row = next(line for line in text.splitlines() if line.startswith("| vinn"))
    assert header == "| case | target | current recipe | test metrics, median (current) |"
    assert row == "| vinn | 0.750 | 90 s (80 / 90 / 100) | balanced_dice 0.800 |"
    assert "the current recipe's plateau" in text and "Current recipe: `epochs` 28." in text
    assert "new / old" not in text and "convergence.png" not in text


def test_convergence_section_is_rendered_from_the_committed_file(tmp_path):
    root = _tree(tmp_path)
    bundle = "segmentation_resolution_bias"
    doc = root / "bundles" / bundle / "docs" / "README.md"
    assert render.CONVERGENCE_BEGIN in doc.read_text()
    (render.results_dir(bundle, root) / "convergence.json").write_text(json.dumps(_convergence_report()))
    text = render.rendered_documents(root)[doc]
    section = text.split(render.CONVERGENCE_BEGIN)[1].split(render.CONVERGENCE_END)[0]
    assert "45 s (30 / - / 45)" in section and "docs/results/convergence.json" in section


def test_group_model_table_has_median_then_every_seed_and_escapes_pipes():
    preset = {
        "median": {"volume_bias_L": {"h_only": 0.287}, "dice_L": {"h_only": 0.5}, "auc": {"h_only": None}},
        "per_seed": {
            "100": {"volume_bias_L": {"h_only": 0.3}, "dice_L": {"h_only": 0.4}, "auc": {"h_only": None}},
            "101": {"volume_bias_L": {"h_only": -0.1}, "dice_L": {"h_only": 0.6}, "auc": {"h_only": None}},
        },
        "claims": [{"claim": "|bias| ratio >= 2", "holds_in": 1, "of": 2, "median": 2.5}],
    }
    report = {
        "command": "cmd",
        "code_fingerprint": "abc",
        "git": {"commit": "0123456789ab"},
        "presets": {"reduced": preset},
    }
    from common.study.segmentation_resolution_bias import render_group_model_section

    text = render_group_model_section(report)
    assert "| reduced | h_only | +28.7% (+30.0 / -10.0) | 0.500 (0.400 / 0.600) | - (- / -) |" in text
    assert "| reduced | \\|bias\\| ratio >= 2 | 1/2 | 2.5 |" in text
    assert "`abc`, commit `0123456789`" in text and "`cmd`" in text and "seeds 100 / 101" in text


def test_a_named_grid_is_imported_beside_the_quick_study_and_checked_for_staleness(tmp_path):
    root = _tree(tmp_path / "repo")
    bundle = "segmentation_resolution_bias"
    current = code_fingerprint(root, bundle=bundle)
    source = tmp_path / "runs" / f"{bundle}-pooling"
    source.mkdir(parents=True)
    record = {"profile": "quick", "code_fingerprint": "0123456789abcdef", "runs": [], "figures": ["ops.png"]}
    (source / "results.json").write_text(json.dumps(record))
    (source / "ops.png").write_bytes(b"\x89PNG....")
    assert render.import_results(tmp_path / "runs", root) == [f"{bundle} (pooling)"]
    dest = render.results_dir(bundle, root)
    assert json.loads((dest / "pooling.json").read_text())["code_fingerprint"] == "0123456789abcdef"
    assert (dest / "pooling" / "ops.png").read_bytes() == b"\x89PNG...."
    assert (dest / "quick.json").read_text() == (render.results_dir(bundle) / "quick.json").read_text()  # untouched
    stale = [p for p in render.stale_results(root) if "pooling.json" in p]
    assert len(stale) == 1 and "0123456789abcdef" in stale[0] and current in stale[0] and "--grid pooling" in stale[0]


def test_sr_collapse_section_counts_dead_runs_per_recipe():
    from common.study.sr_degradation_bias import render_sr_collapse_section

    def run(candidate, live, gain):
        return {"candidate": candidate, "live_units": live, "units": 16, "gain_db": gain}

    report = {
        "seeds": [100, 101], "epochs": 3, "code_fingerprint": "f" * 16, "git": {"commit": "abc"},
        "command": "python -m tests.tuning.sr_collapse",
        "runs": [run("no_warmup", 0, 0.0), run("no_warmup", 2, 0.5), run("no_warmup", 9, 2.0),
                 run("warmup_10pct", 12, 2.5), run("warmup_10pct", 10, 1.5)],
    }  # fmt: skip
    text = render_sr_collapse_section(report)
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]] for line in text.splitlines()
            if line.startswith("| no_warmup") or line.startswith("| warmup_10pct")}  # fmt: skip
    assert rows["no_warmup"] == ["3", "1", "2", "2 of 16 [0, 9]", "+0.50 dB [+0.00]"]
    assert rows["warmup_10pct"] == ["2", "0", "0", "11 of 16 [10, 12]", "+2.00 dB [+1.50]"]
    assert "Tuning seeds 100, 101" in text and "first 3 epochs" in text


def test_a_record_made_from_a_dirty_tree_is_not_published(tmp_path):
    root = _tree(tmp_path / "repo")
    source = tmp_path / "runs" / "shortcut_label_flips"
    source.mkdir(parents=True)
    record = {"profile": "quick", "git": {"commit": "abc", "dirty": True}, "runs": [], "figures": []}
    (source / "results.json").write_text(json.dumps(record))
    with pytest.raises(ValueError, match="uncommitted code"):
        render.import_results(tmp_path / "runs", root)


def test_an_archived_grid_says_so_and_is_not_stale(tmp_path):
    root = _tree(tmp_path / "repo")
    bundle = "segmentation_resolution_bias"
    path = render.results_dir(bundle, root) / "pooling.json"
    record = {**render.load_results(bundle, root), "grid": "pooling", "code_fingerprint": "0123456789abcdef"}
    render.write_record(record, path)
    assert any("pooling.json: stale" in p for p in render.stale_results(root))
    with pytest.raises(ValueError, match="needs a reason"):
        render.archive_results(path, " ")
    render.archive_results(path, "Made before the numeric pins.")
    assert not any("pooling.json" in p for p in render.stale_results(root))
    text = render.render_bundle_section(bundle, render.load_grid_results(bundle, "pooling", root), root=root)
    assert "**Archived result, not rerun at the current code.** Made before the numeric pins." in text
    assert "`0123456789abcdef`" in text
    quick = render.results_dir(bundle, root) / "quick.json"
    render.write_record({**render.load_results(bundle, root), "code_fingerprint": "f" * 16, "archived": {"reason": "x"}},
                        quick)  # fmt: skip
    assert any("quick.json: stale" in p for p in render.stale_results(root))  # a quick study is never archived


def test_published_verdicts_recompute_from_the_committed_files_alone():
    """Every claim in the committed records: its interval and verdict follow from its per-seed values, and its
    per-seed values from the committed per-seed summaries and the claim declared in the study module."""
    from common.study.engine import evaluate_claims
    from common.study.runner import load_spec

    for bundle in BUNDLE_NAMES:
        spec = load_spec(bundle)
        for name, grid in [("quick", None), *((g, g) for g in spec.grids)]:
            record = render.load_record(render.results_dir(bundle) / f"{name}.json")
            if record is None:
                continue
            again = evaluate_claims(spec.claims_for(grid), record["summary"]["per_seed"], record.get("within_run_sd"))
            assert [c["id"] for c in again] == [c["id"] for c in record["claims"]], (bundle, name)
            for new, old in zip(again, record["claims"]):
                assert new["verdict"] == old["verdict"], (bundle, name, new["id"])
                assert new["per_seed"] == pytest.approx(old["per_seed"]), (bundle, name, new["id"])
                assert [v for v in new["ci95"] if v is not None] == pytest.approx(
                    [v for v in old["ci95"] if v is not None]
                )


def test_the_committed_results_are_current():
    assert render.stale_results() == []


@pytest.mark.parametrize("bundle", ["label_error_refurbishment", "sr_degradation_bias"])
def test_published_within_run_spreads_recompute_from_the_committed_files(bundle):
    """The within-run bootstrap behind the intervals, redone from the committed runs and per-sample CSV alone (the
    two bundles whose summaries are cheap; every bundle's verdicts recompute from the stored spreads above)."""
    from common.study.runner import load_spec
    from common.study.within import within_run_sds

    spec = load_spec(bundle)
    record = render.load_results(bundle)
    assert record is not None and record.get("within_run_sd"), f"{bundle}: no within-run spreads published"
    record = render.attach_per_sample(record, render.results_dir(bundle) / "quick_per_sample.csv.gz")
    again = within_run_sds(spec, spec.claims_for(None), record["runs"], record["seeds"])
    assert set(again) == set(record["within_run_sd"])
    for claim, per_seed in record["within_run_sd"].items():
        assert set(again[claim]) == set(per_seed), claim
        for seed, sd in per_seed.items():
            assert (again[claim][seed] is None) == (sd is None), (claim, seed)
            if sd is not None:
                assert again[claim][seed] == pytest.approx(sd, rel=1e-9, abs=1e-12), (claim, seed)


def test_per_sample_records_read_back_from_the_csv(tmp_path):
    record = {"runs": [
        {"name": "a", "seed": 0, "metrics": {"per_sample": [
            {"id": "s0", "dice": {"gm": 0.1 + 0.2}, "xs": [1.5, None], "group": "L"},
            {"id": "s1", "dice": {"gm": 1 / 3}, "xs": [2.0, 3.0], "group": None}]}},
        {"name": "b", "seed": 0, "metrics": {"per_sample": [{"id": "s0", "dice": {"gm": 2 / 3}, "xs": [], "group": "H"}]}},
    ]}  # fmt: skip
    path = tmp_path / "quick_per_sample.csv.gz"
    render.write_per_sample(render.per_sample_table(record), path)
    bare = {"runs": [{**r, "metrics": {}} for r in record["runs"]]}
    back = render.attach_per_sample(bare, path)
    assert [r["metrics"]["per_sample"] for r in back["runs"]] == [r["metrics"]["per_sample"] for r in record["runs"]]

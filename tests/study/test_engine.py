"""The study engine: grids, medians over seeds, claims, code identity, resume, progress."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import common.study.engine as engine
from common.study.engine import (
    Claim,
    Run,
    Study,
    code_fingerprint,
    evaluate_claims,
    execute,
    grid,
    median_over_seeds,
    merge_seeds,
    run_key,
)
from common.study.report import format_claim
from common.study.runner import REPO_ROOT


def test_grid_is_the_product_of_its_axes_with_labels_and_mapped_overrides():
    runs = grid(
        "main",
        {"epochs": 3},
        {"approach": ["a", "b"], "pair": [(2.0, 3.0), (1.0, 1.4)]},
        to_overrides=lambda p: {"approach": p["approach"], "high_spacing": p["pair"][0], "low_spacing": p["pair"][1]},
    )
    assert [r.name for r in runs] == ["main_a_2-3", "main_a_1-1p4", "main_b_2-3", "main_b_1-1p4"]
    assert runs[1].overrides == {"epochs": 3, "approach": "a", "high_spacing": 1.0, "low_spacing": 1.4}
    assert runs[2].labels == {"grid": "main", "approach": "b", "pair": (2.0, 3.0)}


def test_study_rejects_repeated_names_and_no_seeds():
    with pytest.raises(ValueError, match="repeated: x"):
        Study("b", "smoke", [Run("x", {}), Run("y", {}), Run("x", {})])
    with pytest.raises(ValueError, match="no seeds"):
        Study("b", "smoke", [Run("x", {})], seeds=())


def test_median_over_seeds_by_kind():
    per_seed = {
        "0": {"auc": {"a": 0.9, "b": None}, "ok": True, "best": "x", "pair": [2.0, 3.0], "n": 1},
        "1": {"auc": {"a": 0.5, "b": 0.2}, "ok": False, "best": "y", "pair": [2.0, 3.0], "n": 4},
        "2": {"auc": {"a": 0.7, "b": 0.4}, "ok": False, "best": "y", "pair": [2.0, 3.0], "n": 10},
    }
    out = median_over_seeds(per_seed)
    assert out["auc"] == {"a": 0.7, "b": pytest.approx(0.3)}  # None is missing, not zero
    assert out["ok"] is False  # true in 1 of 3: not a majority
    assert out["best"] == "y"
    assert out["pair"] == [2.0, 3.0]
    assert out["n"] == 4.0
    assert median_over_seeds({"0": None, "1": None}) is None
    assert median_over_seeds({"0": "x", "1": "y"}) == "x"  # a tie goes to the first seed


def test_claims_count_the_seeds_they_hold_in():
    claim = Claim("c", "a beats b", lambda s: s["a"] - s["b"], 0.0, ">", "a minus b")
    per_seed = {"0": {"a": 3, "b": 1}, "1": {"a": 1, "b": 2}, "2": {"a": 5, "b": 1}, "3": {"b": 1}}
    (result,) = evaluate_claims([claim], per_seed)
    assert result["holds_in"] == 2 and result["of"] == 4
    assert result["per_seed"] == {"0": 2.0, "1": -1.0, "2": 4.0, "3": None}
    assert result["holds_per_seed"] == {"0": True, "1": False, "2": True, "3": False}
    assert result["median"] == 2.0  # over the seeds that have a value
    # t-interval over the 3 seeds with a value (2, -1, 4): mean 5/3, variance (1 + 64 + 49) / 9 / 2 = 19/3,
    # t(0.975, 2) = 4.3027
    half = 4.302652729911275 * (19 / 3) ** 0.5 / 3**0.5
    assert result["n"] == 3 and result["ci95"] == pytest.approx([5 / 3 - half, 5 / 3 + half])
    assert result["verdict"] == "inconclusive"
    line = format_claim(result)
    assert line.startswith("**inconclusive** (primary; 95% interval [-4.58, 7.92], paper's side > 0;")
    assert "holds in 2 of 4 seeds" in line and "1: -1" in line and "3: -" in line and "Estimand: a minus b." in line


def test_a_claim_is_decided_on_the_papers_side_of_its_margin():
    below = Claim("low", "x stays under 2", lambda s: s["x"], 2.0, "<", primary=False)
    above = Claim("high", "x exceeds 2", lambda s: s["x"], 2.0, ">", primary=False)
    per_seed = {str(i): {"x": v} for i, v in enumerate([0.9, 1.0, 1.1, 1.0])}
    low, high = evaluate_claims([below, above], per_seed)
    assert low["verdict"] == "supported" and high["verdict"] == "refuted"
    assert low["ci95"] == high["ci95"] and low["ci95"][1] < 2.0
    with pytest.raises(ValueError, match="direction"):
        Claim("bad", "t", lambda s: 0.0, 0.0, ">=")


def test_code_fingerprint_follows_content_not_time(tmp_path):
    for sub in ("common", "bundles/demo/configs"):
        (tmp_path / sub).mkdir(parents=True)
    (tmp_path / "common" / "m.py").write_text("x = 1\n")
    (tmp_path / "bundles/demo/configs/train.yaml").write_text("epochs: 2\n")
    first = code_fingerprint(tmp_path)
    copy = tmp_path.parent / (tmp_path.name + "_copy")
    shutil.copytree(tmp_path, copy)
    assert code_fingerprint(copy) == first
    (tmp_path / "bundles/demo/configs/train.yaml").write_text("epochs: 3\n")
    assert code_fingerprint(tmp_path) != first
    (tmp_path / "bundles/demo/configs/train.yaml").write_text("epochs: 2\n")
    (tmp_path / "README.md").write_text("docs do not count\n")
    assert code_fingerprint(tmp_path) == first
    (tmp_path / "common" / "study").mkdir()
    (tmp_path / "common" / "study" / "report.py").write_text("title = 'x'\n")
    assert code_fingerprint(tmp_path) != first  # reports are part of the published numbers' code
    assert code_fingerprint(tmp_path, bundle_runs_only=True) == first  # but not of what a bundle run executes
    (tmp_path / "common" / "audit").mkdir()
    (tmp_path / "common" / "audit" / "cli.py").write_text("x = 2\n")
    assert code_fingerprint(tmp_path, bundle_runs_only=True) == first
    assert len(code_fingerprint(REPO_ROOT)) == 16


def test_run_key_ignores_output_paths_only():
    base = {"epochs": 2, "seed": 0, "output_dir": "/a", "ckpt_path": "/a/m.pt", "cache_dir": "/c"}
    key = run_key("b", ["train.yaml"], base, "f1")
    assert run_key("b", ["train.yaml"], {**base, "output_dir": "/elsewhere", "cache_dir": "/d"}, "f1") == key
    assert run_key("b", ["train.yaml"], {**base, "epochs": 3}, "f1") != key
    assert run_key("b", ["train.yaml"], {**base, "seed": 1}, "f1") != key
    assert run_key("b", ["train.yaml"], base, "f2") != key


class FakeBundle:
    """Stands in for ``run_bundle``: metrics follow the overrides; records every call."""

    def __init__(self, fail_on=None):
        self.calls = []
        self.fail_on = fail_on

    def __call__(self, name, configs, overrides, output_dir):
        self.calls.append((overrides["approach"], overrides["seed"]))
        if self.fail_on == (overrides["approach"], overrides["seed"]):
            raise RuntimeError("killed")
        value = {"a": 1.0, "b": 2.0}[overrides["approach"]] * 10 + overrides["seed"]
        return {"value": value, "_run": {"seconds": 0.5}}


def _study(prepared=None, epochs=2):
    runs = grid("g", {"epochs": epochs, "width": 8}, {"approach": ["a", "b"]})
    prepare = (lambda o: prepared.append((o["seed"], o["width"]))) if prepared is not None else None
    return Study("demo", "smoke", runs, seeds=(0, 1), jobs=1, prepare=prepare, data_keys=("width",))


def test_execute_runs_every_setting_per_seed_and_resumes(tmp_path, monkeypatch):
    fake = FakeBundle(fail_on=("b", 1))
    monkeypatch.setattr(engine, "run_bundle", fake)
    lines, prepared = [], []
    with pytest.raises(RuntimeError, match="killed"):
        execute(_study(prepared), tmp_path, log=lines.append)
    assert prepared == [(0, 8), (1, 8)]  # once per seed and data key, before any run
    assert (tmp_path / "runs/g_a/seed0/run_record.json").is_file()

    fake2 = FakeBundle()
    monkeypatch.setattr(engine, "run_bundle", fake2)
    lines = []
    results = execute(_study(), tmp_path, log=lines.append, progress=lambda m: f"value {m['value']}")
    assert fake2.calls == [("b", 1)]  # only the run that did not finish
    assert [(r["name"], r["seed"], r["metrics"]["value"], r["reused"]) for r in results] == [
        ("g_a", 0, 10.0, True),
        ("g_b", 0, 20.0, True),
        ("g_a", 1, 11.0, True),
        ("g_b", 1, 21.0, False),
    ]
    assert results[3]["approach"] == "b" and results[3]["grid"] == "g"
    assert results[3]["overrides"]["train_first"] is True
    assert results[3]["overrides"]["output_dir"] == str(tmp_path / "runs/g_b/seed1")
    assert any("3 of 4 runs reused" in line for line in lines)
    progress = [line for line in lines if line.startswith("[4/4]")]
    assert progress and "g_b seed 1: value 21.0" in progress[0] and "ETA 0:00" in progress[0]

    fake3 = FakeBundle()
    monkeypatch.setattr(engine, "run_bundle", fake3)
    execute(_study(epochs=5), tmp_path, log=lines.append)  # changed settings: every run again
    assert sorted(fake3.calls) == [("a", 0), ("a", 1), ("b", 0), ("b", 1)]
    record = json.loads((tmp_path / "runs/g_a/seed0/run_record.json").read_text())
    assert record["overrides"]["epochs"] == 5
    assert record["code_fingerprint"] == code_fingerprint(bundle_runs_only=True, bundle="demo")


def test_execute_rejects_an_unknown_executor(tmp_path):
    with pytest.raises(ValueError, match="unknown executor 'slurm'"):
        execute(_study(), tmp_path, executor="slurm")


def test_merge_seeds_gives_one_entry_per_setting_with_medians():
    results = [
        {"name": "x", "seed": s, "grid": "g", "metrics": {"v": v}, "seconds": 1, "reused": False, "overrides": {}}
        for s, v in ((0, 1.0), (1, 5.0), (2, 2.0))
    ] + [{"name": "y", "seed": 0, "grid": "g", "metrics": {"v": 7.0}, "overrides": {}}]
    merged = merge_seeds(results)
    assert [(m["name"], m["seeds"], m["metrics"]["v"]) for m in merged] == [("x", [0, 1, 2], 2.0), ("y", [0], 7.0)]


def test_runs_span_is_first_start_to_last_end_whether_reused_or_not():
    from common.study.engine import runs_span_seconds

    results = [
        {"finished": 110.0, "seconds": 10.0, "reused": True},  # 100 -> 110
        {"finished": 130.0, "seconds": 25.0, "reused": False},  # 105 -> 130
        {"finished": None, "seconds": 5.0},  # no time known: left out
    ]
    assert runs_span_seconds(results) == 30.0
    assert runs_span_seconds([{"finished": None, "seconds": 1.0}]) is None


def test_a_resumed_study_keeps_the_first_runs_times(tmp_path, monkeypatch):
    monkeypatch.setattr(engine, "run_bundle", FakeBundle())
    first = execute(_study(), tmp_path, log=lambda line: None)
    assert all(r["finished"] and not r["reused"] for r in first)
    again = execute(_study(), tmp_path, log=lambda line: None)
    assert [r["finished"] for r in again] == [r["finished"] for r in first] and all(r["reused"] for r in again)


def test_a_run_key_fingerprint_covers_its_own_bundle_configs_only(tmp_path):
    for sub in ("common", "bundles/a/configs", "bundles/b/configs", "common/study"):
        (tmp_path / sub).mkdir(parents=True, exist_ok=True)
    (tmp_path / "common" / "__init__.py").write_text("")
    (tmp_path / "common" / "x.py").write_text("x = 1\n")
    (tmp_path / "common" / "y.py").write_text("y = 1\n")
    (tmp_path / "common" / "study" / "__init__.py").write_text("")
    (tmp_path / "common" / "study" / "report.py").write_text("r = 1\n")
    (tmp_path / "bundles/a/configs/train.yaml").write_text("imports: [$import common.x]\n")
    (tmp_path / "bundles/b/configs/train.yaml").write_text("net: {_target_: common.y.Net}\n")
    before = {b: code_fingerprint(tmp_path, bundle_runs_only=True, bundle=b) for b in "ab"}
    whole = code_fingerprint(tmp_path)
    (tmp_path / "bundles/b/configs/train.yaml").write_text("net: {_target_: common.y.Net, width: 2}\n")
    assert code_fingerprint(tmp_path, bundle_runs_only=True, bundle="a") == before["a"]
    assert code_fingerprint(tmp_path, bundle_runs_only=True, bundle="b") != before["b"]
    assert code_fingerprint(tmp_path) != whole
    (tmp_path / "common" / "study" / "report.py").write_text("r = 2\n")  # outside bundle runs
    (tmp_path / "common" / "y.py").write_text("y = 2\n")  # code only bundle b imports
    assert code_fingerprint(tmp_path, bundle_runs_only=True, bundle="a") == before["a"]
    (tmp_path / "common" / "x.py").write_text("x = 2\n")  # code bundle a imports
    assert code_fingerprint(tmp_path, bundle_runs_only=True, bundle="a") != before["a"]


def test_a_runs_validation_curve_is_reduced_to_its_own_metric(tmp_path):
    from common.study.engine import read_validation_curve

    path = tmp_path / "validation_curve.json"
    assert read_validation_curve(path) is None
    points = [
        {"epoch": 2, "cpu_seconds": 7.5, "wall_seconds": 9.0, "metrics": {"val_d": 0.4, "val_x": 9.0}},
        {"epoch": 4, "cpu_seconds": 15.0, "wall_seconds": 19.0, "metrics": {"val_x": 8.0}},  # no val_d: skipped
        {"epoch": 6, "cpu_seconds": 22.5, "wall_seconds": 30.0, "metrics": {"val_d": 0.6}},
    ]
    path.write_text(json.dumps({"metric": "val_d", "points": points}))
    assert read_validation_curve(path) == {
        "metric": "val_d",
        "epoch": [2, 6],
        "cpu_seconds": [7.5, 22.5],
        "value": [0.4, 0.6],
    }
    path.write_text("{not json")
    assert read_validation_curve(path) is None


def test_a_record_is_dirty_only_for_uncommitted_changes_to_its_own_code(tmp_path):
    import subprocess

    from common.study.engine import fingerprint_files, git_commit

    (tmp_path / "common" / "audit").mkdir(parents=True)
    (tmp_path / "bundles/demo/configs").mkdir(parents=True)
    (tmp_path / "common" / "__init__.py").write_text("")
    (tmp_path / "common" / "used.py").write_text("x = 1\n")
    (tmp_path / "common" / "audit" / "tool.py").write_text("y = 1\n")
    (tmp_path / "bundles/demo/configs/train.yaml").write_text("imports: ['$import common.used']\n")
    git = lambda *a: subprocess.run(["git", *a], cwd=tmp_path, check=True, capture_output=True)  # noqa: E731
    git("init", "-q")
    git("-c", "user.email=a@b", "-c", "user.name=t", "add", "-A")
    git("-c", "user.email=a@b", "-c", "user.name=t", "commit", "-qm", "x")
    files = {
        p.relative_to(tmp_path).as_posix() for p in fingerprint_files(tmp_path, bundle_runs_only=True, bundle="demo")
    }
    assert files == {"common/__init__.py", "common/used.py", "bundles/demo/configs/train.yaml"}
    assert git_commit(tmp_path, bundle="demo")["dirty"] is False
    (tmp_path / "common" / "audit" / "tool.py").write_text("y = 2\n")  # not the demo bundle's code
    assert git_commit(tmp_path, bundle="demo")["dirty"] is False and git_commit(tmp_path)["dirty"] is True
    (tmp_path / "common" / "used.py").write_text("x = 2\n")
    assert git_commit(tmp_path, bundle="demo")["dirty"] is True


def test_a_profile_whose_default_grid_is_named_is_judged_on_that_grids_claims():
    from common.study.engine import Profile, StudySpec, summarize_record

    quick_claim = Claim("quick", "x", lambda s: s["x"], 0.0)
    grid_claim = Claim("all", "x", lambda s: s["x"], 0.0)
    spec = StudySpec("demo", "Demo", {"quick": Profile({}), "full": Profile({}, grid="all")}, lambda p, g: [],
                     lambda runs: {"x": 1.0}, [quick_claim], lambda r, f: "", grids={"all": [quick_claim, grid_claim]})  # fmt: skip
    assert [c["id"] for c in summarize_record(spec, "quick", None, [0], [])["claims"]] == ["quick"]
    assert [c["id"] for c in summarize_record(spec, "full", None, [0], [])["claims"]] == ["quick", "all"]


class ReadingBundle:
    """Stands in for ``run_bundle``: a run with ``base_dir`` reads the value its base run wrote there."""

    def __init__(self, offset=0.0):
        self.calls, self.offset = [], offset

    def __call__(self, name, configs, overrides, output_dir):
        self.calls.append((overrides["approach"], overrides["seed"]))
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        if "base_dir" in overrides:
            base = json.loads((Path(overrides["base_dir"]) / "value.json").read_text())
            return {"value": base + 1.0, "_run": {"seconds": 0.1}}
        value = overrides["seed"] * 10 + self.offset + (overrides.get("width") or 0)
        (Path(output_dir) / "value.json").write_text(json.dumps(value))
        return {"value": value, "_run": {"seconds": 0.1}}


def _reading_study(width=1):
    # listed first, the reading run still starts only after the run it reads
    runs = [Run("reads", {"approach": "reads"}, {"approach": "reads"}, after={"base_dir": "base"}),
            Run("base", {"approach": "base", "width": width}, {"approach": "base"})]  # fmt: skip
    return Study("demo", "smoke", runs, seeds=(0, 1), jobs=2)


def test_a_run_after_another_reads_its_output_and_reruns_with_it(tmp_path, monkeypatch):
    fake = ReadingBundle()
    monkeypatch.setattr(engine, "run_bundle", fake)
    results = execute(_reading_study(), tmp_path, log=lambda line: None)
    assert [(r["name"], r["seed"], r["metrics"]["value"]) for r in results] == [
        ("reads", 0, 2.0), ("base", 0, 1.0), ("reads", 1, 12.0), ("base", 1, 11.0)]  # fmt: skip
    assert results[0]["overrides"]["base_dir"] == str(tmp_path / "runs/base/seed0")  # the same seed's run
    assert fake.calls.index(("base", 0)) < fake.calls.index(("reads", 0))

    again = ReadingBundle()
    monkeypatch.setattr(engine, "run_bundle", again)
    execute(_reading_study(), tmp_path, log=lambda line: None)
    assert again.calls == []  # nothing changed: every run reused

    changed = ReadingBundle()
    monkeypatch.setattr(engine, "run_bundle", changed)
    results = execute(_reading_study(width=5), tmp_path, log=lambda line: None)
    assert sorted(changed.calls) == [("base", 0), ("base", 1), ("reads", 0), ("reads", 1)]  # base changed: both
    assert results[0]["metrics"]["value"] == 6.0


def test_a_run_after_a_missing_run_is_refused(tmp_path):
    study = Study("demo", "smoke", [Run("reads", {"approach": "a"}, after={"base_dir": "nowhere"})], seeds=(0,))
    with pytest.raises(ValueError, match="not in the study \\(nowhere\\)"):
        execute(study, tmp_path, log=lambda line: None)

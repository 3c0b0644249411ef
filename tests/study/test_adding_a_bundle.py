"""Adding a bundle means writing files, not editing shared ones: a new folder under ``bundles/`` and its study
module are found by the study command, the renderer and the conformance tests (docs/adding_a_bundle.md)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from common.study.runner import REPO_ROOT

STUDY_MODULE = '''
"""Study of the toy bundle (a copy of shortcut_label_flips' configs): rare-group flips per correlation."""

from common.study.engine import Claim, Profile, StudySpec, grid

PROFILES = {
    "quick": Profile(
        settings={"epochs": 1, "num_train": 8, "num_val": 4, "num_test": 8, "val_interval": 1, "num_threads": 1},
        axes={"correlation": (0.5, 0.99)},
    ),
}


def runs(profile, grid_name=None):
    return grid("corr", profile.settings, {"correlation": list(profile.axes["correlation"])})


def summarize(runs):
    by_corr = {f"{r['correlation']:g}": r["metrics"]["metrics"]["dice_mean_rare"] for r in runs}
    return {"dice_rare": by_corr, "dice_rare_drop": by_corr["0.5"] - by_corr["0.99"]}


def report(record, figures):
    return "## Rare-group Dice per correlation\\n\\n" + str(record["summary"]["dice_rare"]) + "\\n"


SPEC = StudySpec(
    bundle="toy_bundle",
    title="Toy bundle",
    profiles=PROFILES,
    runs=runs,
    summarize=summarize,
    claims=[Claim("drop", "Rare-group Dice drops with the correlation", lambda s: s["dice_rare_drop"], 0.0, ">",
                  "rare Dice at 0.5 minus at 0.99")],
    report=report,
)
'''


def _run(args, root):
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([sys.executable, *args], cwd=root, env=env, capture_output=True, text=True, timeout=900)


def test_a_new_bundle_folder_is_picked_up_by_the_study_command_rendering_and_conformance_tests(tmp_path):
    root = tmp_path / "repo"
    ignore = shutil.ignore_patterns("__pycache__", "models", "results", "*.pt")
    for sub in ("common", "tests"):
        shutil.copytree(REPO_ROOT / sub, root / sub, ignore=ignore)
    for name in ("README.md", "pyproject.toml"):
        shutil.copyfile(REPO_ROOT / name, root / name)
    # the new bundle: its own folder (configs copied from an existing bundle) and its own study module
    shutil.copytree(REPO_ROOT / "bundles" / "shortcut_label_flips", root / "bundles" / "toy_bundle", ignore=ignore)
    (root / "common" / "study" / "toy_bundle.py").write_text(STUDY_MODULE)

    study = _run(
        ["-m", "common.study", "toy_bundle", "--profile", "quick", "--seeds", "0", "1", "--output", "out"], root
    )
    assert study.returncode == 0, study.stderr[-3000:]
    report = (root / "out" / "toy_bundle" / "report.md").read_text()
    assert report.startswith("# Toy bundle (quick profile)") and "## Rare-group Dice per correlation" in report
    assert "Rare-group Dice drops with the correlation" in report and "95% interval" in report

    rendered = _run(["-m", "common.study.render", "--from", "out", "--allow-dirty"], root)
    assert rendered.returncode == 0, rendered.stderr[-3000:]
    assert "### Toy bundle" in (root / "README.md").read_text()
    docs = (root / "bundles" / "toy_bundle" / "docs" / "README.md").read_text()
    assert "### Rare-group Dice per correlation" in docs  # the study's section, two levels down
    assert (root / "bundles" / "toy_bundle" / "docs" / "results" / "quick_per_sample.csv.gz").is_file()

    conformance = _run(["-m", "pytest", "-v", "-p", "no:cacheprovider", "tests/bundles/test_conformance.py",
                        "-k", "toy_bundle and not ckpt_export"], root)  # fmt: skip
    assert conformance.returncode == 0, conformance.stdout[-3000:]
    for test in ("test_layout", "test_metadata", "test_shared_ids_and_rank_zero_writers", "test_verify_net_in_out"):
        assert f"{test}[toy_bundle] PASSED" in conformance.stdout, conformance.stdout[-3000:]

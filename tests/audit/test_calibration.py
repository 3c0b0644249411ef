"""Calibration by group when the predictions are probability maps ``(X, Y, Z, C)``: ECE by hand, reliability bins,
and the named problems of a map that is not one."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from common.audit import load_cohort, run_audit
from common.data import DatalistError
from tests.audit.cohort_files import case_entry, save_nifti, write_datalist

SHAPE = (8, 8, 4)  # 256 voxels; the structure is a 4 x 4 x 2 box of 32


def _cohort(root: Path) -> Path:
    """Group A: one-hot probabilities (calibrated); group B: 0.75 on the structure's voxels (under-confident)."""
    label = np.zeros(SHAPE, np.uint8)
    label[2:6, 2:6, 1:3] = 1
    entries = []
    for group, p in (("A", 1.0), ("B", 0.75)):
        probs = np.zeros((*SHAPE, 2), np.float32)
        probs[..., 0] = 1.0
        probs[label == 1] = [1 - p, p]
        entries += [case_entry(root, f"{group}{k}", label, label, probs, np.float32, group=group) for k in range(5)]
    return write_datalist(root, entries)


def test_expected_calibration_error_by_group(tmp_path):
    out = tmp_path / "out"
    results = run_audit(_cohort(tmp_path), out, ["group"], progress=False, surface=False, n_resamples=100)
    a, b = results["by"]["group"]["A"]["label_1"], results["by"]["group"]["B"]["label_1"]
    assert a["dice"] == b["dice"] == pytest.approx(1.0)  # the argmax is the label in both groups
    assert a["ece"] == pytest.approx(0.0, abs=1e-7)
    assert b["ece"] == pytest.approx(0.25 * 32 / 256, rel=1e-6)  # |0.75 - 1| on 32 of 256 voxels, 0 elsewhere
    rel = b["reliability"]
    assert rel["count"][0] == 5 * 224 and rel["count"][7] == 5 * 32 and sum(rel["count"]) == 5 * 256
    assert rel["mean_probability"][7] == pytest.approx(0.75) and rel["frequency"][7] == 1.0
    assert rel["frequency"][0] == 0.0 and rel["mean_probability"][3] is None  # an empty bin
    report = (out / "report.md").read_text()
    assert "- label_1 calibration by group: expected calibration error highest in group B (0.0312), lowest in " in (
        report
    )
    assert "![Reliability by group](reliability_by_group.png)" in report
    assert (out / "reliability_by_group.png").stat().st_size > 1000


def test_probability_map_problems_named(tmp_path):
    path = _cohort(tmp_path)
    entries = json.loads(path.read_text())
    bad_sum = np.full((*SHAPE, 2), 0.6, np.float32)
    save_nifti(Path(entries[0]["prediction"]), bad_sum, np.float32)
    bad_range = np.zeros((*SHAPE, 2), np.float32)
    bad_range[..., 0], bad_range[..., 1] = 1.5, -0.5
    save_nifti(Path(entries[1]["prediction"]), bad_range, np.float32)
    wrong_grid = np.zeros((8, 8, 5, 2), np.float32)
    wrong_grid[..., 0] = 1.0
    save_nifti(Path(entries[2]["prediction"]), wrong_grid, np.float32)
    with pytest.raises(DatalistError) as info:
        load_cohort(path, ["group"])
    assert info.value.problems == [
        f"{entries[0]['prediction']}: probability map's 2 classes do not sum to 1 at 256 voxel(s) (e.g. 1.2)",
        f"{entries[1]['prediction']}: probability map holds values outside [0, 1] (-0.5 .. 1.5)",
        f"{entries[2]['prediction']}: prediction shape (8, 8, 5) does not match label {entries[2]['label']} "
        "shape (8, 8, 4)",
    ]

"""Groups of ``common.audit``: several attributes, their intersection, a control attribute, groups too small, and
the finding sentences on constructed cohorts whose answer is known."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from common.audit import run_audit
from common.audit.cohort import Attribute, Cohort
from common.audit.measure import Case, summarise
from common.audit.report import auc_sentence, findings
from tests.audit.cohort_files import case_entry, write_datalist

SHAPE = (12, 8, 4)


# Site B over-segments every structure by exactly 50% (box 4 -> 6 or 6 -> 9 voxels wide), site A is exact.
# sex x site cells: F & A 5, F & B 2 (too small), M & A 5, M & B 5.
CELLS = [("F", "A", 5), ("F", "B", 2), ("M", "A", 5), ("M", "B", 5)]


def _sex_site_cohort(root: Path) -> Path:
    entries = []
    for sex, site, n in CELLS:
        for k in range(n):
            nx = (4, 6)[k % 2]
            label = np.zeros(SHAPE, np.uint8)
            label[1 : 1 + nx, 1:5, 1:3] = 1
            pred = np.zeros(SHAPE, np.uint8)
            grown = nx * 3 // 2 if site == "B" else nx
            pred[1 : 1 + grown, 1:5, 1:3] = 1
            entries.append(case_entry(root, f"{sex}{site}{k}", label, label, pred, sex=sex, site=site))
    return write_datalist(root, entries)


def test_several_attributes_intersection_and_small_group(tmp_path):
    out = tmp_path / "out"
    results = run_audit(
        _sex_site_cohort(tmp_path), out, ["sex", "site"], intersect=True, progress=False, surface=False, n_resamples=300
    )
    cross = "sex x site"
    assert results["attributes"][cross] == {"kind": "intersection", "groups": ["F & A", "F & B", "M & A", "M & B"]}
    assert results["too_small"] == {"sex": {}, "site": {}, cross: {"F & B": 2}}
    assert results["by"][cross]["F & B"]["label_1"]["n"] == 2  # kept in the table
    d = results["disparity"][cross]["label_1"]
    assert d["groups"] == ["F & A", "M & A", "M & B"]
    assert d["volume_bias"]["means"] == pytest.approx({"F & A": 0.0, "M & A": 0.0, "M & B": 0.5})
    assert d["volume_bias"]["gap"] == pytest.approx({"estimate": 0.5, "ci_low": 0.5, "ci_high": 0.5})
    assert d["dice"]["worst"] == "M & B" and d["dice"]["means"]["M & B"] == pytest.approx(0.8)
    assert d["sensitivity"]["means"] == pytest.approx({"F & A": 1.0, "M & A": 1.0, "M & B": 1.0})
    assert d["fp_rate"]["worst"] == "M & B" and d["fp_rate"]["gap"]["estimate"] == pytest.approx(0.5)
    # sex without control: the site mix alone makes a gap, F 2 of 7 at B, M 5 of 10
    sex = results["disparity"]["sex"]["label_1"]
    assert sex["controlled_by"] is None
    assert sex["volume_bias"]["means"] == pytest.approx({"F": 1 / 7, "M": 0.25})
    assert sex["dice"]["means"] == pytest.approx({"F": (5 + 2 * 0.8) / 7, "M": (5 + 5 * 0.8) / 10})
    # tests: Dice and volume bias for 3 attributes, AUC for the two two-group ones
    assert results["tests"]["n"] == 8
    assert set(results["auc"]) == {"sex", "site"}
    report = (out / "report.md").read_text()
    assert "- sex x site F & B is too small to compare: 2 cases, fewer than 5;" in report
    assert "| F & B (too small) | label_1 |" in report
    assert "- label_1 mean volume bias by sex x site: highest in sex x site M & B (+50.0%)" in report
    assert (out / "volume_bias_by_sex_x_site.png").is_file() and (out / "dice_by_sex_x_site.png").is_file()


def test_control_site_removes_the_gap_made_by_the_site_mix(tmp_path):
    out = tmp_path / "out"
    results = run_audit(
        _sex_site_cohort(tmp_path), out, ["sex", "site"], control="site", progress=False, surface=False,
        n_resamples=300,
    )  # fmt: skip
    assert results["control"] == "site"
    sex = results["disparity"]["sex"]["label_1"]
    assert sex["controlled_by"] == "site"
    # within each site F and M are alike: the adjusted means are equal, at the cohort's site mix (7 of 17 at B)
    assert sex["volume_bias"]["means"] == pytest.approx({"F": 0.5 * 7 / 17, "M": 0.5 * 7 / 17})
    assert sex["volume_bias"]["gap"] == pytest.approx({"estimate": 0.0, "ci_low": 0.0, "ci_high": 0.0}, abs=1e-12)
    assert sex["dice"]["gap"]["estimate"] == pytest.approx(0.0, abs=1e-12)
    assert sex["dice"]["test"]["p"] == 1.0 and sex["volume_bias"]["test"]["p"] == 1.0
    assert results["auc"]["sex"]["label_1"]["controlled_by"] == "site"
    # the site itself is compared without stratifying by itself
    assert results["disparity"]["site"]["label_1"]["controlled_by"] is None
    report = (out / "report.md").read_text()
    assert "every comparison is stratified by site" in report
    assert "- label_1 Dice is similar across sex (within site): gap 0.000 [0.000, 0.000]" in report
    assert "- label_1 Dice by site (not stratified by site: the attribute contains it): worst in site B" in report


def test_control_needs_the_attribute_everywhere(tmp_path):
    from common.audit import load_cohort
    from common.data import DatalistError

    path = _sex_site_cohort(tmp_path)
    entries = json.loads(path.read_text())
    del entries[3]["site"]
    path.write_text(json.dumps(entries))
    with pytest.raises(DatalistError) as info:
        load_cohort(path, ["sex"], control="site")
    assert info.value.problems == [f"{path}: [3] has no 'site' attribute (--control site)"]
    with pytest.raises(DatalistError, match="--intersect needs at least two grouped --by attributes"):
        load_cohort(path, ["sex"], intersect=True)


# --- findings on constructed cohorts (no files: cases built directly) -------------------------------------


def _cohort(manual_a, manual_b, predicted_a, predicted_b) -> dict:
    groups = ["A"] * len(manual_a) + ["B"] * len(manual_b)
    manual = list(manual_a) + list(manual_b)
    predicted = list(predicted_a) + list(predicted_b)
    cases = []
    for k, (m, p) in enumerate(zip(manual, predicted)):
        s = {
            "volume_pred_ml": float(p),
            "volume_true_ml": float(m),
            "volume_bias": p / m - 1,
            "dice": 0.9,
            "surface_distance": 1.0,
            "sensitivity": min(p, m) / m,
            "fp_rate": max(p - m, 0) / m,
        }
        cases.append(Case(f"c{k}", True, {"s": s}, {"s": [m, 0.0, 0.0, m]}))
    attr = Attribute("group", "categorical", groups, groups, ["A", "B"])
    cohort = Cohort("constructed", [{} for _ in cases], [c.id for c in cases], {"group": attr}, {1: "s"})
    return summarise(cohort, cases, n_resamples=2000, seed=0)


def _auc_finding(results) -> str:
    (line,) = [f for f in findings(results) if f.startswith("s: ")]
    return line


LARGE, SMALL = [10, 11, 12, 13, 14, 15], [4, 5, 6, 7, 8, 9]


def test_finding_reversal():
    results = _cohort(LARGE, SMALL, SMALL, LARGE)
    a = results["auc"]["group"]["s"]
    assert (a["positive"], a["predicted"], a["manual"]) == ("A", 0.0, 1.0)
    line = _auc_finding(results)
    assert line.startswith(
        "s: the model reverses the group difference: manual volumes are larger in group A, predicted ones in group "
        "B, so the model makes B's s look larger than A's (AUC 0.00 predicted vs 1.00 manual); the AUC difference "
        "is significant (p "
    )
    assert a["test"]["p_corrected"] < 0.05


def test_finding_reversal_of_the_issue_example():
    a = {"predicted": 0.04, "manual": 0.90, "positive": "H", "negative": "L", "test": None}
    assert auc_sentence("hippocampus", "group", a) == (
        "hippocampus: the model reverses the group difference: manual volumes are larger in group H, predicted ones "
        "in group L, so the model makes L's hippocampus look larger than H's (AUC 0.04 predicted vs 0.90 manual); "
        "the AUC difference is not tested"
    )


def test_finding_loss():
    results = _cohort(LARGE, SMALL, [10] * 6, [10] * 6)
    assert results["auc"]["group"]["s"]["predicted"] == 0.5
    assert _auc_finding(results).startswith(
        "s: the model shrinks the group difference: manual volumes are larger in group A than in B, predicted ones "
        "separate the groups less well (AUC 0.50 predicted vs 1.00 manual); the AUC difference is "
    )


def test_finding_no_change():
    results = _cohort(LARGE, SMALL, [1.1 * v for v in LARGE], [1.1 * v for v in SMALL])
    assert _auc_finding(results) == (
        "s: the model keeps the group difference: manual and predicted volumes are both larger in group A than in B "
        "(AUC 1.00 predicted vs 1.00 manual); the AUC difference is not significant (p = 1.000, Holm-corrected "
        "p = 1.000)"
    )
    same = _cohort([5, 7, 9, 11, 13, 15], [5, 7, 9, 11, 13, 15], [5, 7, 9, 11, 13, 15], [5, 7, 9, 11, 13, 15])
    assert _auc_finding(same).startswith(
        "s: neither manual nor predicted volumes tell group B from A (AUC 0.50 predicted vs 0.50 manual): no change"
    )


def test_a_significant_but_small_auc_change_says_it_is_small():
    test = {"p": 0.0005, "p_corrected": 0.012}
    a = {"predicted": 0.51, "manual": 0.52, "positive": "M", "negative": "F", "test": test}
    assert auc_sentence("label_1", "sex", a) == (
        "label_1: neither manual nor predicted volumes tell sex M from F (AUC 0.51 predicted vs 0.52 manual): no "
        "change; the AUC difference (-0.01) is significant (p < 0.001, Holm-corrected p = 0.012), but smaller than "
        "0.05"
    )
    large = {**a, "predicted": 0.30}  # beyond the margin: no such clause
    assert auc_sentence("label_1", "sex", large).endswith(
        "the AUC difference is significant (p < 0.001, Holm-corrected p = 0.012)"
    )


def test_finding_gain():
    odd, even = [5, 7, 9, 11, 13, 15], [4, 6, 8, 10, 12, 14]
    results = _cohort(odd, even, [v + 10 for v in odd], even)
    a = results["auc"]["group"]["s"]
    assert a["manual"] == pytest.approx(21 / 36) and a["predicted"] == 1.0  # manual: 1 + 2 + ... + 6 of 36 pairs
    assert _auc_finding(results).startswith(
        "s: the model exaggerates the group difference: manual volumes are larger in group A than in B, predicted "
        "ones separate the groups better (AUC 1.00 predicted vs 0.58 manual); the AUC difference is "
    )
    created = _cohort(odd, odd, odd, [v + 20 for v in odd])
    a = created["auc"]["group"]["s"]
    assert (a["positive"], a["manual"], a["predicted"]) == ("B", 0.5, 1.0)  # equal manual medians: the second group
    assert _auc_finding(created).startswith(
        "s: the model creates a group difference: manual volumes do not tell group B from A, predicted ones are "
        "larger in B than in A (AUC 1.00 predicted vs 0.50 manual); the AUC difference is "
    )


def test_finding_volume_bias_gap_and_errors():
    # A exact, B over-segments by 50%: gap +50 points, B adds 50% false positives and misses nothing
    results = _cohort(LARGE, SMALL, LARGE, [1.5 * v for v in SMALL])
    lines = findings(results)
    assert any(
        line.startswith(
            "s mean volume bias by group: highest in group B (+50.0%), lowest in group A (+0.0%); gap +50.0 "
            "[+50.0, +50.0] points; the difference is significant"
        )
        for line in lines
    ), lines
    assert (
        "s errors by group: group A neither misses nor adds voxels (misses 0.0% of the manual voxels, adds 0.0% "
        "false positives); group B over-segments (misses 0.0% of the manual voxels, adds 50.0% false positives). "
        "Sensitivity gap 0.000 [0.000, 0.000] (lowest in A), false-positive gap 50.0 [50.0, 50.0] points of the "
        "structure's size (highest in B)"
    ) in lines
    # under-segmentation: B's predictions lose a third
    under = findings(_cohort(LARGE, SMALL, LARGE, [v * 2 / 3 for v in SMALL]))
    assert any(
        "group B under-segments (misses 33.3% of the manual voxels, adds 0.0% false positives)" in f for f in under
    )

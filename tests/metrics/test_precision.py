"""Scan-rescan precision metrics by hand, against scipy / statsmodels, and on drawn shapes."""

import math

import numpy as np
import pytest

from common.metrics.precision import (
    area_length_volume,
    bland_altman,
    ejection_fraction,
    icc,
    icc_table,
    interval_coverage,
    interval_overlap,
    lv_long_axis_length_mm,
    mask_area_mm2,
    per_subject_precision,
    percentile_interval,
    precision_summary,
    scan_rescan_test,
    within_subject_cv,
)

# Shrout & Fleiss 1979, Table 2: 6 targets rated by 4 judges.
SHROUT_FLEISS = np.array(
    [[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]], dtype=float
)


def _ellipse(shape, centre, semi_axes):
    """Binary mask of the pixels whose centre lies in an axis-aligned ellipse (semi-axes in pixels, (row, col))."""
    rows, cols = np.mgrid[: shape[0], : shape[1]]
    return ((rows - centre[0]) / semi_axes[0]) ** 2 + ((cols - centre[1]) / semi_axes[1]) ** 2 <= 1.0


def test_area_length_is_exact_for_a_prolate_spheroid():
    a, b = 45.0, 20.0  # mm: long and short semi-axes
    spheroid_ml = 4.0 / 3.0 * math.pi * a * b**2 / 1000.0
    assert area_length_volume(math.pi * a * b, 2 * a) == pytest.approx(spheroid_ml, rel=1e-12)
    # an oblate section (short axis taken as the length) is not the same volume: the arguments are not symmetric
    assert area_length_volume(math.pi * a * b, 2 * b) == pytest.approx(4.0 / 3.0 * math.pi * a**2 * b / 1000.0)
    assert area_length_volume(0.0, 0.0) == 0.0
    assert math.isnan(area_length_volume(1.0, 0.0))
    with pytest.raises(ValueError, match="non-negative"):
        area_length_volume(-1.0, 2.0)


def test_ejection_fraction_is_a_fraction_of_the_diastolic_volume():
    assert ejection_fraction(120.0, 50.0) == pytest.approx(70.0 / 120.0)
    assert ejection_fraction(50.0, 120.0) == pytest.approx(-70.0 / 50.0)  # swapped: not an EF
    with pytest.raises(ValueError, match="positive"):
        ejection_fraction(0.0, 10.0)


def test_mask_area_and_feret_length_use_row_and_column_spacing():
    mask = np.zeros((6, 7), bool)
    mask[0, 0] = mask[3, 4] = True
    assert mask_area_mm2(mask, (1.0, 1.0)) == 2.0
    assert mask_area_mm2(mask, (2.0, 0.5)) == 2.0
    assert mask_area_mm2(mask, 0.5) == 0.5
    assert lv_long_axis_length_mm(mask, 1.0) == pytest.approx(5.0)
    assert lv_long_axis_length_mm(mask, (2.0, 1.0)) == pytest.approx(math.sqrt(6**2 + 4**2))
    assert lv_long_axis_length_mm(mask, (1.0, 2.0)) == pytest.approx(math.sqrt(3**2 + 8**2))
    line = np.zeros((5, 9), bool)
    line[2, 1:8] = True  # collinear pixel centres: no 2-D convex hull
    assert lv_long_axis_length_mm(line, (1.0, 0.5)) == pytest.approx(3.0)
    block = np.zeros((8, 8), bool)
    block[1:4, 2:7] = True  # 3 x 5 pixels: corner centres are (2, 4) apart
    assert lv_long_axis_length_mm(block, 1.0) == pytest.approx(math.sqrt(4 + 16))
    assert lv_long_axis_length_mm(np.zeros((4, 4)), 1.0) == 0.0
    single = np.zeros((4, 4))
    single[1, 1] = 1
    assert lv_long_axis_length_mm(single, 1.0) == 0.0
    with pytest.raises(ValueError, match="2-D"):
        lv_long_axis_length_mm(np.zeros((1, 4, 4)), 1.0)
    with pytest.raises(ValueError, match="positive"):
        mask_area_mm2(mask, (1.0, 0.0))


def test_feret_length_matches_brute_force_on_an_irregular_blob():
    from scipy.spatial.distance import pdist

    rng = np.random.default_rng(3)
    blob = rng.random((20, 15)) < 0.3
    spacing = (0.7, 1.3)
    brute = pdist(np.argwhere(blob) * np.array(spacing)).max()
    assert lv_long_axis_length_mm(blob, spacing) == pytest.approx(brute)


def test_drawn_ellipse_gives_the_spheroid_volume_within_discretisation_error():
    a, b, spacing = 40.0, 15.0, 0.5  # semi-axes in pixels, isotropic pixel size in mm
    mask = _ellipse((100, 60), (50, 30), (a, b))
    area = mask_area_mm2(mask, spacing)
    length = lv_long_axis_length_mm(mask, spacing)
    assert area == pytest.approx(math.pi * a * b * spacing**2, rel=0.01)
    assert length == pytest.approx(2 * a * spacing, abs=1e-9)  # the long-axis tips are pixel centres
    spheroid = 4.0 / 3.0 * math.pi * (a * spacing) * (b * spacing) ** 2 / 1000.0
    assert area_length_volume(area, length) == pytest.approx(spheroid, rel=0.02)


def test_bland_altman_by_hand_on_four_pairs():
    scan, rescan = [10.0, 12.0, 9.0, 15.0], [9.0, 13.0, 7.0, 12.0]
    # differences 1, -1, 2, 3: mean 1.25; squared deviations sum to 8.75, sd = sqrt(8.75 / 3)
    sd = math.sqrt(8.75 / 3)
    ba = bland_altman(scan, rescan)
    assert ba["bias"] == pytest.approx(1.25)
    assert ba["sd"] == pytest.approx(sd)
    assert ba["loa_low"] == pytest.approx(1.25 - 1.96 * sd)
    assert ba["loa_high"] == pytest.approx(1.25 + 1.96 * sd)
    assert ba["n"] == 4.0
    swapped = bland_altman(rescan, scan)
    assert swapped["bias"] == pytest.approx(-1.25)
    assert swapped["loa_high"] == pytest.approx(-1.25 + 1.96 * sd)
    # a pair holding a NaN is dropped
    assert bland_altman(scan + [np.nan], rescan + [3.0]) == pytest.approx(ba)
    with pytest.raises(ValueError, match="differ in length"):
        bland_altman(scan, rescan[:3])


def test_within_subject_cv_is_the_rms_of_per_pair_cvs():
    # pair (10, 12): SD sqrt(2), mean 11, CV^2 = 2/121; pair (20, 20): CV 0; RMS = sqrt(1/121) = 1/11
    assert within_subject_cv([10.0, 20.0], [12.0, 20.0]) == pytest.approx(1.0 / 11.0)
    assert within_subject_cv([12.0, 20.0], [10.0, 20.0]) == pytest.approx(1.0 / 11.0)
    # RMS, not mean: CVs 0.1 and 0.3 give sqrt(0.05), not 0.2
    a = np.array([1.0, 1.0]) + np.array([0.1, 0.3]) / np.sqrt(2)
    b = np.array([1.0, 1.0]) - np.array([0.1, 0.3]) / np.sqrt(2)
    assert within_subject_cv(a, b) == pytest.approx(math.sqrt((0.01 + 0.09) / 2))
    with pytest.raises(ValueError, match="mean 0"):
        within_subject_cv([1.0], [-1.0])


def test_icc_reproduces_the_shrout_fleiss_worked_example():
    assert round(icc_table(SHROUT_FLEISS, "A,1"), 2) == 0.29
    assert round(icc_table(SHROUT_FLEISS, "C,1"), 2) == 0.71
    with pytest.raises(ValueError, match="form"):
        icc_table(SHROUT_FLEISS, "2,1")


def test_icc_matches_the_two_way_anova_from_statsmodels():
    pd = pytest.importorskip("pandas")
    smf = pytest.importorskip("statsmodels.formula.api")
    from statsmodels.stats.anova import anova_lm

    rng = np.random.default_rng(0)
    table = rng.normal(50, 10, size=(12, 1)) + rng.normal([0.0, 3.0, -1.0], 4.0, size=(12, 3))
    n, k = table.shape
    long = pd.DataFrame({"y": table.ravel(), "target": np.repeat(np.arange(n), k), "rater": np.tile(np.arange(k), n)})
    anova = anova_lm(smf.ols("y ~ C(target) + C(rater)", data=long).fit())
    ms = anova["sum_sq"] / anova["df"]
    msr, msc, mse = ms["C(target)"], ms["C(rater)"], ms["Residual"]
    expected_a = (msr - mse) / (msr + (k - 1) * mse + k * (msc - mse) / n)
    expected_c = (msr - mse) / (msr + (k - 1) * mse)
    assert icc_table(table, "A,1") == pytest.approx(expected_a)
    assert icc_table(table, "C,1") == pytest.approx(expected_c)
    # scan-rescan: k = 2 columns; a constant offset costs absolute agreement but not consistency
    scan = table[:, 0]
    assert icc(scan, scan + 5.0, form="C,1") == pytest.approx(1.0)
    assert icc(scan, scan + 5.0) < 1.0
    assert icc(scan, table[:, 1]) == pytest.approx(icc_table(table[:, :2]))
    assert icc(list(scan) + [np.nan], list(table[:, 1]) + [1.0]) == pytest.approx(icc(scan, table[:, 1]))


def test_percentile_interval_uses_linear_interpolation_and_ignores_nan():
    # positions 0.025 * 4 = 0.1 and 0.975 * 4 = 3.9 between the sorted samples 1..5
    assert percentile_interval([5.0, 1.0, 3.0, 2.0, 4.0]) == pytest.approx((1.1, 4.9))
    assert percentile_interval([1.0, 2.0, 3.0, 4.0, 5.0, np.nan], level=0.5) == pytest.approx((2.0, 4.0))
    low, high = percentile_interval([np.nan, np.nan])
    assert math.isnan(low) and math.isnan(high)
    with pytest.raises(ValueError, match="level"):
        percentile_interval([1.0], level=95)


def test_interval_overlap_union_and_shorter():
    # [0, 4] and [2, 10]: intersection 2, union 10, shorter 4
    assert interval_overlap(0, 4, 2, 10) == pytest.approx(0.2)
    assert interval_overlap(2, 10, 0, 4) == pytest.approx(0.2)
    assert interval_overlap(0, 4, 2, 10, reference="shorter") == pytest.approx(0.5)
    # nested: the shorter reference calls it full overlap, the union does not
    assert interval_overlap(0, 10, 2, 3) == pytest.approx(0.1)
    assert interval_overlap(2, 3, 0, 10, reference="shorter") == pytest.approx(1.0)
    assert interval_overlap(0, 1, 2, 3) == 0.0
    assert interval_overlap(0, 1, 1, 2) == 0.0  # touching: zero-length intersection
    assert interval_overlap(5, 5, 5, 5) == 1.0
    assert interval_overlap(5, 5, 6, 6) == 0.0
    assert interval_overlap(5, 5, 0, 10) == 0.0
    assert interval_overlap(5, 5, 0, 10, reference="shorter") == 1.0
    assert math.isnan(interval_overlap(np.nan, 1, 0, 1))
    with pytest.raises(ValueError, match="out of order"):
        interval_overlap(1, 0, 0, 1)
    with pytest.raises(ValueError, match="reference"):
        interval_overlap(0, 1, 0, 1, reference="longer")


def test_scan_rescan_test_is_the_two_sided_ks_test():
    from scipy.stats import ks_2samp, mannwhitneyu

    rng = np.random.default_rng(7)
    a, b = rng.normal(0.0, 1.0, 60), rng.normal(0.4, 1.0, 80)
    assert scan_rescan_test(a, b) == pytest.approx(ks_2samp(a, b).pvalue)
    assert scan_rescan_test(b, a) == pytest.approx(ks_2samp(a, b).pvalue)
    # same centre, different spread: KS sees it, a location test does not
    narrow, wide = rng.normal(0.0, 1.0, 300), rng.normal(0.0, 4.0, 300)
    assert scan_rescan_test(narrow, wide) < 1e-6
    assert mannwhitneyu(narrow, wide).pvalue > 0.05
    # disjoint samples of 5: D = 1, exact p = 2 / C(10, 5)
    assert scan_rescan_test([1, 2, 3, 4, 5], [6, 7, 8, 9, 10]) == pytest.approx(2 / 252)
    assert scan_rescan_test([3.0] * 10, [3.0] * 12) == 1.0
    assert scan_rescan_test([1.0, np.nan, 2.0], [1.0, 2.0]) == pytest.approx(1.0)
    assert math.isnan(scan_rescan_test([], [1.0]))


def test_interval_coverage_counts_closed_intervals():
    lows, highs = [0.0, 0.0, 0.0, np.nan], [1.0, 1.0, 1.0, 1.0]
    assert interval_coverage(lows, highs, [0.5, 1.0, 1.5, 0.0]) == pytest.approx(2 / 3)
    assert interval_coverage([0.0], [1.0], [-0.1]) == 0.0
    with pytest.raises(ValueError, match="differ in length"):
        interval_coverage([0.0], [1.0], [0.5, 0.5])


def _rows():
    return [
        {  # rescan shifted: disjoint intervals; truth 4 inside the scan interval only
            "edv_scan_samples": [1.0, 2.0, 3.0, 4.0, 5.0],
            "edv_rescan_samples": [6.0, 7.0, 8.0, 9.0, 10.0],
            "edv_true": 4.0,
        },
        {"edv_scan_samples": [10.0] * 5, "edv_rescan_samples": [10.0] * 5, "edv_true": 10.0},
        {  # identical samples, truth far outside
            "edv_scan_samples": [20.0, 21.0, 22.0, 23.0, 24.0],
            "edv_rescan_samples": [24.0, 23.0, 22.0, 21.0, 20.0],
            "edv_true": 30.0,
        },
    ]


def test_per_subject_precision_by_hand():
    row = per_subject_precision(_rows()[0], "edv")
    assert row["scan_estimate"] == 3.0 and row["rescan_estimate"] == 8.0
    assert (row["scan_low"], row["scan_high"]) == pytest.approx((1.1, 4.9))
    assert (row["rescan_low"], row["rescan_high"]) == pytest.approx((6.1, 9.9))
    assert row["scan_width"] == pytest.approx(3.8) and row["rescan_width"] == pytest.approx(3.8)
    assert row["overlap"] == 0.0
    assert row["p_value"] == pytest.approx(2 / 252)
    assert row["scan_error"] == -1.0 and row["rescan_error"] == 4.0
    assert row["scan_covered"] == 1.0 and row["rescan_covered"] == 0.0
    assert row["true"] == 4.0


def test_precision_summary_by_hand():
    summary = precision_summary(_rows(), "edv")
    # point estimates: scan (3, 10, 22), rescan (8, 10, 22); differences (-5, 0, 0)
    assert summary["bias"] == pytest.approx(-5 / 3)
    assert summary["sd"] == pytest.approx(math.sqrt(25 / 3))
    assert summary["loa_low"] == pytest.approx(-5 / 3 - 1.96 * math.sqrt(25 / 3))
    # pair (3, 8): CV^2 = (5 / sqrt 2)^2 / 5.5^2; other pairs 0
    assert summary["wcv"] == pytest.approx(math.sqrt(12.5 / 5.5**2 / 3))
    assert summary["icc"] == pytest.approx(icc([3.0, 10.0, 22.0], [8.0, 10.0, 22.0]))
    assert summary["mean_overlap"] == pytest.approx(2 / 3)  # 0, 1 (equal points), 1
    assert summary["share_overlap_above"] == pytest.approx(2 / 3)
    assert summary["share_distributions_differ"] == pytest.approx(1 / 3)
    assert summary["coverage"] == pytest.approx(3 / 6)  # scan 1, 1, 0; rescan 0, 1, 0
    assert summary["mean_interval_width"] == pytest.approx(4 * 3.8 / 6)
    assert summary["mean_absolute_error"] == pytest.approx((1 + 0 + 8 + 4 + 0 + 8) / 6)
    assert summary["n_subjects"] == 3.0
    assert all(isinstance(v, float) for v in summary.values())
    strict = precision_summary(_rows(), "edv", overlap_threshold=1.0, alpha=0.001)
    assert strict["share_overlap_above"] == 0.0 and strict["share_distributions_differ"] == 0.0
    with pytest.raises(ValueError, match="empty"):
        precision_summary([], "edv")


def test_a_stored_subject_precision_is_used_and_gives_the_same_summary():
    from common.metrics.precision import per_subject_precision, precision_key, subject_precision

    rows = _rows()
    stored = [{**r, "precision": {precision_key("edv", 0.95): per_subject_precision(r, "edv")}} for r in rows]
    assert precision_summary(stored, "edv") == precision_summary(rows, "edv")
    # what is stored is what is used (a marker value), and only for its own biomarker and level
    marked = {**rows[0], "precision": {precision_key("edv", 0.95): {"marker": 1.0}}}
    assert subject_precision(marked, "edv") == {"marker": 1.0}
    assert subject_precision(marked, "edv", level=0.9) == per_subject_precision(rows[0], "edv", level=0.9)
    assert precision_key("ef", 0.95) == "ef@0.95"

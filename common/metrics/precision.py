"""Scan-rescan precision of a cardiac biomarker and of its uncertainty intervals.

Two families of measures:

- agreement of point estimates between a scan and a rescan of the same subject: Bland-Altman bias and limits of
  agreement, within-subject coefficient of variation, intraclass correlation;
- agreement of the *uncertainty* of the two estimates: overlap of their 95% intervals and a two-sample test of
  their sample distributions (:func:`scan_rescan_test`), plus how often the intervals cover the true value.

The biomarker comes from a single-plane LV segmentation by the area-length method (:func:`area_length_volume`,
:func:`lv_long_axis_length_mm`, :func:`mask_area_mm2`); ejection fraction from the end-diastolic and end-systolic
volumes. Sequences are lists or 1-D arrays; results are plain floats or dicts of floats.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

__all__ = [
    "area_length_volume",
    "ejection_fraction",
    "mask_area_mm2",
    "lv_long_axis_length_mm",
    "bland_altman",
    "within_subject_cv",
    "icc_table",
    "icc",
    "percentile_interval",
    "interval_overlap",
    "scan_rescan_test",
    "interval_coverage",
    "per_subject_precision",
    "precision_key",
    "precision_summary",
    "subject_precision",
]


def _vector(x, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    return arr


def _pairs(scan, rescan) -> tuple[np.ndarray, np.ndarray]:
    """Paired values with every pair holding a NaN or infinity dropped (complete cases)."""
    a, b = _vector(scan, "scan"), _vector(rescan, "rescan")
    if a.shape != b.shape:
        raise ValueError(f"scan {a.shape} and rescan {b.shape} differ in length")
    keep = np.isfinite(a) & np.isfinite(b)
    return a[keep], b[keep]


def _spacing_2d(spacing_mm) -> np.ndarray:
    s = np.broadcast_to(np.asarray(spacing_mm, dtype=np.float64), (2,)).copy()
    if not (np.isfinite(s).all() and (s > 0).all()):
        raise ValueError(f"spacing_mm must be finite and positive (row, col), got {s.tolist()}")
    return s


def _mask_2d(mask) -> np.ndarray:
    arr = mask.detach().cpu().numpy() if hasattr(mask, "detach") else np.asarray(mask)
    if arr.ndim != 2:
        raise ValueError(f"mask must be 2-D (H, W), got shape {arr.shape}")
    return arr.astype(bool)


# --- biomarkers --------------------------------------------------------------------------------------------------


def area_length_volume(area_mm2: float, length_mm: float) -> float:
    """Single-plane area-length LV volume ``V = 8 A^2 / (3 pi L)`` in mL (mm^3 / 1000).

    Exact for a prolate spheroid cut through its long axis: an ellipse of semi-axes ``a`` (long) and ``b`` has
    ``A = pi a b`` and ``L = 2 a``, giving ``4/3 pi a b^2``.

    Args:
        area_mm2: LV cavity area in the imaging plane, mm^2.
        length_mm: LV long-axis length, mm.

    Returns:
        Volume in mL; 0.0 for an empty cavity (``A = 0``), NaN when ``L = 0`` but ``A > 0`` (a single pixel).

    Raises:
        ValueError: negative area or length.
    """
    area, length = float(area_mm2), float(length_mm)
    if area < 0 or length < 0:
        raise ValueError(f"area ({area}) and length ({length}) must be non-negative")
    if area == 0:
        return 0.0
    if length == 0:
        return float("nan")
    return 8.0 * area**2 / (3.0 * np.pi * length) / 1000.0


def ejection_fraction(edv: float, esv: float) -> float:
    """Ejection fraction ``(EDV - ESV) / EDV`` as a fraction (0..1 for a physiological pair).

    Raises:
        ValueError: ``EDV <= 0``.
    """
    edv, esv = float(edv), float(esv)
    if not edv > 0:
        raise ValueError(f"end-diastolic volume must be positive, got {edv}")
    return (edv - esv) / edv


def mask_area_mm2(mask, spacing_mm) -> float:
    """Area of a 2-D binary mask ``(H, W)``: pixel count times pixel area, mm^2 (spacing ``(row, col)`` in mm)."""
    s = _spacing_2d(spacing_mm)
    return float(_mask_2d(mask).sum() * s[0] * s[1])


def lv_long_axis_length_mm(mask, spacing_mm) -> float:
    """Long-axis length of the LV cavity in a 2-D binary mask ``(H, W)``, in mm.

    Taken as the maximum Feret diameter: the largest distance between two mask pixel centres, with pixel
    coordinates scaled by ``spacing_mm`` ``(row, col)``. The farthest pair lies on the convex hull
    (``scipy.spatial.ConvexHull``), so only hull vertices are compared. For a cavity segmented in an apical view,
    longer than it is wide, this runs from the apex to the farther mitral hinge point: slightly longer than the
    apex to mitral-annulus-midpoint length of the clinical method, and the same definition on scan and rescan.

    Returns:
        0.0 for an empty or single-pixel mask.
    """
    from scipy.spatial import ConvexHull, QhullError
    from scipy.spatial.distance import pdist

    points = np.argwhere(_mask_2d(mask)) * _spacing_2d(spacing_mm)
    if len(points) < 2:
        return 0.0
    try:
        points = points[ConvexHull(points).vertices]
    except QhullError:  # collinear pixels: no 2-D hull, compare them all
        pass
    return float(pdist(points).max())


# --- agreement of point estimates ---------------------------------------------------------------------------------


def bland_altman(scan, rescan) -> dict[str, float]:
    """Bland-Altman agreement of paired measurements (Bland & Altman 1986, Lancet, "Statistical methods for
    assessing agreement between two methods of clinical measurement").

    ``bias = mean(scan - rescan)``; limits of agreement ``bias -/+ 1.96 sd`` with ``sd`` the standard deviation
    (``ddof=1``) of the differences. Pairs with a non-finite member are dropped.

    Returns:
        ``{"bias", "sd", "loa_low", "loa_high", "n"}`` (``n`` pairs used, as a float); NaN statistics below 2 pairs.
    """
    a, b = _pairs(scan, rescan)
    diff = a - b
    n = diff.size
    bias = float(diff.mean()) if n else float("nan")
    sd = float(diff.std(ddof=1)) if n >= 2 else float("nan")
    return {"bias": bias, "sd": sd, "loa_low": bias - 1.96 * sd, "loa_high": bias + 1.96 * sd, "n": float(n)}


def within_subject_cv(scan, rescan) -> float:
    """Within-subject coefficient of variation of a scan-rescan pair, as a fraction.

    Root-mean-square of the per-subject CVs, ``sqrt(mean((s_i / m_i)^2))``, with ``s_i = |a_i - b_i| / sqrt(2)``
    the SD of subject ``i``'s pair and ``m_i`` its mean (Bland & Altman 1996, BMJ, "Measurement error proportional
    to the mean"; Hyslop & White 2009, "Estimating precision using duplicate measurements"). Pairs with a
    non-finite member are dropped; NaN if none is left.

    Raises:
        ValueError: a pair with mean 0 (the CV is undefined).
    """
    a, b = _pairs(scan, rescan)
    if a.size == 0:
        return float("nan")
    mean = (a + b) / 2.0
    if (mean == 0).any():
        raise ValueError("within-subject CV is undefined for a pair with mean 0")
    cv = np.abs(a - b) / np.sqrt(2.0) / mean
    return float(np.sqrt(np.mean(cv**2)))


def icc_table(ratings, form: str = "A,1") -> float:
    """Intraclass correlation of a targets x raters table ``(n, k)`` from the two-way ANOVA mean squares.

    With ``MSR`` (targets, ``n - 1`` df), ``MSC`` (raters, ``k - 1`` df) and ``MSE`` (residual,
    ``(n - 1)(k - 1)`` df), following McGraw & Wong 1996, "Forming inferences about some intraclass correlation
    coefficients" and Shrout & Fleiss 1979, "Intraclass correlations: uses in assessing rater reliability":

    - ``"A,1"`` absolute agreement, single measurement (= Shrout & Fleiss ICC(2,1)):
      ``(MSR - MSE) / (MSR + (k - 1) MSE + k (MSC - MSE) / n)``;
    - ``"C,1"`` consistency, single measurement (= ICC(3,1)): ``(MSR - MSE) / (MSR + (k - 1) MSE)``.

    Rows with a non-finite rating are dropped; NaN when fewer than 2 rows are left or the table is constant.
    """
    x = np.asarray(ratings, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] < 2:
        raise ValueError(f"ratings must be (n targets, k >= 2 raters), got shape {x.shape}")
    if form not in ("A,1", "C,1"):
        raise ValueError(f"form must be 'A,1' or 'C,1', got {form!r}")
    x = x[np.isfinite(x).all(axis=1)]
    n, k = x.shape
    if n < 2:
        return float("nan")
    grand = x.mean()
    ss_rows = k * ((x.mean(axis=1) - grand) ** 2).sum()
    ss_cols = n * ((x.mean(axis=0) - grand) ** 2).sum()
    ss_error = ((x - grand) ** 2).sum() - ss_rows - ss_cols
    ms_rows, ms_cols = ss_rows / (n - 1), ss_cols / (k - 1)
    ms_error = ss_error / ((n - 1) * (k - 1))
    denominator = ms_rows + (k - 1) * ms_error
    if form == "A,1":
        denominator += k * (ms_cols - ms_error) / n
    if denominator == 0:
        return float("nan")
    return float((ms_rows - ms_error) / denominator)


def icc(scan, rescan, form: str = "A,1") -> float:
    """Scan-rescan intraclass correlation: :func:`icc_table` on the ``(n, 2)`` table of pairs (default ICC(A,1))."""
    a, b = _vector(scan, "scan"), _vector(rescan, "rescan")
    if a.shape != b.shape:
        raise ValueError(f"scan {a.shape} and rescan {b.shape} differ in length")
    return icc_table(np.stack([a, b], axis=1), form=form)


# --- agreement of uncertainty ----------------------------------------------------------------------------------


def percentile_interval(samples, level: float = 0.95) -> tuple[float, float]:
    """Central ``level`` interval of an estimator's samples: the ``(1 - level)/2`` and ``(1 + level)/2``
    percentiles (numpy's default linear interpolation; 2.5-97.5 for 0.95).

    NaN samples (a failed segmentation) are ignored; ``(nan, nan)`` if none is left.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    x = _vector(samples, "samples")
    x = x[~np.isnan(x)]
    if x.size == 0:
        return float("nan"), float("nan")
    low, high = np.percentile(x, [50.0 * (1 - level), 50.0 * (1 + level)])
    return float(low), float(high)


def interval_overlap(a_low: float, a_high: float, b_low: float, b_high: float, reference: str = "union") -> float:
    """Overlap of two intervals ``[a_low, a_high]`` and ``[b_low, b_high]`` as a fraction in [0, 1].

    Length of the intersection divided by the length of the union (``reference="union"``, the Jaccard index of
    the intervals) or of the shorter interval (``"shorter"``). The study uses ``"union"``: it is symmetric and
    stricter (a narrow interval nested in a wide one scores 1 against the shorter but its length ratio against
    the union).

    Degenerate cases: 0 when disjoint; two equal points give 1; a point inside the other interval gives 0 against
    the union and 1 against the shorter. NaN if any bound is NaN.

    Raises:
        ValueError: a low bound above its high bound, or an unknown ``reference``.
    """
    if reference not in ("union", "shorter"):
        raise ValueError(f"reference must be 'union' or 'shorter', got {reference!r}")
    bounds = [float(v) for v in (a_low, a_high, b_low, b_high)]
    if any(np.isnan(v) for v in bounds):
        return float("nan")
    a_low, a_high, b_low, b_high = bounds
    if a_low > a_high or b_low > b_high:
        raise ValueError(f"interval bounds out of order: [{a_low}, {a_high}], [{b_low}, {b_high}]")
    len_a, len_b = a_high - a_low, b_high - b_low
    if max(a_low, b_low) > min(a_high, b_high):
        return 0.0
    intersection = min(a_high, b_high) - max(a_low, b_low)
    denominator = len_a + len_b - intersection if reference == "union" else min(len_a, len_b)
    if denominator == 0:  # the shorter interval (for the union: both) a point lying in the other
        return 1.0
    return intersection / denominator


def scan_rescan_test(scan_samples, rescan_samples) -> float:
    """p-value that the scan and rescan samples of a biomarker come from the same distribution.

    Two-sided two-sample Kolmogorov-Smirnov test (``scipy.stats.ks_2samp``): it compares the whole distributions,
    location and shape, which is what "the two biomarker distributions differ" means; the Mann-Whitney U test would
    only detect a shift in location. NaN samples are ignored; NaN if either side is empty; identical constant
    samples give 1.0.
    """
    from scipy.stats import ks_2samp

    a, b = _vector(scan_samples, "scan_samples"), _vector(rescan_samples, "rescan_samples")
    a, b = a[~np.isnan(a)], b[~np.isnan(b)]
    if a.size == 0 or b.size == 0:
        return float("nan")
    if np.ptp(a) == 0 and np.ptp(b) == 0 and a[0] == b[0]:
        return 1.0
    return float(ks_2samp(a, b, alternative="two-sided").pvalue)


def interval_coverage(lows, highs, truths) -> float:
    """Share of subjects whose true value lies in their closed interval ``[low, high]``.

    Subjects with a NaN bound or truth are left out; NaN if none is left.
    """
    low, high, truth = _vector(lows, "lows"), _vector(highs, "highs"), _vector(truths, "truths")
    if not low.shape == high.shape == truth.shape:
        raise ValueError(f"lows {low.shape}, highs {high.shape} and truths {truth.shape} differ in length")
    keep = ~(np.isnan(low) | np.isnan(high) | np.isnan(truth))
    if not keep.any():
        return float("nan")
    return float(np.mean((low[keep] <= truth[keep]) & (truth[keep] <= high[keep])))


# --- study summaries ----------------------------------------------------------------------------------------------


def per_subject_precision(
    row: Mapping[str, object], biomarker: str, level: float = 0.95, reference: str = "union"
) -> dict[str, float]:
    """One subject's scan-rescan precision of ``biomarker``.

    ``row`` carries ``f"{biomarker}_scan_samples"`` and ``f"{biomarker}_rescan_samples"`` (an estimator's samples,
    sequences of floats) and ``f"{biomarker}_true"``. The point estimate is the median of the samples (NaN samples
    ignored); the interval is :func:`percentile_interval` at ``level``.

    Returns:
        ``scan_estimate``, ``rescan_estimate``, ``scan_low``, ``scan_high``, ``rescan_low``, ``rescan_high``,
        ``scan_width``, ``rescan_width``, ``overlap`` (:func:`interval_overlap` with ``reference``), ``p_value``
        (:func:`scan_rescan_test`), ``scan_error`` and ``rescan_error`` (estimate - truth, signed),
        ``scan_covered`` and ``rescan_covered`` (1.0 if the interval holds the truth, else 0.0; NaN if undefined)
        and ``true``.
    """
    truth = float(row[f"{biomarker}_true"])
    out: dict[str, float] = {}
    samples = {}
    for side in ("scan", "rescan"):
        x = _vector(row[f"{biomarker}_{side}_samples"], f"{biomarker}_{side}_samples")
        samples[side] = x
        finite = x[~np.isnan(x)]
        estimate = float(np.median(finite)) if finite.size else float("nan")
        low, high = percentile_interval(x, level)
        covered = float(low <= truth <= high) if not np.isnan([low, high, truth]).any() else float("nan")
        out |= {
            f"{side}_estimate": estimate,
            f"{side}_low": low,
            f"{side}_high": high,
            f"{side}_width": high - low,
            f"{side}_error": estimate - truth,
            f"{side}_covered": covered,
        }
    out["overlap"] = interval_overlap(
        out["scan_low"], out["scan_high"], out["rescan_low"], out["rescan_high"], reference=reference
    )
    out["p_value"] = scan_rescan_test(samples["scan"], samples["rescan"])
    out["true"] = truth
    return out


def precision_key(biomarker: str, level: float) -> str:
    """The key under ``row["precision"]`` that holds a row's :func:`per_subject_precision` of ``biomarker`` at
    ``level``."""
    return f"{biomarker}@{level:g}"


def subject_precision(row: Mapping[str, object], biomarker: str, level: float = 0.95) -> dict[str, float]:
    """:func:`per_subject_precision` of ``row``, or the result already stored in ``row["precision"]`` under
    :func:`precision_key` (a resampling study computes each subject's once and reuses it)."""
    stored = (row.get("precision") or {}).get(precision_key(biomarker, level))
    return stored if stored is not None else per_subject_precision(row, biomarker, level=level)


def precision_summary(
    per_subject: Sequence[Mapping[str, object]],
    biomarker: str,
    overlap_threshold: float = 0.5,
    alpha: float = 0.05,
    level: float = 0.95,
) -> dict[str, float]:
    """Cohort scan-rescan precision of ``biomarker`` from per-subject rows (each subject's precision by
    :func:`subject_precision`).

    Point estimates (sample medians) are compared by :func:`bland_altman`, :func:`within_subject_cv` and
    :func:`icc` (A,1); the intervals by their union overlap and the sample distributions by
    :func:`scan_rescan_test`. Coverage, width and error pool the scan and the rescan of every subject. Means skip
    NaN entries.

    Returns:
        ``bias``, ``sd``, ``loa_low``, ``loa_high`` (Bland-Altman, scan - rescan), ``wcv`` (fraction), ``icc``,
        ``mean_overlap``, ``share_overlap_above`` (overlap strictly above ``overlap_threshold``),
        ``share_distributions_differ`` (KS p-value below ``alpha``), ``coverage``, ``mean_interval_width``,
        ``mean_absolute_error`` (point estimate vs truth) and ``n_subjects``.
    """
    if len(per_subject) == 0:
        raise ValueError("per_subject is empty")
    rows = [subject_precision(r, biomarker, level=level) for r in per_subject]
    column = lambda key: np.array([r[key] for r in rows], dtype=np.float64)  # noqa: E731
    scan, rescan = column("scan_estimate"), column("rescan_estimate")
    overlap, p_value = column("overlap"), column("p_value")
    ba = bland_altman(scan, rescan)
    pooled = lambda key: np.concatenate([column(f"scan_{key}"), column(f"rescan_{key}")])  # noqa: E731
    share = lambda flags, defined: float(np.mean(flags[defined])) if defined.any() else float("nan")  # noqa: E731
    nanmean = lambda x: float(np.mean(x[~np.isnan(x)])) if (~np.isnan(x)).any() else float("nan")  # noqa: E731
    return {
        "bias": ba["bias"],
        "sd": ba["sd"],
        "loa_low": ba["loa_low"],
        "loa_high": ba["loa_high"],
        "wcv": within_subject_cv(scan, rescan),
        "icc": icc(scan, rescan, form="A,1"),
        "mean_overlap": nanmean(overlap),
        "share_overlap_above": share(overlap > overlap_threshold, ~np.isnan(overlap)),
        "share_distributions_differ": share(p_value < alpha, ~np.isnan(p_value)),
        "coverage": nanmean(pooled("covered")),
        "mean_interval_width": nanmean(pooled("width")),
        "mean_absolute_error": nanmean(np.abs(pooled("error"))),
        "n_subjects": float(len(rows)),
    }

"""``results.json``, ``report.md``, ``report.html`` and the figures of an audit.

``results.json``::

    {"command": ..., "datalist": ..., "versions": {...}, "structures": {"1": "label_1", ...},
     "attributes": {<attr>: {"kind": "categorical" | "continuous" | "intersection", "groups": [...]}},
     "control": <attr> | null, "min_group_size": 5,
     "by":    {<attr>: {<group>: {<structure>: {"n", "n_labelled", "dice", "sensitivity", "fp_rate",
                                               "surface_distance", "volume_pred_ml", "volume_true_ml",
                                               "volume_bias": {"median", "ci_low", "ci_high", "values"},
                                               "flip": {"correct", "flip", "miss"},
                                               "ece", "reliability": {"count", "mean_probability",
                                                                      "frequency"}}}}},  # probability maps only
     "too_small": {<attr>: {<group>: n}},                       # groups below min_group_size: no comparisons
     "disparity": {<attr>: {<structure>: {"groups", "controlled_by",
                   "dice":        {"n", "means", "worst", "best", "gap", "ratio", "equity_scaled", "test"},
                   "sensitivity": {"n", "means", "worst", "best", "gap", "ratio"},
                   "fp_rate":     {"n", "means", "worst", "best", "gap"},
                   "volume_bias": {"n", "means", "highest", "lowest", "gap", "test"},
                   "ece":         {"n", "means", "worst", "best", "gap", "test"}}}},  # probability predictions
     "auc":   {<attr>: {<structure>: {"predicted", "manual", "positive", "negative", "n", "controlled_by",
                                      "test": {"statistic", "p", "p_corrected"}}}},          # two-group attributes
     "trend": {<attr>: {<structure>: {"slope", "ci_low", "ci_high", "intercept", "r", "n", "controlled_by"}}},
     "tests": {"n", "correction", "correction_name"},
     "probabilities": {"bundle_softmax", "n_cases"},   # --keep-probabilities; cases with calibration numbers
     "shortcut": {"attribute", "groups", "n_images", "grid", "sa", "profiles", "correlations", "partial",
                  "top_regions", "figure", ...},                 # --shortcut: see common.audit.shortcut
     "cases": [{"id", "image", "label", "prediction", <attr>: value, "structures": {<structure>: {...}}}]}

gap / ratio / equity_scaled are ``{"estimate", "ci_low", "ci_high"}``; a test is ``{"statistic", "df", "p",
"p_corrected", "n"}`` (the ECE's permutation test: ``{"statistic": gap, "p", "p_corrected", "n",
"n_resamples"}``). Volume bias and fp_rate are fractions (0.14 = 14%); Dice, sensitivity and AUC in [0, 1];
surface distance in mm; volumes in ml; a trend slope is volume bias per unit of the attribute. ``null`` marks what
is not defined (no labels, a single value ...).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from common.io import atomic_write_json, atomic_write_text
from common.study.report import markdown_table, save_figure, use_agg_backend

__all__ = ["auc_sentence", "findings", "significance", "write_html", "write_report", "write_results"]

AUC_MARGIN = 0.05  # AUCs closer than this count as "as well as"
DICE_GAP = 0.01  # a Dice gap between groups is listed among the findings from this size on


ALPHA = 0.05  # a corrected p-value below this is called significant
ERROR_FLOOR = 0.01  # misses and false positives below 1% of a structure's manual size count as none


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:+.1f}%"


def _interval(b: dict) -> str:
    if b.get("ci_low") is None or b.get("ci_high") is None:
        n = sum(v is not None for v in b.get("values") or [])
        return f"{_pct(b.get('median'))} (n={n}, no interval)"
    return f"{_pct(b['median'])} [{100 * b['ci_low']:.1f}, {100 * b['ci_high']:.1f}]"


def _ci(d: dict | None, spec: str = ".3f", scale: float = 1.0) -> str:
    """``0.350 [0.300, 0.400]`` for an ``{"estimate", "ci_low", "ci_high"}`` (values times ``scale``)."""
    if not d or d.get("estimate") is None:
        return "-"
    text = format(scale * d["estimate"], spec)
    if d.get("ci_low") is None or d.get("ci_high") is None:
        return f"{text} (no interval)"
    return f"{text} [{format(scale * d['ci_low'], spec)}, {format(scale * d['ci_high'], spec)}]"


def _p(x: float) -> str:
    return "< 0.001" if x < 0.001 else f"= {x:.3f}"


def significance(test: dict | None, correction_name: str) -> str:
    """``significant (p = 0.004, Holm-corrected p = 0.012)``, ``not significant (...)`` or ``not tested``."""
    if not test or test.get("p") is None or test.get("p_corrected") is None:
        return "not tested"
    word = "significant" if test["p_corrected"] < ALPHA else "not significant"
    return f"{word} (p {_p(test['p'])}, {correction_name}-corrected p {_p(test['p_corrected'])})"


def _within(d: dict, control: str | None) -> str:
    if d.get("controlled_by"):
        return f" (within {d['controlled_by']})"
    return f" (not stratified by {control}: the attribute contains it)" if control else ""


def auc_sentence(name: str, attr: str, a: dict, correction_name: str = "Holm") -> str | None:
    """What the predicted-volume AUC says next to the manual one: the group difference in volume is kept,
    reversed, lost or gained by the model (AUCs within ``AUC_MARGIN`` of each other or of 0.5 count as equal)."""
    p, m = a.get("predicted"), a.get("manual")
    if p is None:
        return None
    pos, neg = a["positive"], a["negative"]
    pair = f"{attr} {pos} from {neg}"
    if m is None:
        return f"{name}: predicted volumes separate {pair} with AUC {p:.2f} (no manual labels)"
    dp, dm = p - 0.5, m - 0.5
    aucs = f"AUC {p:.2f} predicted vs {m:.2f} manual"
    test = significance(a.get("test"), correction_name)
    if abs(p - m) <= AUC_MARGIN:
        if abs(dm) <= AUC_MARGIN:
            what = f"neither manual nor predicted volumes tell {attr} {pos} from {neg} ({aucs}): no change"
        else:
            big, small = (pos, neg) if dm > 0 else (neg, pos)
            what = (
                f"the model keeps the group difference: manual and predicted volumes are both larger in "
                f"{attr} {big} than in {small} ({aucs})"
            )
    elif abs(dm) > AUC_MARGIN and abs(dp) > AUC_MARGIN and dp * dm < 0:
        big, small = (pos, neg) if dm > 0 else (neg, pos)
        what = (
            f"the model reverses the group difference: manual volumes are larger in {attr} {big}, predicted "
            f"ones in {attr} {small}, so the model makes {small}'s {name} look larger than {big}'s ({aucs})"
        )
    elif abs(dp) < abs(dm):
        big, small = (pos, neg) if dm > 0 else (neg, pos)
        what = (
            f"the model shrinks the group difference: manual volumes are larger in {attr} {big} than in {small}, "
            f"predicted ones separate the groups less well ({aucs})"
        )
    elif abs(dm) <= AUC_MARGIN:
        big, small = (pos, neg) if dp > 0 else (neg, pos)
        what = (
            f"the model creates a group difference: manual volumes do not tell {attr} {pos} from {neg}, "
            f"predicted ones are larger in {big} than in {small} ({aucs})"
        )
    else:
        big, small = (pos, neg) if dm > 0 else (neg, pos)
        what = (
            f"the model exaggerates the group difference: manual volumes are larger in {attr} {big} than in "
            f"{small}, predicted ones separate the groups better ({aucs})"
        )
    if abs(p - m) <= AUC_MARGIN and test.startswith("significant"):
        # a real but small change: say that its size is below the margin, so "no change" and "significant" agree
        return f"{name}: {what}; the AUC difference ({p - m:+.2f}) is {test}, but smaller than {AUC_MARGIN:.2f}"
    return f"{name}: {what}; the AUC difference is {test}"


def _errors(group: str, sens: float | None, fp: float | None) -> str:
    if sens is None or fp is None:
        return f"{group}: -"
    miss = 1.0 - sens
    if max(miss, fp) < ERROR_FLOOR:
        kind = "neither misses nor adds voxels"
    elif fp > miss:
        kind = "over-segments"
    else:
        kind = "under-segments"
    return f"{group} {kind} (misses {100 * miss:.1f}% of the manual voxels, adds {100 * fp:.1f}% false positives)"


def disparity_sentences(name: str, attr: str, d: dict, control: str | None, correction_name: str) -> list[str]:
    """Findings of one structure's disparity summary: Dice, volume bias gap, misses and false positives."""
    lines: list[str] = []
    where = _within(d, control)
    dice = d.get("dice", {})
    if "error" in dice:
        lines.append(f"{name} Dice by {attr}{where}: not compared ({dice['error']})")
    else:
        means = dice["means"]
        gap = dice["gap"]["estimate"]
        tested = significance(dice.get("test"), correction_name)
        if gap < DICE_GAP and not tested.startswith("significant"):
            lines.append(
                f"{name} Dice is similar across {attr}{where}: gap {_ci(dice['gap'])}, equity-scaled Dice "
                f"{_ci(dice['equity_scaled'])}; the difference is {tested}"
            )
        else:
            lines.append(
                f"{name} Dice by {attr}{where}: worst in {attr} {dice['worst']} ({means[dice['worst']]:.3f}), "
                f"best in {attr} {dice['best']} ({means[dice['best']]:.3f}); gap {_ci(dice['gap'])}, ratio "
                f"{_ci(dice['ratio'])}, equity-scaled Dice {_ci(dice['equity_scaled'])}; the difference is {tested}"
            )
    bias = d.get("volume_bias", {})
    if "error" in bias:
        lines.append(f"{name} volume bias by {attr}{where}: not compared ({bias['error']})")
    else:
        hi, lo = bias["highest"], bias["lowest"]
        lines.append(
            f"{name} mean volume bias by {attr}{where}: highest in {attr} {hi} ({_pct(bias['means'][hi])}), lowest "
            f"in {attr} {lo} ({_pct(bias['means'][lo])}); gap {_ci(bias['gap'], '+.1f', 100)} points; the "
            f"difference is {significance(bias.get('test'), correction_name)}"
        )
    sens, fp = d.get("sensitivity", {}), d.get("fp_rate", {})
    if "error" not in sens and "error" not in fp:
        groups = [g for g in d["groups"] if g in sens["means"] and g in fp["means"]]
        each = "; ".join(_errors(f"{attr} {g}", sens["means"][g], fp["means"][g]) for g in groups)
        lines.append(
            f"{name} errors by {attr}{where}: {each}. Sensitivity gap {_ci(sens['gap'])} (lowest in {sens['worst']}), "
            f"false-positive gap {_ci(fp['gap'], '.1f', 100)} points of the structure's size (highest in {fp['worst']})"
        )
    return lines


def findings(results: dict[str, Any]) -> list[str]:
    """Plain-language findings: groups too small, volume bias per group, disparity (Dice, volume bias gap,
    misses and false positives) with the corrected tests, what the model does to the group AUC, trends."""
    lines: list[str] = []
    control = results.get("control")
    correction_name = results.get("tests", {}).get("correction_name", "Holm")
    minimum = results.get("min_group_size")
    small = results.get("too_small", {})
    for attr, groups in small.items():
        for group, n in groups.items():
            lines.append(
                f"{attr} {group} is too small to compare: {n} case{'s' * (n != 1)}, fewer than {minimum}; "
                "it is in the tables but takes part in no comparison"
            )
    for attr, groups in results["by"].items():
        for group, structures in groups.items():
            if group in small.get(attr, {}):
                continue
            for name, s in structures.items():
                b = s.get("volume_bias")
                if not b or b.get("median") is None:
                    continue
                lo, hi = b.get("ci_low"), b.get("ci_high")
                where = f"in {attr} {group}"
                if lo is not None and lo > 0:
                    lines.append(f"{name} is over-segmented {where} by {_interval(b)}")
                elif hi is not None and hi < 0:
                    lines.append(f"{name} is under-segmented {where} by {_interval(b)}")
                else:
                    lines.append(f"{name} shows no clear volume bias {where}: {_interval(b)}")
    for attr, structures in results.get("disparity", {}).items():
        for name, d in structures.items():
            lines += disparity_sentences(name, attr, d, control, correction_name)
            ece = {g: results["by"][attr][g][name].get("ece") for g in d["groups"]}
            ece = {g: v for g, v in ece.items() if v is not None}
            if len(ece) > 1:
                worst, best = max(ece, key=ece.get), min(ece, key=ece.get)
                line = (
                    f"{name} calibration by {attr}: expected calibration error highest in {attr} {worst} "
                    f"({ece[worst]:.4f}), lowest in {attr} {best} ({ece[best]:.4f})"
                )
                tested = d.get("ece") or {}
                if "gap" in tested:
                    line += (
                        f"; gap{_within(d, control)} {_ci(tested['gap'], '.4f')}; the difference is "
                        f"{significance(tested.get('test'), correction_name)}"
                    )
                lines.append(line)
    for attr, structures in results["auc"].items():
        for name, a in structures.items():
            sentence = auc_sentence(name, attr, a, correction_name)
            if sentence:
                lines.append(sentence + _within(a, control))
    for attr, structures in results["trend"].items():
        for name, t in structures.items():
            if t.get("slope") is None or t.get("ci_low") is None or t.get("ci_high") is None:
                continue
            span = (
                f"{100 * t['slope']:+.2f} points per unit of {attr} [{100 * t['ci_low']:.2f}, {100 * t['ci_high']:.2f}]"
            )
            within = f" (within {t['controlled_by']})" if t.get("controlled_by") else ""
            if t["ci_low"] > 0 or t["ci_high"] < 0:
                direction = "rises" if t["slope"] > 0 else "falls"
                lines.append(f"{name} volume bias {direction} with {attr}{within}: {span}")
            else:
                lines.append(f"{name} volume bias shows no clear trend with {attr}{within}: {span}")
    return lines


def write_results(path: str | Path, results: dict[str, Any]) -> Path:
    """``results.json`` with NaN and Inf written as ``null`` (valid JSON for any reader)."""
    return atomic_write_json(path, _clean(results))


def _clean(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    if hasattr(obj, "item") and getattr(obj, "ndim", 1) == 0:
        return _clean(obj.item())
    return obj


def _fmt(x: float | None, spec: str = ".3f") -> str | None:
    return None if x is None else format(x, spec)


def _pcell(test: dict | None, key: str) -> str | None:
    if not test or test.get(key) is None:
        return None
    return "<0.001" if test[key] < 0.001 else f"{test[key]:.3f}"


def _tables(results: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    for attr, groups in results["by"].items():
        small = results.get("too_small", {}).get(attr, {})
        rows = []
        for group, structures in groups.items():
            for name, s in structures.items():
                b, f = s.get("volume_bias"), s.get("flip")
                rows.append(
                    [
                        f"{group} (too small)" if group in small else group,
                        name,
                        s["n"],
                        s["n_labelled"],
                        _fmt(s.get("dice")),
                        _fmt(s.get("sensitivity")),
                        _fmt(None if s.get("fp_rate") is None else 100 * s["fp_rate"], ".1f"),
                        _fmt(s.get("surface_distance"), ".2f"),
                        _fmt(s.get("volume_pred_ml"), ".2f"),
                        _fmt(s.get("volume_true_ml"), ".2f"),
                        _interval(b) if b else None,
                        "/".join(f"{f[k]:.3f}" if f[k] is not None else "-" for k in ("correct", "flip", "miss"))
                        if f
                        else None,
                    ]
                )
        headers = ["group", "structure", "n", "labelled", "Dice", "sensitivity", "FP (% of size)", "ASD (mm)"]
        headers += ["V pred (ml)", "V true (ml)", "volume bias [95% CI]", "correct/flip/miss"]
        if any(s.get("ece") is not None for structures in groups.values() for s in structures.values()):
            headers.append("ECE")
            eces = [s.get("ece") for structures in groups.values() for s in structures.values()]
            rows = [[*row, _fmt(e, ".4f")] for row, e in zip(rows, eces)]
        lines += [f"### By {attr}", "", markdown_table(headers, rows)]
    if results.get("disparity"):
        rows = []
        for attr, structures in results["disparity"].items():
            for name, d in structures.items():
                within = d.get("controlled_by") or "-"
                for metric, label, spec, scale in (
                    ("dice", "Dice", ".3f", 1.0),
                    ("sensitivity", "sensitivity", ".3f", 1.0),
                    ("fp_rate", "FP (% of size)", ".1f", 100.0),
                    ("volume_bias", "volume bias (%)", "+.1f", 100.0),
                    ("ece", "ECE", ".4f", 1.0),
                ):
                    if metric not in d:
                        continue
                    m = d[metric]
                    if "error" in m:
                        rows.append([attr, name, label, within, m["error"], None, None, None, None, None, None])
                        continue
                    worst = m.get("worst", m.get("highest"))
                    best = m.get("best", m.get("lowest"))
                    shown = {g: f"{g} ({format(scale * v, spec)})" for g, v in m["means"].items()}
                    test = m.get("test")
                    rows.append(
                        [
                            attr,
                            name,
                            label,
                            within,
                            shown[worst],
                            shown[best],
                            _ci(m.get("gap"), spec.lstrip("+"), scale),
                            _ci(m.get("ratio")) if "ratio" in m else None,
                            _ci(m.get("equity_scaled")) if "equity_scaled" in m else None,
                            _pcell(test, "p"),
                            _pcell(test, "p_corrected"),
                        ]
                    )
        correction = results["tests"]["correction_name"]
        lines += [
            "### Disparity between groups",
            "",
            "Group means (at the cohort's mix of the control attribute when one is given) of the groups with at "
            f"least {results.get('min_group_size')} cases. Worst/best: lowest/highest Dice and sensitivity, "
            "highest/lowest false positives and volume bias. Gap = best - worst (highest - lowest for volume "
            "bias), ratio = worst / best, equity-scaled Dice = mean Dice / (1 + sd of the group means); 95% "
            "stratified bootstrap intervals. p: Wald test of equal group means (HC2 covariance); for the "
            "expected calibration error (ECE) a permutation test of the gap (group labels permuted within the "
            f"control attribute's strata); {correction}-corrected over all {results['tests']['n']} tests of the "
            "report.",
            "",
            markdown_table(
                ["attribute", "structure", "metric", "within", "worst (mean)", "best (mean)", "gap [95% CI]"]
                + ["ratio [95% CI]", "equity-scaled [95% CI]", "p", "p corrected"],
                rows,
            ),
        ]
    if results["auc"]:
        rows = [
            [
                attr,
                name,
                a["positive"],
                a["n"],
                a.get("controlled_by") or "-",
                _fmt(a.get("predicted")),
                _fmt(a.get("manual")),
                _pcell(a.get("test"), "p"),
                _pcell(a.get("test"), "p_corrected"),
            ]
            for attr, structures in results["auc"].items()
            for name, a in structures.items()
        ]
        lines += [
            "### Group AUC by volume",
            "",
            "How well a structure's volume tells the two groups apart (0.5: not at all; oriented so that the "
            "group with larger manual volumes is positive; below 0.5 the predicted volumes order the groups the "
            "other way round). p: paired permutation test of AUC predicted - AUC manual, corrected as above.",
            "",
            markdown_table(
                ["attribute", "structure", "positive group", "n", "within", "AUC predicted", "AUC manual", "p"]
                + ["p corrected"],
                rows,
            ),
        ]
    if results["trend"]:
        rows = [
            [
                attr,
                name,
                t["n"],
                t.get("controlled_by") or "-",
                _fmt(t.get("slope"), ".4f"),
                f"[{t['ci_low']:.4f}, {t['ci_high']:.4f}]" if t.get("ci_low") is not None else None,
                _fmt(t.get("intercept"), ".4f"),
                _fmt(t.get("r")),
            ]
            for attr, structures in results["trend"].items()
            for name, t in structures.items()
        ]
        lines += [
            "### Volume bias against numeric attributes",
            "",
            "Least-squares line volume bias = slope x attribute + intercept (bias as a fraction), 95% interval "
            "on the slope; with a control attribute the line has one intercept per stratum.",
            "",
            markdown_table(["attribute", "structure", "n", "within", "slope", "95% CI", "intercept", "r"], rows),
        ]
    return lines


def _file_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")


def _boxplots(values: dict, names: list[str], attr: str, ylabel: str, zero: bool, path: Path) -> None:
    """One box plot per structure of ``values[group][structure]`` (lists; None and NaN left out)."""
    import matplotlib.pyplot as plt
    import numpy as np

    groups = list(values)
    width = max(4.0, 1.0 * len(groups))
    fig, axes = plt.subplots(1, len(names), figsize=(width * len(names), 3.8), squeeze=False)
    for ax, name in zip(axes[0], names):
        data = [[v for v in values[g][name] if v is not None and math.isfinite(v)] for g in groups]
        ax.boxplot([d if d else [np.nan] for d in data], tick_labels=groups, showmeans=True)
        if zero:
            ax.axhline(0.0, color="grey", lw=0.8, ls="--")
        ax.set_title(name)
        ax.set_xlabel(attr)
        ax.set_ylabel(ylabel)
        ax.tick_params(axis="x", labelrotation=30)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def _figures(results: dict[str, Any], cohort, cases, out: Path) -> list[tuple[str, str]]:
    use_agg_backend()
    import matplotlib.pyplot as plt
    import numpy as np

    written = []
    names = list(cohort.structures.values())
    for attr, groups in results["by"].items():
        path = out / f"volume_bias_by_{_file_name(attr)}.png"
        bias = {
            g: {
                n: [100 * v for v in (s[n].get("volume_bias") or {}).get("values") or [] if v is not None]
                for n in names
            }
            for g, s in groups.items()
        }
        _boxplots(bias, names, attr, "volume bias (%)", True, path)
        written.append((f"Volume bias by {attr}", path.name))
        labels = cohort.attributes[attr].groups
        if any(c.has_label for c in cases):
            dice = {
                g: {n: [c.structures[n]["dice"] for c, cg in zip(cases, labels) if cg == g] for n in names}
                for g in groups
            }
            path = out / f"dice_by_{_file_name(attr)}.png"
            _boxplots(dice, names, attr, "Dice", False, path)
            written.append((f"Dice by {attr}", path.name))
    for attr, groups in results["by"].items():
        if not any(s.get("reliability") for structures in groups.values() for s in structures.values()):
            continue
        fig, axes = plt.subplots(1, len(names), figsize=(3.8 * len(names), 3.6), squeeze=False)
        for ax, name in zip(axes[0], names):
            for group, structures in groups.items():
                r = structures[name].get("reliability")
                if r:
                    pairs = [(p, f) for p, f in zip(r["mean_probability"], r["frequency"]) if p is not None]
                    ax.plot(*zip(*pairs), marker="o", ms=3, label=f"{group} (ECE {structures[name]['ece']:.3f})")
            ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
            ax.set_title(name)
            ax.set_xlabel("predicted probability")
            ax.set_ylabel("observed frequency")
            ax.legend(fontsize=7)
        path = out / f"reliability_by_{_file_name(attr)}.png"
        fig.tight_layout()
        save_figure(fig, path)
        plt.close(fig)
        written.append((f"Reliability by {attr}", path.name))
    for attr, structures in results["trend"].items():
        x = np.asarray(cohort.attributes[attr].values, dtype=np.float64)
        fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.6), squeeze=False)
        for ax, name in zip(axes[0], names):
            y = np.asarray([c.structures[name]["volume_bias"] for c in cases], dtype=np.float64) * 100
            ax.scatter(x, y, s=14, alpha=0.7)
            t = structures[name]
            if t.get("slope") is not None:
                xs = np.linspace(np.nanmin(x), np.nanmax(x), 50)
                ax.plot(
                    xs,
                    100 * (t["slope"] * xs + t["intercept"]),
                    color="C3",
                    label=f"slope {100 * t['slope']:+.2f} %/unit",
                )
                ax.legend(fontsize=8)
            ax.axhline(0.0, color="grey", lw=0.8, ls="--")
            ax.set_title(name)
            ax.set_xlabel(attr)
            ax.set_ylabel("volume bias (%)")
        path = out / f"volume_bias_vs_{_file_name(attr)}.png"
        fig.tight_layout()
        save_figure(fig, path)
        plt.close(fig)
        written.append((f"Volume bias against {attr}", path.name))
    return written


def _tests_sentence(results: dict[str, Any]) -> str:
    t = results["tests"]
    if not t["n"]:
        return "No between-group test was made (no two groups of the minimum size with manual labels)."
    calibrated = any("ece" in d for structures in results.get("disparity", {}).values() for d in structures.values())
    what = "Dice, volume bias" + (" and expected calibration error" if calibrated else "")
    return (
        f"{t['n']} between-group test{'s' * (t['n'] != 1)} made ({what} differences, AUC "
        f"predicted vs manual); every p-value is {t['correction_name']}-corrected over all {t['n']}, and a "
        f"difference is called significant when the corrected p is below {ALPHA}."
    )


def write_report(out: str | Path, results: dict[str, Any], cohort, cases) -> Path:
    """``report.md`` (findings, tables, figures), the PNG figures and ``report.html`` in ``out``."""
    from common.audit.shortcut import shortcut_lines
    from common.audit.uncertainty import uncertainty_tables

    out = Path(out)
    figures = _figures(results, cohort, cases, out)
    n_labelled = sum(c.has_label for c in cases)
    control = results.get("control")
    lines = [
        "# Bias audit",
        "",
        f"{len(cases)} cases ({n_labelled} with manual labels) from `{results['datalist']}`, structures "
        f"{', '.join(cohort.structures.values())}"
        + (f"; every comparison is stratified by {control}" if control else "")
        + ". Produced by:",
        "",
        f"    {results['command']}",
        "",
        "## Findings",
        "",
        _tests_sentence(results),
        "",
    ]
    lines += [f"- {line}" for line in findings(results)] or ["(none: no labelled cases to compare against)"]
    lines += [
        "",
        "Volume bias is (V_pred - V_true) / V_true per case, summarised by the group median with a percentile "
        "bootstrap 95% interval; a bias is called over- or under-segmentation when the interval excludes 0. "
        "Sensitivity is the fraction of a structure's manual voxels predicted as it; false positives are the "
        "voxels predicted as it outside its manual voxels, as a fraction of its manual size.",
        "",
        "## Tables",
        "",
        *_tables(results),
        *uncertainty_tables(results.get("uncertainty")),
        *shortcut_lines(results.get("shortcut")),
        "## Figures",
        "",
    ]
    for title, name in figures:
        lines += [f"### {title}", "", f"![{title}]({name})", ""]
    text = "\n".join(lines) + "\n"
    write_html(out / "report.html", text, out)
    return atomic_write_text(out / "report.md", text)


HTML_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 78rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
table { border-collapse: collapse; margin: 1rem 0; font-size: 0.85rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.5rem; text-align: left; vertical-align: top; }
th { background: #f0f0f0; position: sticky; top: 0; }
tr:nth-child(even) td { background: #fafafa; }
img { max-width: 100%; }
pre, code { background: #f5f5f5; }
pre { padding: 0.5rem; overflow-x: auto; }
"""


def write_html(path: str | Path, markdown_text: str, figures_dir: str | Path) -> Path:
    """One self-contained HTML page from the report's markdown, every figure embedded as a base64 PNG."""
    import base64
    import html

    import markdown

    folder = Path(figures_dir)

    def embed(match: re.Match) -> str:
        src = html.unescape(match.group(1))
        data = base64.b64encode((folder / src).read_bytes()).decode("ascii")
        return f'src="data:image/png;base64,{data}"'

    body = markdown.markdown(markdown_text, extensions=["tables", "fenced_code"])
    body = re.sub(r'src="([^"]+\.png)"', embed, body)
    page = (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>Bias audit</title>\n'
        f"<style>{HTML_STYLE}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n"
    )
    return atomic_write_text(path, page)

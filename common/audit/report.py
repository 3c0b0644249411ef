"""``results.json``, ``report.md`` and the figures of an audit.

``results.json``::

    {"command": ..., "datalist": ..., "versions": {...}, "structures": {"1": "label_1", ...},
     "attributes": {<attr>: {"kind": "categorical" | "continuous", "groups": [...]}},
     "by":    {<attr>: {<group>: {<structure>: {"n", "n_labelled", "dice", "surface_distance",
                                               "volume_pred_ml", "volume_true_ml",
                                               "volume_bias": {"median", "ci_low", "ci_high", "values"},
                                               "flip": {"correct", "flip", "miss"}}}}},
     "auc":   {<attr>: {<structure>: {"predicted", "manual", "positive", "negative", "n"}}},      # two-group attributes
     "trend": {<attr>: {<structure>: {"slope", "ci_low", "ci_high", "intercept", "r", "n"}}},  # numeric ones
     "cases": [{"id", "image", "label", "prediction", <attr>: value, "structures": {<structure>: {...}}}]}

Volume bias is a fraction (0.14 = 14% over-segmentation); Dice and AUC in [0, 1]; surface distance in mm; volumes
in ml; a trend slope is volume bias per unit of the attribute. ``null`` marks what is not defined (no labels, a
single value ...).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from common.io import atomic_write_json, atomic_write_text
from common.study.report import markdown_table, save_figure, use_agg_backend

__all__ = ["findings", "write_report", "write_results"]

AUC_MARGIN = 0.05  # AUCs closer than this count as "as well as"
DICE_GAP = 0.01  # a Dice gap between groups is listed among the findings from this size on


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:+.1f}%"


def _interval(b: dict) -> str:
    if b.get("ci_low") is None or b.get("ci_high") is None:
        n = sum(v is not None for v in b.get("values") or [])
        return f"{_pct(b.get('median'))} (n={n}, no interval)"
    return f"{_pct(b['median'])} [{100 * b['ci_low']:.1f}, {100 * b['ci_high']:.1f}]"


def findings(results: dict[str, Any]) -> list[str]:
    """Plain-language findings: volume bias per group, AUC predicted vs manual, trends."""
    lines: list[str] = []
    for attr, groups in results["by"].items():
        for group, structures in groups.items():
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
        for name in next(iter(groups.values()), {}):
            dice = {g: s[name]["dice"] for g, s in groups.items() if s[name].get("dice") is not None}
            if len(dice) > 1 and max(dice.values()) - min(dice.values()) >= DICE_GAP:
                lo_g, hi_g = min(dice, key=dice.get), max(dice, key=dice.get)
                lines.append(
                    f"{name} Dice by {attr}: lowest in {attr} {lo_g} ({dice[lo_g]:.3f}), "
                    f"highest in {attr} {hi_g} ({dice[hi_g]:.3f})"
                )
    for attr, structures in results["auc"].items():
        for name, a in structures.items():
            p, m = a.get("predicted"), a.get("manual")
            if p is None:
                continue
            pair = f"{attr} {a['positive']} from {a['negative']}"
            if m is None:
                lines.append(f"{name}: predicted volumes separate {pair} with AUC {p:.2f} (no manual labels)")
                continue
            if p < m - AUC_MARGIN:
                how = "less well than"
            elif p > m + AUC_MARGIN:
                how = "better than"
            else:
                how = "about as well as"
            lines.append(f"{name}: predicted volumes separate {pair} {how} manual ones, AUC {p:.2f} vs {m:.2f}")
    for attr, structures in results["trend"].items():
        for name, t in structures.items():
            if t.get("slope") is None or t.get("ci_low") is None or t.get("ci_high") is None:
                continue
            span = (
                f"{100 * t['slope']:+.2f} points per unit of {attr} [{100 * t['ci_low']:.2f}, {100 * t['ci_high']:.2f}]"
            )
            if t["ci_low"] > 0 or t["ci_high"] < 0:
                direction = "rises" if t["slope"] > 0 else "falls"
                lines.append(f"{name} volume bias {direction} with {attr}: {span}")
            else:
                lines.append(f"{name} volume bias shows no clear trend with {attr}: {span}")
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


def _tables(results: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    for attr, groups in results["by"].items():
        rows = []
        for group, structures in groups.items():
            for name, s in structures.items():
                b, f = s.get("volume_bias"), s.get("flip")
                rows.append(
                    [
                        group,
                        name,
                        s["n"],
                        s["n_labelled"],
                        _fmt(s.get("dice")),
                        _fmt(s.get("surface_distance"), ".2f"),
                        _fmt(s.get("volume_pred_ml"), ".2f"),
                        _fmt(s.get("volume_true_ml"), ".2f"),
                        _interval(b) if b else None,
                        "/".join(f"{f[k]:.3f}" if f[k] is not None else "-" for k in ("correct", "flip", "miss"))
                        if f
                        else None,
                    ]
                )
        headers = ["group", "structure", "n", "labelled", "Dice", "ASD (mm)", "V pred (ml)", "V true (ml)"]
        headers += ["volume bias [95% CI]", "correct/flip/miss"]
        lines += [f"### By {attr}", "", markdown_table(headers, rows)]
    if results["auc"]:
        rows = [
            [attr, name, a["positive"], a["n"], _fmt(a.get("predicted")), _fmt(a.get("manual"))]
            for attr, structures in results["auc"].items()
            for name, a in structures.items()
        ]
        lines += [
            "### Group AUC by volume",
            "",
            "How well a structure's volume tells the two groups apart (0.5: not at all; oriented so that the "
            "group with larger manual volumes is positive).",
            "",
            markdown_table(["attribute", "structure", "positive group", "n", "AUC predicted", "AUC manual"], rows),
        ]
    if results["trend"]:
        rows = [
            [
                attr,
                name,
                t["n"],
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
            "on the slope.",
            "",
            markdown_table(["attribute", "structure", "n", "slope", "95% CI", "intercept", "r"], rows),
        ]
    return lines


def _figures(results: dict[str, Any], cohort, cases, out: Path) -> list[tuple[str, str]]:
    use_agg_backend()
    import matplotlib.pyplot as plt
    import numpy as np

    written = []
    names = list(cohort.structures.values())
    for attr, groups in results["by"].items():
        fig, axes = plt.subplots(1, len(names), figsize=(max(4.0, 1.2 * len(groups)) * len(names), 3.6), squeeze=False)
        for ax, name in zip(axes[0], names):
            data = [
                [v for v in ((s[name].get("volume_bias") or {}).get("values") or []) if v is not None]
                for s in groups.values()
            ]
            data = [[100 * v for v in d] for d in data]
            ax.boxplot([d if d else [np.nan] for d in data], tick_labels=list(groups), showmeans=True)
            ax.axhline(0.0, color="grey", lw=0.8, ls="--")
            ax.set_title(name)
            ax.set_xlabel(attr)
            ax.set_ylabel("volume bias (%)")
            ax.tick_params(axis="x", labelrotation=30)
        path = out / f"volume_bias_by_{attr}.png"
        fig.tight_layout()
        save_figure(fig, path)
        plt.close(fig)
        written.append((f"Volume bias by {attr}", path.name))
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
        path = out / f"volume_bias_vs_{attr}.png"
        fig.tight_layout()
        save_figure(fig, path)
        plt.close(fig)
        written.append((f"Volume bias against {attr}", path.name))
    return written


def write_report(out: str | Path, results: dict[str, Any], cohort, cases) -> Path:
    """``report.md`` (findings, tables, figures) and the PNG figures in ``out``."""
    out = Path(out)
    figures = _figures(results, cohort, cases, out)
    n_labelled = sum(c.has_label for c in cases)
    lines = [
        "# Bias audit",
        "",
        f"{len(cases)} cases ({n_labelled} with manual labels) from `{results['datalist']}`, structures "
        f"{', '.join(cohort.structures.values())}. Produced by:",
        "",
        f"    {results['command']}",
        "",
        "## Findings",
        "",
    ]
    lines += [f"- {line}" for line in findings(results)] or ["(none: no labelled cases to compare against)"]
    lines += [
        "",
        "Volume bias is (V_pred - V_true) / V_true per case, summarised by the group median with a percentile "
        "bootstrap 95% interval; a bias is called over- or under-segmentation when the interval excludes 0.",
        "",
        "## Tables",
        "",
        *_tables(results),
        "## Figures",
        "",
    ]
    for title, name in figures:
        lines += [f"### {title}", "", f"![{title}]({name})", ""]
    return atomic_write_text(out / "report.md", "\n".join(lines) + "\n")

"""Tables and figures of the segmentation resolution-bias study, and its reading of a run's record.

Approach names and labels, the view of a run's ``metrics.json`` the tables and the summary share, Table 1 and the
per-group tables, the control-arm and pooling tables (with the cross-seed ranking test), the figures in the shape of
Henschel et al. (2022) Figs. 3-5, and the group-model tuning table. :mod:`common.study.segmentation_resolution_bias`
holds the science (profiles, grid, summary, claims) and its ``SPEC``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from common.study.engine import merge_seeds
from common.study.report import fmt, markdown_table, save_figure, seed_cell, use_agg_backend
from common.study.stats import ranking_agreement

APPROACHES = ("h_only", "resampled", "scale_aug", "vinn")
APPROACH_LABELS = {
    "h_only": "(a) H-only",
    "resampled": "(b) resampled",
    "scale_aug": "(c) scale aug.",
    "vinn": "(d) VINN",
}
MAIN_STRUCTURE = "grey_matter"


def _pair_name(pair) -> str:
    return f"{pair[0]:g}/{pair[1]:g} mm"


def _fmt_ci(vb: dict) -> str:
    med, (lo, hi) = vb["median"], vb["ci95"]
    if med is None:
        return "-"
    if lo is None or hi is None:
        return f"{100 * med:+.1f}%"
    return f"{100 * med:+.1f}% [{100 * lo:+.1f}, {100 * hi:+.1f}]"


def _view(metrics: dict) -> dict:
    """A run's ``metrics.json`` as the tables read it: the per-group detail and the subjects."""
    return {**metrics["extra"], "subjects": metrics.get("per_sample", [])}


def _main_runs(results: list[dict], pair, table: str = "approaches") -> dict[str, dict]:
    return {
        r["approach"]: _view(r["metrics"])
        for r in results
        if r["table"] == table and tuple(r["pair"]) == tuple(pair) and r["downsample"] == "maxpool"
    }


def _first_pair(results: list[dict]):
    return next((tuple(r["pair"]) for r in results if r["table"] in ("approaches", "pooling")), None)


def _gm_bias_l(m: dict | None):
    grp = m["groups"].get("L") if m else None
    return grp["volume_bias"][MAIN_STRUCTURE]["median"] if grp else None


def figures(record: dict, output_dir: Path) -> list[str]:
    """Fig. 3 (GM volume distributions with ground truth), Fig. 4 (Dice boxes), Fig. 5 (volume-bias boxes),
    from the first seed's runs."""
    results = [r for r in record["runs"] if r["seed"] == record["seeds"][0]]
    main_pair = _first_pair(results)
    use_agg_backend()
    import matplotlib.pyplot as plt
    import numpy as np

    runs = _main_runs(results, main_pair)
    approaches = [a for a in APPROACHES if a in runs]
    if not approaches:
        return []
    names = []
    colors = {"H": "tab:blue", "L": "tab:orange"}

    # Fig. 3: grey-matter volume per subject, per approach and group, beside the ground truth
    fig, ax = plt.subplots(figsize=(8, 4))
    columns = ["ground truth", *[APPROACH_LABELS[a] for a in approaches]]
    first = runs[approaches[0]]
    for g in ("H", "L"):
        true = [s["volume_true"][MAIN_STRUCTURE] for s in first["subjects"] if s["group"] == g]
        series = [true] + [
            [s["volume_pred"][MAIN_STRUCTURE] for s in runs[a]["subjects"] if s["group"] == g] for a in approaches
        ]
        for j, vals in enumerate(series):
            x = j + (-0.15 if g == "H" else 0.15) + np.linspace(-0.05, 0.05, len(vals))
            ax.scatter(x, vals, s=14, color=colors[g], label=f"group {g}" if j == 0 else None)
            if vals:
                ax.hlines(
                    np.median(vals),
                    j - 0.28 + (0 if g == "H" else 0.28),
                    j + (0 if g == "H" else 0.28),
                    color=colors[g],
                )
    ax.set_xticks(range(len(columns)), columns, rotation=15)
    ax.set_ylabel("grey-matter volume (ml)")
    ax.set_title(
        f"Grey-matter volume distributions, {_pair_name(main_pair)}, seed {record['seeds'][0]} (lines: medians)"
    )
    ax.legend()
    fig.tight_layout()
    save_figure(fig, output_dir / "fig3_volume_distributions.png", dpi=120)
    plt.close(fig)
    names.append("fig3_volume_distributions.png")

    curves = {r["approach"]: r["validation_curve"] for r in results
              if r["table"] == "approaches" and r.get("validation_curve")}  # fmt: skip
    if curves:
        fig, ax = plt.subplots(figsize=(6, 3.6))
        for a in approaches:
            if a in curves:
                ax.plot(curves[a]["epoch"], curves[a]["value"], marker="o", ms=3, label=APPROACH_LABELS[a])
        ax.set_xlabel("epoch")
        ax.set_ylabel(next(iter(curves.values()))["metric"])
        ax.set_title(f"Validation curves, {_pair_name(main_pair)}, seed {record['seeds'][0]}")
        ax.legend()
        fig.tight_layout()
        save_figure(fig, output_dir / "fig_validation_curves.png", dpi=110)
        plt.close(fig)
        names.append("fig_validation_curves.png")

    for key, fname, ylabel in (
        ("dice", "fig4_dice.png", "Dice"),
        ("volume_bias", "fig5_volume_bias.png", "normalised volume bias"),
    ):
        fig, ax = plt.subplots(figsize=(8, 4))
        for k, g in enumerate(("H", "L")):
            data = []
            for a in approaches:
                vals = runs[a]["groups"].get(g, {}).get(key, {}).get(MAIN_STRUCTURE, {}).get("values", [])
                data.append([v for v in vals if v is not None])
            pos = np.arange(len(approaches)) + (k - 0.5) * 0.35
            bp = ax.boxplot(data, positions=pos, widths=0.3, patch_artist=True, showfliers=True)
            for patch in bp["boxes"]:
                patch.set_facecolor(colors[g])
                patch.set_alpha(0.6)
            ax.plot([], [], color=colors[g], lw=6, alpha=0.6, label=f"group {g}")
        if key == "volume_bias":
            ax.axhline(0.0, color="k", lw=0.8)
        ax.set_xticks(range(len(approaches)), [APPROACH_LABELS[a] for a in approaches])
        ax.set_ylabel(f"grey-matter {ylabel}")
        ax.set_title(f"{ylabel} at high resolution, {_pair_name(main_pair)}, seed {record['seeds'][0]}")
        ax.legend()
        fig.tight_layout()
        save_figure(fig, output_dir / fname, dpi=120)
        plt.close(fig)
        names.append(fname)
    return names


def _approach_tables(results: list[dict], pairs: list) -> list[str]:
    """Table 1 (AUC per approach and pair), Dice and volume bias per structure and group, and the Flip
    decomposition, at the main pair, from seed-merged runs; nothing without approach runs."""
    main_pair = pairs[0]
    if not _main_runs(results, main_pair):
        return []
    lines: list[str] = []
    lines += [
        "Evaluation on the test split at the high resolution for both groups, against high-resolution ground truth.",
        "",
        "## Table 1: grey-matter group AUC (group L vs H by predicted volume)",
        "",
    ]
    auc_rows = []
    manual = {}
    for a in APPROACHES:
        row: list[Any] = [APPROACH_LABELS[a]]
        for pair in pairs:
            m = _main_runs(results, pair).get(a)
            auc = m["auc"].get(MAIN_STRUCTURE) if m else None
            row.append(auc["pred"] if auc else None)
            if auc:
                manual[pair] = auc["manual"]
        auc_rows.append(row)
    auc_rows.append(["manual (ground truth)", *[manual.get(p) for p in pairs]])
    lines += [markdown_table(["approach", *[_pair_name(p) for p in pairs]], auc_rows), ""]

    runs = _main_runs(results, main_pair)
    structures = next(iter(runs.values()))["structures"] if runs else []
    for title, key, value_of in (
        ("Dice (mean) per structure and group", "dice", lambda d: d["mean"]),
        ("Normalised volume bias: median [bootstrap 95% interval]", "volume_bias", _fmt_ci),
    ):
        lines += [f"## {title}, {_pair_name(main_pair)}", ""]
        headers = ["approach", *[f"{s} {g}" for s in structures for g in ("H", "L")]]
        rows = []
        for a in APPROACHES:
            if a not in runs:
                continue
            m = runs[a]
            rows.append(
                [
                    APPROACH_LABELS[a],
                    *[
                        value_of(m["groups"][g][key][s]) if g in m["groups"] else None
                        for s in structures
                        for g in ("H", "L")
                    ],
                ]
            )
        lines += [markdown_table(headers, rows), ""]

    lines += [f"## Flip decomposition of ground-truth brain voxels (pooled), {_pair_name(main_pair)}", ""]
    rows = []
    for a in APPROACHES:
        if a in runs:
            for g, entry in sorted(runs[a]["groups"].items()):
                f = entry["flip"]["global"]
                rows.append([APPROACH_LABELS[a], g, f["correct"], f["flip"], f["miss"]])
    lines += [markdown_table(["approach", "group", "correct", "flip", "miss"], rows), ""]

    return lines


def report(record: dict, figures: list[str]) -> str:
    """The study's sections: Table 1, per-group tables, the control arm, the pooling grid, the summary, figures."""
    results, summary = merge_seeds(record["runs"]), record["summary"]
    pairs = [tuple(p) for p in record["profile_settings"]["axes"]["pairs"]]
    main_pair = pairs[0]
    lines = _approach_tables(results, pairs)
    per_seed = summary["per_seed"]
    seed_names = " / ".join(per_seed)

    def with_seeds(path: tuple, pct: bool = False) -> str:
        def get(d):
            for k in path:
                d = d.get(k) if isinstance(d, dict) else None
            return d

        if pct:
            return seed_cell(get(summary), [get(per_seed[s]) for s in per_seed], "+.1f", 100.0, "%")
        return seed_cell(get(summary), [get(per_seed[s]) for s in per_seed])

    if "resolution_part_L" in summary:
        lines += [
            f"## Control arm: group-L grey-matter volume bias with and without the resolution gap, {_pair_name(main_pair)}",
            "",
            "Main arm: group L acquired at the low resolution (as above). Control arm: the same runs with group L "
            "acquired at the high resolution, so what bias remains there comes from group L's appearance, not its "
            "resolution. H-only never trains on group L: its control run would be its main run. Median over seeds "
            f"(seeds {seed_names}).",
            "",
        ]
        rows = [
            [
                APPROACH_LABELS[a],
                with_seeds(("volume_bias_L", a), pct=True),
                with_seeds(("volume_bias_L_control", a), pct=True),
                with_seeds(("resolution_part_L", a), pct=True),
            ]
            for a in APPROACHES
            if a in summary["resolution_part_L"]
        ]
        lines += [markdown_table(["approach", "main arm", "control arm", "resolution part (main - control)"], rows), ""]

    if "pooling" in summary:
        epochs = sorted({r["overrides"]["epochs"] for r in results if r["table"] == "pooling"})
        lines += [
            f"## Down-sampling operators, {_pair_name(main_pair)} ({'/'.join(map(str, epochs))} epochs), "
            f"median over seeds ({seed_names})",
            "",
        ]
        rows = []
        for op in record["profile_settings"]["axes"]["downsample"]:
            for a in ("h_only", "scale_aug"):
                if a in summary["pooling"].get(op, {}):
                    rows.append(
                        [
                            op,
                            APPROACH_LABELS[a],
                            with_seeds(("pooling", op, a, "dice_L")),
                            with_seeds(("pooling", op, a, "volume_bias_L"), pct=True),
                            with_seeds(("pooling", op, a, "auc")),
                        ]
                    )
        lines += [markdown_table(["operator", "approach", "GM Dice L", "GM volume bias L", "GM AUC"], rows), ""]
        lines += _pooling_noise_lines(per_seed, record["profile_settings"]["axes"]["downsample"])

    if summary["auc"]:
        lines += ["## Summary (grey matter, main pair): median over seeds, then each seed", ""]
        rows = [
            [
                APPROACH_LABELS[a],
                with_seeds(("dice_L", a)),
                with_seeds(("volume_bias_L", a), pct=True),
                with_seeds(("auc", a)),
            ]
            for a in APPROACHES
            if a in summary["auc"]
        ]
        rows.append(["manual", None, None, with_seeds(("auc", "manual"))])
        lines += [markdown_table(["approach", f"Dice L (seeds {seed_names})", "volume bias L", "AUC"], rows), ""]
    if figures:
        lines += ["## Figures", ""] + [f"![{Path(f).name}]({f})" for f in figures] + [""]
    lines += ["Example single run:", "", f"    {record['example_run_command']}", ""]
    return "\n".join(lines)


def pooling_ranking_noise(per_seed: dict, ops, approach: str) -> dict | None:
    """:func:`common.study.stats.ranking_agreement` of the operators ordered by |group-L GM volume bias| of
    ``approach`` over the seeds of ``per_seed`` (one seed's :func:`summarize` each)."""
    values = {
        seed: {
            op: None
            if (v := s.get("pooling", {}).get(op, {}).get(approach, {}).get("volume_bias_L")) is None
            else abs(v)
            for op in ops
        }
        for seed, s in per_seed.items()
    }
    return ranking_agreement(values)


def _pooling_noise_lines(per_seed: dict, ops) -> list[str]:
    rows = []
    for a in ("h_only", "scale_aug"):
        out = pooling_ranking_noise(per_seed, ops, a)
        if out is None:
            continue
        verdict = "yes" if out["p_value"] < 0.05 and out["median_range"] > out["seed_range"] else "no"
        rows.append(
            [
                APPROACH_LABELS[a],
                f"{out['kendall_w']:.2f}",
                f"{out['p_value']:.3f}",
                f"{100 * out['median_range']:.1f} pp",
                f"{100 * out['seed_range']:.1f} pp",
                verdict,
            ]
        )
    if not rows:
        return []
    return [
        "### Is the operator ranking above seed noise?",
        "",
        "Operators ordered by |group-L GM volume bias| in each seed. Kendall's W: agreement of the seeds' orderings "
        "(1 = identical, about 0 = none); p: share of 100,000 sets of random per-seed orderings that agree at "
        "least as well. Spread of the medians: largest minus smallest operator median; seed spread: the median "
        "over operators of one operator's largest minus smallest value over seeds (percentage points). "
        '"Above noise" needs p < 0.05 and the medians\' spread larger than the seed spread.',
        "",
        markdown_table(
            ["approach", "Kendall's W", "p", "spread of the medians", "seed spread of one operator", "above noise"],
            rows,
        ),
        "",
    ]


def render_group_model_section(report: dict) -> str:
    """The group-model tuning table (``python -m tests.tuning.seg_group_model``): per ``contrast_l`` preset,
    group L's grey-matter volume bias and the group AUC per approach (median, then every seed), and the claims."""
    seeds = list(report["presets"][next(iter(report["presets"]))]["per_seed"])
    commit = (report.get("git") or {}).get("commit") or "?"
    lines = [
        f"Tuning seeds {', '.join(seeds)}; code fingerprint `{report['code_fingerprint']}`, commit `{commit[:10]}`. "
        f"Produced by `{report['command']}`. Median (seeds {' / '.join(seeds)}).",
        "",
        "| `contrast_l` | approach | group-L GM volume bias | group-L GM Dice | GM group AUC |",
        "|---|---|---|---|---|",
    ]

    def cell(preset: dict, key: str, approach: str, spec: str, scale: float = 1.0, unit: str = "") -> str:
        each = [preset["per_seed"][s][key].get(approach) for s in seeds]
        med = preset["median"][key].get(approach)
        show = lambda v: fmt(None if v is None else scale * v, spec)  # noqa: E731
        return f"{show(med)}{unit} ({' / '.join(show(v) for v in each)})"

    for name, preset in report["presets"].items():
        for approach in preset["median"]["volume_bias_L"]:
            lines.append(
                f"| {name} | {approach} | {cell(preset, 'volume_bias_L', approach, '+.1f', 100, '%')} | "
                f"{cell(preset, 'dice_L', approach, '.3f')} | {cell(preset, 'auc', approach, '.2f')} |"
            )
    lines += ["", "| `contrast_l` | claim | holds in | median |", "|---|---|---|---|"]
    for name, preset in report["presets"].items():
        for c in preset["claims"]:
            claim = c["claim"].replace("|", "\\|")  # a table cell
            lines.append(f"| {name} | {claim} | {c['holds_in']}/{c['of']} | {fmt(c['median'], '.3g')} |")
    return "\n".join(lines)

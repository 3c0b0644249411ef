"""Study of the segmentation_resolution_bias bundle: approaches x resolution pairs, and down-sampling operators.

``python -m common.study segmentation_resolution_bias --profile {smoke,quick,full} --output DIR`` runs
every setting as one ordinary bundle process (``train.yaml`` + ``evaluate.yaml`` with
``--train_first True``) and writes ``DIR/segmentation_resolution_bias/{results.json, report.md, *.png}``:

- table 1 (Table 1 of Henschel et al. 2022): grey-matter group AUC per approach and resolution pair, with the
  ground-truth ("manual") AUC;
- Dice and normalised volume bias (median, bootstrap 95% interval) per structure, approach and group;
- the down-sampling operators x {h_only, scale_aug} at the main pair;
- figures in the shape of that paper's Fig. 3 (grey-matter volume distributions per approach with the
  ground truth), Fig. 4 (Dice boxes) and Fig. 5 (volume-bias boxes).

``results.json["summary"]`` holds, for grey matter at the main pair, ``volume_bias_L[approach]`` (median
normalised volume bias of group L), ``dice_L[approach]``, ``auc[approach]`` and ``auc["manual"]``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from common.study import engine
from common.study.engine import Claim, Run, Study, merge_seeds
from common.study.report import markdown_table, report_header, save_figure, use_agg_backend

BUNDLE = "segmentation_resolution_bias"
APPROACHES = ("h_only", "resampled", "scale_aug", "vinn")
APPROACH_LABELS = {
    "h_only": "(a) H-only",
    "resampled": "(b) resampled",
    "scale_aug": "(c) scale aug.",
    "vinn": "(d) VINN",
}
DOWNSAMPLE_OPS = ("maxpool", "strided_conv", "avgpool", "blurpool", "flc", "asap")
MAIN_STRUCTURE = "grey_matter"

# Each profile: the resolution pairs (first = main pair), the settings of the approach grid, and of the pooling grid.
PROFILES: dict[str, dict[str, Any]] = {
    "smoke": {
        "pairs": [(2.0, 3.0)],
        "ops": ["maxpool"],
        "settings": {
            "num_train": 2,
            "num_val": 1,
            "num_test": 2,
            "epochs": 1,
            "val_interval": 2,
            "slices_per_volume": 4,
            "slice_thickness": 3,
            "channels": [8, 16],
            "plane": "axial",
            "num_threads": 1,
        },
        "pooling_settings": {},
        "jobs": 2,
    },
    # quick: 24 epochs for the approach grid (12 left (c) and (d) under-trained), zoom over the pair's ratio
    # [2/3, 3/2] on 30% of slices; the pooling table gets the small remainder of the ~15 min budget.
    "quick": {
        "pairs": [(2.0, 3.0)],
        "ops": list(DOWNSAMPLE_OPS),
        "settings": {
            "num_train": 10,
            "num_val": 2,
            "num_test": 8,
            "epochs": 24,
            "val_interval": 8,
            "slices_per_volume": 20,
            "scale_range": [0.67, 1.5],
            "scale_prob": 0.3,
            "slice_thickness": 3,
            "channels": [8, 16, 32],
            "plane": "axial",
            "num_threads": 1,
        },
        "pooling_settings": {"epochs": 4, "val_interval": 4, "slices_per_volume": 10},
        "jobs": 2,
    },
    "full": {
        "pairs": [(1.0, 1.4), (2.0, 3.0), (3.0, 4.0)],
        "ops": list(DOWNSAMPLE_OPS),
        "settings": {
            "num_train": 25,
            "num_val": 5,
            "num_test": 15,
            "epochs": 70,
            "val_interval": 10,
            "slices_per_volume": 0,
            "slice_thickness": 7,
            "channels": [32, 64, 128, 256],
            "plane": "all",
        },
        "pooling_settings": {},
        "jobs": 1,
    },
}


def _pair_name(pair) -> str:
    return f"{pair[0]:g}/{pair[1]:g} mm"


def _run_dir_name(table: str, approach: str, pair, op: str) -> str:
    return f"{table}_{approach}_{pair[0]:g}-{pair[1]:g}mm_{op}".replace(".", "p")


def _fmt_ci(vb: dict) -> str:
    med, (lo, hi) = vb["median"], vb["ci95"]
    if med is None:
        return "-"
    if lo is None or hi is None:
        return f"{100 * med:+.1f}%"
    return f"{100 * med:+.1f}% [{100 * lo:+.1f}, {100 * hi:+.1f}]"


def grid(profile: str) -> list[dict]:
    """Settings of every run of a profile (the approach grid first, then the extra pooling runs)."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; expected one of {', '.join(PROFILES)}")
    spec = PROFILES[profile]
    runs = []
    for pair in spec["pairs"]:
        for approach in APPROACHES:
            runs.append({"table": "approaches", "approach": approach, "pair": pair, "downsample": "maxpool"})
    main = spec["pairs"][0]
    for op in spec["ops"]:
        for approach in ("h_only", "scale_aug"):
            if op == "maxpool" and not spec["pooling_settings"]:
                continue  # identical to the approach grid's run
            runs.append({"table": "pooling", "approach": approach, "pair": main, "downsample": op})
    return runs


def build(profile: str, seeds) -> Study:
    """The study of ``profile``: :func:`grid` as bundle runs, repeated over ``seeds``."""
    points = grid(profile)  # validates the profile
    spec = PROFILES[profile]
    runs = []
    for point in points:
        high, low = point["pair"]
        overrides = {
            **spec["settings"],
            **(spec["pooling_settings"] if point["table"] == "pooling" else {}),
            "approach": point["approach"],
            "high_spacing": float(high),
            "low_spacing": float(low),
            "downsample": point["downsample"],
        }
        name = _run_dir_name(point["table"], point["approach"], point["pair"], point["downsample"])
        runs.append(Run(name, overrides, {**point, "pair": list(point["pair"])}))
    return Study(
        BUNDLE, profile, runs, seeds, jobs=spec["jobs"], prepare=prepare_data, data_keys=("high_spacing", "low_spacing")
    )


def progress(metrics: dict) -> str:
    auc = metrics["metrics"].get(f"auc_{MAIN_STRUCTURE}")
    vb = metrics["metrics"].get(f"volume_bias_{MAIN_STRUCTURE}_L")
    return f"GM AUC {_r(auc)}, GM volume bias L {_r(vb)}"


def run_study(profile: str, output_dir: Path, seeds=None, **kwargs) -> Path:
    """Run the grid of ``profile`` over ``seeds`` into ``output_dir`` and return the path of ``report.md``."""
    return engine.run_study(sys.modules[__name__], profile, output_dir, seeds, **kwargs)


def _r(x):
    return None if x is None else round(x, 3)


def prepare_data(overrides: dict) -> None:
    """Resolve (generate and validate) the bundle's ``data`` id exactly as a run with ``overrides`` will."""
    from monai.bundle import ConfigParser

    from common.study.runner import bundle_dir

    parser = ConfigParser()
    parser.read_config(str(bundle_dir(BUNDLE) / "configs" / "train.yaml"))
    parser.update({k: v for k, v in overrides.items() if k in parser})
    parser.get_parsed_content("data")


def _view(metrics: dict) -> dict:
    """A run's ``metrics.json`` as the tables read it: the per-group detail and the subjects."""
    return {**metrics["extra"], "subjects": metrics.get("per_sample", [])}


def _main_runs(results: list[dict], pair) -> dict[str, dict]:
    return {
        r["approach"]: _view(r["metrics"])
        for r in results
        if r["table"] == "approaches" and tuple(r["pair"]) == tuple(pair) and r["downsample"] == "maxpool"
    }


def _first_pair(results: list[dict]):
    return next((tuple(r["pair"]) for r in results if r["table"] == "approaches"), None)


def summarize(results: list[dict], main_pair=None) -> dict:
    """``volume_bias_L``, ``dice_L``, ``auc`` per approach (+ ``auc["manual"]``) for grey matter at the main pair
    (default: the first pair of the approach grid), from one seed's runs."""
    main_pair = main_pair or _first_pair(results)
    runs = _main_runs(results, main_pair)
    out: dict[str, Any] = {
        "structure": MAIN_STRUCTURE,
        "pair": list(main_pair),
        "volume_bias_L": {},
        "dice_L": {},
        "auc": {},
        "volume_bias_H": {},
        "dice_H": {},
    }
    for approach, m in runs.items():
        for g in ("L", "H"):
            grp = m["groups"].get(g)
            out[f"volume_bias_{g}"][approach] = grp["volume_bias"][MAIN_STRUCTURE]["median"] if grp else None
            out[f"dice_{g}"][approach] = grp["dice"][MAIN_STRUCTURE]["mean"] if grp else None
        auc = m["auc"].get(MAIN_STRUCTURE)
        out["auc"][approach] = auc["pred"] if auc else None
        if auc:
            out["auc"]["manual"] = auc["manual"]
    return out


def make_figures(record: dict, output_dir: Path) -> list[str]:
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


def render_report(record: dict, figures: list[str]) -> str:
    results, summary = merge_seeds(record["runs"]), record["summary"]
    pairs = [tuple(p) for p in record["profile_settings"]["pairs"]]
    main_pair = pairs[0]
    lines = report_header(record, "Segmentation resolution bias: cross-resolution approaches")
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
    for title, key, fmt in (
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
                        fmt(m["groups"][g][key][s]) if g in m["groups"] else None
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

    pooling = [r for r in results if r["table"] == "pooling"] + [
        r
        for r in results
        if r["table"] == "approaches" and r["approach"] in ("h_only", "scale_aug") and tuple(r["pair"]) == main_pair
    ]
    if any(r["table"] == "pooling" for r in results):
        epochs = {r["overrides"]["epochs"] for r in results if r["table"] == "pooling"}
        lines += [
            f"## Down-sampling operators, {_pair_name(main_pair)} ({'/'.join(map(str, sorted(epochs)))} epochs)",
            "",
        ]
        rows = []
        ops = record["profile_settings"]["ops"]
        for op in ops:
            for a in ("h_only", "scale_aug"):
                cands = [r for r in pooling if r["downsample"] == op and r["approach"] == a]
                pool_first = [r for r in cands if r["table"] == "pooling"] or cands
                if not pool_first:
                    continue
                m = _view(pool_first[0]["metrics"])
                gl = m["groups"].get("L", {})
                gh = m["groups"].get("H", {})
                rows.append(
                    [
                        op,
                        APPROACH_LABELS[a],
                        gh.get("dice", {}).get(MAIN_STRUCTURE, {}).get("mean"),
                        gl.get("dice", {}).get(MAIN_STRUCTURE, {}).get("mean"),
                        _fmt_ci(gl["volume_bias"][MAIN_STRUCTURE]) if gl else None,
                        m["auc"].get(MAIN_STRUCTURE, {}).get("pred"),
                    ]
                )
        lines += [
            markdown_table(["operator", "approach", "GM Dice H", "GM Dice L", "GM volume bias L", "GM AUC"], rows),
            "",
        ]

    lines += ["## Summary (grey matter, main pair): median over seeds, then each seed", ""]
    per_seed = summary["per_seed"]

    def with_seeds(key: str, approach: str, pct: bool = False) -> str:
        fmt = (
            (lambda v: "-" if v is None else f"{100 * v:+.1f}%")
            if pct
            else (lambda v: "-" if v is None else f"{v:.3f}")
        )
        each = " / ".join(fmt(per_seed[s][key].get(approach)) for s in per_seed)
        return f"{fmt(summary[key].get(approach))} ({each})"

    rows = [
        [APPROACH_LABELS[a], with_seeds("dice_L", a), with_seeds("volume_bias_L", a, pct=True), with_seeds("auc", a)]
        for a in APPROACHES
        if a in summary["auc"]
    ]
    rows.append(["manual", None, None, with_seeds("auc", "manual")])
    seeds = " / ".join(per_seed)
    lines += [markdown_table(["approach", f"Dice L (seeds {seeds})", "volume bias L", "AUC"], rows), ""]
    if figures:
        lines += ["## Figures", ""] + [f"![{Path(f).name}]({f})" for f in figures] + [""]
    lines += ["Example single run:", "", f"    {record['example_run_command']}", ""]
    return "\n".join(lines)


def _ratio(summary, key: str, a: str, b: str):
    x, y = summary[key].get(a), summary[key].get(b)
    return None if x is None or y is None or y == 0 else abs(x) / abs(y)


# The statements of Henschel et al. (2022), checked on one seed's summary (grey matter, main pair).
CLAIMS = [
    Claim("h_only_bias_vs_vinn", "H-only's group-L volume bias is at least twice VINN's (|bias| ratio >= 2)",
          lambda s: _ratio(s, "volume_bias_L", "h_only", "vinn"), lambda v: v >= 2.0),
    Claim("h_only_bias_vs_scale_aug",
          "H-only's group-L volume bias is at least twice scale augmentation's (|bias| ratio >= 2)",
          lambda s: _ratio(s, "volume_bias_L", "h_only", "scale_aug"), lambda v: v >= 2.0),
    Claim("resampled_bias_vs_vinn", "Resampling alone leaves a larger group-L bias than VINN (|bias| ratio > 1)",
          lambda s: _ratio(s, "volume_bias_L", "resampled", "vinn"), lambda v: v > 1.0),
    Claim("h_only_auc", "H-only loses the group separation (AUC by predicted volume < 0.92)",
          lambda s: s["auc"]["h_only"], lambda v: v < 0.92),
    Claim("scale_aug_auc", "Scale augmentation keeps the group separation (AUC > 0.92)",
          lambda s: s["auc"]["scale_aug"], lambda v: v > 0.92),
    Claim("vinn_auc", "VINN keeps the group separation (AUC > 0.92)", lambda s: s["auc"]["vinn"], lambda v: v > 0.92),
]  # fmt: skip


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use: python -m common.study segmentation_resolution_bias --profile {smoke,quick,full} --output DIR")

"""Tables and figures of the super-resolution degradation-bias study (:mod:`common.study.sr_degradation_bias`):
Table I matrices with the best model per column in bold, heat maps, HFEN box plots, the findings per seed, the
downstream segmentation, misregistration and k-space sections. Pure rendering of a finished record."""

from __future__ import annotations

from pathlib import Path
from statistics import median
from typing import Any

from common.study.report import figure_lines, markdown_table, save_figure, use_agg_backend

TEST_KINDS = ("gaussian", "hann", "hamming", "bicubic", "mean", "median")  # the paper's column order
TRAIN_SETS = (*TEST_KINDS, "combined")
# kinds whose legacy grid differs from the centred one (bicubic was always centred)
LEGACY_KINDS = ("gaussian", "hann", "hamming", "mean", "median")
LEGACY_TESTS = tuple(f"{k}@legacy" for k in LEGACY_KINDS)  # for models trained on the centred grid
CENTRED_TESTS = tuple(f"{k}@centred" for k in LEGACY_KINDS)  # for models trained on the legacy grid
# the second matrix: MRI-physics (k-space) kinds, and the model trained on their mix
KSPACE_KINDS = ("kspace_truncation", "kspace_hann", "kspace_hamming", "partial_fourier", "undersample")
KSPACE_TRAIN_SETS = (*KSPACE_KINDS, "combined_kspace")
METRICS = ("psnr", "ssim", "nrmse", "hfen")
HIGHER_IS_BETTER = {"psnr": True, "ssim": True, "nrmse": False, "hfen": False}
LABELS = {"gaussian": "Gaussian", "hann": "Hanning", "hamming": "Hamming", "bicubic": "Bicubic", "mean": "Mean"}
LABELS |= {"median": "Median", "combined": "Combine", "bicubic_interpolation": "Bicubic interpolation (no network)"}
LABELS |= {"kspace_truncation": "Truncation", "kspace_hann": "Trunc. + Hann", "kspace_hamming": "Trunc. + Hamming"}
LABELS |= {"partial_fourier": "Partial Fourier", "undersample": "Undersampled", "combined_kspace": "Combine (k-space)"}


def _matrix_rows(
    matrix: dict[str, dict[str, float]], metric: str, kinds: tuple[str, ...] = TEST_KINDS
) -> list[list[Any]]:
    rows = []
    higher = HIGHER_IS_BETTER[metric]
    models = [t for t in matrix if t != "bicubic_interpolation"]
    for train in list(matrix):
        row: list[Any] = [LABELS.get(train, train)]
        for k in kinds:
            v = matrix[train].get(k)
            if v is None:
                row.append(None)
                continue
            col = [matrix[t][k] for t in models if k in matrix[t]]
            is_best = train != "bicubic_interpolation" and v == (max(col) if higher else min(col))
            cell = f"{v:.2f}" if metric == "psnr" else f"{v:.4f}"
            row.append(f"**{cell}**" if is_best else cell)
        rows.append(row)
    return rows


def _matrix_tables(
    mats: dict[str, dict[str, dict[str, float]]], title: str, kinds: tuple[str, ...] = TEST_KINDS
) -> str:
    text = ""
    headers = ["Training set", *(LABELS[k] for k in kinds)]
    for m in METRICS:
        arrow = "higher" if HIGHER_IS_BETTER[m] else "lower"
        text += f"\n#### {title}: average {m.upper()} ({arrow} is better; best model per column in bold)\n\n"
        text += markdown_table(headers, _matrix_rows(mats[m], m, kinds))
    return text


def _heatmaps(
    mats: dict[str, dict[str, dict[str, float]]],
    output_dir: Path,
    prefix: str,
    kinds: tuple[str, ...] = TEST_KINDS,
    metrics: tuple[str, ...] = METRICS,
) -> list[str]:
    import matplotlib.pyplot as plt
    import numpy as np

    names = []
    for m in metrics:
        rows = list(mats[m])
        data = np.array([[mats[m][r].get(k, np.nan) for k in kinds] for r in rows])
        fig, ax = plt.subplots(figsize=(7.5, 0.55 * len(rows) + 1.8))
        im = ax.imshow(data, cmap="viridis" if HIGHER_IS_BETTER[m] else "viridis_r", aspect="auto")
        ax.set_xticks(range(len(kinds)), [LABELS[k] for k in kinds], rotation=30, ha="right")
        ax.set_yticks(range(len(rows)), [LABELS.get(r, r).replace(" (no network)", "") for r in rows])
        lo, hi = np.nanmin(data), np.nanmax(data)
        for i in range(data.shape[0]):
            for j in range(data.shape[1]):
                if np.isfinite(data[i, j]):
                    level = (data[i, j] - lo) / (hi - lo + 1e-12)
                    bright = level > 0.6 if HIGHER_IS_BETTER[m] else level < 0.4
                    text = f"{data[i, j]:.2f}" if m == "psnr" else f"{data[i, j]:.3f}"
                    ax.text(j, i, text, ha="center", va="center", color="k" if bright else "w", fontsize=8)
        ax.set_xlabel("test degradation")
        ax.set_ylabel("training set")
        ax.set_title(f"{m.upper()}: train x test degradation")
        fig.colorbar(im, ax=ax)
        fig.tight_layout()
        name = f"{prefix}heatmap_{m}.png"
        save_figure(fig, output_dir / name)
        plt.close(fig)
        names.append(name)
    return names


def _hfen_boxplots(runs: list[dict[str, Any]], output_dir: Path, name: str = "hfen_boxplots.png") -> str:
    """The paper's Fig. 3: per training set, HFEN per test set of the model (blue) and of its bicubic input (red)."""
    import matplotlib.pyplot as plt

    n = len(runs)
    cols = min(4, n)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False, sharey=True)
    for ax, run in zip(axes.flat, runs):
        samples = run["metrics"]["per_sample"]
        per = {k: [p["hfen"] for p in samples if p["kind"] == k] for k in TEST_KINDS}
        base = {k: [p["bicubic_hfen"] for p in samples if p["kind"] == k and "bicubic_hfen" in p] for k in TEST_KINDS}
        base = {k: v for k, v in base.items() if v}
        kinds = [k for k in TEST_KINDS if per[k]]
        pos = list(range(len(kinds)))
        if base:
            b = ax.boxplot(
                [base[k] for k in kinds],
                positions=[p - 0.18 for p in pos],
                widths=0.3,
                patch_artist=True,
                showfliers=False,
            )
            for patch in b["boxes"]:
                patch.set_facecolor("tab:red")
        m = ax.boxplot(
            [per[k] for k in kinds], positions=[p + 0.18 for p in pos], widths=0.3, patch_artist=True, showfliers=False
        )
        for patch in m["boxes"]:
            patch.set_facecolor("tab:blue")
        ax.set_xticks(pos, [LABELS[k] for k in kinds], rotation=35, ha="right", fontsize=8)
        ax.set_title(f"trained on {LABELS.get(run['overrides']['train_degradation'])}", fontsize=10)
        ax.set_ylabel("HFEN (lower is better)")
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.suptitle("HFEN per test set: bicubic input (red) vs. model output (blue)")
    fig.tight_layout()
    save_figure(fig, output_dir / name)
    plt.close(fig)
    return name


def figures(record: dict[str, Any], output_dir: Path) -> list[str]:
    """PSNR/SSIM/NRMSE/HFEN heat maps of the median matrices; HFEN boxes of the first seed's Table I runs."""
    use_agg_backend()
    figures = _heatmaps({m: record["summary"][m] for m in METRICS}, output_dir, "")
    first = [r for r in record["runs"] if r["seed"] == record["seeds"][0] and r["grid"] == "table1"]
    figures.append(_hfen_boxplots(first, output_dir))
    if record["summary"].get("kspace"):
        figures += _heatmaps(record["summary"]["kspace"], output_dir, "kspace_", KSPACE_KINDS, ("psnr",))
    return figures


def _checks(s, part):
    return s["checks"] if part == "classic" else s["kspace"]["checks"]


def _findings_table(summary: dict[str, Any], part: str) -> str:
    rows = []
    for seed, one in summary["per_seed"].items():
        if part != "classic" and not one.get("kspace"):
            continue
        checks = _checks(one, part)
        worst = checks["worst_psnr_per_training_set"]
        beats = checks.get("beats_bicubic_on_own_degradation", {})
        rows.append(
            [
                seed,
                f"{checks['own_degradation_best_columns']} of {checks['columns_with_own_model']}",
                ", ".join(f"{LABELS[t]} {v:.2f}" for t, v in worst.items()),
                checks.get("combined_worst_above_every_single_worst"),
                f"{sum(beats.values())} of {len(beats)}",
            ]
        )
    return markdown_table(
        ["seed", "own model best (columns)", "worst PSNR per training set", "combined worst above all",
         "beat bicubic on own"], rows
    )  # fmt: skip


def report(record: dict[str, Any], figures: list[str]) -> str:
    """The study's sections: Table I (median over seeds), the checks per seed, the misregistration tables, the
    k-space matrix, Tables II and III (sections a results file lacks are left out)."""
    s = record["profile_settings"]["settings"]
    summary = record["summary"]
    text = (
        f"Model `{s['model']}` (width {s['width']}), MSE loss, scale 2, {s['epochs']} epochs, HR patches "
        f"{s['patch_size']} px, embedded MNI T1 slices {s['num_slices']} (train/val/test).\n"
    )
    text += "Rows: training set; columns: test degradation. The last row up-samples the same inputs bicubically.\n"
    text += _matrix_tables({m: summary[m] for m in METRICS}, "Table I")
    text += "\n### Findings per seed\n\n" + _findings_table(summary, "classic")
    text += _downstream_section(summary.get("downstream"), TEST_KINDS, "")
    text += _misregistration_section(summary)
    if summary.get("kspace"):
        kspace_bundle = {**s, **record["profile_settings"]["axes"].get("kspace_settings", {})}
        text += (
            f"\n### Second matrix: k-space (MRI-physics) kinds\n\nModel `{kspace_bundle['model']}` "
            f"(width {kspace_bundle['width']}), {kspace_bundle['epochs']} epochs, otherwise as above; "
            "`Combine (k-space)` is trained on an equal mix of the five kinds.\n"
        )
        text += _matrix_tables({m: summary["kspace"][m] for m in METRICS}, "k-space", KSPACE_KINDS)
        text += "\n#### k-space findings per seed\n\n" + _findings_table(summary, "kspace")
        text += _downstream_section(summary["kspace"].get("downstream"), KSPACE_KINDS, "k-space ")
    for key, title in (("loss_grid", "Table II (loss)"), ("architecture_grid", "Table III (architecture)")):
        for name, mats in summary.get(key, {}).items():
            text += f"\n### {title}: {name}, average PSNR\n\n"
            text += markdown_table(
                ["Training set", *(LABELS[k] for k in TEST_KINDS)], _matrix_rows(mats["psnr"], "psnr")
            )
    text += "\n### Figures\n\n" + "".join(figure_lines(figures))
    return text


def _downstream_section(down: dict[str, Any] | None, kinds: tuple[str, ...], title: str) -> str:
    """Grey-matter area bias and Dice tables (omitted for results written before they existed)."""
    if not down or not down.get("gm_area_bias"):
        return ""
    text = (
        f"\n### {title}Downstream: what each model does to a grey-matter segmentation\n\n"
        "A fixed grey/white-matter segmenter (three-class intensity k-means fitted once per seed on the "
        "high-resolution training slices only) segments every SR output and the true high-resolution slice. "
        "Grey-matter area bias = (SR area - HR area) / HR area, in %, and Dice of the two grey-matter masks; "
        "median over the test slices, then over seeds. The last row segments bicubic interpolation.\n\n"
    )
    headers = ["Training set", *(LABELS[k] for k in kinds)]
    for name, fmt, label in (("gm_area_bias", "{:+.1f}", "grey-matter area bias (%)"), ("gm_dice", "{:.3f}", "Dice")):
        scale = 100.0 if name == "gm_area_bias" else 1.0
        rows = [
            [LABELS.get(t, t), *(fmt.format(scale * row[k]) if row.get(k) is not None else None for k in kinds)]
            for t, row in down[name].items()
        ]
        text += f"\n#### {title}{label}\n\n" + markdown_table(headers, rows)
    return text


def _misregistration_section(summary: dict[str, Any]) -> str:
    """The misregistration tables (omitted for results written before they existed)."""
    mis = summary.get("misregistration") or {}
    text = ""
    if mis.get("test_on_legacy"):
        text += (
            "\n### Misregistration: models trained on the centred grid, tested on the legacy grid\n\n"
            "PSNR on the centred low-resolution images minus PSNR on the same kind sampled on the legacy grid "
            "(half a high-resolution pixel off), dB, median over seeds. This is what the half-pixel shift alone "
            "costs; the earlier published matrix mixed it into its off-diagonal cells (bicubic was always "
            "centred, the filter kinds were not).\n\n"
        )
        rows = [
            [LABELS.get(t, t), *(f"{row[k]:+.2f}" if row.get(k) is not None else None for k in LEGACY_KINDS)]
            for t, row in mis["test_on_legacy"].items()
        ]
        text += markdown_table(["Training set (centred)", *(LABELS[k] for k in LEGACY_KINDS)], rows)
    if mis.get("trained_on_legacy"):
        text += (
            "\n### Misregistration: models trained on the legacy grid\n\n"
            "PSNR (dB, median over seeds) on test images of each kind on the legacy grid (as the earlier matrix) "
            "and on the centred grid; bicubic is centred on both. A model trained on the legacy grid and tested "
            "on bicubic inputs reproduces the earlier matrix's misregistered cell.\n\n"
        )
        rows = []
        for t, one in mis["trained_on_legacy"].items():
            for grid in ("legacy", "centred"):
                row = one[f"psnr_{grid}"]
                rows.append(
                    [f"{LABELS.get(t, t)} (legacy grid)", f"{grid} test grid",
                     *(f"{row[k]:.2f}" if row.get(k) is not None else None for k in TEST_KINDS)]
                )  # fmt: skip
        text += markdown_table(["Training set", "test", *(LABELS[k] for k in TEST_KINDS)], rows)
    return text


def render_sr_collapse_section(report: dict) -> str:
    """The SR collapse tuning table (``python -m tests.tuning.sr_collapse``): per candidate recipe, how many runs
    end their first epochs with no live unit in SRCNN's last hidden layer, and the validation gain over bicubic."""
    commit = (report.get("git") or {}).get("commit") or "?"
    seeds = ", ".join(str(s) for s in report["seeds"])
    lines = [
        f"Tuning seeds {seeds}, every quick training set, the first {report['epochs']} epochs of the full schedule; "
        f"code fingerprint `{report['code_fingerprint']}`, commit `{commit[:10]}`. Produced by `{report['command']}`.",
        "",
        "| recipe | runs | dead (no live unit) | at most 2 live units | live units, median [min, max] | "
        "validation gain over bicubic, median [min] |",
        "|---|---|---|---|---|---|",
    ]
    for name in dict.fromkeys(r["candidate"] for r in report["runs"]):  # in the order they ran
        runs = [r for r in report["runs"] if r["candidate"] == name]
        live = sorted(r["live_units"] for r in runs)
        gains = sorted(r["gain_db"] for r in runs)
        units = runs[0]["units"] if runs else "?"
        lines.append(
            f"| {name} | {len(runs)} | {sum(v == 0 for v in live)} | {sum(v <= 2 for v in live)} | "
            f"{median(live):g} of {units} [{live[0]}, {live[-1]}] | "
            f"{median(gains):+.2f} dB [{gains[0]:+.2f}] |"
        )
    return "\n".join(lines)

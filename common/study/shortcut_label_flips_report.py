"""Tables and figures of the shortcut study (:mod:`common.study.shortcut_label_flips`): Dice and flips against
the training correlation, the Page trend, OSCAR correlations, rank-profile and localisation maps, test-time
attenuation, example panels. Pure rendering of a finished record."""

from __future__ import annotations

import math
from pathlib import Path
from statistics import median

from common.attribution.handlers import top_region_count
from common.study.report import figure_lines, markdown_table, save_figure, use_agg_backend
from common.study.stats import page_trend

GROUPS = ("common", "rare")
BASELINE_CORRELATION = 0.5  # OSCAR's balanced baseline BA: scene and identity independent in training
SCENE_RUN = "scene"


def _corr_key(c: float) -> str:
    return f"{c:g}"


# OSCAR's choices, fixed before seeds 0-2 ran (none tuned): occlusion on the 8 x 8 grid is the primary attribution
# (the occlusion patches are the grid cells, so each region's score is exactly the decision's change when that
# region is hidden); GradCAM, the 16 x 16 grid and SLIC superpixels are reported beside it. The top-k shortcut
# regions are the top decile of localisation scores (k = ceil(R / 10): common.attribution.handlers.top_region_count).
OSCAR_PRIMARY = ("occlusion", "grid8")
OSCAR_TOP_FRACTION = 0.1


def _combo(method: str, partition: str) -> str:
    return f"{method}/{partition}"


def figures(record: dict, output_dir: Path) -> list[str]:
    """Dice and flip fraction (common / rare) and flip-risk AUROC against the correlation, every seed's points
    and the median line."""
    use_agg_backend()
    import matplotlib.pyplot as plt

    per_seed = record["summary"]["per_seed"]
    corrs = sorted({float(c) for s in per_seed.values() for c in s["per_correlation"]})
    fig, axes = plt.subplots(1, 3, figsize=(12.5, 3.5))
    panels = [("dice", "test Dice (mean of identities)"), ("flip", "flip fraction of GT foreground")]
    for ax, (what, ylabel) in zip(axes, panels):
        for g, color in zip(GROUPS, ("tab:blue", "tab:red")):
            med = []
            for c in corrs:
                vals = [s["per_correlation"][_corr_key(c)][f"{what}_{g}"] for s in per_seed.values()
                        if _corr_key(c) in s["per_correlation"]]  # fmt: skip
                vals = [v for v in vals if v is not None]
                ax.scatter([c] * len(vals), vals, color=color, s=12, alpha=0.6)
                med.append(sorted(vals)[len(vals) // 2] if vals else float("nan"))
            ax.plot(corrs, med, "o-", color=color, label=g)
        ax.set(xlabel="training correlation (identity - scene)", ylabel=ylabel)
        ax.legend(fontsize=8)
    ax = axes[2]
    for key, label in (("flip_risk_auroc", "AUROC"), ("flip_risk_ap", "AP")):
        pts = [(float(c), s["per_correlation"][c][key]) for s in per_seed.values() for c in s["per_correlation"]
               if s["per_correlation"][c][key] is not None]  # fmt: skip
        if pts:
            ax.scatter(*zip(*pts), s=14, label=f"flip-risk {label}")
    ax.axhline(0.5, color="grey", lw=0.8, ls=":")
    ax.set(xlabel="training correlation", ylabel="flagging flip-prone images", ylim=(0, 1.05))
    ax.legend(fontsize=8)
    fig.tight_layout()
    name = "shortcut_vs_correlation.png"
    save_figure(fig, Path(output_dir) / name)
    plt.close(fig)
    names = [name]
    panels = _example_panels(record, Path(output_dir))
    names += [panels] if panels else []
    oscar_figures = (
        _oscar_profiles_figure(record, Path(output_dir)),
        _oscar_partial_r_figure(record, Path(output_dir)),
        _attenuation_figure(record, Path(output_dir)),
    )
    names += [n for n in oscar_figures if n]
    return names


def _oscar_profiles_figure(record: dict, output_dir: Path) -> str | None:
    """The first seed's median rank profiles (BA, SA, TS at the highest correlation; occlusion on the 8 x 8 grid)
    as maps, and the localisation scores over the attribution images' mean image (read from the baseline run's
    ``attribution_ranks.npz``; without it, on a blank square)."""
    import matplotlib.pyplot as plt
    import numpy as np

    seed = str(record["seeds"][0])
    oscar = (record["summary"]["per_seed"].get(seed) or {}).get("oscar") or {}
    prof = oscar.get("profiles") or {}
    if not prof.get("ts"):
        return None
    top = max(prof["ts"], key=float)
    n = int(round(math.sqrt(len(prof["ba"]))))
    mean_image = None
    base = [r for r in record["runs"] if str(r.get("seed")) == seed and r.get("model") != SCENE_RUN
            and r.get("correlation") == BASELINE_CORRELATION]  # fmt: skip
    if base:
        from common.attribution.handlers import ATTRIBUTION_FILE, load_attribution_ranks

        path = Path(base[0]["overrides"].get("output_dir", "")) / ATTRIBUTION_FILE
        if path.is_file():
            mean_image = load_attribution_ranks(path)["mean_image"]
    fig, axes = plt.subplots(1, 4, figsize=(12.5, 3.3))
    panels = [
        (prof["ba"], "BA (correlation 0.5)"),
        (prof["sa"], "SA (scene model)"),
        (prof["ts"][top], f"TS (correlation {top})"),
    ]
    for ax, (values, title) in zip(axes, panels):
        im = ax.imshow(np.reshape(values, (n, n)), cmap="magma_r")
        ax.set_title(f"{title}\nmedian rank (1 = most attributed)", fontsize=8)
        fig.colorbar(im, ax=ax, fraction=0.046)
    ax = axes[3]
    loc = np.array([np.nan if v is None else v for v in prof["localisation"]]).reshape(n, n)
    size = mean_image.shape if mean_image is not None else (n, n)
    if mean_image is not None:
        ax.imshow(mean_image, cmap="gray")
    lim = float(np.nanmax(np.abs(loc))) or 1.0
    im = ax.imshow(
        loc, cmap="coolwarm", vmin=-lim, vmax=lim, alpha=0.6, extent=(-0.5, size[1] - 0.5, size[0] - 0.5, -0.5)
    )
    from common.attribution.statistics import top_regions

    k = top_region_count(OSCAR_TOP_FRACTION, loc.size)
    cell_h, cell_w = size[0] / n, size[1] / n
    for r in top_regions(np.nan_to_num(loc.ravel(), nan=-np.inf), k):
        y, x = divmod(int(r), n)
        ax.add_patch(
            plt.Rectangle((x * cell_w - 0.5, y * cell_h - 0.5), cell_w, cell_h, fill=False, ec="yellow", lw=1.2)
        )
    ax.set_title(f"localisation score, TS {top}; top {k} regions boxed\n(over the mean test image)", fontsize=8)
    fig.colorbar(im, ax=ax, fraction=0.046)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"OSCAR, occlusion on the {n} x {n} grid, seed {seed}", fontsize=9)
    fig.tight_layout()
    name = "oscar_profiles.png"
    save_figure(fig, output_dir / name)
    plt.close(fig)
    return name


def _oscar_partial_r_figure(record: dict, output_dir: Path) -> str | None:
    """Partial r(TS, SA | BA) against the training correlation: every seed's value with its bootstrap interval,
    one panel per attribution method, one colour per partition."""
    import matplotlib.pyplot as plt

    per_seed = {k: (s.get("oscar") or {}) for k, s in record["summary"]["per_seed"].items()}
    combos = sorted({c for o in per_seed.values() for row in (o.get("per_correlation") or {}).values() for c in row})
    if not combos:
        return None
    methods = sorted({c.split("/")[0] for c in combos})
    fig, axes = plt.subplots(1, len(methods), figsize=(4.6 * len(methods), 3.4), squeeze=False)
    colours = {}
    for ax, method in zip(axes[0], methods):
        for j, combo in enumerate(c for c in combos if c.startswith(method + "/")):
            colour = colours.setdefault(combo.split("/")[1], f"C{len(colours)}")
            for i, o in enumerate(per_seed.values()):
                pts = sorted((float(c), row[combo]) for c, row in (o.get("per_correlation") or {}).items()
                             if combo in row and row[combo]["partial_r"] is not None)  # fmt: skip
                if not pts:
                    continue
                xs = [x + 0.004 * (j - 1) for x, _ in pts]
                ys = [v["partial_r"] for _, v in pts]
                # a percentile bootstrap interval need not hold its point estimate: bars never point inwards
                lo = [v["partial_lo"] if v["partial_lo"] is not None else y for y, (_, v) in zip(ys, pts)]
                hi = [v["partial_hi"] if v["partial_hi"] is not None else y for y, (_, v) in zip(ys, pts)]
                err = [[max(y - a, 0.0) for y, a in zip(ys, lo)], [max(b - y, 0.0) for y, b in zip(ys, hi)]]
                ax.errorbar(xs, ys, yerr=err, fmt="o-", ms=3, lw=0.8, color=colour, alpha=0.7,
                            label=combo.split("/")[1] if i == 0 else None)  # fmt: skip
        ax.axhline(0.0, color="grey", lw=0.8, ls=":")
        ax.set(xlabel="training correlation", ylabel="partial r(TS, SA | BA)", title=method, ylim=(-1.05, 1.05))
        ax.legend(fontsize=8)
    fig.tight_layout()
    name = "oscar_partial_r.png"
    save_figure(fig, output_dir / name)
    plt.close(fig)
    return name


def _attenuation_figure(record: dict, output_dir: Path) -> str | None:
    """Common-rare Dice gap and flip gap against the training correlation, plain, with the top shortcut regions
    attenuated and with as many random regions attenuated: every seed's points and the median line."""
    import matplotlib.pyplot as plt

    per_seed = record["summary"]["per_seed"]
    levels = {c for s in per_seed.values() for c in s["per_correlation"]}
    rows = {c: [s["per_correlation"][c].get("attenuation") or {} for s in per_seed.values() if c in s["per_correlation"]]
            for c in levels}  # fmt: skip
    corrs = sorted((c for c, v in rows.items() if any(v)), key=float)
    if not corrs:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    ways = (("plain", "tab:grey", "plain"), ("attenuated", "tab:red", "top-k shortcut regions attenuated"),
            ("random", "tab:blue", "k random regions attenuated"))  # fmt: skip
    gaps = (("dice_gap", "Dice gap (common - rare)"), ("flip_gap", "flip gap (rare - common)"))
    for ax, (gap, ylabel) in zip(axes, gaps):
        for way, colour, label in ways:
            med = []
            for c in corrs:
                vals = [r[f"{gap}_{way}"] for r in rows[c] if r and r.get(f"{gap}_{way}") is not None]
                ax.scatter([float(c)] * len(vals), vals, color=colour, s=12, alpha=0.5)
                med.append(median(vals) if vals else float("nan"))
            ax.plot([float(c) for c in corrs], med, "o-", color=colour, label=label)
        ax.axhline(0.0, color="grey", lw=0.8, ls=":")
        ax.set(xlabel="training correlation", ylabel=ylabel)
    axes[0].legend(fontsize=7)
    fig.suptitle("Test-time attenuation (occlusion, 8 x 8 grid; regions mean-filled)", fontsize=9)
    fig.tight_layout()
    name = "oscar_attenuation.png"
    save_figure(fig, output_dir / name)
    plt.close(fig)
    return name


def _example_panels(record: dict, output_dir: Path) -> str | None:
    """Image, label, prediction and flip map of one rare test image per identity, as the first seed's models at the
    lowest and the highest correlation wrote them during evaluation (``example_panels.npz``; ``None`` when those
    run folders are gone)."""
    import json

    import matplotlib.pyplot as plt
    import numpy as np

    first = [r for r in record["runs"] if r["seed"] == record["seeds"][0] and r.get("model") != SCENE_RUN]
    if not first:
        return None
    picks = [min(first, key=lambda r: r["correlation"]), max(first, key=lambda r: r["correlation"])]
    rows = []
    for run in picks:
        path = Path(run["overrides"].get("output_dir", "")) / "example_panels.npz"
        if not path.is_file():
            return None
        with np.load(path) as panels:
            for i, meta in enumerate(json.loads(str(panels["meta"]))):
                title = f"corr {run['correlation']:g}, identity {meta['identity']}"
                rows.append((title, panels["image"][i], panels["label"][i], panels["pred"][i]))
    if not rows:
        return None
    from matplotlib.colors import ListedColormap

    flip_colours = ListedColormap(["grey", "tab:green", "tab:red"])  # miss, correct, flip
    fig, axes = plt.subplots(len(rows), 4, figsize=(8.4, 2.2 * len(rows)), squeeze=False)
    for ax_row, (title, image, label, pred) in zip(axes, rows):
        flip = np.where(label > 0, np.where(pred == label, 1, np.where(pred == 0, 0, 2)), -1)
        ax_row[0].imshow(image, cmap="gray")
        ax_row[0].set_ylabel(title, fontsize=7)
        ax_row[1].imshow(label, cmap="viridis", vmin=0, vmax=2)
        ax_row[2].imshow(pred, cmap="viridis", vmin=0, vmax=2)
        ax_row[3].imshow(np.ma.masked_less(flip, 0), cmap=flip_colours, vmin=0, vmax=2, interpolation="nearest")
        for ax in ax_row:
            ax.set_xticks([])
            ax.set_yticks([])
    for ax, t in zip(
        axes[0], ("image (rare)", "label", "prediction", "flip map: correct (green), flip (red), miss (grey)")
    ):
        ax.set_title(t, fontsize=7)
    fig.tight_layout()
    name = "example_panels.png"
    save_figure(fig, output_dir / name)
    plt.close(fig)
    return name


def report(record: dict, figures: list[str]) -> str:
    """The study's sections: per correlation the median over seeds of every number, then the figures."""
    summary = record["summary"]
    per_corr = summary.get("per_correlation") or {}
    rows, det_rows = [], []
    for c, v in sorted(per_corr.items(), key=lambda kv: float(kv[0])):
        rows.append([c, v.get("dice_common"), v.get("dice_rare"), v.get("dice_gap"), v.get("flip_common"),
                     v.get("flip_rare"), v.get("miss_common"), v.get("miss_rare")])  # fmt: skip
        det_rows.append([c, v.get("flip_risk_common"), v.get("flip_risk_rare"), v.get("flip_prone_fraction"),
                         v.get("flip_risk_auroc"), v.get("flip_risk_ap")])  # fmt: skip
    bundle = record["profile_settings"]["settings"]
    threshold = summary.get("flip_threshold", 0.25)
    lines = [
        f"Training: {bundle.get('num_train')} phantom images, {bundle.get('epochs')} epochs; test: "
        f"{bundle.get('num_test')} images, balanced over identity x scene. *Common*: the scene the identity had "
        "in most of training; *rare*: the other scene. A flip is a ground-truth foreground pixel labelled as "
        f"the other identity; an image is flip-prone when more than {threshold:.0%} of its foreground flips.\n",
        "## Dice and Flip decomposition per group\n",
        markdown_table(["correlation", "Dice common", "Dice rare", "Dice gap", "flip common", "flip rare",
                        "miss common", "miss rare"], rows),
        "\n## Flip-risk (label-free) as a flag of flip-prone images\n",
        markdown_table(["correlation", "flip-risk common", "flip-risk rare", "flip-prone fraction", "AUROC", "AP"],
                       det_rows),
        f"\nMedian over the grid of each model's AUROC: {_fmt(summary.get('flip_risk_auroc_median'))}. Pooled over "
        f"the test images of every model of the grid (flip-risk levels of different models mixed): AUROC "
        f"{_fmt(summary.get('flip_risk_auroc_pooled'))}, AP {_fmt(summary.get('flip_risk_ap_pooled'))}. AUROC is "
        "undefined ('-') where no test image, or every one, is flip-prone.\n",
        *_trend_lines(summary["per_seed"]),
        *_oscar_lines(summary),
        *_attenuation_lines(summary),
        "\n## Figures\n",
        *figure_lines(figures),
    ]  # fmt: skip
    return "\n".join(lines)


def _trend_lines(per_seed: dict) -> list[str]:
    """Page's trend test over the correlation levels, seeds as blocks, for the rare flip fraction and the Dice gap."""
    levels = sorted({c for s in per_seed.values() for c in s["per_correlation"]}, key=float)
    rows = []
    for key, what in (("flip_rare", "rare-group flip fraction"), ("dice_gap", "common-rare Dice gap")):
        values = {seed: {c: s["per_correlation"].get(c, {}).get(key) for c in levels} for seed, s in per_seed.items()}
        out = page_trend(values, levels)
        if out is not None:
            rows.append([what, f"{out['L']:g}", f"{out['p_value']:.4f}", len(out["seeds"])])
    if not rows:
        return []
    return [
        "\n## Trend over the correlation levels, seeds as blocks\n",
        "Page's L test for a value that increases with the training correlation "
        f"({' < '.join(levels)}), each seed a block (exact p, one-sided).\n",
        markdown_table(["value", "Page's L", "p", "seeds"], rows),
    ]


def _oscar_lines(summary: dict) -> list[str]:
    """OSCAR's tables: per correlation the primary combination's correlations, partial r and top-region shares;
    partial r at every correlation for every method and partition; Page's trend test of the primary partial r."""
    oscar = summary.get("oscar") or {}
    per_corr = oscar.get("per_correlation") or {}
    if not per_corr:
        return []
    primary = oscar.get("primary", _combo(*OSCAR_PRIMARY))
    rows = []
    for c, row in sorted(per_corr.items(), key=lambda kv: float(kv[0])):
        v = row.get(primary) or {}
        rows.append([c, v.get("r_ts_sa"), v.get("r_ts_ba"), v.get("r_sa_ba"),
                     f"{_fmt(v.get('partial_r'))} [{_fmt(v.get('partial_lo'))}, {_fmt(v.get('partial_hi'))}]",
                     f"{_fmt(v.get('off_object_share'))} ({_fmt(v.get('off_object_chance'))})",
                     f"{_fmt(v.get('fov_share'))} ({_fmt(v.get('fov_chance'))})"])  # fmt: skip
    combos = sorted({k for row in per_corr.values() for k in row})
    levels = sorted(per_corr, key=float)
    all_rows = [[k, *[(per_corr[c].get(k) or {}).get("partial_r") for c in levels],
                 (oscar.get("partial_r_spearman") or {}).get(k)] for k in combos]  # fmt: skip
    lines = [
        "\n## OSCAR: where the test model's attribution follows the scene\n",
        f"Region ranks of {_count(oscar.get('num_images'))} test images (equal per identity x scene cell) under three "
        "models "
        "of each seed: TS the model at each correlation, BA the one at correlation 0.5, SA a scene classifier "
        f"(test accuracy {_fmt(oscar.get('scene_accuracy'))}). Pearson r of the median rank profiles, the partial "
        "r(TS, SA | BA) with its image-bootstrap 95% interval, and the share of the top-decile localisation regions "
        "off the object and where the scenes' fields of view differ (share of all regions in brackets); primary "
        f"combination `{primary}`, medians over seeds.\n",
        markdown_table(
            [
                "correlation",
                "r TS-SA",
                "r TS-BA",
                "r SA-BA",
                "partial r [95% CI]",
                "top-k off object",
                "top-k in FOV difference",
            ],
            rows,
        ),
        "\nPartial r(TS, SA | BA) per attribution method / partition, and its Spearman rho with the correlation:\n",
        markdown_table(["method / partition", *levels, "Spearman rho"], all_rows),
    ]

    def primary_partial(seed_summary: dict, c: str):
        row = ((seed_summary.get("oscar") or {}).get("per_correlation") or {}).get(c) or {}
        return (row.get(primary) or {}).get("partial_r")

    values = {seed: {c: primary_partial(s, c) for c in levels} for seed, s in summary["per_seed"].items()}
    out = page_trend(values, levels)
    if out is not None:
        lines.append(f"\nPage's L test for partial r rising with the correlation ({' < '.join(levels)}), seeds as "
                     f"blocks: L = {out['L']:g}, p = {out['p_value']:.4f} ({len(out['seeds'])} seeds).\n")  # fmt: skip
    return lines


def _attenuation_lines(summary: dict) -> list[str]:
    """Test-time attenuation per test-model correlation (medians over seeds): the Dice and flip gaps plain, with the
    top shortcut regions attenuated and with as many random regions attenuated, and the narrowing."""
    per_corr = summary.get("per_correlation") or {}
    rows = []
    for c, v in sorted(per_corr.items(), key=lambda kv: float(kv[0])):
        a = v.get("attenuation")
        if not a:
            continue
        rows.append([c, _count(a.get("k")), a.get("dice_gap_plain"), a.get("dice_gap_attenuated"),
                     a.get("dice_gap_random"), a.get("dice_narrowing"), a.get("dice_beyond_random"),
                     a.get("flip_gap_plain"), a.get("flip_gap_attenuated"), a.get("flip_gap_random"),
                     a.get("flip_narrowing"), a.get("flip_beyond_random")])  # fmt: skip
    if not rows:
        return []
    return [
        "\n## Test-time attenuation of the top shortcut regions\n",
        "Each test model on the whole test split: plain, with its top-decile localisation regions (k = ceil(R / 10) of "
        "the 8 x 8 grid, occlusion ranks) filled with their own mean intensity, and with k regions drawn at random "
        "filled the same way (mean over 5 draws). Gaps: common minus rare Dice, rare minus common flip fraction; "
        "narrowing = gap plain - gap attenuated; beyond random = gap random - gap attenuated. Medians over seeds.\n",
        markdown_table(["correlation", "k", "Dice gap plain", "attenuated", "random", "narrowing", "beyond random",
                        "flip gap plain", "attenuated", "random", "narrowing", "beyond random"], rows),
    ]  # fmt: skip


def _count(v) -> str:
    return "-" if v is None else f"{v:.0f}"


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.3f}"

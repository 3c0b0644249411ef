"""Study of the ``shortcut_label_flips`` bundle (Achara et al. 2026, Right Regions, Wrong Labels).

Grid: the training correlation between object identity and acquisition scene, one run per correlation and
seed. Each run is tested on balanced identity x scene cells; ``common`` test images have the scene their
identity had in most of training, ``rare`` ones the counterfactual scene. The summary per correlation holds
the common and rare Dice, flip fractions and the label-free flip-risk's AUROC/AP for flagging flip-prone
images; the claims say whether rare-group flips rise and the common-rare gap widens with the correlation,
and whether flip-risk flags the flip-prone images.

Outputs in ``output_dir``: ``results.json``, ``report.md``, ``shortcut_vs_correlation.png`` and
``example_panels.png`` (rare test images under the lowest- and highest-correlation models of the first seed).
"""

from __future__ import annotations

import math
from pathlib import Path
from statistics import median

from common.study.engine import Claim, Profile, Run, StudySpec, grid
from common.study.report import figure_lines, markdown_table, save_figure, use_agg_backend
from common.study.stats import page_trend

BUNDLE = "shortcut_label_flips"
GROUPS = ("common", "rare")

PROFILES: dict[str, Profile] = {
    # Proves the wiring: two correlations, a couple of epochs on a handful of images.
    "smoke": Profile(
        settings={"epochs": 2, "num_train": 16, "num_val": 4, "num_test": 8, "val_interval": 2, "num_threads": 1},
        axes={"correlation": (0.5, 0.99)},
    ),
    # The paper's qualitative findings on the embedded phantom, on a 2-core CPU (cue strength and epochs
    # chosen on tuning seed 100). 240 test images (60 per identity x scene cell): about 5% of test images are
    # flip-prone at correlation 0.9, so 240 gives about 10 flip-prone images where 48 gave 2 or 3; testing costs
    # inference only.
    "quick": Profile(
        settings={"epochs": 40, "num_train": 160, "num_val": 16, "num_test": 240, "val_interval": 10, "num_threads": 1},
        axes={"correlation": (0.5, 0.75, 0.9, 0.99)},
    ),
    # A finer grid, more data and longer training; meant for a GPU.
    "full": Profile(
        settings={"epochs": 60, "num_train": 400, "num_val": 48, "num_test": 200, "image_size": 96,
                  "val_interval": 10, "num_threads": 1},
        axes={"correlation": (0.5, 0.6, 0.75, 0.9, 0.95, 0.99, 1.0)},
        jobs=1,
    ),
}  # fmt: skip


def runs(profile: Profile, grid_name: str | None = None) -> list[Run]:
    """One run per training correlation of ``profile``."""
    return grid("corr", profile.settings, {"correlation": list(profile.axes["correlation"])})


def progress(metrics: dict) -> str:
    m = metrics["metrics"]
    fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    return f"rare flip {fmt(m.get('flip_flip_rare'))}, rare Dice {fmt(m.get('dice_mean_rare'))}"


def _spearman(xs, ys) -> float | None:
    from scipy.stats import spearmanr

    pairs = [(x, y) for x, y in zip(xs, ys) if x is not None and y is not None]
    if len(pairs) < 3 or len({p[1] for p in pairs}) < 2:
        return None
    rho = spearmanr(*zip(*pairs)).statistic
    return None if math.isnan(rho) else float(rho)


def _corr_key(c: float) -> str:
    return f"{c:g}"


def summarize(runs: list[dict]) -> dict:
    """One seed's numbers: per correlation (key ``f"{c:g}"``) the common/rare Dice and flip fractions, the
    Dice gap and flip-risk AUROC/AP; Spearman correlations of rare flips and of the Dice gap with the
    correlation; the median over the grid of each model's flip-risk AUROC (where defined), and the AUROC/AP
    pooled over every test image of the grid (flip-risk levels of different models mixed)."""
    from common.metrics.shortcut import flip_risk_detection

    runs = sorted(runs, key=lambda r: r["correlation"])
    per_corr = {}
    for r in runs:
        m = r["metrics"]["metrics"]
        per_corr[_corr_key(r["correlation"])] = {
            **{f"dice_{g}": m.get(f"dice_mean_{g}") for g in GROUPS},
            **{f"flip_{g}": m.get(f"flip_flip_{g}") for g in GROUPS},
            **{f"miss_{g}": m.get(f"flip_miss_{g}") for g in GROUPS},
            **{f"flip_risk_{g}": m.get(f"flip_risk_{g}") for g in GROUPS},
            "dice_gap": m.get("dice_gap"),
            "flip_gap": m.get("flip_gap"),
            "flip_risk_auroc": m.get("flip_risk_auroc"),
            "flip_risk_ap": m.get("flip_risk_ap"),
            "flip_prone_fraction": m.get("flip_prone_fraction"),
        }
    corr = [r["correlation"] for r in runs]
    threshold = next((r["metrics"]["settings"].get("flip_threshold") for r in runs), 0.25)
    pooled = flip_risk_detection([p for r in runs for p in r["metrics"].get("per_sample", [])], threshold)
    clean = lambda v: None if v is None or (isinstance(v, float) and math.isnan(v)) else v  # noqa: E731
    top = per_corr[_corr_key(max(corr))] if corr else {}
    aurocs = sorted(v["flip_risk_auroc"] for v in per_corr.values() if v["flip_risk_auroc"] is not None)
    return {
        "per_correlation": per_corr,
        "rare_flip_spearman": _spearman(corr, [per_corr[_corr_key(c)]["flip_rare"] for c in corr]),
        "dice_gap_spearman": _spearman(corr, [per_corr[_corr_key(c)]["dice_gap"] for c in corr]),
        "flip_gap_at_highest": top.get("flip_gap"),
        "flip_risk_auroc_median": float(median(aurocs)) if aurocs else None,
        "flip_risk_auroc_pooled": clean(pooled["auroc"]),
        "flip_risk_ap_pooled": clean(pooled["ap"]),
        "flip_prone_pooled": pooled["num_positive"],
        "num_images_pooled": pooled["num_images"],
        "flip_threshold": threshold,
    }


SOURCE = "Achara et al. 2026"
# The paper's statements, in its direction, declared before seeds 0-2 ran; each decided on one value per seed.
CLAIMS = [
    Claim("rare_flips_rise", f"Label flips on rare-scene images rise with the training correlation ({SOURCE})",
          lambda s: s["rare_flip_spearman"], 0.0, ">",
          "Spearman rho between training correlation and rare-group flip fraction over the grid"),
    Claim("dice_gap_widens", f"The common-rare Dice gap widens with the training correlation ({SOURCE})",
          lambda s: s["dice_gap_spearman"], 0.0, ">",
          "Spearman rho between training correlation and common-minus-rare Dice over the grid"),
    Claim("rare_flips_exceed_common", f"At the highest correlation rare images flip more than common ones ({SOURCE})",
          lambda s: s["flip_gap_at_highest"], 0.0, ">",
          "rare minus common flip fraction of ground-truth foreground at the highest correlation"),
    Claim("flip_risk_flags_flips", f"The label-free flip-risk flags each model's flip-prone test images ({SOURCE})",
          lambda s: s["flip_risk_auroc_median"], 0.8, ">",
          "AUROC of flip-risk for flip-prone images, median over the correlations where it is defined",
          primary=False),
]  # fmt: skip


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
    return names + ([panels] if panels else [])


def _example_panels(record: dict, output_dir: Path) -> str | None:
    """Image, label, prediction and flip map of one rare test image per identity, as the first seed's models at the
    lowest and the highest correlation wrote them during evaluation (``example_panels.npz``; ``None`` when those
    run folders are gone)."""
    import json

    import matplotlib.pyplot as plt
    import numpy as np

    first = [r for r in record["runs"] if r["seed"] == record["seeds"][0]]
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


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.3f}"


SPEC = StudySpec(
    BUNDLE, "Shortcut learning and label flips", PROFILES, runs, summarize, CLAIMS, report, figures, progress
)

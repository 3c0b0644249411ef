"""Tables and figures of the label-error study (:mod:`common.study.label_error_refurbishment`): Dice against
error level, detection AUROC per detector and VOG variant, refurbishment, flip-risk flagging. Pure rendering of
a finished record, plus the run-name and view helpers the summary shares."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from common.io import atomic_write
from common.study.engine import merge_seeds
from common.study.report import figure_lines, markdown_table, use_agg_backend

# Detectors in the tables: name -> the score variant in detection.json. ``vog`` is VOG as defined (Agarwal et al.
# 2022); ``vog_tuned`` the variant chosen on tuning seeds 100 and 101 (docs/README.md, "Choosing a VOG variant").
VOG_TUNED = "vog_late_ckpt_boundary"
DETECTORS = {"loss": "loss", "vog": "vog", "vog_tuned": VOG_TUNED, "aum": "aum", "el2n": "el2n"}
RANDOM = "random_size_matched"  # the random arm the robustness claims use
# A test image is flip-prone when more than this fraction of its foreground pixels are flips (docs/README.md).
FLIP_PRONE_THRESHOLD = 0.05
STRUCTURES = ("lv_cavity", "myocardium", "left_atrium")


def _view(run: dict) -> dict:
    """A run with its ``metrics.json`` as the tables read it: ``test`` (with ``per_image``) and ``detection``."""
    m = run["metrics"]
    return {**run, "metrics": {**m["extra"], "test": {**m["extra"]["test"], "per_image": m.get("per_sample", [])}}}


def _key(kind: str, level: float, what: str) -> str:
    return f"{kind}_{int(round(level * 100)):02d}_{what}"


def _detection_rows(results: dict, detectors=tuple(DETECTORS)) -> tuple[list, dict]:
    """Rows ``[type, level, AUROC, AP per detector]`` of the noisy runs and ``{run: {variant: AUROC}}``."""
    rows, per_variant = [], {}
    for name, r in results.items():
        if r["refurbish"] or r["error_level"] == 0:
            continue
        metrics = r["metrics"]["detection"]["metrics"]
        row = [r["error_type"], f"{r['error_level']:.0%}"]
        for det in detectors:
            m = metrics.get(DETECTORS.get(det, det), {})
            row += [m.get("auroc"), m.get("ap")]
        rows.append(row)
        per_variant[name] = {k: v["auroc"] for k, v in metrics.items()}
    return rows, per_variant


def _roc(scores: dict, flags: dict):
    from sklearn.metrics import roc_curve

    ids = [i for i in scores if i in flags]
    y = np.array([flags[i] for i in ids])
    if y.min() == y.max():
        return None
    fpr, tpr, _ = roc_curve(y, np.array([scores[i] for i in ids]))
    return fpr, tpr


def _figures(output_dir: Path, results: dict, types: tuple, levels: tuple) -> list[str]:
    use_agg_backend()
    import matplotlib.pyplot as plt

    def save(fig, name):
        atomic_write(output_dir / name, lambda tmp: fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight"))
        plt.close(fig)
        return name

    names = []
    clean = results["clean"]["metrics"]["test"]["dice_mean"]
    fig, axes = plt.subplots(1, len(types), figsize=(4.2 * len(types), 3.4), squeeze=False)
    for ax, kind in zip(axes[0], types):
        xs = [0.0, *levels]
        noisy = [clean] + [results[_key(kind, lv, "noisy")]["metrics"]["test"]["dice_mean"] for lv in levels]
        ax.plot(xs, noisy, "o-", label="noisy")
        for det in DETECTORS:
            pts = [(lv, results[k]["metrics"]["test"]["dice_mean"]) for lv in levels
                   if (k := _key(kind, lv, f"refurbished_{det}")) in results]  # fmt: skip
            if pts:
                ax.plot(*zip(*pts), "s--", label=f"refurbished ({det})")
        ax.axhline(clean, color="grey", lw=0.8, ls=":", label="clean")
        ax.set(title=kind, xlabel="error level (fraction of training labels)", ylabel="test Dice (mean of 3)")
        ax.legend(fontsize=7)
    names.append(save(fig, "dice_vs_error_level.png"))

    fig, axes = plt.subplots(1, len(types), figsize=(3.6 * len(types), 3.4), squeeze=False)
    level = 0.5 if 0.5 in levels else levels[len(levels) // 2]
    for ax, kind in zip(axes[0], types):
        det = results[_key(kind, level, "noisy")]["metrics"]["detection"]
        for name, variant in DETECTORS.items():
            roc = _roc(det["scores"].get(variant, {}), det["flags"])
            if roc:
                ax.plot(*roc, label=f"{name} (AUROC {det['metrics'][variant]['auroc']:.2f})")
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":")
        ax.set(title=f"{kind}, {level:.0%} errors", xlabel="false positive rate", ylabel="true positive rate")
        ax.legend(fontsize=6, loc="lower right")
    names.append(save(fig, "roc_curves.png"))

    fig, ax = plt.subplots(figsize=(4.6, 3.6))
    for name, r in results.items():
        per = [p for p in r["metrics"]["test"]["per_image"] if p["flip"] is not None]
        if r["refurbish"] or not per:
            continue
        ax.scatter([p["flip_risk"] for p in per], [p["flip"] for p in per], s=8, alpha=0.6, label=name)
    ax.axhline(FLIP_PRONE_THRESHOLD, color="grey", lw=0.8, ls=":")
    ax.set(xlabel="flip-risk (label-free)", ylabel="actual flip fraction", title="test images, all noisy runs")
    ax.legend(fontsize=5, ncol=2)
    names.append(save(fig, "flip_risk_vs_flip.png"))
    return names


def figures(record: dict, output_dir: Path) -> list[str]:
    """Dice against error level, ROC curves and flip-risk against flip, from the first seed's runs."""
    first = {r["name"]: _view(r) for r in record["runs"] if r["seed"] == record["seeds"][0]}
    axes = record["profile_settings"]["axes"]
    return _figures(output_dir, first, tuple(axes["error_type"]), tuple(axes["error_level"]))


def _fmt(v, spec=".3f") -> str:
    return "-" if v is None else format(v, spec)


def report(record: dict, figures: list[str]) -> str:
    """The study's sections: every table as the median over seeds (per-seed values where it matters)."""
    cfg = record["profile_settings"]
    results = {r["name"]: _view(r) for r in merge_seeds(record["runs"])}
    summary = record["summary"]
    per_seed = summary["per_seed"]
    types, levels = cfg["axes"]["error_type"], cfg["axes"]["error_level"]

    def dice(name):
        return results[name]["metrics"]["test"]["dice_mean"] if name in results else None

    clean = dice("clean")
    size_rows = [[kind, lv, summary["error_size"][kind][lv]["label_dice_vs_clean"],
                  summary["error_size"][kind][lv]["relative_area_change"]]
                 for kind in types for lv in summary["error_size"][kind]]  # fmt: skip
    dice_rows = [[kind, f"{lv:.0%}", clean, dice(_key(kind, lv, "noisy")), dice(_key(kind, lv, "refurbished_loss")),
                  dice(_key(kind, lv, "refurbished_vog_tuned"))] for kind in types for lv in levels]  # fmt: skip
    det_rows, per_variant = _detection_rows(results)
    level = summary["detection_level"]
    seed_rows = [[kind, det, summary["detection_auroc"][kind][det],
                  ", ".join(f"{sd}: {_fmt(v['detection_auroc'][kind][det], '.2f')}" for sd, v in per_seed.items())]
                 for kind in types for det in DETECTORS]  # fmt: skip
    flip_rows = []
    for name, f in summary["flip_risk_flagging"].items():
        each = ", ".join(f"{sd}: {_fmt(v['flip_risk_flagging'].get(name, {}).get('auroc'), '.2f')}"
                         for sd, v in per_seed.items())  # fmt: skip
        flip_rows.append([name, f["auroc"], f["ap"], f["n_flip_prone"], f["n"], each])
    decomposition_rows = []
    for name, r in results.items():
        f = r["metrics"]["test"]["flip"]["global"]
        decomposition_rows.append([name, f["correct"], f["flip"], f["miss"], r["metrics"]["test"]["flip_risk_mean"]])
    struct_rows = [[name, *[r["metrics"]["test"]["dice"][s] for s in STRUCTURES], r["metrics"]["test"]["dice_mean"]]
                   for name, r in results.items()]  # fmt: skip
    quality_rows = [
        [name, q["num_refurbished"], q["label_dice_vs_clean_before"], q["label_dice_vs_clean_after"]]
        for name, r in results.items()
        if (q := r["metrics"].get("detection", {}).get("label_quality"))
    ]
    rho_seeds = ", ".join(f"{sd}: {_fmt(v['flip_risk_spearman'])}" for sd, v in per_seed.items())
    variant_names = sorted({v for d in per_variant.values() for v in d})
    bundle = cfg["settings"]
    det_header = [h for det in DETECTORS for h in (f"{det} AUROC", f"{det} AP")]
    lines = [
        f"Clean training test Dice (mean of LV cavity, myocardium, left atrium): {clean:.3f}. "
        f"Detection and refurbishment after epoch {bundle['detect_epoch']} of {bundle['epochs']}; "
        f"refurbishment relabels the top 50% of training samples by the detector's score. `vog` is VOG as defined "
        f"(Agarwal et al. 2022); `vog_tuned` is `{VOG_TUNED}`, chosen on tuning seeds 100 and 101.\n",
        "## Size of the injected errors (corrupted training labels at 64 px, against their clean labels)\n",
        markdown_table(["error type", "level", "label Dice vs clean", "relative area change"], size_rows),
        "\n## Test Dice (clean / noisy / refurbished)\n",
        markdown_table(["error type", "level", "clean", "noisy", "refurbished (loss)", "refurbished (vog_tuned)"],
                       dice_rows),
        "\n## Detection of corrupted training labels\n",
        markdown_table(["error type", "level", *det_header], det_rows),
        f"\n### Detection AUROC at {level:.0%} errors, median and per seed\n",
        markdown_table(["error type", "detector", "median AUROC", "per seed"], seed_rows),
        "\n### VOG variants and loss variants (AUROC)\n",
        markdown_table(["variant", *per_variant.keys()],
                       [[v, *[per_variant[n].get(v) for n in per_variant]] for v in variant_names]),
        "\n## Label quality of the refurbished samples (Dice of the training label against the clean label)\n",
        markdown_table(["run", "relabelled", "before", "after"], quality_rows),
        f"\n## Flip-risk as a per-image flag, within each model (flip-prone: flip fraction > "
        f"{FLIP_PRONE_THRESHOLD:.0%} of foreground)\n",
        markdown_table(["run", "AUROC", "AP", "flip-prone images", "images", "AUROC per seed"], flip_rows),
        f"\nExtra: Spearman correlation of per-image flip-risk with the actual flip fraction, pooled over the runs "
        f"without refurbishment, per seed: {rho_seeds}\n",
        "\n## Flip decomposition of test foreground pixels (pooled) and mean flip-risk\n",
        markdown_table(["run", "correct", "flip", "miss", "flip-risk"], decomposition_rows),
        "\n## Test Dice per structure\n",
        markdown_table(["run", *STRUCTURES, "mean"], struct_rows),
        "\n## Figures\n",
        *figure_lines(figures),
    ]  # fmt: skip
    return "\n".join(lines)

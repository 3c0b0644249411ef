"""Study of the ``label_error_refurbishment`` bundle (Islam et al. 2026; the Flip decomposition of Achara et al. 2026).

Grid: error types x error levels, each level trained twice from the same seed (noisy only, and noisy
with refurbishment driven by the default detector; both runs are identical up to the detection epoch, so
the noisy run's detector scores are those the refurbished run acted on), plus one clean run (level 0).
Both detectors (per-sample loss and every VOG variant) are scored in every noisy run.

Outputs in ``output_dir``: ``results.json`` (every number; ``summary.detection_auroc[type][detector]`` at 50%
error and ``summary.dice[type] = {clean, noisy, refurbished}`` at the highest level), ``report.md`` and
``dice_vs_error_level.png``, ``roc_curves.png``, ``flip_risk_vs_flip.png``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

from common.io import atomic_write
from common.study import engine
from common.study.engine import Claim, Run, Study, merge_seeds
from common.study.report import markdown_table, report_header, use_agg_backend

BUNDLE = "label_error_refurbishment"
CONFIGS = ["train.yaml", "evaluate.yaml"]
DETECTORS = ("loss", "vog")
STRUCTURES = ("lv_cavity", "myocardium", "left_atrium")

PROFILES: dict[str, dict[str, Any]] = {
    # Proves the wiring: one clean and one corrupted setting, a few epochs on a handful of images.
    "smoke": {
        "types": ("systematic",),
        "levels": (0.5,),
        "refurbish_with": {"loss": "all"},
        "bundle": {"epochs": 3, "detect_epoch": 2, "vog_checkpoints": 2, "vog_first_epoch": 1, "loss_window": 1,
                   "num_train": 12, "num_val": 4, "num_test": 6, "val_interval": 3},
        "parallel": 2,
    },
    # The paper's qualitative findings on the embedded phantom, on a 2-core CPU.
    "quick": {
        "types": ("random", "systematic", "label_swap"),
        "levels": (0.25, 0.5, 0.75),
        "refurbish_with": {"loss": "all", "vog": {"systematic": (0.75,)}},
        "bundle": {"epochs": 24, "detect_epoch": 16, "vog_checkpoints": 4, "vog_first_epoch": 4, "loss_window": 4,
                   "num_train": 48, "num_val": 8, "num_test": 24, "val_interval": 8},
        "parallel": 2,
    },
    # The seed's grid: every error type, both detectors driving refurbishment; meant for a GPU.
    "full": {
        "types": ("random", "systematic", "boundary_shift", "label_swap"),
        "levels": (0.25, 0.5, 0.75),
        "refurbish_with": {"loss": "all", "vog": "all"},
        "bundle": {"epochs": 60, "detect_epoch": 40, "vog_checkpoints": 5, "vog_first_epoch": 8, "loss_window": 5,
                   "num_train": 400, "num_val": 50, "num_test": 200, "image_size": 128, "val_interval": 10},
        "parallel": 1,
    },
}  # fmt: skip


def _settings(profile: str) -> list[dict]:
    cfg = PROFILES[profile]
    runs = [{"name": "clean", "error_type": "none", "error_level": 0.0, "refurbish": False, "detector": "loss"}]
    for kind in cfg["types"]:
        for level in cfg["levels"]:
            tag = f"{kind}_{int(round(level * 100)):02d}"
            runs.append(
                {
                    "name": f"{tag}_noisy",
                    "error_type": kind,
                    "error_level": level,
                    "refurbish": False,
                    "detector": "loss",
                }
            )
            for det, where in cfg["refurbish_with"].items():
                if where == "all" or level in where.get(kind, ()):
                    runs.append(
                        {
                            "name": f"{tag}_refurbished_{det}",
                            "error_type": kind,
                            "error_level": level,
                            "refurbish": True,
                            "detector": det,
                        }
                    )
    return runs  # fmt: skip


def build(profile: str, seeds) -> Study:
    """The grid of ``profile`` as bundle runs over ``seeds``; the clean run is ``error_level`` 0."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    cfg = PROFILES[profile]
    runs = []
    for run in _settings(profile):
        overrides = {
            **cfg["bundle"],
            "error_type": "random" if run["error_type"] == "none" else run["error_type"],
            "error_level": run["error_level"],
            "refurbish": run["refurbish"],
            "detector": run["detector"],
            "num_threads": 1,
        }
        runs.append(Run(run["name"], overrides, {k: v for k, v in run.items() if k != "name"}))
    return Study(BUNDLE, profile, runs, seeds, jobs=cfg["parallel"])


def progress(metrics: dict) -> str:
    return f"test Dice {metrics['metrics']['dice_mean']:.3f}"


def _view(run: dict) -> dict:
    """A run with its ``metrics.json`` as the tables read it: ``test`` (with ``per_image``) and ``detection``."""
    m = run["metrics"]
    return {**run, "metrics": {**m["extra"], "test": {**m["extra"]["test"], "per_image": m.get("per_sample", [])}}}


def run_study(profile: str, output_dir: Path, seeds=None, **kwargs) -> Path:
    """Run the grid of ``profile`` over ``seeds``; write ``results.json``, ``report.md`` and figures."""
    return engine.run_study(sys.modules[__name__], profile, output_dir, seeds, **kwargs)


def _key(kind: str, level: float, what: str) -> str:
    return f"{kind}_{int(round(level * 100)):02d}_{what}"


def _detection_rows(results: dict) -> tuple[list, dict]:
    rows, per_variant = [], {}
    for name, r in results.items():
        if r["refurbish"] or r["error_level"] == 0:
            continue
        metrics = r["metrics"]["detection"]["metrics"]
        row = [r["error_type"], f"{r['error_level']:.0%}"]
        for det in DETECTORS:
            row += [metrics[det]["auroc"], metrics[det]["ap"]]
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
        noisy = [clean] + [
            results[f"{kind}_{int(round(lv * 100)):02d}_noisy"]["metrics"]["test"]["dice_mean"] for lv in levels
        ]
        ax.plot(xs, noisy, "o-", label="noisy")
        for det in DETECTORS:
            pts = [(lv, results[k]["metrics"]["test"]["dice_mean"]) for lv in levels
                   if (k := f"{kind}_{int(round(lv * 100)):02d}_refurbished_{det}") in results]  # fmt: skip
            if pts:
                ax.plot(*zip(*pts), "s--", label=f"refurbished ({det})")
        ax.axhline(clean, color="grey", lw=0.8, ls=":", label="clean")
        ax.set(title=kind, xlabel="error level (fraction of training labels)", ylabel="test Dice (mean of 3)")
        ax.legend(fontsize=7)
    names.append(save(fig, "dice_vs_error_level.png"))

    fig, axes = plt.subplots(1, len(types), figsize=(3.6 * len(types), 3.4), squeeze=False)
    level = 0.5 if 0.5 in levels else levels[len(levels) // 2]
    for ax, kind in zip(axes[0], types):
        det = results[f"{kind}_{int(round(level * 100)):02d}_noisy"]["metrics"]["detection"]
        for name in DETECTORS:
            roc = _roc(det["scores"][name], det["flags"])
            if roc:
                ax.plot(*roc, label=f"{name} (AUROC {det['metrics'][name]['auroc']:.2f})")
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":")
        ax.set(title=f"{kind}, {level:.0%} errors", xlabel="false positive rate", ylabel="true positive rate")
        ax.legend(fontsize=7, loc="lower right")
    names.append(save(fig, "roc_curves.png"))

    fig, ax = plt.subplots(figsize=(4.6, 3.6))
    for name, r in results.items():
        per = [p for p in r["metrics"]["test"]["per_image"] if p["flip"] is not None]
        if r["refurbish"] or not per:
            continue
        ax.scatter([p["flip_risk"] for p in per], [p["flip"] for p in per], s=8, alpha=0.6, label=name)
    ax.set(xlabel="flip-risk (label-free)", ylabel="actual flip fraction", title="test images, all noisy runs")
    ax.legend(fontsize=5, ncol=2)
    names.append(save(fig, "flip_risk_vs_flip.png"))
    return names


def summarize(runs: list[dict]) -> dict:
    """One seed's numbers: detection AUROC/AP at the middle level, test Dice (clean / noisy / refurbished) at
    the highest level and noisy Dice at every level, VOG variants, flip-risk's Spearman correlation."""
    results = {r["name"]: _view(r) for r in runs}
    types = list(dict.fromkeys(r["error_type"] for r in runs if r["error_type"] != "none"))
    levels = sorted({r["error_level"] for r in runs if r["error_level"] > 0})

    def dice(name):
        return results[name]["metrics"]["test"]["dice_mean"] if name in results else None

    def detection(kind, what):
        metrics = results[_key(kind, mid, "noisy")]["metrics"]["detection"]["metrics"]
        return {det: metrics[det][what] for det in DETECTORS}

    clean = dice("clean")
    mid = 0.5 if 0.5 in levels else levels[len(levels) // 2]
    top = max(levels)
    _, per_variant = _detection_rows(results)
    summary = {
        "detection_auroc": {kind: detection(kind, "auroc") for kind in types},
        "detection_ap": {kind: detection(kind, "ap") for kind in types},
        "dice": {
            kind: {"clean": clean, "noisy": dice(_key(kind, top, "noisy")),
                   "refurbished": dice(_key(kind, top, "refurbished_loss")),
                   "refurbished_vog": dice(_key(kind, top, "refurbished_vog"))}
            for kind in types
        },
        "noisy_dice": {kind: {f"{lv:.0%}": dice(_key(kind, lv, "noisy")) for lv in levels} for kind in types},
        "vog_variants_auroc": {kind: per_variant[_key(kind, mid, "noisy")] for kind in types},
        "detection_level": mid,
        "highest_level": top,
    }  # fmt: skip
    # Flip-risk as a label-free flag of flip-prone images: Spearman correlation with the actual flip fraction.
    from scipy.stats import spearmanr

    pairs = [(p["flip_risk"], p["flip"]) for r in results.values() if not r["refurbish"]
             for p in r["metrics"]["test"]["per_image"] if p["flip"] is not None]  # fmt: skip
    rho = spearmanr(*zip(*pairs)).statistic if len(pairs) > 2 else None
    summary["flip_risk_spearman"] = None if rho is None or np.isnan(rho) else float(rho)
    return summary


def make_figures(record: dict, output_dir: Path) -> list[str]:
    """Dice against error level, ROC curves and flip-risk against flip, from the first seed's runs."""
    first = {r["name"]: _view(r) for r in record["runs"] if r["seed"] == record["seeds"][0]}
    cfg = record["profile_settings"]
    return _figures(output_dir, first, tuple(cfg["types"]), tuple(cfg["levels"]))


def _gap_points(s, kind):
    d = s["dice"][kind]
    return 100 * (d["clean"] - s["noisy_dice"][kind][f"{s['detection_level']:.0%}"])


# The statements of Islam et al. (2026), checked on one seed's summary.
CLAIMS = [
    Claim("random_errors_harmless", "50% random errors cost less than 2 Dice points against clean training",
          lambda s: _gap_points(s, "random"), lambda v: v < 2.0),
    Claim("systematic_errors_harmful", "50% systematic errors cost more than 2 Dice points",
          lambda s: _gap_points(s, "systematic"), lambda v: v > 2.0),
    Claim("loss_detects_systematic", "The per-sample loss detects systematic errors at 50% (AUROC > 0.8)",
          lambda s: s["detection_auroc"]["systematic"]["loss"], lambda v: v > 0.8),
    Claim("vog_detects_systematic", "VOG detects systematic errors at 50% (AUROC > 0.8)",
          lambda s: s["detection_auroc"]["systematic"]["vog"], lambda v: v > 0.8),
    Claim("refurbishment_helps_systematic", "Loss-driven refurbishment raises test Dice under the highest level "
          "of systematic errors (gain in Dice points > 0)",
          lambda s: 100 * (s["dice"]["systematic"]["refurbished"] - s["dice"]["systematic"]["noisy"]),
          lambda v: v > 0.0),
    Claim("flip_risk_tracks_flip", "Flip-risk ranks test images by their actual flip fraction (Spearman rho > 0)",
          lambda s: s["flip_risk_spearman"], lambda v: v > 0.0),
]  # fmt: skip


def render_report(record: dict, figures: list[str]) -> str:
    """``report.md``: claims, then every table as the median over seeds."""
    cfg = record["profile_settings"]
    results = {r["name"]: _view(r) for r in merge_seeds(record["runs"])}
    summary = record["summary"]
    types, levels = cfg["types"], cfg["levels"]

    def dice(name):
        return results[name]["metrics"]["test"]["dice_mean"] if name in results else None

    clean = dice("clean")
    dice_rows, flip_rows = [], []
    flip_of = lambda n: results[n]["metrics"]["test"]["flip"]["global"] if n in results else None  # noqa: E731
    f = flip_of("clean")
    flip_rows.append(
        ["clean", "0%", "-", f["correct"], f["flip"], f["miss"], results["clean"]["metrics"]["test"]["flip_risk_mean"]]
    )
    for kind in types:
        for lv in levels:
            dice_rows.append(
                [kind, f"{lv:.0%}", clean, dice(_key(kind, lv, "noisy")), dice(_key(kind, lv, "refurbished_loss")),
                 dice(_key(kind, lv, "refurbished_vog"))]
            )  # fmt: skip
            for what in ("noisy", "refurbished_loss"):
                f = flip_of(_key(kind, lv, what))
                if f:
                    flip_rows.append([kind, f"{lv:.0%}", what, f["correct"], f["flip"], f["miss"],
                                      results[_key(kind, lv, what)]["metrics"]["test"]["flip_risk_mean"]])  # fmt: skip
    struct_rows = []
    for name, r in results.items():
        d = r["metrics"]["test"]["dice"]
        struct_rows.append([name, *[d[s] for s in STRUCTURES], r["metrics"]["test"]["dice_mean"]])
    det_rows, per_variant = _detection_rows(results)
    quality_rows = []
    for name, r in results.items():
        q = r["metrics"].get("detection", {}).get("label_quality")
        if q:
            quality_rows.append(
                [name, q["num_refurbished"], q["label_dice_vs_clean_before"], q["label_dice_vs_clean_after"]]
            )
    rho_seeds = ", ".join(
        f"{s}: {'-' if v['flip_risk_spearman'] is None else format(v['flip_risk_spearman'], '.3f')}"
        for s, v in summary["per_seed"].items()
    )
    variant_names = sorted({v for d in per_variant.values() for v in d})
    bundle = cfg["bundle"]
    lines = report_header(record, f"Label errors: detection and refurbishment ({record['profile']} profile)")
    lines += [
        f"Clean training test Dice (mean of LV cavity, myocardium, left atrium): {clean:.3f}. "
        f"Detection and refurbishment after epoch {bundle['detect_epoch']} of {bundle['epochs']}; "
        f"refurbishment relabels the top 50% of training samples by the detector's score.\n",
        "## Test Dice (clean / noisy / refurbished)\n",
        markdown_table(["error type", "level", "clean", "noisy", "refurbished (loss)", "refurbished (VOG)"], dice_rows),
        "\n## Detection of corrupted training labels\n",
        markdown_table(["error type", "level", "loss AUROC", "loss AP", "VOG AUROC", "VOG AP"], det_rows),
        "\n### VOG variants and loss variants (AUROC)\n",
        markdown_table(["variant", *per_variant.keys()], [[v, *[per_variant[n].get(v) for n in per_variant]] for v in variant_names]),
        "\n## Label quality of the refurbished samples (Dice of the training label against the clean label)\n",
        markdown_table(["run", "relabelled", "before", "after"], quality_rows),
        "\n## Flip decomposition of test foreground pixels (pooled) and mean flip-risk\n",
        markdown_table(["error type", "level", "run", "correct", "flip", "miss", "flip-risk"], flip_rows),
        f"\nSpearman correlation of per-image flip-risk with the actual flip fraction (noisy runs), per seed: "
        f"{rho_seeds}\n",
        "\n## Test Dice per structure\n",
        markdown_table(["run", *STRUCTURES, "mean"], struct_rows),
        "\n## Figures\n",
        *[f"![{Path(n).name}]({n})\n" for n in figures],
    ]  # fmt: skip
    return "\n".join(lines)

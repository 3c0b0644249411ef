"""Study of the ``label_error_refurbishment`` bundle (seed 003, first abstract; Flip of the second).

Grid: error types x error levels, each level trained twice from the same seed (noisy only, and noisy
with refurbishment driven by the default detector; both runs are identical up to the detection epoch, so
the noisy run's detector scores are those the refurbished run acted on), plus one clean run (level 0).
Both detectors (per-sample loss and every VOG variant) are scored in every noisy run.

Outputs in ``output_dir``: ``results.json`` (every number; ``summary.detection_auroc[type][detector]`` at 50%
error and ``summary.dice[type] = {clean, noisy, refurbished}`` at the highest level), ``report.md`` and
``dice_vs_error_level.png``, ``roc_curves.png``, ``flip_risk_vs_flip.png``.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from common.io import atomic_write, atomic_write_json, atomic_write_text
from common.study.report import markdown_table, use_agg_backend
from common.study.runner import environment_record, run_bundle, study_command

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
    # The seed's qualitative findings on the embedded phantom, on a 2-core CPU.
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


def _run_one(run: dict, profile: str, output_dir: Path, seed: int) -> dict:
    run_dir = output_dir / "runs" / run["name"]
    overrides = {
        **PROFILES[profile]["bundle"],
        "error_type": "random" if run["error_type"] == "none" else run["error_type"],
        "error_level": run["error_level"],
        "refurbish": run["refurbish"],
        "detector": run["detector"],
        "seed": seed,
        "num_threads": 1,
        "ckpt_path": str(run_dir / "model.pt"),
        "cache_dir": str(output_dir / "cache"),
    }
    metrics = run_bundle(BUNDLE, CONFIGS, overrides, run_dir)
    return {**run, "metrics": metrics}


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


def run_study(profile: str, output_dir: Path, seed: int = 0) -> Path:
    """Run the grid of ``profile`` and write ``results.json``, ``report.md`` and figures to ``output_dir``."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    cfg = PROFILES[profile]
    command = study_command(BUNDLE, profile, output_dir, seed)
    settings = _settings(profile)
    print(f"{BUNDLE}: {len(settings)} runs ({profile}), {cfg['parallel']} at a time", flush=True)
    results: dict[str, dict] = {}
    with ThreadPoolExecutor(max_workers=cfg["parallel"]) as pool:
        futures = [pool.submit(_run_one, run, profile, output_dir, seed) for run in settings]
        for n, fut in enumerate(futures, 1):
            r = fut.result()
            results[r["name"]] = r
            t = r["metrics"]["test"]
            print(f"[{n}/{len(settings)}] {r['name']}: test Dice {t['dice_mean']:.3f} "
                  f"({r['metrics']['_run']['seconds']:.0f} s)", flush=True)  # fmt: skip

    types, levels = cfg["types"], cfg["levels"]

    def key(kind, lv, what):
        return f"{kind}_{int(round(lv * 100)):02d}_{what}"

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
                [
                    kind,
                    f"{lv:.0%}",
                    clean,
                    dice(key(kind, lv, "noisy")),
                    dice(key(kind, lv, "refurbished_loss")),
                    dice(key(kind, lv, "refurbished_vog")),
                ]
            )
            for what in ("noisy", "refurbished_loss"):
                f = flip_of(key(kind, lv, what))
                if f:
                    flip_rows.append([kind, f"{lv:.0%}", what, f["correct"], f["flip"], f["miss"],
                                      results[key(kind, lv, what)]["metrics"]["test"]["flip_risk_mean"]])  # fmt: skip
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

    mid = 0.5 if 0.5 in levels else levels[len(levels) // 2]
    top = max(levels)
    summary = {
        "detection_auroc": {
            kind: {det: results[key(kind, mid, "noisy")]["metrics"]["detection"]["metrics"][det]["auroc"] for det in DETECTORS}
            for kind in types
        },
        "detection_ap": {
            kind: {det: results[key(kind, mid, "noisy")]["metrics"]["detection"]["metrics"][det]["ap"] for det in DETECTORS}
            for kind in types
        },
        "dice": {
            kind: {"clean": clean, "noisy": dice(key(kind, top, "noisy")), "refurbished": dice(key(kind, top, "refurbished_loss")),
                   "refurbished_vog": dice(key(kind, top, "refurbished_vog"))}
            for kind in types
        },
        "vog_variants_auroc": {kind: per_variant[key(kind, mid, "noisy")] for kind in types},
        "detection_level": mid,
        "highest_level": top,
    }  # fmt: skip
    # Flip-risk as a label-free flag of flip-prone images: Spearman correlation with the actual flip fraction.
    from scipy.stats import spearmanr

    pairs = [(p["flip_risk"], p["flip"]) for r in results.values() if not r["refurbish"]
             for p in r["metrics"]["test"]["per_image"] if p["flip"] is not None]  # fmt: skip
    rho = spearmanr(*zip(*pairs)).statistic if len(pairs) > 2 else None
    summary["flip_risk_spearman"] = None if rho is None or np.isnan(rho) else float(rho)

    figures = _figures(output_dir, results, types, levels)
    atomic_write_json(
        output_dir / "results.json",
        {"bundle": BUNDLE, "profile": profile, "command": command, "environment": environment_record(seed),
         "grid": {"types": list(types), "levels": list(levels), "bundle_overrides": cfg["bundle"]},
         "summary": summary, "runs": results, "figures": figures},
    )  # fmt: skip

    variant_names = sorted({v for d in per_variant.values() for v in d})
    lines = [
        f"# Label errors: detection and refurbishment ({profile} profile)\n",
        f"Command: `{command}`\n",
        f"Clean training test Dice (mean of LV cavity, myocardium, left atrium): {clean:.3f}. "
        f"Detection and refurbishment after epoch {cfg['bundle']['detect_epoch']} of {cfg['bundle']['epochs']}; "
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
        f"\nSpearman correlation of per-image flip-risk with the actual flip fraction (noisy runs): "
        f"{summary['flip_risk_spearman'] if summary['flip_risk_spearman'] is not None else '-'}\n",
        "\n## Test Dice per structure\n",
        markdown_table(["run", *STRUCTURES, "mean"], struct_rows),
        "\n## Figures\n",
        *[f"![{n}]({n})\n" for n in figures],
    ]  # fmt: skip
    report = output_dir / "report.md"
    atomic_write_text(report, "\n".join(lines))
    return report

"""Time to target: process CPU seconds until the validation metric first reaches the old recipe's plateau.

For each bundle setting below, at its study's ``quick`` settings, the old training recipe and the new one run
side by side on the tuning seeds (100, 101, 102; never the published seeds), each an ordinary bundle run that
writes ``validation_curve.json`` (:class:`common.handlers.convergence.ValidationCurve`: the validation metrics
after every validation against the training process's CPU seconds, validation included).

- **plateau**: the median of the old recipe's validation metric over the second half of its (long) run, one
  value per seed; the **target** is ``TARGET_FRACTION`` of the median plateau over seeds.
- **time to target**: the first CPU second at which a run's validation metric reaches the target
  (:func:`common.handlers.convergence.time_to_target`); ``-`` when it never does. Reported per seed, as the
  median over seeds, and as the ratio new / old of the medians.
- the **test metrics** each recipe ends with (``metrics.json`` of the same run).

``python -m tests.benchmarks convergence`` prints the table and writes ``runs/bench_convergence/
<bundle>/convergence.json`` and ``convergence.png`` (validation metric against CPU seconds, both recipes, every
seed). Runs are reused when their settings and code are unchanged (the study engine's run keys), so a rerun
only redraws. ``BENCH_CONVERGENCE_OUT`` moves the output; ``BENCH_CONVERGENCE_SEEDS`` (e.g. ``100``) runs fewer
seeds; ``BENCH_CONVERGENCE_BUNDLES`` (e.g. ``sr_degradation_bias``) fewer bundles.

The SR bundle (combined model) compares its cosine decay without (old) and with (new) the linear warm-up. The
label-error bundle (clean training) keeps its recipe: it is measured with its one ``current`` recipe, whose own
plateau sets the target, so that a later recipe change has a baseline.
"""

from __future__ import annotations

import json
import os
import statistics
from pathlib import Path
from typing import Any

from common.handlers.convergence import time_to_target
from common.study import engine
from common.study.engine import Run, Study
from common.study.runner import REPO_ROOT

TUNING_SEEDS = (100, 101, 102)
TARGET_FRACTION = 0.99  # of the old recipe's plateau: the noise of a 4-subject validation is about 1-2%

# The segmentation bundle's recipe before the current one (batches of 16, Adam at a constant rate, last weights):
# the baseline the new recipe (``segmentation_resolution_bias.RECIPE``) is timed against.
SEG_LEGACY_RECIPE = {
    "batch_size": 16,
    "optimizer": "adam",
    "weight_decay": 0.0,
    "lr_schedule": "constant",
    "learning_rate": 0.002,
    "keep_best": False,
}


def _seg_setting() -> dict[str, Any]:
    from common.study import segmentation_resolution_bias as seg

    quick = {k: v for k, v in seg.PROFILES["quick"].settings.items() if k not in seg.RECIPE}
    # the old recipe runs 36 epochs (its quick profile had 24) so that its plateau is seen
    return {
        "bundle": seg.BUNDLE,
        "metric": "val_balanced_dice",
        "test_metrics": ("balanced_dice", "dice_grey_matter_L", "volume_bias_grey_matter_L", "auc_grey_matter"),
        "cases": {
            approach: {"base": {**quick, "approach": approach, "val_interval": 2}} for approach in ("vinn", "scale_aug")
        },
        "recipes": {
            "old": {**SEG_LEGACY_RECIPE, "epochs": 36},
            "new": {**seg.RECIPE, "epochs": quick["epochs"]},
        },
        "prepare": seg.prepare_data,
        "data_keys": ("high_spacing", "low_spacing"),
    }


def _sr_setting() -> dict[str, Any]:
    from common.study import sr_degradation_bias as sr

    quick = {**sr.PROFILES["quick"].settings, "num_threads": 1}
    return {
        "bundle": sr.BUNDLE,
        "metric": "val_psnr",
        "test_metrics": ("psnr_gaussian", "psnr_bicubic", "psnr_median"),
        # the combined model (trained on every degradation); validation every 2 epochs instead of once at the end
        "cases": {"combined": {"base": {**quick, "train_degradation": "combined", "val_interval": 2}}},
        # the same cosine decay without and with the linear warm-up (the warm-up keeps SRCNN's units alive)
        "recipes": {
            "old": {"epochs": quick["epochs"], "warmup_fraction": 0.0},
            "new": {"epochs": quick["epochs"], "warmup_fraction": 0.1},
        },
        "prepare": sr.prepare_data,
        "data_keys": ("num_slices",),
    }


def _label_setting() -> dict[str, Any]:
    from common.study import label_error_refurbishment as label

    quick = {**label.PROFILES["quick"].settings, "num_threads": 1}
    return {
        "bundle": label.BUNDLE,
        "metric": "val_mean_dice",
        "test_metrics": ("dice_mean",),
        # clean training (error level 0, as the study's clean run); validation every 2 epochs
        "cases": {"clean": {"base": {**quick, "error_type": "boundary_jitter", "error_level": 0.0, "refurbish": False,
                                     "val_interval": 2}}},
        "recipes": {"current": {"epochs": quick["epochs"]}},
        "prepare": None,
        "data_keys": (),
    }  # fmt: skip


# old and new recipes, compared; or a bundle's one current recipe, measured (its target is its own plateau)
SETTINGS = {
    "segmentation_resolution_bias": _seg_setting,
    "sr_degradation_bias": _sr_setting,
    "label_error_refurbishment": _label_setting,
}


def plateau(points: list[dict], metric: str) -> float | None:
    """Median of ``metric`` over the second half of a run's validations."""
    values = [p["metrics"][metric] for p in points if p["metrics"].get(metric) is not None]
    return statistics.median(values[len(values) // 2 :]) if values else None


def _median(values):
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def measure(bundle: str, seeds=TUNING_SEEDS, out_dir: Path | None = None, jobs: int = 2) -> dict:
    """Run (or reuse) both recipes of every case of ``bundle`` on ``seeds``; return the comparison."""
    spec = SETTINGS[bundle]()
    out_dir = Path(out_dir or REPO_ROOT / "runs" / "bench_convergence") / bundle
    runs = [
        Run(f"{case}_{recipe}", {**cfg["base"], **overrides}, {"case": case, "recipe": recipe})
        for case, cfg in spec["cases"].items()
        for recipe, overrides in spec["recipes"].items()
    ]
    study = Study(bundle, "quick", runs, seeds, jobs=jobs, prepare=spec["prepare"], data_keys=spec["data_keys"])
    results = engine.execute(study, out_dir)
    metric = spec["metric"]
    report: dict[str, Any] = {
        "bundle": bundle,
        "metric": metric,
        "seeds": list(seeds),
        "target_fraction": TARGET_FRACTION,
        "recipes": spec["recipes"],
        "cases": {},
    }
    for case in spec["cases"]:
        entry: dict[str, Any] = {"recipes": {}}
        curves = {}
        for r in results:
            if r["case"] == case:
                run_dir = out_dir / "runs" / r["name"] / f"seed{r['seed']}"
                points = json.loads((run_dir / "validation_curve.json").read_text())["points"]
                curves[(r["recipe"], r["seed"])] = (points, r["metrics"]["metrics"])
        reference = next(iter(spec["recipes"]))  # "old", or a bundle's one "current" recipe
        plateaus = [plateau(curves[(reference, s)][0], metric) for s in seeds]
        target = TARGET_FRACTION * _median(plateaus)
        entry.update({f"plateau_{reference}": dict(zip(map(str, seeds), plateaus)), "target": target})
        for recipe in spec["recipes"]:
            per_seed = {}
            for s in seeds:
                points, test = curves[(recipe, s)]
                per_seed[str(s)] = {
                    "cpu_seconds_to_target": time_to_target(points, metric, target),
                    "cpu_seconds_total": points[-1]["cpu_seconds"] if points else None,
                    "test": {k: test.get(k) for k in spec["test_metrics"]},
                    "curve": [[p["cpu_seconds"], p["metrics"].get(metric)] for p in points],
                }
            entry["recipes"][recipe] = {
                "per_seed": per_seed,
                "median_cpu_seconds_to_target": _median([v["cpu_seconds_to_target"] for v in per_seed.values()]),
                "median_test": {k: _median([v["test"][k] for v in per_seed.values()]) for k in spec["test_metrics"]},
            }
        if {"old", "new"} <= set(spec["recipes"]):
            old = entry["recipes"]["old"]["median_cpu_seconds_to_target"]
            new = entry["recipes"]["new"]["median_cpu_seconds_to_target"]
            entry["ratio_new_over_old"] = None if old in (None, 0) or new is None else new / old
        report["cases"][case] = entry
    return report


def figure(report: dict, path: Path) -> None:
    from common.study.report import save_figure, use_agg_backend

    use_agg_backend()
    import matplotlib.pyplot as plt

    cases = list(report["cases"])
    fig, axes = plt.subplots(1, len(cases), figsize=(5 * len(cases), 3.6), squeeze=False)
    colors = {"old": "tab:gray", "new": "tab:blue", "current": "tab:blue"}
    for ax, case in zip(axes[0], cases):
        entry = report["cases"][case]
        for recipe, rec in entry["recipes"].items():
            for k, v in enumerate(rec["per_seed"].values()):
                xs = [c[0] for c in v["curve"]]
                ys = [c[1] for c in v["curve"]]
                ax.plot(xs, ys, color=colors.get(recipe), alpha=0.8, lw=1.2, label=recipe if k == 0 else None)
        ax.axhline(entry["target"], color="k", ls="--", lw=0.8, label="target")
        ax.set_title(f"{case}: seeds {', '.join(map(str, report['seeds']))}")
        ax.set_xlabel("training process CPU seconds")
        ax.set_ylabel(report["metric"])
        ax.legend()
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)


def main() -> None:
    from common.study.render import render_convergence_section

    seeds = tuple(int(s) for s in os.environ.get("BENCH_CONVERGENCE_SEEDS", "").split()) or TUNING_SEEDS
    out = Path(os.environ.get("BENCH_CONVERGENCE_OUT", REPO_ROOT / "runs" / "bench_convergence"))
    bundles = os.environ.get("BENCH_CONVERGENCE_BUNDLES", "").split() or list(SETTINGS)
    for bundle in bundles:
        report = measure(bundle, seeds, out)
        (out / bundle).mkdir(parents=True, exist_ok=True)
        (out / bundle / "convergence.json").write_text(json.dumps(report, indent=1))
        figure(report, out / bundle / "convergence.png")
        print(f"\n### {bundle}\n")
        print(render_convergence_section(report, figure=None))
        print(f"\nwritten: {out / bundle / 'convergence.json'}, {out / bundle / 'convergence.png'}")
        print(f"publish: python -m common.study.render --convergence-from {out}")

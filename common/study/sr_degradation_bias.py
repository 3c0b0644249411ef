"""Super-resolution degradation-bias study (seed 002, METHODS section 3).

One model per training set (six degradations + ``combined``), each evaluated on all six test degradations:
the seed's Table I as PSNR / SSIM / NRMSE / HFEN matrices (plus a ``bicubic_interpolation`` row: the same
low-resolution inputs up-sampled without a network), heat maps, and HFEN box plots per training set
(the seed's Fig. 3). ``full`` adds the loss grid (Table II: L1 and SSIM losses) and the architecture grid
(Table III: SRCNN and RRDBNet). Every setting is one ``python -m monai.bundle run`` of
``bundles/sr_degradation_bias`` (train + evaluate in one process); ``jobs`` settings run side by side. A
setting already finished in the same output folder with the same overrides (``runs/<name>/completed_run.json``)
is reused, so an interrupted study resumes where it stopped.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from common.io import atomic_write_json, atomic_write_text
from common.study.report import markdown_table, save_figure, use_agg_backend
from common.study.runner import environment_record, run_bundle, study_command

BUNDLE = "sr_degradation_bias"
TEST_KINDS = ("gaussian", "hann", "hamming", "bicubic", "mean", "median")  # the seed's column order
TRAIN_SETS = (*TEST_KINDS, "combined")
METRICS = ("psnr", "ssim", "nrmse", "hfen")
HIGHER_IS_BETTER = {"psnr": True, "ssim": True, "nrmse": False, "hfen": False}
LABELS = {"gaussian": "Gaussian", "hann": "Hanning", "hamming": "Hamming", "bicubic": "Bicubic", "mean": "Mean"}
LABELS |= {"median": "Median", "combined": "Combine", "bicubic_interpolation": "Bicubic interpolation (no network)"}

# Bundle overrides per profile (every key is a top-level id of train.yaml); ``jobs`` runs in parallel.
PROFILES: dict[str, dict[str, Any]] = {
    "smoke": {
        "train_sets": ("bicubic", "combined"),
        "jobs": 2,
        "bundle": {
            "model": "srcnn",
            "width": 0.25,
            "epochs": 1,
            "num_slices": [6, 2, 2],
            "patch_size": 32,
            "patches_per_image": 2,
            "batch_size": 4,
            "lr": 0.001,
            "val_interval": 1,
        },
    },
    "quick": {
        "train_sets": TRAIN_SETS,
        "jobs": 2,
        "bundle": {
            "model": "srcnn",
            "width": 0.5,
            "epochs": 28,
            "num_slices": [56, 8, 8],
            "patch_size": 48,
            "patches_per_image": 8,
            "batch_size": 2,
            "lr": 0.002,
            "val_interval": 28,
        },
    },
    "full": {
        "train_sets": TRAIN_SETS,
        "jobs": 1,
        "losses": ("l1", "ssim"),
        "architectures": ("srcnn", "rrdbnet"),
        "bundle": {
            "model": "srdensenet",
            "width": 1.0,
            "epochs": 200,
            "num_slices": None,
            "patch_size": 64,
            "patches_per_image": 4,
            "batch_size": 4,
            "lr": 0.0005,
            "val_interval": 20,
        },
    },
}


def _run_grid(
    settings: list[dict[str, Any]], base: dict[str, Any], output_dir: Path, jobs: int, seed: int
) -> list[dict[str, Any]]:
    """Run every setting (``{"name", "overrides"}``) as train + evaluate; return them with their metrics."""
    threads = 1 if jobs > 1 else 0

    def one(setting: dict[str, Any]) -> dict[str, Any]:
        run_dir = output_dir / "runs" / setting["name"]
        overrides = {
            **base,
            **setting["overrides"],
            "seed": seed,
            "train_first": True,
            "num_threads": threads,
            "cache_dir": str(output_dir / "cache"),
            "ckpt_path": str(run_dir / "model.pt"),
        }
        done_file = run_dir / "completed_run.json"  # a finished run of these exact overrides is reused
        if done_file.is_file():
            previous = json.loads(done_file.read_text())
            if previous.get("overrides") == json.loads(json.dumps(overrides)):
                return {**setting, "overrides": overrides, "metrics": previous["metrics"], "reused": True}
        metrics = run_bundle(BUNDLE, ["train.yaml", "evaluate.yaml"], overrides, run_dir)
        atomic_write_json(done_file, {"overrides": overrides, "metrics": metrics})
        return {**setting, "overrides": overrides, "metrics": metrics}

    done: list[dict[str, Any]] = []
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = [pool.submit(one, s) for s in settings]
        for future in as_completed(futures):
            result = future.result()
            done.append(result)
            m = result["metrics"]["metrics"]["psnr"]
            secs = result["metrics"]["_run"]["seconds"]
            how = "reused from an earlier study run" if result.get("reused") else f"{secs:.0f} s"
            print(
                f"[{len(done)}/{len(settings)}] {result['name']}: {how}, PSNR "
                + " ".join(f"{k}={m[k]:.2f}" for k in TEST_KINDS if k in m),
                flush=True,
            )
    order = {s["name"]: i for i, s in enumerate(settings)}
    return sorted(done, key=lambda r: order[r["name"]])


def matrices(runs: list[dict[str, Any]], with_bicubic: bool = True) -> dict[str, dict[str, dict[str, float]]]:
    """``{metric: {train_set: {test_kind: mean}}}`` from runs that share everything but the training set."""
    out: dict[str, dict[str, dict[str, float]]] = {m: {} for m in METRICS}
    for r in runs:
        for m in METRICS:
            out[m][r["overrides"]["train_degradation"]] = dict(r["metrics"]["metrics"][m])
    if with_bicubic and runs:
        for m in METRICS:
            out[m]["bicubic_interpolation"] = dict(runs[0]["metrics"]["bicubic_interpolation"][m])
    return out


def table_checks(psnr: dict[str, dict[str, float]]) -> dict[str, Any]:
    """The seed's Table I findings, checked on a PSNR matrix (rows: training sets; columns: test kinds)."""
    singles = [t for t in TEST_KINDS if t in psnr]
    cols = [k for k in TEST_KINDS if k in next(iter(psnr.values()))]
    best = {k: max(singles + (["combined"] if "combined" in psnr else []), key=lambda t: psnr[t][k]) for k in cols}
    own_best = [k for k in cols if k in psnr and best[k] == k]
    worst = {t: min(psnr[t][k] for k in cols) for t in [*singles, "combined"] if t in psnr}
    checks: dict[str, Any] = {
        "best_model_per_test_set": best,
        "own_degradation_best_columns": len(own_best),
        "columns_with_own_model": len([k for k in cols if k in psnr]),
        "worst_psnr_per_training_set": worst,
    }
    if "combined" in psnr and singles:
        checks["combined_worst_above_every_single_worst"] = all(worst["combined"] > worst[t] for t in singles)
    if "bicubic_interpolation" in psnr:
        base = psnr["bicubic_interpolation"]
        checks["beats_bicubic_on_own_degradation"] = {t: psnr[t][t] > base[t] for t in singles if t in base}
    return checks


def _matrix_rows(matrix: dict[str, dict[str, float]], metric: str) -> list[list[Any]]:
    rows = []
    higher = HIGHER_IS_BETTER[metric]
    models = [t for t in matrix if t != "bicubic_interpolation"]
    for train in list(matrix):
        row: list[Any] = [LABELS.get(train, train)]
        for k in TEST_KINDS:
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


def _matrix_tables(mats: dict[str, dict[str, dict[str, float]]], title: str) -> str:
    text = ""
    headers = ["Training set", *(LABELS[k] for k in TEST_KINDS)]
    for m in METRICS:
        arrow = "higher" if HIGHER_IS_BETTER[m] else "lower"
        text += f"\n#### {title}: average {m.upper()} ({arrow} is better; best model per column in bold)\n\n"
        text += markdown_table(headers, _matrix_rows(mats[m], m))
    return text


def _heatmaps(mats: dict[str, dict[str, dict[str, float]]], output_dir: Path, prefix: str) -> list[str]:
    import matplotlib.pyplot as plt
    import numpy as np

    names = []
    for m in METRICS:
        rows = list(mats[m])
        data = np.array([[mats[m][r].get(k, np.nan) for k in TEST_KINDS] for r in rows])
        fig, ax = plt.subplots(figsize=(7.5, 0.55 * len(rows) + 1.8))
        im = ax.imshow(data, cmap="viridis" if HIGHER_IS_BETTER[m] else "viridis_r", aspect="auto")
        ax.set_xticks(range(len(TEST_KINDS)), [LABELS[k] for k in TEST_KINDS], rotation=30, ha="right")
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
    """The seed's Fig. 3: per training set, HFEN per test set of the model (blue) and of its bicubic input (red)."""
    import matplotlib.pyplot as plt

    n = len(runs)
    cols = min(4, n)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False, sharey=True)
    for ax, run in zip(axes.flat, runs):
        per = run["metrics"]["per_image"]["hfen"]
        base = run["metrics"].get("bicubic_per_image", {}).get("hfen", {})
        kinds = [k for k in TEST_KINDS if k in per]
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


def run_study(profile: str, output_dir: Path, seed: int = 0) -> Path:
    """Run the study grid of ``profile`` into ``output_dir``; return the path of ``report.md``."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; expected one of {', '.join(PROFILES)}")
    use_agg_backend()
    from common.data.sr_slices import generate_sr_slices

    cfg = PROFILES[profile]
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    command = study_command(BUNDLE, profile, output_dir, seed)
    base = dict(cfg["bundle"])
    t0 = time.perf_counter()
    # generate the embedded data once, before the parallel runs
    generate_sr_slices(output_dir / "cache", seed, plane="axial", num_slices=base["num_slices"])
    print(f"{BUNDLE}: {profile} study, {len(cfg['train_sets'])} training sets, {cfg['jobs']} at a time", flush=True)

    grids: dict[str, list[dict[str, Any]]] = {}
    settings = [
        {"grid": "table1", "name": f"{base['model']}_mse_{t}", "overrides": {"train_degradation": t}}
        for t in cfg["train_sets"]
    ]
    for loss in cfg.get("losses", ()):
        settings += [
            {
                "grid": f"loss_{loss}",
                "name": f"{base['model']}_{loss}_{t}",
                "overrides": {"train_degradation": t, "loss": loss},
            }
            for t in cfg["train_sets"]
        ]
    for arch in cfg.get("architectures", ()):
        settings += [
            {"grid": f"arch_{arch}", "name": f"{arch}_mse_{t}", "overrides": {"train_degradation": t, "model": arch}}
            for t in cfg["train_sets"]
        ]
    runs = _run_grid(settings, base, output_dir, cfg["jobs"], seed)
    for r in runs:
        grids.setdefault(r["grid"], []).append(r)

    table1 = matrices(grids["table1"])
    summary: dict[str, Any] = {m: table1[m] for m in METRICS}
    summary["checks"] = table_checks(table1["psnr"])
    results: dict[str, Any] = {
        "study": BUNDLE,
        "profile": profile,
        "command": command,
        "environment": environment_record(seed),
        "settings": {**base, "train_sets": list(cfg["train_sets"]), "test_degradations": list(TEST_KINDS)},
        "seconds": None,
        "summary": summary,
        "runs": [
            {"name": r["name"], "grid": r["grid"], "overrides": r["overrides"], "metrics": r["metrics"]} for r in runs
        ],
    }
    if cfg.get("losses"):
        results["loss_grid"] = {loss: matrices(grids[f"loss_{loss}"], False) for loss in cfg["losses"]}
        results["loss_grid"]["mse"] = matrices(grids["table1"], False)
    if cfg.get("architectures"):
        results["architecture_grid"] = {a: matrices(grids[f"arch_{a}"], False) for a in cfg["architectures"]}
        results["architecture_grid"][base["model"]] = matrices(grids["table1"], False)

    figures = _heatmaps(table1, output_dir, "")
    figures.append(_hfen_boxplots(grids["table1"], output_dir))
    results["seconds"] = round(time.perf_counter() - t0, 1)
    results["figures"] = figures
    atomic_write_json(output_dir / "results.json", results)
    report = _report(results, figures)
    atomic_write_text(output_dir / "report.md", report)
    return output_dir / "report.md"


def _report(results: dict[str, Any], figures: list[str]) -> str:
    s = results["settings"]
    checks = results["summary"]["checks"]
    text = f"# Super-resolution degradation bias ({results['profile']} profile)\n\n"
    text += f"Command: `{results['command']}`\n\n"
    text += (
        f"Model `{s['model']}` (width {s['width']}), MSE loss, scale 2, {s['epochs']} epochs, HR patches "
        f"{s['patch_size']} px, embedded MNI T1 slices {s['num_slices']} (train/val/test), seed "
        f"{results['environment']['seed']}; {results['seconds']:.0f} s on {results['environment']['cpu_count']} CPUs.\n"
    )
    text += "Rows: training set; columns: test degradation. The last row up-samples the same inputs bicubically.\n"
    text += _matrix_tables({m: results["summary"][m] for m in METRICS}, "Table I")
    text += "\n### Findings of the seed, checked\n\n"
    text += f"- own-degradation model best in {checks['own_degradation_best_columns']} of "
    text += f"{checks['columns_with_own_model']} test columns (PSNR)\n"
    worst = checks["worst_psnr_per_training_set"]
    text += "- worst PSNR over the test sets: " + ", ".join(f"{LABELS[t]} {v:.2f}" for t, v in worst.items()) + "\n"
    if "combined_worst_above_every_single_worst" in checks:
        text += "- combined model's worst above every single-degradation model's worst: "
        text += f"{checks['combined_worst_above_every_single_worst']}\n"
    if "beats_bicubic_on_own_degradation" in checks:
        beats = checks["beats_bicubic_on_own_degradation"]
        text += f"- beats bicubic interpolation on its own degradation: {sum(beats.values())} of {len(beats)} models\n"
    for key, title in (("loss_grid", "Table II (loss)"), ("architecture_grid", "Table III (architecture)")):
        for name, mats in results.get(key, {}).items():
            text += f"\n### {title}: {name}, average PSNR\n\n"
            text += markdown_table(
                ["Training set", *(LABELS[k] for k in TEST_KINDS)], _matrix_rows(mats["psnr"], "psnr")
            )
    text += "\n### Figures\n\n" + "".join(f"![{f}]({f})\n" for f in figures)
    return text

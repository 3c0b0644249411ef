"""Study of the ``label_error_refurbishment`` bundle (Islam et al. 2026; the Flip decomposition of Achara et al. 2026).

Grid: error types x error levels, each level trained twice from the same seed (noisy only, and noisy
with refurbishment driven by the default detector; both runs are identical up to the detection epoch, so
the noisy run's detector scores are those the refurbished run acted on), plus one clean run (level 0).
Every detector (per-sample loss, VOG as defined and every VOG variant, area under the margin, EL2N) is scored
in every noisy run. Random errors come in two sizes: ``boundary_jitter`` (+-1 px) and ``random_size_matched``
(the systematic arm's radii, random direction), so that random and systematic errors are compared at the same
label Dice against clean; each noisy run records that measured size.

Outputs in ``output_dir``: ``results.json`` (every number; ``summary.detection_auroc[type][detector]`` at 50%
error, ``summary.dice[type] = {clean, noisy, refurbished}`` at the highest level, ``summary.error_size``,
``summary.flip_risk_flagging[run] = {auroc, ap, ...}``), ``report.md`` and
``dice_vs_error_level.png``, ``roc_curves.png``, ``flip_risk_vs_flip.png``.
"""

from __future__ import annotations

import numpy as np

from common.study.engine import Claim, Profile, Run, StudySpec, grid
from common.study.label_error_refurbishment_report import (
    DETECTORS,
    FLIP_PRONE_THRESHOLD,
    RANDOM,
    VOG_TUNED,
    _detection_rows,
    _key,
    _view,
    figures,
    report,
)
from common.study.within import TestResampling

BUNDLE = "label_error_refurbishment"

# Each profile: the bundle settings of every run; the error types and levels; which detectors drive a refurbished
# run (``"all"`` levels, or ``{type: levels}``).
PROFILES: dict[str, Profile] = {
    # Proves the wiring: one clean and one corrupted setting, a few epochs on a handful of images.
    "smoke": Profile(
        settings={"epochs": 3, "detect_epoch": 2, "vog_checkpoints": 2, "vog_first_epoch": 1, "loss_window": 1,
                  "num_train": 12, "num_val": 4, "num_test": 6, "val_interval": 3, "num_threads": 1},
        axes={"error_type": ("systematic",), "error_level": (0.5,), "refurbish_with": {"loss": "all"}},
    ),
    # The paper's qualitative findings on the embedded phantom, on a 2-core CPU.
    "quick": Profile(
        settings={"epochs": 24, "detect_epoch": 16, "vog_checkpoints": 4, "vog_first_epoch": 4, "loss_window": 4,
                  "num_train": 48, "num_val": 8, "num_test": 24, "val_interval": 8, "num_threads": 1},
        axes={"error_type": ("boundary_jitter", "random_size_matched", "systematic", "label_swap"),
              "error_level": (0.25, 0.5, 0.75),
              "refurbish_with": {"loss": "all", "vog_tuned": {"systematic": (0.75,)}}},
    ),
    # The paper's grid: every error type, both detectors driving refurbishment; meant for a GPU.
    "full": Profile(
        settings={"epochs": 60, "detect_epoch": 40, "vog_checkpoints": 5, "vog_first_epoch": 8, "loss_window": 5,
                  "num_train": 400, "num_val": 50, "num_test": 200, "image_size": 128, "val_interval": 10,
                  "num_threads": 1},
        axes={"error_type": ("boundary_jitter", "random_size_matched", "systematic", "boundary_shift", "label_swap"),
              "error_level": (0.25, 0.5, 0.75),
              "refurbish_with": {"loss": "all", "vog_tuned": "all"}},
        jobs=1,
    ),
}  # fmt: skip


def runs(profile: Profile, grid_name: str | None = None) -> list[Run]:
    """One clean run (level 0), every error type x level without refurbishment, and each refurbishing detector
    at the levels ``refurbish_with`` names; run names ``clean``, ``<type>_<level %>_noisy``,
    ``<type>_<level %>_refurbished_<detector>``."""
    axes = {"error_type": list(profile.axes["error_type"]), "error_level": list(profile.axes["error_level"])}
    clean = {"error_type": "none", "error_level": 0.0, "refurbish": False, "detector": "loss"}
    out = [Run("clean", {**profile.settings, **clean, "error_type": "boundary_jitter"}, clean)]
    out += grid(
        "noisy",
        profile.settings,
        axes,
        lambda p: {**p, "refurbish": False, "detector": "loss"},
        {"refurbish": False, "detector": "loss"},
        name=lambda p: _key(p["error_type"], p["error_level"], "noisy"),
    )
    for det, at in profile.axes["refurbish_with"].items():
        out += grid(
            f"refurbished_{det}", profile.settings, axes,
            lambda p, d=det: {**p, "refurbish": True, "detector": DETECTORS.get(d, d)},
            {"refurbish": True, "detector": det},
            name=lambda p, d=det: _key(p["error_type"], p["error_level"], f"refurbished_{d}"),
            where=lambda p, at=at: at == "all" or p["error_level"] in at.get(p["error_type"], ()),
        )  # fmt: skip
    return out


def progress(metrics: dict) -> str:
    return f"test Dice {metrics['metrics']['dice_mean']:.3f}"


def flip_risk_flagging(per_image: list[dict], threshold: float = FLIP_PRONE_THRESHOLD) -> dict:
    """How well one model's per-image flip-risk flags its flip-prone test images (flip fraction > ``threshold``).

    ``per_image``: records with ``flip_risk`` and ``flip`` (``None`` for images without foreground, skipped).
    Returns ``{auroc, ap, n, n_flip_prone}`` (AUROC and average precision ``None`` when only one class occurs).
    """
    from common.handlers.refurbish import detection_metrics

    scores = {str(i): p["flip_risk"] for i, p in enumerate(per_image) if p.get("flip") is not None}
    flags = {str(i): int(p["flip"] > threshold) for i, p in enumerate(per_image) if p.get("flip") is not None}
    m = detection_metrics(scores, flags)
    return {"auroc": m["auroc"], "ap": m["ap"], "n": m["n"], "n_flip_prone": m["n_corrupted"]}


class _RecordedFlip:
    """Stands in for the evaluation report's pooled Flip metric when the test metrics are recomputed from the
    per-sample records: pooling needs each image's pixel counts, which the records do not keep, so the run's
    recorded pooled decomposition is kept (``summarize`` does not read it)."""

    def __init__(self, flip: dict | None) -> None:
        self.flip = flip

    def aggregate(self) -> dict | None:
        return self.flip


def dice_from_samples(run: dict) -> dict:
    """``run`` with its test Dice (per structure and ``dice_mean``), ``flip_risk_mean`` and ``num_images``
    recomputed from its per-sample records (for the within-run bootstrap), in ``extra["test"]`` and the flat
    ``metrics``. The evaluation's own code computes them: the bundle's ``SegmentationReport.results`` (Dice means
    skip images without the structure) over the records; the pooled Flip decomposition stays as recorded."""
    from common.handlers.segmentation_report import SegmentationReport

    record = run["metrics"]
    test = record["extra"]["test"]
    names = list(test["dice"])
    report = SegmentationReport(len(names) + 1, class_names=names)
    # the records hold None where the evaluation had NaN (an image without the structure)
    nan = {f"dice_{n}" for n in names}
    report.records = [{k: float("nan") if k in nan and v is None else v for k, v in r.items()}
                      for r in record["per_sample"]]  # fmt: skip
    report.flip_metric = _RecordedFlip(test.get("flip"))
    new = report.results()
    new.pop("per_image")
    metrics = {**record["metrics"], "dice_mean": new["dice_mean"], "flip_risk_mean": new["flip_risk_mean"],
               **{f"dice_{n}": v for n, v in new["dice"].items()}}  # fmt: skip
    extra = {**record["extra"], "test": {**test, **new}}
    return {**run, "metrics": {**record, "metrics": metrics, "extra": extra}}


def summarize(runs: list[dict]) -> dict:
    """One seed's numbers: detection AUROC/AP of every detector at the middle level, test Dice (clean / noisy /
    refurbished) at the highest level and noisy Dice at every level, the measured error size per type and level,
    VOG variants, flip-risk's per-model AUROC/AP for flip-prone images and its pooled Spearman correlation."""
    results = {r["name"]: _view(r) for r in runs}
    types = list(dict.fromkeys(r["error_type"] for r in runs if r["error_type"] != "none"))
    levels = sorted({r["error_level"] for r in runs if r["error_level"] > 0})

    def dice(name):
        return results[name]["metrics"]["test"]["dice_mean"] if name in results else None

    def detection(kind, what):
        metrics = results[_key(kind, mid, "noisy")]["metrics"]["detection"]["metrics"]
        return {det: metrics[variant][what] if variant in metrics else None for det, variant in DETECTORS.items()}

    def error_size(kind, level):
        size = results[_key(kind, level, "noisy")]["metrics"]["detection"].get("error_size") or {}
        return {k: size.get(k) for k in ("label_dice_vs_clean", "relative_area_change")}

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
                   "refurbished_vog": dice(_key(kind, top, "refurbished_vog_tuned"))}
            for kind in types
        },
        "noisy_dice": {kind: {f"{lv:.0%}": dice(_key(kind, lv, "noisy")) for lv in levels} for kind in types},
        "error_size": {kind: {f"{lv:.0%}": error_size(kind, lv) for lv in levels} for kind in types},
        "vog_variants_auroc": {kind: per_variant[_key(kind, mid, "noisy")] for kind in types},
        "detection_level": mid,
        "highest_level": top,
    }  # fmt: skip
    # Flip-risk as a label-free flag of flip-prone images, within each model (each run without refurbishment).
    flagging = {name: flip_risk_flagging(r["metrics"]["test"]["per_image"]) for name, r in results.items()
                if not r["refurbish"]}  # fmt: skip
    noisy_auroc = [f["auroc"] for name, f in flagging.items() if name != "clean" and f["auroc"] is not None]
    summary["flip_risk_flagging"] = flagging
    summary["flip_risk_auroc_noisy_median"] = float(np.median(noisy_auroc)) if noisy_auroc else None
    summary["flip_prone_threshold"] = FLIP_PRONE_THRESHOLD
    # Extra: Spearman correlation with the actual flip fraction, pooled over the runs (mixes models and images).
    from scipy.stats import spearmanr

    pairs = [(p["flip_risk"], p["flip"]) for r in results.values() if not r["refurbish"]
             for p in r["metrics"]["test"]["per_image"] if p["flip"] is not None]  # fmt: skip
    rho = spearmanr(*zip(*pairs)).statistic if len(pairs) > 2 else None
    summary["flip_risk_spearman"] = None if rho is None or np.isnan(rho) else float(rho)
    return summary


def _gap_points(s, kind, level=None):
    d = s["dice"][kind]
    return 100 * (d["clean"] - s["noisy_dice"][kind][f"{level or s['detection_level']:.0%}"])


def _refurbishment_gain(s) -> float | None:
    """Loss-driven refurbishment's test-Dice gain in points over the noisy model, mean over the error types at the
    highest error level (the high-error cells)."""
    gains = [100 * (d["refurbished"] - d["noisy"]) for d in s["dice"].values()
             if d.get("refurbished") is not None and d.get("noisy") is not None]  # fmt: skip
    return sum(gains) / len(gains) if gains else None


SOURCE = "Islam et al. 2026"


def _detector_claims() -> list[Claim]:
    names = {"loss": "The per-sample loss", "vog": "VOG as defined (Agarwal et al. 2022)",
             "vog_tuned": f"The VOG variant chosen on tuning seeds ({VOG_TUNED})", "aum": "Area under the margin",
             "el2n": "EL2N"}  # fmt: skip
    out = []
    for det, name in names.items():
        for kind, what in (("systematic", "systematic"), (RANDOM, "size-matched random")):
            out.append(Claim(f"{det}_detects_{'systematic' if kind == 'systematic' else 'random'}",
                             f"{name} detects {what} annotation errors ({SOURCE})",
                             lambda s, k=kind, d=det: s["detection_auroc"][k][d], 0.8, ">",
                             f"AUROC of the detector's score for corrupted training labels at 50% {what} errors",
                             primary=(det, kind) == ("vog", "systematic")))  # fmt: skip
    return out


# The statements of Islam et al. (2026) in the paper's direction, declared before seeds 0-2 ran.
CLAIMS = [
    Claim("random_errors_harmless", f"A U-Net stays robust to random annotation errors ({SOURCE})",
          lambda s: _gap_points(s, RANDOM), 2.0, "<",
          "test-Dice cost in points of 50% size-matched random errors against clean training"),
    Claim("systematic_up_to_50_harmless", f"A U-Net stays robust to systematic annotation errors up to 50% ({SOURCE})",
          lambda s: _gap_points(s, "systematic"), 2.0, "<",
          "test-Dice cost in points of 50% systematic errors against clean training"),
    Claim("refurbishment_helps_high_errors", f"Refurbishing suspect labels helps at high error levels ({SOURCE})",
          _refurbishment_gain, 0.0, ">",
          "loss-driven refurbishment's test-Dice gain in points over the noisy model, mean over the error types at "
          "the highest level"),
    Claim("boundary_jitter_harmless", f"Boundary noise costs little ({SOURCE})",
          lambda s: _gap_points(s, "boundary_jitter"), 2.0, "<",
          "test-Dice cost in points of 50% +-1 px boundary jitter", primary=False),
    Claim("moderate_systematic_harmless", f"Moderate systematic errors cost little ({SOURCE})",
          lambda s: _gap_points(s, "systematic", 0.25), 2.0, "<",
          "test-Dice cost in points of 25% systematic errors", primary=False),
    *_detector_claims(),
    Claim("flip_risk_flags_flip_prone_images", "Within each model, the label-free flip-risk flags flip-prone test "
          "images better than chance (Achara et al. 2026)", lambda s: s["flip_risk_auroc_noisy_median"], 0.5, ">",
          f"AUROC of flip-risk for images with more than {FLIP_PRONE_THRESHOLD:.0%} flipped foreground, median over "
          "the noisy runs", primary=False),
    Claim("flip_risk_tracks_flip", "Flip-risk ranks test images by their actual flip fraction (Achara et al. 2026)",
          lambda s: s["flip_risk_spearman"], 0.0, ">",
          "Spearman rho of per-image flip-risk and flip fraction, pooled over the runs without refurbishment",
          primary=False),
]  # fmt: skip


SPEC = StudySpec(
    BUNDLE,
    "Label errors: detection and refurbishment",
    PROFILES,
    runs,
    summarize,
    CLAIMS,
    report,
    figures,
    progress,
    # One test image is the unit (one record per run); every run of a seed is scored on the same images, so one
    # redraw serves them all and the clean / noisy / refurbished Dice differences stay paired. No strata: the test
    # images are one pool, and "flip-prone" is an outcome of each model, not a fixed group of images. The detector
    # AUROCs are over training samples and do not move with the redraw.
    resampling=TestResampling(unit="id", from_samples=dice_from_samples),
)

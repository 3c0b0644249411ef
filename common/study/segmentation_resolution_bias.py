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
normalised volume bias of group L), ``dice_L[approach]``, ``auc[approach]`` and ``auc["manual"]``. This module is the
science (profiles, grid, summary, claims); the tables and figures are in
:mod:`common.study.segmentation_resolution_bias_report`.
"""

from __future__ import annotations

import math
from typing import Any

from common.study.engine import Claim, Profile, Run, StudySpec
from common.study.segmentation_resolution_bias_report import (
    APPROACHES,
    MAIN_STRUCTURE,
    _first_pair,
    _gm_bias_l,
    _main_runs,
    _view,
    figures,
    render_group_model_section,
    report,
)
from common.study.within import TestResampling

BUNDLE = "segmentation_resolution_bias"
DOWNSAMPLE_OPS = ("maxpool", "strided_conv", "avgpool", "blurpool", "flc", "asap")

GRIDS = ("approaches", "pooling", "all")
"""``approaches``: the approach grid over the resolution pairs plus the control arm at the main pair;
``pooling``: the down-sampling operators x {h_only, scale_aug} at the main pair; ``all``: both. ``pooling`` is
published beside the quick study (``--grid pooling``)."""

# The training recipe of the quick and full profiles ("Training recipe" in the bundle docs; chosen on tuning seed
# 100): batches of 4 slices (twice the updates per CPU second of 8, four times those of 16), AdamW with a short
# linear warm-up and one cosine decay per run, and the last weights: 2 + 2 validation volumes cannot tell the
# late epochs apart (differences of a few thousandths of balanced Dice), so validation only draws the curve.
RECIPE = {
    "batch_size": 4,
    "optimizer": "adamw",
    "weight_decay": 1e-4,
    "lr_schedule": "cosine",
    "warmup_fraction": 0.05,
    "learning_rate": 0.002,
    "keep_best": False,
}
# Each profile: the settings of every run; the resolution pairs (first = main pair), whether the control arm
# runs, and the down-sampling operators the pooling grid compares.
PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        settings={"num_train": 2, "num_val": 1, "num_test": 2, "epochs": 1, "val_interval": 1, "slices_per_volume": 4,
                  "slice_thickness": 3, "channels": [8, 16], "plane": "axial", "num_threads": 1},
        axes={"pairs": [(2.0, 3.0)], "control": False, "downsample": ["maxpool", "blurpool"]},
        grid="approaches",
    ),
    # quick: the approach grid at the paper's 3/4 mm pair (main: "resampling is not enough" is shown there) and
    # at 2/3 mm, and the control arm at 3/4 mm; epochs and recipe chosen on tuning seeds 100-102 (docs). 16 + 16
    # test subjects (testing costs inference only); validation every 10 epochs only draws the curve.
    "quick": Profile(
        settings={**RECIPE, "num_train": 10, "num_val": 2, "num_test": 16, "epochs": 20, "val_interval": 10,
                  "slices_per_volume": 20, "scale_range": [0.67, 1.5], "scale_prob": 0.3, "slice_thickness": 3,
                  "channels": [8, 16, 32], "plane": "axial", "num_threads": 1},
        axes={"pairs": [(3.0, 4.0), (2.0, 3.0)], "control": True, "downsample": list(DOWNSAMPLE_OPS)},
        grid="approaches",
    ),
    "full": Profile(
        settings={**RECIPE, "num_train": 25, "num_val": 5, "num_test": 15, "epochs": 70, "val_interval": 5,
                  "slices_per_volume": 0, "slice_thickness": 7, "channels": [32, 64, 128, 256], "plane": "all"},
        axes={"pairs": [(3.0, 4.0), (2.0, 3.0), (1.0, 1.4)], "control": True, "downsample": list(DOWNSAMPLE_OPS)},
        jobs=1,
        grid="all",
    ),
}  # fmt: skip


def _run_dir_name(table: str, approach: str, pair, op: str) -> str:
    return f"{table}_{approach}_{pair[0]:g}-{pair[1]:g}mm_{op}".replace(".", "p")


def grid_points(profile: Profile, name: str | None = None) -> list[dict]:
    """Settings of every run of a profile's grid ``name`` (default: the profile's).

    ``approaches``: every approach at every pair (``table="approaches"``), then, with the profile's control arm,
    every approach that trains on group L at the main pair with group L acquired at the high resolution
    (``table="control"``; H-only never sees group L, so its control equals its main run and is not repeated).
    ``pooling``: each operator x {h_only, scale_aug} at the main pair (``table="pooling"``).
    """
    name = name or profile.grid
    if name not in GRIDS:
        raise ValueError(f"unknown grid {name!r}; expected one of {', '.join(GRIDS)}")
    pairs = [tuple(p) for p in profile.axes["pairs"]]
    main = pairs[0]
    runs = []
    if name in ("approaches", "all"):
        for pair in pairs:
            for approach in APPROACHES:
                runs.append({"table": "approaches", "approach": approach, "pair": pair, "downsample": "maxpool"})
        if profile.axes["control"]:
            for approach in APPROACHES:
                if approach != "h_only":
                    runs.append({"table": "control", "approach": approach, "pair": main, "downsample": "maxpool"})
    if name in ("pooling", "all"):
        for op in profile.axes["downsample"]:
            for approach in ("h_only", "scale_aug"):
                runs.append({"table": "pooling", "approach": approach, "pair": main, "downsample": op})
    return runs


def runs(profile: Profile, grid_name: str | None = None) -> list[Run]:
    """The runs of grid ``grid_name`` (:func:`grid_points`) of ``profile``."""
    out = []
    for point in grid_points(profile, grid_name):
        high, low = point["pair"]
        overrides = {
            **profile.settings,
            "approach": point["approach"],
            "high_spacing": float(high),
            "low_spacing": float(low),
            "downsample": point["downsample"],
        }
        if point["table"] == "control":
            overrides["simulate_low_resolution"] = False
        name = _run_dir_name(point["table"], point["approach"], point["pair"], point["downsample"])
        out.append(Run(name, overrides, {**point, "pair": list(point["pair"])}))
    return out


def progress(metrics: dict) -> str:
    auc = metrics["metrics"].get(f"auc_{MAIN_STRUCTURE}")
    vb = metrics["metrics"].get(f"volume_bias_{MAIN_STRUCTURE}_L")
    return f"GM AUC {_r(auc)}, GM volume bias L {_r(vb)}"


def _r(x):
    return None if x is None else round(x, 3)


def prepare_data(overrides: dict) -> None:
    """Resolve (generate and validate) the bundle's ``prepared_datalist`` id exactly as a run with ``overrides`` will."""
    from monai.bundle import ConfigParser

    from common.study.runner import bundle_dir

    parser = ConfigParser()
    parser.read_config(str(bundle_dir(BUNDLE) / "configs" / "train.yaml"))
    parser.update({k: v for k, v in overrides.items() if k in parser})
    parser.get_parsed_content("prepared_datalist")


def summarize(results: list[dict], main_pair=None) -> dict:
    """For grey matter at the main pair (default: the first pair of the grid), from one seed's runs:
    ``volume_bias_L``/``_H``, ``dice_L``/``_H`` and ``auc`` per approach (+ ``auc["manual"]``); with a control
    arm, ``volume_bias_L_control`` (group L trained at the high resolution; H-only's equals its main value, it
    never trains on group L) and ``resolution_part_L`` = main minus control, the part of the bias due to the
    resolution gap; with a pooling grid, ``pooling[op][approach]`` = ``{"volume_bias_L", "dice_L", "auc"}``."""
    main_pair = main_pair or _first_pair(results)
    runs = _main_runs(results, main_pair)
    out: dict[str, Any] = {
        "structure": MAIN_STRUCTURE,
        "pair": list(main_pair) if main_pair else None,
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
    for approach, m in runs.items():
        out.setdefault("difference_kept", {})[approach] = _difference_kept(m["subjects"])
    pairs = sorted({tuple(r["pair"]) for r in results if r["table"] == "approaches"})
    if len(pairs) > 1:
        out["by_pair"] = {
            _pair_key(pair): {
                "volume_bias_L": {a: _gm_bias_l(m) for a, m in _main_runs(results, pair).items()},
                "auc": {
                    a: (m["auc"].get(MAIN_STRUCTURE) or {}).get("pred") for a, m in _main_runs(results, pair).items()
                },
            }
            for pair in pairs
        }
    control = _main_runs(results, main_pair, "control")
    if control:
        out["volume_bias_L_control"], out["resolution_part_L"] = {}, {}
        for approach in runs:
            main = out["volume_bias_L"][approach]
            ctrl = main if approach == "h_only" else _gm_bias_l(control.get(approach))
            out["volume_bias_L_control"][approach] = ctrl
            out["resolution_part_L"][approach] = None if main is None or ctrl is None else main - ctrl
    pooling = [r for r in results if r["table"] == "pooling"]
    if pooling:
        out["pooling"] = {}
        for r in pooling:
            m = _view(r["metrics"])
            grp = m["groups"].get("L")
            auc = m["auc"].get(MAIN_STRUCTURE)
            out["pooling"].setdefault(r["downsample"], {})[r["approach"]] = {
                "volume_bias_L": _gm_bias_l(m),
                "dice_L": grp["dice"][MAIN_STRUCTURE]["mean"] if grp else None,
                "auc": auc["pred"] if auc else None,
            }
    return out


def _groups_from_samples(run: dict, structures, n_bootstrap: int) -> tuple[dict, dict, dict]:
    """The bundle's own :func:`common.handlers.group_metrics.summarize_groups` on ``run``'s per-sample records (the
    run's seed): its summary, the flat per-structure scalars (``dice_<s>_<g>``, ``volume_bias_<s>_<g>``, ``auc_<s>``)
    and the overall ones (``mean_dice``, ``balanced_dice``), as ``GroupSegmentationMetrics`` writes them."""
    from common.handlers.group_metrics import summarize_groups

    record = run["metrics"]
    seed = (record.get("settings") or {}).get("seed", run.get("seed", 0))
    s = summarize_groups(record["per_sample"], structures, n_bootstrap, seed)
    flat = {}
    for g, entry in s["groups"].items():
        for st in structures:
            flat[f"dice_{st}_{g}"] = entry["dice"][st]["mean"]
            flat[f"volume_bias_{st}_{g}"] = entry["volume_bias"][st]["median"]
    for st, auc in s["auc"].items():
        flat[f"auc_{st}"] = auc["pred"]
    return s, flat, {"mean_dice": s["mean_dice"], "balanced_dice": s["balanced_dice"]}


def metrics_from_samples(run: dict) -> dict:
    """``run`` with its per-group metrics (``extra["groups"]``, ``extra["auc"]`` and the flat scalars) recomputed
    from its per-sample records by the bundle's own evaluation code (every structure, ``evaluate.yaml``'s 2000
    resamples of the median-bias interval): an untouched run comes back as it was."""
    record = run["metrics"]
    s, flat, overall = _groups_from_samples(run, list(record["extra"]["structures"]), 2000)
    extra = {**record["extra"], "groups": s["groups"], "auc": s["auc"]}
    return {**run, "metrics": {**record, "metrics": {**record["metrics"], **flat, **overall}, "extra": extra}}


def main_metrics_from_samples(run: dict) -> dict:
    """The within-run bootstrap's hook: the same recomputation for grey matter only, with one resample of the
    median-bias interval (the estimates :func:`summarize` reads do not depend on the resamples; the intervals, which
    no claim reads, are then meaningless), many times faster than :func:`metrics_from_samples`. ``extra`` and the
    flat scalars hold only grey matter's values, so nothing of the other structures is left stale."""
    record = run["metrics"]
    s, flat, _ = _groups_from_samples(run, [MAIN_STRUCTURE], 1)
    extra = {**record["extra"], "structures": [MAIN_STRUCTURE], "groups": s["groups"], "auc": s["auc"]}
    return {**run, "metrics": {**record, "metrics": flat, "extra": extra}}


def _pair_key(pair) -> str:
    return f"{pair[0]:g}/{pair[1]:g}"


def _difference_kept(subjects: list[dict]) -> float | None:
    """Share of the true group difference in mean grey-matter volume (H minus L) that the predicted volumes keep:
    1 keeps it all, 0 erases it, negative reverses it; ``None`` without both groups or a true difference."""

    def mean(group, kind):
        vals = [s[f"volume_{kind}"][MAIN_STRUCTURE] for s in subjects if s.get("group") == group]
        return sum(vals) / len(vals) if vals else None

    means = {(g, k): mean(g, k) for g in ("H", "L") for k in ("pred", "true")}
    if any(v is None for v in means.values()) or means["H", "true"] == means["L", "true"]:
        return None
    return (means["H", "pred"] - means["L", "pred"]) / (means["H", "true"] - means["L", "true"])


def _ratio(summary, key: str, a: str, b: str):
    x, y = summary[key].get(a), summary[key].get(b)
    return None if x is None or y is None or y == 0 else abs(x) / abs(y)


def _auc_gap(summary) -> float | None:
    auc = summary["auc"]
    vals = [auc.get("scale_aug"), auc.get("vinn")]
    if auc.get("h_only") is None or any(v is None for v in vals):
        return None
    return min(vals) - auc["h_only"]


def _log_ratio(summary, key: str, a: str, b: str) -> float | None:
    r = _ratio(summary, key, a, b)
    return None if r is None or r <= 0 else math.log(r)


def _pair_log_ratio(summary, pair: str, a: str, b: str) -> float | None:
    at = (summary.get("by_pair") or {}).get(pair)
    return None if at is None else _log_ratio(at, "volume_bias_L", a, b)


def _auc_vs_manual(summary, approach: str) -> float | None:
    auc = summary["auc"]
    return None if auc.get(approach) is None or auc.get("manual") is None else auc[approach] - auc["manual"]


SOURCE = "Henschel et al. 2022"
# The statements of Henschel et al. (2022) in the paper's direction, declared before seeds 0-2 ran; each decided
# on grey matter at the main pair, one value per seed.
CLAIMS = [
    Claim("h_only_bias_vs_vinn", f"A network trained on high-resolution data only (H-only) mis-measures group L far "
          f"more than VINN ({SOURCE})", lambda s: _log_ratio(s, "volume_bias_L", "h_only", "vinn"), math.log(2.0),
          ">", "log of H-only's over VINN's |group-L volume bias| (margin: log 2, a ratio of 2)"),
    Claim("h_only_bias_vs_scale_aug", f"H-only mis-measures group L far more than scale augmentation ({SOURCE})",
          lambda s: _log_ratio(s, "volume_bias_L", "h_only", "scale_aug"), math.log(2.0), ">",
          "log of H-only's over scale augmentation's |group-L volume bias| (margin: log 2)"),
    Claim("scale_aug_keeps_separation", f"Scale augmentation keeps the group separation of the manual volumes "
          f"({SOURCE})", lambda s: _auc_vs_manual(s, "scale_aug"), -0.05, ">",
          "group AUC of predicted volumes minus that of the manual volumes, same subjects (non-inferiority margin "
          "-0.05)"),
    Claim("vinn_keeps_separation", f"VINN keeps the group separation of the manual volumes ({SOURCE})",
          lambda s: _auc_vs_manual(s, "vinn"), -0.05, ">",
          "group AUC of predicted volumes minus that of the manual volumes (non-inferiority margin -0.05)"),
    Claim("h_only_loses_separation", f"H-only loses the group separation of the manual volumes ({SOURCE})",
          lambda s: _auc_vs_manual(s, "h_only"), -0.05, "<",
          "group AUC of H-only's predicted volumes minus that of the manual volumes (margin -0.05)"),
    Claim("resampled_not_enough", f"Resampling alone leaves a larger group-L bias than VINN at 3/4 mm ({SOURCE})",
          lambda s: _log_ratio(s, "volume_bias_L", "resampled", "vinn"), 0.0, ">",
          "log of resampling's over VINN's |group-L volume bias|, main pair (3/4 mm)"),
    Claim("resampled_not_enough_2_3mm", f"Resampling alone leaves a larger group-L bias than VINN at 2/3 mm (reported; "
          f"{SOURCE} show it at 3/4 mm, and at 2/3 mm their resampling keeps the separation)",
          lambda s: _pair_log_ratio(s, "2/3", "resampled", "vinn"), 0.0, ">",
          "log of resampling's over VINN's |group-L volume bias| at 2/3 mm", primary=False),
    Claim("scale_aug_keeps_difference", f"Scale augmentation keeps most of the true group difference in grey-matter "
          f"volume ({SOURCE})", lambda s: (s.get("difference_kept") or {}).get("scale_aug"), 0.5, ">",
          "predicted over true difference of mean GM volume, H minus L (1: all kept)", primary=False),
    Claim("vinn_keeps_difference", f"VINN keeps most of the true group difference in grey-matter volume ({SOURCE})",
          lambda s: (s.get("difference_kept") or {}).get("vinn"), 0.5, ">",
          "predicted over true difference of mean GM volume, H minus L (1: all kept)", primary=False),
]  # fmt: skip

ANTI_ALIASED = ("blurpool", "flc", "asap")


def _anti_aliasing_gain(summary, approach: str = "h_only") -> float | None:
    """|group-L GM bias| of max pooling minus the median |bias| of the anti-aliased operators (positive: they help)."""
    pooling = summary.get("pooling", {})
    base = pooling.get("maxpool", {}).get(approach, {}).get("volume_bias_L")
    others = [pooling.get(op, {}).get(approach, {}).get("volume_bias_L") for op in ANTI_ALIASED]
    others = [abs(v) for v in others if v is not None]
    if base is None or not others:
        return None
    others.sort()
    mid = len(others) // 2
    median = others[mid] if len(others) % 2 else (others[mid - 1] + others[mid]) / 2
    return abs(base) - median


POOLING_CLAIMS = [
    Claim("anti_aliasing_h_only", "Anti-aliased down-sampling (BlurPool, FLC, ASAP) reduces H-only's group-L bias "
          "against max pooling (see docs/references.md)", _anti_aliasing_gain, 0.0, ">",
          "|group-L GM bias| of max pooling minus the median over the anti-aliased operators"),
    Claim("anti_aliasing_scale_aug", "Anti-aliased down-sampling reduces scale augmentation's group-L bias against "
          "max pooling", lambda s: _anti_aliasing_gain(s, "scale_aug"), 0.0, ">",
          "|group-L GM bias| of max pooling minus the median over the anti-aliased operators"),
]  # fmt: skip


SPEC = StudySpec(BUNDLE, "Segmentation resolution bias", PROFILES, runs, summarize, CLAIMS, report, figures, progress,
                 grids={"pooling": POOLING_CLAIMS, "all": [*CLAIMS, *POOLING_CLAIMS]},
                 tuning={"tuning_group_model.json": render_group_model_section}, prepare=prepare_data,
                 data_keys=("high_spacing", "low_spacing", "simulate_low_resolution", "contrast_l"),
                 # One test unit is one subject (its per-sample record, id "test_H000"); every run of a seed scores
                 # the same subjects, so approaches, pairs and the control arm stay paired. The groups keep their
                 # sizes: the group AUCs (predicted and manual, same subjects), the per-group medians and the
                 # H-minus-L difference need both groups as the run had them.
                 resampling=TestResampling(unit="id", strata="group", from_samples=main_metrics_from_samples))  # fmt: skip

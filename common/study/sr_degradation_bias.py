"""Super-resolution degradation-bias study (Shrestha, Wang and Nakarmi 2023; see docs/references.md).

One model per training set (six degradations + ``combined``), each evaluated on all six test degradations:
the paper's Table I as PSNR / SSIM / NRMSE / HFEN matrices (plus a ``bicubic_interpolation`` row: the same
low-resolution inputs up-sampled without a network), heat maps, and HFEN box plots per training set
(the paper's Fig. 3). Every kind samples on one grid (``phase: centred``: low-resolution pixel k at the centre
of high-resolution block k, as bicubic). The misregistration table tests the same models on low-resolution
images of the filter kinds on the grid of earlier versions (``<kind>@legacy``, half a high-resolution pixel
off at scale 2; evaluation only), and where the profile has ``legacy_train_sets`` models trained on that grid
are tested on both, so the old grid's share of the earlier published matrix is reported in dB. A second
matrix does the same over the five k-space kinds (``kspace`` in the profile: a smaller network in ``quick``), and
every run segments its SR outputs with a fixed grey-matter segmenter fitted on the training slices
(``downstream``: grey-matter area bias and Dice per train x test cell). ``full`` adds the loss grid (Table II: L1 and SSIM losses) and the architecture grid
(Table III: SRCNN and RRDBNet). Every setting is one ``python -m monai.bundle run`` of
``bundles/sr_degradation_bias`` (train + evaluate in one process); ``jobs`` settings run side by side. A
setting already finished in the same output folder with the same overrides and code (its ``run_record.json``) is
reused, so an interrupted study resumes where it stopped.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from common.study.engine import Claim, Profile, Run, StudySpec, grid
from common.study.sr_degradation_bias_report import (
    CENTRED_TESTS,
    KSPACE_KINDS,
    KSPACE_TRAIN_SETS,
    LEGACY_KINDS,
    LEGACY_TESTS,
    METRICS,
    TEST_KINDS,
    TRAIN_SETS,
    _checks,
    figures,
    render_sr_collapse_section,
    report,
)
from common.study.within import TestResampling

BUNDLE = "sr_degradation_bias"

# Each profile: the bundle settings of every run, and the training sets of each matrix (``train_degradation``:
# Table I; ``legacy_train_degradation``: models trained on the legacy grid; ``kspace_train_degradation`` with
# ``kspace_settings`` on top of the profile's: the k-space matrix; ``loss`` / ``model``: Tables II and III).
PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        settings={"model": "srcnn", "width": 0.25, "epochs": 1, "num_slices": [6, 2, 2], "patch_size": 32,
                  "patches_per_image": 2, "batch_size": 4, "learning_rate": 0.001, "val_interval": 1,
                  "num_threads": 1},
        axes={"train_degradation": ("bicubic", "combined"), "legacy_train_degradation": ("gaussian",),
              "kspace_train_degradation": ("kspace_truncation", "combined_kspace"), "kspace_settings": {}},
    ),
    "quick": Profile(
        settings={"model": "srcnn", "width": 0.5, "epochs": 28, "num_slices": [56, 8, 8], "patch_size": 48,
                  "patches_per_image": 8, "batch_size": 2, "learning_rate": 0.002, "val_interval": 28,
                  "num_threads": 1},
        # the k-space matrix: a smaller network (bundle settings on top of the profile's)
        axes={"train_degradation": TRAIN_SETS, "legacy_train_degradation": ("gaussian",),
              "kspace_train_degradation": KSPACE_TRAIN_SETS,
              "kspace_settings": {"width": 0.25, "epochs": 20, "val_interval": 20}},
    ),
    "full": Profile(
        settings={"model": "srdensenet", "width": 1.0, "epochs": 200, "num_slices": None, "patch_size": 64,
                  "patches_per_image": 4, "batch_size": 4, "learning_rate": 0.0005, "val_interval": 20,
                  "num_threads": 0},
        axes={"train_degradation": TRAIN_SETS, "legacy_train_degradation": LEGACY_KINDS,
              "kspace_train_degradation": KSPACE_TRAIN_SETS, "kspace_settings": {},
              "loss": ("l1", "ssim"), "model": ("srcnn", "rrdbnet")},
        jobs=1,
    ),
}  # fmt: skip


def matrices(
    runs: list[dict[str, Any]], with_bicubic: bool = True, kinds: tuple[str, ...] | None = None
) -> dict[str, dict[str, dict[str, float]]]:
    """``{metric: {train_set: {test_kind: mean}}}`` from runs that share everything but the training set.

    ``kinds``: the test kinds kept (default: those on the centred grid, i.e. named without ``@``)."""

    def keep(row: dict[str, float]) -> dict[str, float]:
        return {k: v for k, v in row.items() if (k in kinds if kinds is not None else "@" not in k)}

    out: dict[str, dict[str, dict[str, float]]] = {m: {} for m in METRICS}
    for r in runs:
        for m in METRICS:
            out[m][r["overrides"]["train_degradation"]] = keep(r["metrics"]["extra"]["mean"][m])
    if with_bicubic and runs:
        for m in METRICS:
            out[m]["bicubic_interpolation"] = keep(runs[0]["metrics"]["extra"]["bicubic_interpolation"][m])
    return out


def downstream(runs: list[dict[str, Any]], kinds: tuple[str, ...]) -> dict[str, dict[str, dict[str, float]]]:
    """``{"gm_area_bias" | "gm_dice": {train_set: {test_kind: median over test slices}}}`` plus the
    ``bicubic_interpolation`` row; empty when the runs did not segment their outputs."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for r in runs:
        extra = r["metrics"]["extra"]
        if "downstream" not in extra:
            continue
        for name, per_kind in extra["downstream"].items():
            out.setdefault(name, {})[r["overrides"]["train_degradation"]] = {
                k: v for k, v in per_kind.items() if k in kinds
            }
    if out and "downstream_bicubic_interpolation" in runs[0]["metrics"]["extra"]:
        for name, per_kind in runs[0]["metrics"]["extra"]["downstream_bicubic_interpolation"].items():
            out[name]["bicubic_interpolation"] = {k: v for k, v in per_kind.items() if k in kinds}
    return out


def misregistration(table1: list[dict[str, Any]], legacy: list[dict[str, Any]]) -> dict[str, Any]:
    """PSNR (dB) lost to the legacy grid's half-pixel shift, from centred-trained runs tested on ``<kind>@legacy``
    (``test_on_legacy``) and from legacy-trained runs tested on the centred grid (``trained_on_legacy``).

    ``test_on_legacy[train][kind]`` = PSNR on the centred LR minus PSNR on the legacy LR of ``kind``, for every
    centred-trained model and for bicubic interpolation; ``trained_on_legacy[train]`` holds, for a model trained
    on the legacy grid, ``psnr_legacy`` / ``psnr_centred`` per test kind (bicubic only on its one grid) and
    ``drop[kind]`` = legacy minus centred (what the model loses when the test LR is on the other grid).
    Empty dicts when the runs lack the legacy test kinds."""

    def drop(row: dict[str, float]) -> dict[str, float]:
        return {k: row[k] - row[f"{k}@legacy"] for k in LEGACY_KINDS if k in row and f"{k}@legacy" in row}

    out: dict[str, Any] = {"test_on_legacy": {}, "trained_on_legacy": {}}
    for r in table1:
        row = drop(r["metrics"]["extra"]["mean"]["psnr"])
        if row:
            out["test_on_legacy"][r["overrides"]["train_degradation"]] = row
    if table1 and out["test_on_legacy"]:
        out["test_on_legacy"]["bicubic_interpolation"] = drop(
            table1[0]["metrics"]["extra"]["bicubic_interpolation"]["psnr"]
        )
    for r in legacy:  # their plain kinds are on the legacy grid (the run's phase), ``<kind>@centred`` on the other
        psnr = r["metrics"]["extra"]["mean"]["psnr"]
        on_legacy = {k: psnr.get(k) for k in TEST_KINDS}
        centred = {k: psnr.get(f"{k}@centred", psnr.get(k) if k == "bicubic" else None) for k in TEST_KINDS}
        out["trained_on_legacy"][r["overrides"]["train_degradation"]] = {
            "psnr_legacy": on_legacy,
            "psnr_centred": centred,
            "drop": {
                k: on_legacy[k] - centred[k]
                for k in LEGACY_KINDS
                if on_legacy[k] is not None and centred[k] is not None
            },
        }
    return out


def table_checks(
    psnr: dict[str, dict[str, float]], kinds: tuple[str, ...] = TEST_KINDS, combined: str = "combined"
) -> dict[str, Any]:
    """The paper's Table I findings, checked on a PSNR matrix (rows: training sets; columns: test ``kinds``;
    ``combined``: the row of the model trained on their mix)."""
    singles = [t for t in kinds if t in psnr]
    cols = [k for k in kinds if k in next(iter(psnr.values()))]
    best = {k: max(singles + ([combined] if combined in psnr else []), key=lambda t: psnr[t][k]) for k in cols}
    own_best = [k for k in cols if k in psnr and best[k] == k]
    worst = {t: min(psnr[t][k] for k in cols) for t in [*singles, combined] if t in psnr}
    checks: dict[str, Any] = {
        "best_model_per_test_set": best,
        "own_degradation_best_columns": len(own_best),
        "columns_with_own_model": len([k for k in cols if k in psnr]),
        "worst_psnr_per_training_set": worst,
    }
    if combined in psnr and singles:
        checks["combined_worst_above_every_single_worst"] = all(worst[combined] > worst[t] for t in singles)
    if "bicubic_interpolation" in psnr:
        base = psnr["bicubic_interpolation"]
        checks["beats_bicubic_on_own_degradation"] = {t: psnr[t][t] > base[t] for t in singles if t in base}
    return checks


def runs(profile: Profile, grid_name: str | None = None) -> list[Run]:
    """Table I (every training set, tested on the centred and the legacy grid), the legacy-grid models, the
    k-space matrix, and Tables II (losses) and III (architectures) where the profile has them."""
    base, axes = profile.settings, profile.axes
    model = base["model"]
    sets = {"train_degradation": list(axes["train_degradation"])}
    named = lambda prefix: lambda p: f"{prefix}_{p['train_degradation']}"  # noqa: E731
    out = grid(
        "table1", {**base, "test_degradations": list(TEST_KINDS + LEGACY_TESTS)}, sets, name=named(f"{model}_mse")
    )
    out += grid(
        "legacy",
        {**base, "phase": "legacy", "test_degradations": list(TEST_KINDS + CENTRED_TESTS)},
        {"train_degradation": list(axes.get("legacy_train_degradation", ()))},
        name=lambda p: f"{model}_mse_{p['train_degradation']}_legacy_grid",
    )
    for loss in axes.get("loss", ()):
        out += grid(f"loss_{loss}", {**base, "loss": loss}, sets, name=named(f"{model}_{loss}"))
    if axes.get("kspace_train_degradation"):
        out += grid(
            "kspace",
            {**base, **axes.get("kspace_settings", {}), "test_degradations": list(KSPACE_KINDS)},
            {"train_degradation": list(axes["kspace_train_degradation"])},
            name=named(f"{model}_mse"),
        )
    for arch in axes.get("model", ()):
        out += grid(f"arch_{arch}", {**base, "model": arch}, sets, name=named(f"{arch}_mse"))
    return out  # fmt: skip


def prepare_data(overrides: dict) -> None:
    """Generate the embedded slices of a run's seed once, before the parallel runs read them."""
    from common.data.sr_slices import generate_sr_slices

    generate_sr_slices(
        Path(overrides["cache_dir"]), overrides["seed"], plane="axial", num_slices=overrides["num_slices"]
    )


def progress(metrics: dict) -> str:
    m = metrics["metrics"]
    return "PSNR " + " ".join(f"{k}={m[f'psnr_{k}']:.2f}" for k in TEST_KINDS + KSPACE_KINDS if f"psnr_{k}" in m)


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One seed's Table I matrices (``summary[metric][train_set][test_kind]``), the checks of its findings,
    and the loss / architecture grids where present."""
    grids: dict[str, list[dict[str, Any]]] = {}
    for r in runs:
        grids.setdefault(r["grid"], []).append(r)
    table1 = matrices(grids["table1"])
    summary: dict[str, Any] = {m: table1[m] for m in METRICS}
    summary["checks"] = table_checks(table1["psnr"])
    summary["misregistration"] = misregistration(grids["table1"], grids.get("legacy", []))
    summary["downstream"] = downstream(grids["table1"], TEST_KINDS)
    if grids.get("kspace"):
        kspace = matrices(grids["kspace"], kinds=KSPACE_KINDS)
        summary["kspace"] = {m: kspace[m] for m in METRICS}
        summary["kspace"]["checks"] = table_checks(kspace["psnr"], KSPACE_KINDS, "combined_kspace")
        summary["kspace"]["downstream"] = downstream(grids["kspace"], KSPACE_KINDS)
    losses = sorted(g[len("loss_") :] for g in grids if g.startswith("loss_"))
    if losses:
        summary["loss_grid"] = {loss: matrices(grids[f"loss_{loss}"], False) for loss in losses}
        summary["loss_grid"]["mse"] = matrices(grids["table1"], False)
    archs = sorted(g[len("arch_") :] for g in grids if g.startswith("arch_"))
    if archs:
        model = grids["table1"][0]["overrides"]["model"]
        summary["architecture_grid"] = {a: matrices(grids[f"arch_{a}"], False) for a in archs}
        summary["architecture_grid"][model] = matrices(grids["table1"], False)
    return summary


@cache
def _means_by_kind():
    """The evaluation's own aggregation (:class:`common.metrics.grouped.GroupedScoresMetric` with
    :class:`common.metrics.sr_quality.SRQualityMetric`'s statistic) over scores that are already computed: the
    per-sample records' values, fed back in as the metric's buffer."""
    from common.metrics.grouped import GroupedScoresMetric
    from common.metrics.sr_quality import SRQualityMetric

    class Scored(GroupedScoresMetric):
        statistic = SRQualityMetric.statistic

        def __init__(self, names: tuple[str, ...]) -> None:
            super().__init__()
            self.names = names

        def _scores(self, y_pred, y):
            return y_pred

    return Scored


def metrics_from_samples(run: dict[str, Any]) -> dict[str, Any]:
    """``run`` with its per-kind means (``extra["mean"]``, ``extra["bicubic_interpolation"]``,
    ``extra["num_images"]`` and the flat ``psnr_<kind>`` / ``bicubic_psnr_<kind>`` ... metrics) recomputed from its
    per-sample records, by the aggregation the bundle's evaluation uses (for the within-run bootstrap). Only the
    metrics every record holds are recomputed; the kinds keep the order of the run's own record. The downstream
    grey-matter medians have no per-sample records and stay as they are (no claim reads them)."""
    import torch

    record = run["metrics"]
    rows = record.get("per_sample") or []
    if not rows:
        return run
    extra, flat = dict(record.get("extra", {})), dict(record.get("metrics", {}))
    kinds = [str(r["kind"]) for r in rows]
    for source, prefix in (("mean", ""), ("bicubic_interpolation", "bicubic_")):
        names = tuple(m for m in METRICS if all(f"{prefix}{m}" in r for r in rows))
        if not names or (source not in extra and source != "mean"):
            continue
        scores = torch.tensor([[r[f"{prefix}{m}"] for m in names] for r in rows], dtype=torch.float64)
        metric = _means_by_kind()(names)
        metric(scores, scores, groups=kinds)
        means = metric.aggregate()
        old = extra.get(source, {})
        table = {m: dict(old.get(m, {})) for m in old}
        for m in names:
            order = [k for k in old.get(m, {}) if k in means[m]] + [k for k in means[m] if k not in old.get(m, {})]
            table[m] = {k: means[m][k] for k in order}
            flat.update({f"{prefix}{m}_{k}": v for k, v in table[m].items()})
        extra[source] = table
        if source == "mean":
            counts = metric.counts()
            old_counts = extra.get("num_images", {})
            extra["num_images"] = {k: counts[k] for k in [*old_counts, *counts] if k in counts}
    return {**run, "metrics": {**record, "metrics": flat, "extra": extra}}


def _own_best_columns(part):
    return lambda s: _checks(s, part)["own_degradation_best_columns"]


def _combined_margin(part, combined):
    def value(s):
        worst = _checks(s, part)["worst_psnr_per_training_set"]
        return worst[combined] - max(v for t, v in worst.items() if t != combined)

    return value


def _beats_bicubic_fraction(part):
    def value(s):
        beats = _checks(s, part)["beats_bicubic_on_own_degradation"]
        return sum(beats.values()) / len(beats)

    return value


def _mix_worst_loss_margin(part, combined):
    """How much less the mix loses, at worst, to each test column's best model than the best single model does:
    for every training set, its largest PSNR shortfall below the column's best (dB); the smallest single-set
    shortfall minus the mix's (positive: the mix is the most robust in this sense)."""

    def value(s):
        psnr = s["psnr"] if part == "classic" else s["kspace"]["psnr"]
        rows = {t: row for t, row in psnr.items() if t != "bicubic_interpolation"}
        cols = list(next(iter(rows.values())))
        best = {k: max(row[k] for row in rows.values()) for k in cols}
        shortfall = {t: max(best[k] - row[k] for k in cols) for t, row in rows.items()}
        return min(v for t, v in shortfall.items() if t != combined) - shortfall[combined]

    return value


SOURCE = "Shrestha, Wang and Nakarmi 2023"
# The paper's statements in its direction, declared before seeds 0-2 ran: on one seed's PSNR matrix of the six
# classic kinds, and the same on the k-space matrix (claims without that matrix in a profile read as missing).
CLAIMS = [
    Claim("own_degradation_best", f"A model restores best the degradation it was trained on ({SOURCE})",
          _own_best_columns("classic"), len(TEST_KINDS) / 2, ">",
          f"test columns of {len(TEST_KINDS)} where the model trained on that kind has the highest PSNR"),
    Claim("combined_most_robust", f"The model trained on the mix is the most robust ({SOURCE})",
          _combined_margin("classic", "combined"), 0.0, ">",
          "the mix's worst-case PSNR minus the best single model's worst-case PSNR (dB)"),
    Claim("combined_smallest_worst_loss", f"The model trained on the mix is the most robust ({SOURCE}; second "
          "reading)", _mix_worst_loss_margin("classic", "combined"), 0.0, ">",
          "the smallest single model's worst-case PSNR shortfall below each column's best, minus the mix's (dB)",
          primary=False),
    Claim("beats_bicubic_on_own", f"Every single-degradation model beats bicubic interpolation on its own "
          f"degradation ({SOURCE})", _beats_bicubic_fraction("classic"), 1.0 - 0.5 / len(TEST_KINDS), ">",
          "fraction of single-kind models whose PSNR on their own kind beats bicubic up-sampling"),
    Claim("kspace_own_degradation_best", "k-space kinds: a model restores best the kind it was trained on",
          _own_best_columns("kspace"), len(KSPACE_KINDS) / 2, ">",
          f"test columns of {len(KSPACE_KINDS)} where the matched model has the highest PSNR", primary=False),
    Claim("kspace_combined_most_robust", "k-space kinds: the model trained on their mix is the most robust",
          _combined_margin("kspace", "combined_kspace"), 0.0, ">",
          "the mix's worst-case PSNR minus the best single model's (dB)", primary=False),
    Claim("kspace_beats_bicubic_on_own", "k-space kinds: every single-kind model beats bicubic interpolation on "
          "its own kind", _beats_bicubic_fraction("kspace"), 1.0 - 0.5 / len(KSPACE_KINDS), ">",
          "fraction of single-kind models that beat bicubic on their own kind", primary=False),
]  # fmt: skip


def slice_of(sample: dict) -> str:
    """The test slice a per-sample record scores: ``"<kind>_<i>"`` is the i-th test slice degraded with ``kind``
    (the test list is kind-major over one slice order, :func:`common.data.sr_pairs.expand_test_degradations`)."""
    return sample["id"].rsplit("_", 1)[1]


# The within-run bootstrap: one test unit is one test slice, with every degradation of it (its images in every
# column move together, as the worst-case claims compare columns of the same slices); the models of a matrix see the
# same slices, so all runs of a seed share one draw (paired).
RESAMPLING = TestResampling(unit=slice_of, from_samples=metrics_from_samples)

SPEC = StudySpec(BUNDLE, "Super-resolution degradation bias", PROFILES, runs, summarize, CLAIMS, report, figures,
                 progress, tuning={"tuning_sr_collapse.json": render_sr_collapse_section}, prepare=prepare_data,
                 data_keys=("num_slices",), resampling=RESAMPLING)  # fmt: skip

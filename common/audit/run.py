"""The audit end to end: validate, predict what is missing, measure, summarise, write the report."""

from __future__ import annotations

import os
import platform
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from common.audit.cohort import load_cohort, structure_names_from_bundle

__all__ = ["run_audit", "versions"]


def versions() -> dict[str, str]:
    """Versions of Python and the libraries the numbers depend on."""
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for name in ("numpy", "scipy", "statsmodels", "torch", "monai", "nibabel"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return out


def run_audit(
    datalist: str | os.PathLike | Mapping | list,
    output: str | os.PathLike,
    by: Sequence[str],
    *,
    bundle: str | os.PathLike | None = None,
    labels: Mapping[int, str] | None = None,
    split: str | None = None,
    dataset_dir: str | os.PathLike | None = None,
    bins: int | None = None,
    categorical: Sequence[str] = (),
    overrides: Mapping[str, Any] | None = None,
    n_resamples: int = 2000,
    seed: int = 0,
    surface: bool = True,
    progress: bool = True,
    command: str | None = None,
    intersect: bool = False,
    control: str | None = None,
    min_group_size: int = 5,
    correction: str = "holm",
    uncertainty: str | None = None,
    members: Sequence[str | os.PathLike] = (),
    uncertainty_samples: int = 20,
    keep_probabilities: bool = False,
    shortcut: str | None = None,
    baseline: str | os.PathLike | None = None,
    attribute_model: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Run the audit and write ``results.json``, ``report.md``, ``report.html`` and figures into ``output``;
    return the results.

    ``datalist`` may be a :class:`common.audit.bids.BidsInput`; ``by`` then defaults to every column of its
    ``participants.tsv``. ``intersect``, ``control``, ``min_group_size`` and ``correction`` (``"holm"`` or
    ``"fdr_bh"``): see :func:`common.audit.cohort.load_cohort` and :func:`common.audit.measure.summarise`.
    ``uncertainty`` (``"tta"``, ``"mc_dropout"`` or ``"ensemble"`` with ``members`` checkpoints) adds per-case
    volume intervals from ``uncertainty_samples`` samples of the bundle: see
    :func:`common.audit.uncertainty.volume_intervals`. ``keep_probabilities`` (with a bundle) keeps the bundle
    network's softmax of every case it predicts, so calibration (expected calibration error per group and its
    tested gap, reliability diagrams) is reported as for probability-map predictions: see
    :mod:`common.audit.calibration`. ``shortcut`` (an attribute, with ``bundle`` and a ``baseline`` bundle, optional
    ``attribute_model``) adds OSCAR's shortcut localisation for 2-D segmentation bundles: see
    :mod:`common.audit.shortcut`.

    Raises:
        common.data.DatalistError: every problem of the datalist, before any inference or measurement.
    """
    from common.audit.bids import BidsInput, participant_columns
    from common.audit.disparity import CORRECTIONS
    from common.audit.measure import measure_cases, summarise
    from common.audit.report import write_report, write_results

    if correction not in CORRECTIONS:
        raise ValueError(f"correction must be one of {sorted(CORRECTIONS)}, got {correction!r}")
    if min_group_size < 2:
        raise ValueError(f"min_group_size must be at least 2, got {min_group_size}")
    if uncertainty is not None and bundle is None:
        raise ValueError(f"uncertainty {uncertainty!r} samples a bundle's network: give a bundle")
    if shortcut is not None and (bundle is None or baseline is None):
        raise ValueError(f"shortcut {shortcut!r} compares a bundle with a baseline bundle: give both")
    if keep_probabilities and bundle is None:
        raise ValueError("keep_probabilities keeps a bundle network's softmax: give a bundle")
    by = list(by or [])
    if not by and isinstance(datalist, BidsInput):
        by = [c for c in participant_columns(datalist) if c != control]
    if not by and not isinstance(datalist, BidsInput):
        raise ValueError("no attribute to group by: give --by ATTR (a BIDS cohort uses its participants.tsv columns)")
    structures = dict(labels or {})
    if not structures and bundle is not None:
        structures = structure_names_from_bundle(bundle)
    cohort = load_cohort(
        datalist,
        by,
        dataset_dir=dataset_dir,
        split=split,
        bins=bins,
        categorical=categorical,
        structures=structures,
        can_predict=bundle is not None,
        intersect=intersect,
        control=control,
    )
    if not cohort.attributes:  # a BIDS participants.tsv with no column to group by
        from common.data.datalist import DatalistError

        raise DatalistError([f"{cohort.source}: no attribute column besides participant_id to group by"], cohort.source)
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    shortcut_models = None
    if shortcut is not None:  # every check and model load before any long work
        from common.audit.shortcut import check_shortcut, load_shortcut_models

        shortcut_groups, shortcut_order = check_shortcut(cohort.entries, cohort.ids, shortcut, cohort.source)
        shortcut_models = load_shortcut_models(
            bundle, baseline, attribute_model, cohort.entries[0]["image"], overrides or {}
        )
    predicted = [i for i, e in enumerate(cohort.entries) if "prediction" not in e]
    calibration = {}
    if keep_probabilities and predicted:  # first: a softmax off the label's grid fails before the long inference
        from common.audit.calibration import bundle_calibration

        calibration = bundle_calibration(cohort.entries, predicted, bundle, output, overrides, progress=progress)
    if predicted:
        from common.audit.infer import predict_missing  # only now: a predictions-only audit runs no model

        predict_missing(cohort.entries, bundle, output, overrides or {}, progress=progress)
    cases = measure_cases(cohort, progress=progress, surface=surface)
    for i, kept in calibration.items():
        cases[i].calibration = {
            name: {"ece": kept["ece"][v], "bins": kept["bins"][v]}
            for v, name in cohort.structures.items()
            if v < kept["classes"]
        }
    results: dict[str, Any] = {
        "command": command or "common.audit.run_audit(...)",
        "datalist": cohort.source,
        "bundle": str(Path(bundle).resolve()) if bundle is not None else None,
        "versions": versions(),
        "probabilities": {
            "bundle_softmax": bool(calibration),
            "n_cases": sum(bool(c.calibration) for c in cases),
        },
        "structures": {str(v): name for v, name in cohort.structures.items()},
        "attributes": {a.name: {"kind": a.kind, "groups": a.order or None} for a in cohort.attributes.values()},
        **summarise(
            cohort, cases, n_resamples=n_resamples, seed=seed, min_group_size=min_group_size, correction=correction
        ),
    }
    attr_names = [a for a in cohort.attributes if cohort.attributes[a].kind != "intersection"]
    attr_names += [cohort.control.name] if cohort.control and cohort.control.name not in attr_names else []
    results["cases"] = [
        {
            "id": case.id,
            **{k: entry.get(k) for k in ("image", "label", "prediction")},
            **{a: entry.get(a) for a in attr_names},
            "structures": case.structures,
        }
        for case, entry in zip(cases, cohort.entries)
    ]
    if uncertainty is not None:
        from common.audit.uncertainty import volume_intervals

        results["uncertainty"] = volume_intervals(
            cohort,
            bundle,
            uncertainty,
            members=members,
            num_samples=uncertainty_samples,
            seed=seed,
            overrides=overrides,
            progress=progress,
        )
    if shortcut_models is not None:
        from common.audit.shortcut import shortcut_analysis

        results["shortcut"] = shortcut_analysis(
            [e["image"] for e in cohort.entries],
            shortcut_groups,
            shortcut_order,
            shortcut_models,
            shortcut,
            output,
            n_resamples=n_resamples,
            seed=seed,
            progress=progress,
            sources={"ts": bundle, "ba": baseline, **({"sa": attribute_model} if attribute_model else {})},
        )
    write_results(output / "results.json", results)
    write_report(output, results, cohort, cases)
    return results

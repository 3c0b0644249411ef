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
    for name in ("numpy", "scipy", "torch", "monai", "nibabel"):
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
) -> dict[str, Any]:
    """Run the audit and write ``results.json``, ``report.md`` and figures into ``output``; return the results.

    Raises:
        common.data.DatalistError: every problem of the datalist, before any inference or measurement.
    """
    from common.audit.measure import measure_cases, summarise
    from common.audit.report import write_report, write_results

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
    )
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    if any("prediction" not in e for e in cohort.entries):
        from common.audit.infer import predict_missing  # only now: a predictions-only audit runs no model

        predict_missing(cohort.entries, bundle, output, overrides or {}, progress=progress)
    cases = measure_cases(cohort, progress=progress, surface=surface)
    results: dict[str, Any] = {
        "command": command or "common.audit.run_audit(...)",
        "datalist": cohort.source,
        "bundle": str(Path(bundle).resolve()) if bundle is not None else None,
        "versions": versions(),
        "structures": {str(v): name for v, name in cohort.structures.items()},
        "attributes": {a.name: {"kind": a.kind, "groups": a.order or None} for a in cohort.attributes.values()},
        **summarise(cohort, cases, n_resamples=n_resamples, seed=seed),
    }
    attr_names = list(cohort.attributes)
    results["cases"] = [
        {
            "id": case.id,
            **{k: entry.get(k) for k in ("image", "label", "prediction")},
            **{a: entry.get(a) for a in attr_names},
            "structures": case.structures,
        }
        for case, entry in zip(cases, cohort.entries)
    ]
    write_results(output / "results.json", results)
    write_report(output, results, cohort, cases)
    return results

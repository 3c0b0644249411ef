"""The one shape of every bundle's ``metrics.json``.

``{"settings": {...}, "metrics": {name: value}, "per_sample": [{"id", ...}], "extra": {...}}``:

- ``settings``: the config ids that define the run (approach, degradation, error type, seed, ...);
- ``metrics``: the run's headline numbers, flat, ``name -> float or None`` (the names TensorBoard shows,
  e.g. ``dice_grey_matter_L``, ``psnr_gaussian``, ``detection_auroc_loss``);
- ``per_sample``: one record per evaluated sample, with its ``id``, its aggregation key (``group`` for
  segmentation groups, ``kind`` for SR test degradations) and its values;
- ``extra``: the bundle's nested detail (per-group summaries with intervals, matrices, detector scores).

:func:`write_metrics` is the one writer: it builds the record from these parts, checks it and writes it atomically.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["metrics_record", "nan_to_none", "validate_metrics_record", "write_metrics", "write_metrics_record"]


def nan_to_none(x: Any, infinite: bool = False) -> Any:
    """``x`` with every NaN float (Python or NumPy; also inside dicts, lists and tuples) replaced by ``None``, for
    JSON; with ``infinite`` also +-Inf. Everything else is returned as it is."""
    if isinstance(x, dict):
        return {k: nan_to_none(v, infinite) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(nan_to_none(v, infinite) for v in x)
    if isinstance(x, (float, np.floating)) and (math.isnan(x) or (infinite and math.isinf(x))):
        return None
    return x


def _number(value: Any) -> float | None:
    return None if value is None else nan_to_none(float(value))


def metrics_record(
    settings: Mapping[str, Any],
    metrics: Mapping[str, Any],
    per_sample: Sequence[Mapping[str, Any]],
    extra: Mapping[str, Any] | None = None,
) -> dict:
    """Build (and check) a ``metrics.json`` record; metric values become floats, NaN becomes ``None``."""
    record = {
        "settings": dict(settings),
        "metrics": {str(k): _number(v) for k, v in metrics.items()},
        "per_sample": [dict(s) for s in per_sample],
        "extra": dict(extra or {}),
    }
    validate_metrics_record(record)
    return record


def validate_metrics_record(record: Mapping[str, Any], source: str = "metrics.json") -> None:
    """Raise ``ValueError`` naming ``source`` and every way ``record`` departs from the shape above."""
    problems = []
    for key, kind in (("settings", Mapping), ("metrics", Mapping), ("per_sample", list), ("extra", Mapping)):
        if not isinstance(record.get(key), kind):
            problems.append(f"'{key}' must be a {'list' if kind is list else 'mapping'}")
    if isinstance(record.get("metrics"), Mapping):
        bad = [k for k, v in record["metrics"].items() if v is not None and not isinstance(v, (int, float))]
        if bad:
            problems.append(f"'metrics' values must be numbers or null, not for {', '.join(map(str, bad[:5]))}")
    if isinstance(record.get("per_sample"), list):
        missing = [i for i, s in enumerate(record["per_sample"]) if not isinstance(s, Mapping) or "id" not in s]
        if missing:
            problems.append(f"'per_sample' entries need an 'id' (entries {missing[:5]})")
    extra_keys = sorted(set(record) - {"settings", "metrics", "per_sample", "extra", "_run"})
    if extra_keys:
        problems.append(f"unexpected top-level keys {extra_keys} (nested detail goes under 'extra')")
    if problems:
        raise ValueError(f"{source}: not a metrics record: " + "; ".join(problems))


def write_metrics_record(path: str | os.PathLike, record: Mapping[str, Any]) -> os.PathLike:
    """Check ``record`` and write it atomically to ``path``."""
    from common.io import atomic_write_json

    validate_metrics_record(record, str(path))
    return atomic_write_json(path, record)


def write_metrics(
    path: str | os.PathLike | None,
    settings: Mapping[str, Any],
    metrics: Mapping[str, Any],
    per_sample: Sequence[Mapping[str, Any]],
    extra: Mapping[str, Any] | None = None,
) -> dict:
    """The one writer of ``metrics.json``: build the record from its parts (:func:`metrics_record`), write it
    atomically to ``path`` (``None``: build only) and return it."""
    record = metrics_record(settings, metrics, per_sample, extra)
    if path is not None:
        write_metrics_record(path, record)
    return record

"""MONAI transforms: degradations, acquisition simulation, label errors.

Names are imported on first use so that each module loads only what it needs.
"""

import importlib

_EXPORTS = {
    "UpsampledAffine": "sr_pairs",
    "UpsampledAffined": "sr_pairs",
    "DegradeByKeyd": "sr_pairs",
    "Degrade": "degradation",
    "Degraded": "degradation",
    "RandDegrade": "degradation",
    "RandDegraded": "degradation",
    "DEGRADATION_KINDS": "degradation",
    "SimulateLowResolution": "acquisition",
    "SimulateLowResolutiond": "acquisition",
    "CorruptLabel": "label_errors",
    "RandCorruptLabeld": "label_errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

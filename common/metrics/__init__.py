"""Bias metrics in MONAI's style: volume bias, group AUC, flip, HFEN, NRMSE, bootstrap.

Names are imported on first use so that each module loads only what it needs.
"""

import importlib

_EXPORTS = {
    "volume_bias": "volume",
    "VolumeBiasMetric": "volume",
    "label_volumes": "volume",
    "group_auc": "auc",
    "bootstrap_ci": "bootstrap",
    "flip_decomposition": "flip",
    "flip_risk": "flip",
    "FlipMetric": "flip",
    "FlipRiskd": "flip",
    "hfen": "image_quality",
    "nrmse": "image_quality",
    "HFENMetric": "image_quality",
    "NRMSEMetric": "image_quality",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""Ignite handlers with ``attach(engine)``: per-sample loss, VOG, refurbishment, group metrics.

Names are imported on first use so that each module loads only what it needs.
"""

import importlib

_EXPORTS = {
    "SRImagePanels": "sr_images",
    "SRMetricsByDegradation": "sr_metrics",
    "SampleLossHandler": "sample_loss",
    "VOGHandler": "vog",
    "RefurbishHandler": "refurbish",
    "SegmentationReport": "refurbish",
    "write_metrics": "refurbish",
    "GroupSegmentationMetrics": "group_metrics",
    "summarize_groups": "group_metrics",
    "GroupImagePanels": "seg_panels",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

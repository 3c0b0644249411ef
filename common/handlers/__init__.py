"""Ignite handlers with ``attach(engine)``: per-sample loss, VOG, refurbishment, group metrics.

Names are imported on first use so that each module loads only what it needs.
"""

from common._lazy import lazy_getattr

_EXPORTS = {
    "SRImagePanels": "sr_images",
    "SRMetricsByDegradation": "sr_metrics",
    "SampleLossHandler": "sample_loss",
    "TrainingDynamicsHandler": "sample_loss",
    "VOGHandler": "vog",
    "RefurbishHandler": "refurbish",
    "SegmentationReport": "segmentation_report",
    "CachedLabels": "refurbish",
    "write_label_error_metrics": "refurbish",
    "GroupSegmentationMetrics": "group_metrics",
    "summarize_groups": "group_metrics",
    "GroupImagePanels": "seg_panels",
    "ExamplePanels": "seg_panels",
    "ResumableCheckpoint": "resume",
    "EpochReseed": "resume",
    "AtomicCheckpointSaver": "resume",
    "epoch_seed": "resume",
    "resume_path": "resume",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_getattr(__name__, _EXPORTS)

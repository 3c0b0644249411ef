"""Bias metrics in MONAI's style: volume bias, group AUC, flip, HFEN, NRMSE, SR quality by group, bootstrap.

Names are imported on first use so that each module loads only what it needs.
"""

from common._lazy import lazy_getattr
from common._moved import moved_getattr

_EXPORTS = {
    "volume_bias": "volume",
    "label_volumes": "volume",
    "group_auc": "auc",
    "binary_auroc": "auc",
    "binary_average_precision": "auc",
    "bootstrap_ci": "bootstrap",
    "flip_decomposition": "flip",
    "flip_fractions": "flip",
    "dice_and_flip_counts": "per_image",
    "label_dice": "label_agreement",
    "relative_area_change": "label_agreement",
    "flip_risk": "flip",
    "FlipMetric": "flip",
    "hfen": "image_quality",
    "nrmse": "image_quality",
    "HFENMetric": "image_quality",
    "NRMSEMetric": "image_quality",
    "GroupedScoresMetric": "grouped",
    "SRQualityMetric": "sr_quality",
    "SR_METRIC_NAMES": "sr_quality",
    "metrics_record": "record",
    "validate_metrics_record": "record",
    "write_metrics_record": "record",
    "nan_to_none": "record",
    "write_metrics": "record",
}

_MOVED = {
    "FlipRiskd": "common.transforms.flip_risk",
    "IdentityUncertaintyd": "common.transforms.flip_risk",
    "SaveFlipRiskd": "common.transforms.flip_risk",
}
"""Names that moved out of this package: still importable here, with a DeprecationWarning."""

__all__ = sorted(_EXPORTS)

__getattr__ = moved_getattr(__name__, _MOVED, lazy_getattr(__name__, _EXPORTS))

"""MONAI transforms: degradations, acquisition simulation, label errors.

Names are imported on first use so that each module loads only what it needs.
"""

from common._lazy import lazy_getattr
from common._moved import moved_getattr

_EXPORTS = {
    "UpsampledAffine": "sr_pairs",
    "UpsampledAffined": "sr_pairs",
    "DegradeByKeyd": "sr_pairs",
    "RandAlignedCropSamplesd": "sr_pairs",
    "Degrade": "degradation",
    "Degraded": "degradation",
    "RandDegrade": "degradation",
    "RandDegraded": "degradation",
    "DEGRADATION_KINDS": "degradation",
    "SimulateLowResolution": "acquisition",
    "SimulateLowResolutiond": "acquisition",
    "CorruptLabel": "label_errors",
    "RandCorruptLabel": "label_errors",
    "RandCorruptLabeld": "label_errors",
    "SpacingWithPathsd": "spacing",
    "FlipRiskd": "flip_risk",
    "IdentityUncertaintyd": "flip_risk",
    "SaveFlipRiskd": "flip_risk",
}

_MOVED = {
    "load_split": "common.data.datalist",
}
"""Names that moved out of this package: still importable here, with a DeprecationWarning."""

__all__ = sorted(_EXPORTS)

__getattr__ = moved_getattr(__name__, _MOVED, lazy_getattr(__name__, _EXPORTS))

"""Networks: down-sampling operators, U-Net, VINN, super-resolution networks.

Names are imported on first use so that each module loads only what it needs.
"""

import importlib

_EXPORTS = {
    "downsample": "pooling",
    "DOWNSAMPLE_NAMES": "pooling",
    "BlurPool": "pooling",
    "FLCPool": "pooling",
    "ASAPPool": "pooling",
    "SegUNet": "unet",
    "VINN": "vinn",
    "SRCNN": "sr",
    "SRDenseNet": "sr",
    "RRDBNet": "sr",
    "sr_network": "sr",
    "SRInferer": "sr",
    "MultiPlaneSegmenter": "seg_planes",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

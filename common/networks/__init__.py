"""Networks: down-sampling operators, U-Net, VINN, super-resolution networks.

Names are imported on first use so that each module loads only what it needs.
"""

from common._lazy import lazy_getattr

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

__getattr__ = lazy_getattr(__name__, _EXPORTS)

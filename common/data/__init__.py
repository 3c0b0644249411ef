"""Embedded data sources (MNI population, echo phantom, SR slices) and user datalists.

Names are imported on first use so that each module loads only what it needs.
"""

from common._lazy import lazy_getattr

_EXPORTS = {
    "sr_pair_datalist": "sr_pairs",
    "generate_mni_population": "mni_population",
    "MNIPopulationConfig": "mni_population",
    "ground_truth_volumes": "mni_population",
    "generate_echo_phantom": "echo_phantom",
    "EchoPhantomConfig": "echo_phantom",
    "generate_sr_slices": "sr_slices",
    "load_datalist": "datalist",
    "load_split": "datalist",
    "validate_datalist": "datalist",
    "DatalistError": "datalist",
    "resolve_datalist": "datalist",
    "inference_items": "datalist",
    "camus_datalist": "camus",
    "prepare_label_error_datalist": "label_error_datalist",
    "ThickSliceDataset": "seg_slices",
    "SliceBatchSampler": "seg_slices",
    "load_seg_volumes": "seg_slices",
    "prepare_slice_batch": "seg_slices",
    "prepare_plain_batch": "batch",
    "plain_tensor": "batch",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_getattr(__name__, _EXPORTS)

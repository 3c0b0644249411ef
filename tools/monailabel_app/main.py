"""MONAI Label app of the collection: MONAI Label's own ``monaibundle`` app, extended with suspect-label review.

The served app folder holds MONAI Label's ``monaibundle`` sample app with its ``main.py`` renamed to
``monaibundle_main.py`` (``tests.tooling.labelserver`` prepares it), this file as ``main.py`` and the modules
``activelearning.py`` and ``suspect_labels.py``. Everything of the sample app (bundle infer and train tasks,
its strategies) stays; added are the scoring method ``suspect_label`` and the strategy ``suspect_label``
for the bundle named by ``--conf suspect_label_model NAME`` (default: the first served bundle), and 2D label
maps keep the input's shape: MONAI Label 0.8.5's ``Restored`` keeps the channel of a ``(1, H, W)`` result,
which its ITK writer then stores as a ``(1, H, W)`` volume; the bundle infer tasks here drop that channel.
"""

from __future__ import annotations

import logging
import tempfile

import nibabel as nib
import numpy as np
import torch
from activelearning import SuspectLabelScoring, SuspectLabelStrategy
from monai.transforms import MapTransform
from monaibundle_main import MyApp
from monailabel.interfaces.app import MONAILabelApp
from monailabel.tasks.infer.bundle import BundleInferTask
from monailabel.utils.others.generic import file_ext

logger = logging.getLogger(__name__)


class DropChannelOf2DLabel(MapTransform):
    """``(1, H, W)`` -> ``(H, W)`` for a 2D input image (its ``spatial_shape`` has two sizes); others unchanged."""

    def __init__(self, keys, ref_image: str) -> None:
        super().__init__(keys)
        self.ref_image = ref_image

    def __call__(self, data):
        d = dict(data)
        ref = d.get(self.ref_image)
        meta = ref.meta if hasattr(ref, "meta") else d.get(f"{self.ref_image}_meta_dict", {})
        if len(meta.get("spatial_shape", ())) == 2:
            for key in self.key_iterator(d):
                if d[key].ndim == 3 and d[key].shape[0] == 1:
                    d[key] = d[key][0]
        return d


class ShapeKeepingBundleInferTask(BundleInferTask):
    """MONAI Label's bundle infer task whose 2D label maps have the input image's ``(H, W)`` shape and affine.

    MONAI Label's ITK writer drops the affine of a 2D result (and its ``nibabel`` option fails on 2D with
    current MONAI); a 2D NIfTI result is written with nibabel instead, with the input's original affine.
    """

    def post_transforms(self, data=None):
        return [*super().post_transforms(data), DropChannelOf2DLabel(self.key_pred, self.key_image)]

    def writer(self, data, extension=None, dtype=None):
        ext = (extension or data.get("result_extension") or file_ext(data.get("image_path") or "")).lower()
        label = data[self.output_label_key]
        if label.ndim != 2 or ext not in (".nii", ".nii.gz") or not data.get("result_write_to_file", True):
            return super().writer(data, extension, dtype)
        affine = (data.get(f"{self.output_label_key}_meta_dict") or {}).get("affine")  # set by Restored
        if affine is None:
            affine = data[self.key_image].meta.get("original_affine")
        array = np.asarray(label.detach().cpu() if isinstance(label, torch.Tensor) else label)
        output_file = tempfile.NamedTemporaryFile(suffix=ext, delete=False).name
        nib.save(nib.Nifti1Image(array.astype(dtype or np.uint8), np.asarray(affine, dtype=np.float64)), output_file)
        return output_file, data.get(self.output_json_key, {})


class CollectionApp(MyApp, MONAILabelApp):  # MONAILabelApp named as a direct base: MONAI Label looks it up by name
    def init_infers(self):
        infers = super().init_infers()
        for name, path in self.models.items():
            if type(infers.get(name)) is BundleInferTask:  # the sample's plain bundle task (not deepedit, not SAM)
                infers[name] = ShapeKeepingBundleInferTask(path, self.conf)
        return infers

    def init_strategies(self):
        strategies = super().init_strategies()
        strategies["suspect_label"] = SuspectLabelStrategy()
        return strategies

    def init_scoring_methods(self):
        methods = super().init_scoring_methods()
        if self.models:
            name = self.conf.get("suspect_label_model") or next(iter(self.models))
            if name not in self.models:
                raise ValueError(f"--conf suspect_label_model {name!r} is not a served bundle ({sorted(self.models)})")
            methods["suspect_label"] = SuspectLabelScoring(self.models[name], device=self.conf.get("device", "cpu"))
            logger.info(f"+++ Adding Scoring Method:: suspect_label => {name}")
        return methods

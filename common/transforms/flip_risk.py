"""Dictionary transforms of the flip-risk score (:mod:`common.metrics.flip`, :mod:`common.metrics.shortcut`):
per-image flip-risk of a probability map, its identity-uncertainty map, and one JSON file per image."""

from __future__ import annotations

from pathlib import Path

import torch
from monai.transforms import MapTransform

from common.metrics.flip import flip_risk
from common.metrics.shortcut import identity_uncertainty

__all__ = ["FlipRiskd", "IdentityUncertaintyd", "SaveFlipRiskd"]


class FlipRiskd(MapTransform):
    """Dictionary transform: flip-risk of the probability map ``keys`` (``(C, *spatial)``, C >= 3) into ``risk_key``.

    With ``csv_path`` it also keeps a table ``image,flip_risk`` of every image seen (rewritten atomically
    after each image); the image name comes from the map's ``filename_or_obj`` metadata.
    """

    def __init__(self, keys="pred", risk_key: str = "flip_risk", csv_path: str | None = None, background: int = 0):
        super().__init__(keys)
        self.risk_key = risk_key
        self.csv_path = csv_path
        self.background = background
        self.rows: dict[str, float] = {}

    def __call__(self, data):
        d = dict(data)
        for key in self.key_iterator(d):
            probs = torch.as_tensor(d[key])
            risk = float(flip_risk(probs[None], self.background)[0])
            d[self.risk_key] = risk
            if self.csv_path:
                from common.io import atomic_write_text

                meta = getattr(d[key], "meta", {}) or {}
                name = str(meta.get("filename_or_obj", f"image_{len(self.rows)}"))
                self.rows[name] = risk
                text = "image,flip_risk\n" + "".join(f"{k},{v:.6f}\n" for k, v in self.rows.items())
                atomic_write_text(self.csv_path, text)
        return d


class IdentityUncertaintyd(MapTransform):
    """Dictionary transform: :func:`identity_uncertainty` of the probability map ``keys`` into ``output_key``
    (a copy of the map's metadata is kept, so it can be inverted and saved like the prediction)."""

    def __init__(self, keys="pred", output_key: str = "identity_uncertainty", background: int = 0):
        super().__init__(keys)
        self.output_key = output_key
        self.background = background

    def __call__(self, data):
        d = dict(data)
        for key in self.key_iterator(d):
            pred = d[key]
            unc = identity_uncertainty(pred, self.background)
            if hasattr(pred, "copy_meta_from"):
                from monai.data import MetaTensor

                unc = MetaTensor(unc, meta=dict(pred.meta), applied_operations=list(pred.applied_operations))
            d[self.output_key] = unc
        return d


class SaveFlipRiskd(MapTransform):
    """Dictionary transform: write ``<output_dir>/<image stem>_flip_risk.json`` = ``{"image", "flip_risk"}``
    for the flip-risk already stored under ``keys`` (see :class:`FlipRiskd`)."""

    def __init__(self, keys="flip_risk", output_dir: str = ".", image_key: str = "image", enabled: bool = True):
        super().__init__(keys)
        self.output_dir, self.image_key, self.enabled = Path(output_dir), image_key, enabled

    def __call__(self, data):
        from common.io import atomic_write_json

        d = dict(data)
        if not self.enabled:
            return d
        for key in self.key_iterator(d):
            meta = getattr(d.get(self.image_key), "meta", {}) or {}
            name = str(meta.get("filename_or_obj", "image"))
            stem = Path(name).name
            for ext in (".nii.gz", ".nii", ".png"):
                if stem.endswith(ext):
                    stem = stem[: -len(ext)]
                    break
            atomic_write_json(self.output_dir / f"{stem}_flip_risk.json", {"image": name, key: float(d[key])})
        return d

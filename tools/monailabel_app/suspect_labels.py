"""Rank a datastore's labelled images by how suspect their labels are, for review in MONAI Label.

A label is suspect when the current model disagrees with it: the score of an image is the model's Dice +
cross-entropy loss (MONAI ``DiceCELoss``, softmax, one-hot label, background included) against the stored
label, computed on the model's input grid: the loss-based detection of wrong labels of the label-error bundle
(Islam et al. 2026, "Detecting and refurbishing ground truth errors during training of deep learning-based
echocardiography segmentation models"), evaluated once with the current model instead of during training.

This module needs only MONAI and torch; the MONAI Label classes that wrap it are in ``activelearning.py``.
``datastore`` below is anything with MONAI Label's ``Datastore`` methods used here (``list_images``,
``get_label_by_image_id``, ``get_image_uri``, ``get_label_uri``, ``get_labeled_images``,
``get_image_info``, ``update_image_info``).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import torch
from monai.bundle import ConfigParser
from monai.losses import DiceCELoss
from monai.transforms import LoadImage, ResampleToMatch

SCORE_KEY = "suspect_label"  # image info key holding {"score", "model", "label_tag"}
FINAL_TAG = "final"


def image_label_loss(logits: torch.Tensor, label: torch.Tensor) -> float:
    """Dice + cross-entropy of logits ``(1, C, *spatial)`` against a label map ``(1, 1, *spatial)`` (values 0..C-1)."""
    if logits.shape[0] != 1 or label.shape[0] != 1 or label.shape[1] != 1 or logits.shape[2:] != label.shape[2:]:
        raise ValueError(f"expected logits (1, C, *S) and label (1, 1, *S), got {tuple(logits.shape)} and "
                         f"{tuple(label.shape)}")  # fmt: skip
    num_classes = logits.shape[1]
    values = torch.unique(label)
    if values.numel() and (values.min() < 0 or values.max() >= num_classes or torch.any(values != values.round())):
        raise ValueError(f"label values {values.tolist()} are not class indices 0..{num_classes - 1}")
    loss = DiceCELoss(to_onehot_y=True, softmax=True)
    return float(loss(logits.float(), label.float()))


class BundleLossScorer:
    """The loss of a bundle's current model on (image file, label file) pairs.

    Uses the bundle's ``configs/inference.yaml``: ``network_def`` with the weights of ``models/model.pt``
    (``{"model": state_dict}`` as MONAI Label and the bundles save them, or a bare state dict), the image
    ``preprocessing`` and the ``inferer``. The label is loaded and, when its grid differs from the preprocessed
    image's, resampled onto it with nearest-neighbour interpolation (``ResampleToMatch``).

    Args:
        bundle_dir: the bundle folder (an exported bundle, with its own ``common``, works too).
        device: torch device for inference.
    """

    def __init__(self, bundle_dir: str | Path, device: str | torch.device = "cpu") -> None:
        self.bundle_dir = Path(bundle_dir).resolve()
        config = self.bundle_dir / "configs" / "inference.yaml"
        ckpt = self.bundle_dir / "models" / "model.pt"
        for path, what in ((config, "inference config"), (ckpt, "model weights")):
            if not path.is_file():
                raise FileNotFoundError(f"{self.bundle_dir.name}: no {what} {path}")
        self.device = torch.device(device)
        parser = ConfigParser()
        parser.read_config(str(config))
        parser["bundle_root"] = str(self.bundle_dir)
        parser["device"] = f"$torch.device('{self.device}')"
        sys.path.insert(0, str(self.bundle_dir))  # an exported bundle's own copy of ``common``
        try:
            self.network = parser.get_parsed_content("network_def", instantiate=True)
            self.preprocessing = parser.get_parsed_content("preprocessing", instantiate=True)
            self.inferer = parser.get_parsed_content("inferer", instantiate=True)
        finally:
            sys.path.remove(str(self.bundle_dir))
        state = torch.load(ckpt, map_location=self.device, weights_only=True)
        self.network.load_state_dict(state.get("model", state) if isinstance(state, dict) else state)
        self.network.to(self.device).eval()
        self._load_label = LoadImage(image_only=True, ensure_channel_first=True)
        self._resample = ResampleToMatch(mode="nearest")

    def logits(self, image_path: str | Path) -> tuple[torch.Tensor, torch.Tensor]:
        """``(logits (1, C, *spatial), preprocessed image (1, *spatial))`` for one image file."""
        image = self.preprocessing({"image": str(image_path)})["image"]
        with torch.no_grad():
            logits = self.inferer(image[None].to(self.device), self.network)
        return torch.as_tensor(logits).cpu(), image

    def label_on_grid(self, label_path: str | Path, image: torch.Tensor) -> torch.Tensor:
        """The label map ``(1, *spatial)`` on the preprocessed image's grid (nearest-neighbour resampling)."""
        label = self._load_label(str(label_path))
        same_grid = label.shape[1:] == image.shape[1:] and torch.allclose(
            torch.as_tensor(label.affine, dtype=torch.float64), torch.as_tensor(image.affine, dtype=torch.float64)
        )
        if not same_grid:
            label = self._resample(label, image)
        return torch.as_tensor(label).round()

    def __call__(self, image_path: str | Path, label_path: str | Path) -> float:
        logits, image = self.logits(image_path)
        label = self.label_on_grid(label_path, image)
        try:
            return image_label_loss(logits, label[None])
        except ValueError as err:
            raise ValueError(f"{label_path}: {err}") from None


def rank_suspect(scores: Mapping[str, float]) -> list[str]:
    """Image ids, most suspect (highest score) first; ties by id; NaN scores last."""
    return sorted(scores, key=lambda i: (math.isnan(scores[i]), -scores[i] if not math.isnan(scores[i]) else 0, i))


def score_labelled_images(
    datastore, scorer: Callable[[str, str], float], label_tag: str = FINAL_TAG, model: str = ""
) -> dict[str, float]:
    """Score every image with a ``label_tag`` label; store ``{score, model, label_tag}`` in its info; return scores."""
    scores: dict[str, float] = {}
    for image_id in datastore.list_images():
        label_id = datastore.get_label_by_image_id(image_id, label_tag)
        if not label_id:
            continue
        score = float(scorer(datastore.get_image_uri(image_id), datastore.get_label_uri(label_id, label_tag)))
        datastore.update_image_info(image_id, {SCORE_KEY: {"score": score, "model": model, "label_tag": label_tag}})
        scores[image_id] = score
    return scores


def stored_scores(datastore, label_tag: str = FINAL_TAG, exclude: Iterable[str] = ()) -> dict[str, float]:
    """Scores stored by :func:`score_labelled_images` for the images labelled with ``label_tag``."""
    skip = set(exclude)
    scores = {}
    for image_id in datastore.get_labeled_images(label_tag):
        info = (datastore.get_image_info(image_id) or {}).get(SCORE_KEY)
        if image_id not in skip and info and info.get("label_tag", label_tag) == label_tag:
            scores[image_id] = float(info["score"])
    return scores


def most_suspect(datastore, label_tag: str = FINAL_TAG, exclude: Iterable[str] = ()) -> str | None:
    """The labelled image with the highest stored score (``None`` when none is scored)."""
    ranked = rank_suspect(stored_scores(datastore, label_tag, exclude))
    return ranked[0] if ranked else None

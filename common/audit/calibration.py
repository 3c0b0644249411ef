"""Calibration of a bundle's own softmax (``--keep-probabilities``): per case and class, the expected calibration
error and reliability bins of the network's probabilities against the manual label.

The bundle's inference config writes label maps only (its postprocessing takes the argmax), so the audit runs the
network a second time, outside the config's workflow: the bundle's ``preprocessing`` prepares the image, the
``network`` (through the config's ``inferer`` when it has one; weights as :func:`common.audit.infer.
load_bundle_model` loads them) gives logits, a softmax over the channel axis gives ``(C, *spatial)``
probabilities, and ``monai.transforms.Invertd`` maps them back to the image grid with the inverse of the
preprocessing (bilinear, so they stay soft; the preprocessing must be invertible, as for the bundle's own
``Invertd``). The error and bins are then those of a probability-map prediction
(:func:`common.audit.measure._calibration`: ``monai.metrics.CalibrationErrorMetric``, 10 equal-width bins over
every voxel). The segmentation metrics keep using the label map the bundle wrote.

No probability map is written. Each case's numbers for every class (a few hundred bytes) are cached in
``<output>/predictions/<image name>.calibration.json``, written whole by a rename, so a rerun skips the second pass
just as it skips predictions already made.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["bundle_calibration", "bundle_probabilities", "calibration_path"]


def calibration_path(image: str, predictions_dir: Path, images: Sequence[str]) -> Path:
    """``<predictions_dir>/<name>.calibration.json``, ``<name>`` as the prediction's (:func:`prediction_path`)."""
    from common.audit.infer import prediction_path

    target = prediction_path(image, predictions_dir, images)
    return target.with_name(target.name[: -len(".nii.gz")] + ".calibration.json")


def bundle_probabilities(model, image_path: str) -> np.ndarray:
    """Softmax of the bundle's network on one image, mapped back to the image grid: ``(*spatial, C)`` float32,
    trailing singleton spatial axes dropped (as :func:`common.audit.measure.load_label_map` drops them)."""
    import torch
    from monai.data import MetaTensor
    from monai.transforms import Invertd

    data = model.preprocessing({"image": image_path})
    image = data["image"]
    network = model.network
    was_training = network.training
    network.eval()
    try:
        with torch.no_grad():
            logits = network(torch.as_tensor(image)[None].to(model.device))
    finally:
        network.train(was_training)
    probs = torch.softmax(torch.as_tensor(logits).float(), dim=1)[0].cpu()
    if isinstance(image, MetaTensor) and image.applied_operations:  # nothing to undo otherwise
        data["pred"] = MetaTensor(probs, meta=dict(image.meta))
        data = Invertd(keys="pred", transform=model.preprocessing, orig_keys="image", nearest_interp=False)(data)
        probs = torch.as_tensor(data["pred"])
    out = np.moveaxis(probs.numpy().astype(np.float32), 0, -1)
    while out.ndim > 3 and out.shape[-2] == 1:
        out = out[..., 0, :]
    return out


def _read_cache(path: Path) -> dict[str, Any] | None:
    import json

    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _case(model, image: str, label: str) -> dict[str, Any]:
    from common.audit.measure import _calibration, load_label_map

    gt, _ = load_label_map(label)
    probs = bundle_probabilities(model, image)
    if probs.shape[:-1] != gt.shape:
        raise RuntimeError(
            f"{image}: the bundle's softmax maps back to shape {probs.shape[:-1]}, not the label's {gt.shape}; "
            "--keep-probabilities needs an invertible preprocessing (MONAI's invertible transforms)"
        )
    classes = probs.shape[-1]
    if int(gt.max()) >= classes:
        raise RuntimeError(f"{label}: label value {int(gt.max())} but the bundle's network has {classes} classes")
    ece, bins = _calibration(probs, gt, list(range(classes)))
    return {"image": image, "label": label, "classes": classes, "ece": ece.tolist(), "bins": bins.tolist()}


def bundle_calibration(
    entries: Sequence[Mapping[str, Any]],
    indices: Sequence[int],
    bundle_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    overrides: Mapping[str, Any] | None = None,
    progress: bool = True,
) -> dict[int, dict[str, Any]]:
    """Calibration of the bundle's softmax for the ``indices`` entries that have a ``label``.

    Args:
        entries: the cohort's entries (``image``, optional ``label``).
        indices: the entries the bundle predicts (those without a ``prediction`` in the datalist).
        bundle_dir, overrides: the bundle and its config overrides (as for the inference).
        output_dir: the audit's output; the cache goes to ``predictions/``.

    Returns:
        ``{entry index: {"image", "label", "classes": C, "ece": [C], "bins": [C][3][10]}}`` (bins: voxel count,
        summed probability, summed truth per probability bin), per class value ``0 .. C-1``.

    Raises:
        KeyError / FileNotFoundError: the bundle has no network, preprocessing or weights (before any case);
        RuntimeError: a softmax that does not map back to the label's grid, or fewer classes than the label's values.
    """
    from tqdm import tqdm

    from common.audit.infer import load_bundle_model
    from common.io import atomic_write_json

    predictions_dir = Path(output_dir) / "predictions"
    images = [entries[i]["image"] for i in indices]
    todo = [i for i in indices if entries[i].get("label")]
    out: dict[int, dict[str, Any]] = {}
    model = None
    for i in tqdm(todo, desc="bundle softmax", unit="image", disable=not progress or not todo):
        entry = entries[i]
        path = calibration_path(entry["image"], predictions_dir, images)
        cached = _read_cache(path)
        if cached and cached.get("image") == entry["image"] and cached.get("label") == entry["label"]:
            out[i] = cached
            continue
        if model is None:
            model = load_bundle_model(bundle_dir, overrides or {})
        out[i] = _case(model, entry["image"], entry["label"])
        predictions_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, out[i])
    return out

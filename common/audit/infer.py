"""Predictions for the cases that have none, made by a MONAI bundle's inference config, resumable.

Each missing prediction is made by running the bundle's ``configs/inference.json`` (or ``.yaml``) through
``monai.bundle.ConfigWorkflow`` on that one image, with overrides: ``bundle_root`` = the bundle folder,
``output_dir`` = a scratch folder, and the image given as ``input_image`` (this collection's bundles) or, for a
model-zoo-format config without ``input_image``, as ``datalist = [image]``. The NIfTI file the bundle writes is
moved to ``<output>/predictions/<image name>.nii.gz`` by a rename, so a prediction file is either complete or
absent: a killed audit, rerun with the same command, skips every prediction already written.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from common.audit.cohort import bundle_config
from common.io import atomic_write

__all__ = ["predict_missing", "prediction_path", "run_bundle_on_image"]

NIFTI_SUFFIXES = (".nii.gz", ".nii")


def _stem(path: str) -> str:
    name = Path(path).name
    for suffix in NIFTI_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


def prediction_path(image: str, predictions_dir: Path, images: Sequence[str]) -> Path:
    """Where the prediction of ``image`` goes: ``<name>.nii.gz``, plus a hash of the path if names collide."""
    stem = _stem(image)
    if sum(_stem(other) == stem for other in set(images)) > 1:
        stem = f"{stem}_{hashlib.sha1(image.encode()).hexdigest()[:8]}"
    return predictions_dir / f"{stem}.nii.gz"


def run_bundle_on_image(
    bundle_dir: str | os.PathLike, image: str, output_dir: str | os.PathLike, overrides: Mapping[str, Any] = ()
) -> Path:
    """Run the bundle's inference config on one image; return the one NIfTI file it wrote under ``output_dir``."""
    from monai.bundle import ConfigWorkflow

    bundle_dir = Path(bundle_dir).resolve()
    config = bundle_config(bundle_dir)
    if config is None:
        raise FileNotFoundError(f"{bundle_dir}: no configs/inference.json or configs/inference.yaml")
    meta = bundle_dir / "configs" / "metadata.json"
    settings: dict[str, Any] = {"bundle_root": str(bundle_dir), "output_dir": str(Path(output_dir).resolve())}
    workflow = ConfigWorkflow(
        config_file=str(config),
        meta_file=str(meta) if meta.is_file() else None,
        logging_file=False,
        workflow_type="infer",
        **settings,
    )
    if "input_image" in workflow.parser:
        workflow.parser["input_image"] = image
    elif "datalist" in workflow.parser:
        workflow.parser["datalist"] = [image]
    else:
        raise KeyError(f"{config}: the config has neither 'input_image' nor 'datalist' to give it an image")
    for key, value in dict(overrides).items():
        workflow.parser[key] = value
    workflow.initialize()
    workflow.run()
    workflow.finalize()
    written = sorted(p for p in Path(output_dir).rglob("*") if p.is_file() and p.name.endswith(NIFTI_SUFFIXES))
    if len(written) != 1:
        raise RuntimeError(
            f"{config}: expected the bundle to write one NIfTI prediction under {output_dir} for {image}, "
            f"found {len(written)}: {[str(p) for p in written]}"
        )
    return written[0]


def _spatial_shape(path: str | os.PathLike) -> tuple[int, ...]:
    import nibabel as nib

    shape = tuple(int(n) for n in nib.load(str(path)).shape)
    while len(shape) > 2 and shape[-1] == 1:
        shape = shape[:-1]
    return shape


def _check_grid(prediction: Path, image: str, bundle_dir) -> None:
    """The bundle must write the prediction on the input's grid (as the datalist's labels are)."""
    got, want = _spatial_shape(prediction), _spatial_shape(image)
    if got != want:
        raise RuntimeError(
            f"{image}: the bundle {bundle_dir} wrote a prediction of shape {got}, not the image's {want}; "
            "its inference config must map predictions back to the input grid (e.g. Invertd)"
        )


def predict_missing(
    entries: list[dict[str, Any]],
    bundle_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    overrides: Mapping[str, Any] = (),
    progress: bool = True,
) -> list[str]:
    """Fill ``entry["prediction"]`` of every entry without one; return the images actually run through the bundle.

    Predictions already in ``<output_dir>/predictions/`` (from an earlier, possibly killed, audit) are reused.
    """
    from tqdm import tqdm

    predictions_dir = Path(output_dir) / "predictions"
    todo = [e for e in entries if "prediction" not in e]
    images = [e["image"] for e in todo]
    ran: list[str] = []
    for entry in tqdm(todo, desc="bundle inference", unit="image", disable=not progress or not todo):
        target = prediction_path(entry["image"], predictions_dir, images)
        if not target.is_file():
            scratch = predictions_dir / f".tmp-{target.name}"
            shutil.rmtree(scratch, ignore_errors=True)
            scratch.mkdir(parents=True)
            try:
                written = run_bundle_on_image(bundle_dir, entry["image"], scratch, overrides)
                if written.name.endswith(".nii") and not written.name.endswith(".nii.gz"):
                    import gzip

                    import nibabel as nib

                    packed = gzip.compress(nib.load(str(written)).to_bytes())
                    converted = scratch / "converted.nii.gz"
                    atomic_write(converted, lambda tmp, data=packed: Path(tmp).write_bytes(data))
                    written = converted
                _check_grid(written, entry["image"], bundle_dir)
                os.replace(written, target)  # same folder tree: atomic, a prediction is whole or absent
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
            ran.append(entry["image"])
        entry["prediction"] = str(target)
    return ran

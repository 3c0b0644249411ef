"""Predictions for the cases that have none, made by a MONAI bundle's inference config, resumable.

Each missing prediction is made by running the bundle's ``configs/inference.json`` (or ``.yaml``) through
``monai.bundle.ConfigWorkflow`` on that one image, with overrides: ``bundle_root`` = the bundle folder,
``output_dir`` = a scratch folder, and the image given as ``input_image`` (this collection's bundles) or, for a
model-zoo-format config without ``input_image``, as ``datalist = [image]``. The NIfTI file the bundle writes is
moved to ``<output>/predictions/<image name>.nii.gz`` by a rename, so a prediction file is either complete or
absent: a killed audit, rerun with the same command, skips every prediction already written.
"""

from __future__ import annotations

import copy
import hashlib
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from common.audit.cohort import bundle_config
from common.io import atomic_write

__all__ = ["BundleModel", "load_bundle_model", "predict_missing", "prediction_path", "run_bundle_on_image"]

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


# ---- a bundle's network in this process (calibration, uncertainty, shortcut localisation)


class _InfererNetwork(nn.Module):
    """``network`` called through a MONAI inferer, as one module (so its dropout layers can be found)."""

    def __init__(self, network: nn.Module, inferer) -> None:
        super().__init__()
        self.network = network
        self.inferer = inferer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inferer(x, self.network) if self.inferer is not None else self.network(x)


class BundleModel:
    """A bundle's network (weights loaded, wrapped with its inferer), its ``preprocessing`` and its device."""

    def __init__(self, network: nn.Module, preprocessing, device: torch.device, checkpoint: Path | None) -> None:
        self.network = network
        self.preprocessing = preprocessing
        self.device = device
        self.checkpoint = checkpoint

    def with_checkpoint(self, path: str | os.PathLike) -> BundleModel:
        """A copy of this model with the weights of ``path`` (an ensemble member)."""
        network = copy.deepcopy(self.network)
        _load_weights(network.network, Path(path), self.device, key=None)
        return BundleModel(network, self.preprocessing, self.device, Path(path))


def _load_weights(network: nn.Module, path: Path, device: torch.device, key: str | None) -> None:
    """Load a state dict saved directly or under ``key`` (``CheckpointLoader``'s ``load_dict`` name)."""
    checkpoint = torch.load(path, map_location=device, weights_only=True)
    if key is None and isinstance(checkpoint, Mapping):
        nested = [v for v in checkpoint.values() if isinstance(v, Mapping)]
        key = next((k for k, v in checkpoint.items() if isinstance(v, Mapping)), None) if len(nested) == 1 else None
    state = checkpoint[key] if key is not None and key in checkpoint else checkpoint
    network.load_state_dict(state)


def load_bundle_model(bundle_dir: str | os.PathLike, overrides: Mapping[str, Any] = ()) -> BundleModel:
    """Parse the bundle's inference config (with ``overrides``) into a :class:`BundleModel`.

    The weights come from the config's ``CheckpointLoader`` handler (its ``load_path`` and ``load_dict`` key), or
    from ``ckpt_path`` when it has none.

    Raises:
        FileNotFoundError: no inference config; KeyError: no ``network``/``preprocessing`` or no checkpoint.
    """
    from monai.bundle import ConfigParser

    bundle_dir = Path(bundle_dir).resolve()
    config = bundle_config(bundle_dir)
    if config is None:
        raise FileNotFoundError(f"{bundle_dir}: no configs/inference.json or configs/inference.yaml")
    parser = ConfigParser()
    parser.read_config(str(config))
    parser["bundle_root"] = str(bundle_dir)
    for key, value in dict(overrides).items():
        parser[key] = value
    for needed in ("network", "preprocessing"):
        if needed not in parser:
            raise KeyError(f"{config}: no '{needed}' to sample predictions with")
    device = torch.device(parser.get_parsed_content("device")) if "device" in parser else torch.device("cpu")
    network = parser.get_parsed_content("network")
    preprocessing = parser.get_parsed_content("preprocessing")
    inferer = parser.get_parsed_content("inferer") if "inferer" in parser else None
    path, key = None, None
    handlers = parser["handlers"] if "handlers" in parser else []
    for i, handler in enumerate(handlers if isinstance(handlers, list) else []):
        if isinstance(handler, Mapping) and str(handler.get("_target_", "")).endswith("CheckpointLoader"):
            loader = parser.get_parsed_content(f"handlers#{i}")
            path = Path(loader.load_path)
            key = next((k for k, v in loader.load_dict.items() if v is network), next(iter(loader.load_dict)))
            break
    if path is None and "ckpt_path" in parser:
        path = Path(parser.get_parsed_content("ckpt_path"))
    if path is None:
        raise KeyError(f"{config}: no CheckpointLoader handler and no ckpt_path to load the weights from")
    _load_weights(network, path, device, key)
    return BundleModel(_InfererNetwork(network, inferer), preprocessing, device, path)

"""Per-case structure-volume intervals from a bundle's sampling uncertainty (``--uncertainty``).

For each case the bundle's ``preprocessing`` prepares the image, one of the estimators of
:mod:`common.uncertainty` draws ``num_samples`` softmax maps, and every sample's argmax gives a volume per
structure (mL, voxel size of the preprocessed image). The case's interval is the central ``level`` percentile
interval of those volumes (:func:`common.metrics.precision.percentile_interval`); a group's summary is the mean
interval width of its cases.

- ``tta``: random in-plane affine transforms (:func:`common.uncertainty.default_tta_transform`), predictions
  mapped back by inversion;
- ``mc_dropout``: the bundle's network with its dropout active (it must have dropout);
- ``ensemble``: the bundle's network loaded with each of several checkpoints (``--member``), one sample each.

The network is called through the bundle's ``inferer`` (e.g. a sliding window) when the config has one.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from common.audit.cohort import bundle_config

__all__ = ["UNCERTAINTY_METHODS", "BundleModel", "load_bundle_model", "volume_intervals", "uncertainty_tables"]

UNCERTAINTY_METHODS = ("tta", "mc_dropout", "ensemble")


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


def _sample_probabilities(
    models: Sequence[BundleModel], image_path: str, method: str, num_samples: int, seed: int
) -> tuple[torch.Tensor, np.ndarray]:
    """Softmax samples ``(N, C, *spatial)`` of one image and its preprocessed voxel size (mm)."""
    from common.uncertainty import default_tta_transform, ensemble_samples, mc_dropout_samples, tta_samples

    model = models[0]
    data = model.preprocessing({"image": image_path})
    image = data["image"]
    spacing = np.asarray(image.pixdim if hasattr(image, "pixdim") else [1.0] * (image.ndim - 1), dtype=np.float64)
    if method == "tta":
        transform = default_tta_transform(keys=("image",), seed=seed, spatial_dims=image.ndim - 1)
        probs = tta_samples(model.network, {"image": image}, num_samples, seed, transform)
    elif method == "mc_dropout":
        batch = torch.as_tensor(image)[None].to(model.device)
        probs = mc_dropout_samples(model.network, batch, num_samples, seed)[:, 0]
    elif method == "ensemble":
        batch = torch.as_tensor(image)[None].to(model.device)
        probs = ensemble_samples([m.network for m in models], batch)[:, 0]
    else:
        raise ValueError(f"method must be one of {UNCERTAINTY_METHODS}, got {method!r}")
    return probs.cpu(), spacing


def volume_intervals(
    cohort,
    bundle_dir: str | os.PathLike,
    method: str,
    *,
    members: Sequence[str | os.PathLike] = (),
    num_samples: int = 20,
    seed: int = 0,
    level: float = 0.95,
    overrides: Mapping[str, Any] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Volume intervals of every case's structures and the mean interval width per group.

    Args:
        cohort: a :class:`common.audit.cohort.Cohort`; every entry's ``image`` is sampled.
        bundle_dir: the bundle whose network and preprocessing are sampled.
        method: ``"tta"``, ``"mc_dropout"`` or ``"ensemble"``.
        members: for ``"ensemble"``, at least two checkpoints loaded into the bundle's network.
        num_samples: samples per case for ``tta`` and ``mc_dropout`` (an ensemble gives one per member).
        seed: seed of the augmentations / dropout masks.
        level: central interval level (0.95: 2.5-97.5 percentiles).

    Returns:
        ``{"method", "num_samples", "level", "seed", "members", "cases": [{"id", "structures": {name:
        {"median_ml", "low_ml", "high_ml", "width_ml"}}}], "by": {attr: {group: {name: {"n",
        "mean_width_ml"}}}}}``; ``by`` covers the grouped attributes (continuous ones only with ``--bins``).
    """
    from tqdm import tqdm

    from common.metrics.precision import percentile_interval
    from common.metrics.volume import label_volumes

    if method not in UNCERTAINTY_METHODS:
        raise ValueError(f"method must be one of {UNCERTAINTY_METHODS}, got {method!r}")
    if method == "ensemble" and len(members) < 2:
        raise ValueError(f"an ensemble needs at least two member checkpoints, got {len(members)}")
    if method != "ensemble" and num_samples < 2:
        raise ValueError(f"num_samples must be at least 2 for an interval, got {num_samples}")
    model = load_bundle_model(bundle_dir, overrides or {})
    models = [model.with_checkpoint(m) for m in members] if method == "ensemble" else [model]
    structures = cohort.structures
    cases = []
    for case_id, entry in tqdm(
        list(zip(cohort.ids, cohort.entries)), desc=f"{method} samples", unit="case", disable=not progress
    ):
        probs, spacing = _sample_probabilities(models, entry["image"], method, num_samples, seed)
        labels = probs.argmax(dim=1, keepdim=True)
        volumes_ml = label_volumes(labels, num_classes=probs.shape[1], spacing=spacing).numpy() / 1000.0
        per_structure = {}
        for value, name in structures.items():
            v = volumes_ml[:, value] if value < volumes_ml.shape[1] else np.zeros(len(volumes_ml))
            low, high = percentile_interval(v, level)
            per_structure[name] = {
                "median_ml": float(np.median(v)),
                "low_ml": low,
                "high_ml": high,
                "width_ml": high - low,
            }
        cases.append({"id": case_id, "structures": per_structure})
    by: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
    for attr in cohort.attributes.values():
        if attr.groups is None:
            continue
        by[attr.name] = {}
        for group in attr.order or sorted({g for g in attr.groups if g is not None}):
            members_of_group = [c for c, g in zip(cases, attr.groups) if g == group]
            by[attr.name][group] = {
                name: {
                    "n": len(members_of_group),
                    "mean_width_ml": float(np.mean([c["structures"][name]["width_ml"] for c in members_of_group]))
                    if members_of_group
                    else float("nan"),
                }
                for name in structures.values()
            }
    return {
        "method": method,
        "num_samples": len(models) if method == "ensemble" else num_samples,
        "level": level,
        "seed": seed,
        "members": [str(Path(m).resolve()) for m in members],
        "cases": cases,
        "by": by,
    }


def uncertainty_tables(section: Mapping[str, Any] | None) -> list[str]:
    """Markdown lines for the report: mean interval width per group, then every case's intervals."""
    if not section:
        return []
    pct = f"{100 * section['level']:g}%"
    lines = [
        f"### Volume uncertainty ({section['method']}, {section['num_samples']} samples)",
        "",
        f"Per case, the {pct} percentile interval of each structure's volume over the samples; per group, the "
        "mean interval width.",
        "",
        "| attribute | group | structure | n | mean interval width (mL) |",
        "|---|---|---|---|---|",
    ]
    for attr, groups in section["by"].items():
        for group, structures in groups.items():
            for name, s in structures.items():
                lines.append(f"| {attr} | {group} | {name} | {s['n']} | {s['mean_width_ml']:.3f} |")
    lines += ["", "| case | structure | median (mL) | interval (mL) | width (mL) |", "|---|---|---|---|---|"]
    for case in section["cases"]:
        for name, s in case["structures"].items():
            lines.append(
                f"| {case['id']} | {name} | {s['median_ml']:.3f} | {s['low_ml']:.3f} to {s['high_ml']:.3f} "
                f"| {s['width_ml']:.3f} |"
            )
    return [*lines, ""]

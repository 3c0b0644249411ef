"""Run steps that write one model's OSCAR region ranks (Achara et al. 2025) for a study's summary.

Achara, Triantafillou, Puyol-Antón, Hammers and King (2025), "Localising Shortcut Learning in Pixel Space via
Ordinal Scoring Correlations for Attribution Representations" (OSCAR) compare the region rank profiles of three
models on the same test images. Every model of one seed must therefore be ranked on the same images and the
same partitions: :func:`attribution_entries` picks the first ``num_images // 4`` test images of each
identity x scene cell (the phantom's test split depends on the seed only), and the partitions are built from
those images alone (grids, and SLIC superpixels on their mean edge image).

:func:`write_attribution_ranks` writes ``<output_dir>/attribution_ranks.npz``:

- ``ids`` ``(N,)``: the test image ids; ``scene`` ``(N,)``, ``identity`` ``(N,)``;
- ``ranks__<method>__<partition>`` ``(N, R)`` float32: per image, the rank of each region's mean
  L1-normalised attribution (1 = least attributed, ties averaged);
- ``partition__<partition>`` ``(H, W)`` int: region index of every pixel;
- ``object_coverage__<partition>`` ``(R,)``: mean fraction of each region covered by the object (label > 0);
- ``fov_difference__<partition>`` ``(R,)``: fraction of each region where the two scenes' fields of view differ
  (by construction of the scenes: pixels inside one scene's field of view and outside the other's);
- ``mean_image`` ``(H, W)``; ``meta``: JSON with the target, methods, partition sizes and ``object_fraction``
  (the mean fraction of an image covered by the object).

The summary (:mod:`common.study.shortcut_label_flips`) reads these files only; no network runs at report time.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "ATTRIBUTION_FILE",
    "TARGETS",
    "AttributionConfigError",
    "attribution_entries",
    "check_attribution",
    "load_attribution_ranks",
    "scene_index",
    "unet_bottleneck",
    "write_attribution_ranks",
    "write_scene_metrics",
]

ATTRIBUTION_FILE = "attribution_ranks.npz"
TARGETS = ("identity", "scene")  # segmentation identity decision | scene classifier decision
METHODS = ("gradcam", "occlusion")
SCENE_ORDER = ("sector", "linear")  # class index of each scene for the scene classifier


class AttributionConfigError(ValueError):
    """A bundle's ``attribution`` section is missing or wrong; the message names the id."""


def check_attribution(attribution: Mapping[str, Any] | None) -> dict:
    """Validate a bundle's ``attribution`` section before any training; returns it as a dict.

    Required: ``target`` (one of :data:`TARGETS`), ``num_images`` (a positive multiple of 4), ``methods``
    (subset of ``gradcam``, ``occlusion``), ``grid_sizes`` (ints >= 2), ``slic_segments`` (int >= 2, 0: none),
    ``occlusion_partitions`` (partition names ``grid<n>``/``slic`` among those built), ``gradcam_layer`` (name of
    the network's layer, as in ``network.named_modules()``).

    Raises:
        AttributionConfigError: naming every wrong or missing ``attribution#<key>``.
    """
    if not isinstance(attribution, Mapping):
        raise AttributionConfigError("bundle config id 'attribution' is missing (OSCAR needs its settings)")
    problems = []
    target = attribution.get("target")
    if target not in TARGETS:
        problems.append(f"'attribution#target' must be one of {TARGETS}, got {target!r}")
    n = attribution.get("num_images")
    if not isinstance(n, int) or n < 4 or n % 4:
        problems.append(f"'attribution#num_images' must be a positive multiple of 4 (cells), got {n!r}")
    methods = attribution.get("methods")
    if not methods or any(m not in METHODS for m in methods):
        problems.append(f"'attribution#methods' must be a non-empty subset of {METHODS}, got {methods!r}")
    grids = attribution.get("grid_sizes")
    if not grids or any(not isinstance(g, int) or g < 2 for g in grids):
        problems.append(f"'attribution#grid_sizes' must be ints >= 2, got {grids!r}")
        grids = []
    slic = attribution.get("slic_segments")
    if not isinstance(slic, int) or slic == 1 or slic < 0:
        problems.append(f"'attribution#slic_segments' must be an int >= 2 (0: no SLIC partition), got {slic!r}")
    names = {f"grid{g}" for g in grids} | ({"slic"} if slic else set())
    occ = attribution.get("occlusion_partitions")
    if methods and "occlusion" in methods and (not occ or any(o not in names for o in occ)):
        problems.append(f"'attribution#occlusion_partitions' must name partitions among {sorted(names)}, got {occ!r}")
    if methods and "gradcam" in methods and not isinstance(attribution.get("gradcam_layer"), str):
        problems.append(f"'attribution#gradcam_layer' must name a layer, got {attribution.get('gradcam_layer')!r}")
    if problems:
        raise AttributionConfigError("; ".join(problems))
    return dict(attribution)


def unet_bottleneck(channels: Sequence[int]) -> str:
    """Name of the bottleneck block of ``monai.networks.nets.UNet`` with ``len(channels)`` levels, e.g.
    ``model.1.submodule.1.submodule.1.submodule`` for 4 levels (its output is ``H / 2^(levels - 1)`` wide)."""
    return "model" + ".1.submodule" * (len(channels) - 1)


def scene_index(scene: str) -> int:
    """Class index of a scene for the scene classifier (``sector`` 0, ``linear`` 1)."""
    if scene not in SCENE_ORDER:
        raise ValueError(f"unknown scene {scene!r}; expected one of {SCENE_ORDER}")
    return SCENE_ORDER.index(scene)


def attribution_entries(datalist_path: str | Path, num_images: int) -> list[dict]:
    """The first ``num_images // 4`` test entries of each identity x scene cell, in cell order (identity, scene).

    Raises ``ValueError`` when a cell has fewer test images."""
    test = json.loads(Path(datalist_path).read_text()).get("test") or []
    cells: dict[tuple[str, str], list[dict]] = {}
    for e in test:
        cells.setdefault((str(e.get("identity")), str(e.get("scene"))), []).append(e)
    per_cell = num_images // 4
    if len(cells) != 4 or any(len(v) < per_cell for v in cells.values()):
        sizes = {f"{k[0]}/{k[1]}": len(v) for k, v in sorted(cells.items())}
        raise ValueError(
            f"attribution#num_images {num_images} needs {per_cell} test images in each of the 4 identity x scene "
            f"cells of {datalist_path}; found {sizes}"
        )
    return [e for key in sorted(cells) for e in cells[key][:per_cell]]


def _load(entries: Sequence[Mapping], preprocessing) -> tuple[Any, np.ndarray]:
    """Images ``(N, 1, H, W)`` float tensor and labels ``(N, H, W)`` int array through ``preprocessing``."""
    import torch

    items = [preprocessing(dict(e)) for e in entries]
    images = torch.stack([torch.as_tensor(i["image"]).float() for i in items])
    labels = np.stack([np.asarray(torch.as_tensor(i["label"])[0]).astype(np.int64) for i in items])
    return images, labels


def _region_fraction(mask: np.ndarray, partition: np.ndarray) -> np.ndarray:
    """Mean of ``mask`` ``(H, W)`` in each region of ``partition`` (labels ``0 .. R-1``) -> ``(R,)``."""
    flat = np.asarray(partition).ravel()
    r = int(flat.max()) + 1
    return np.bincount(flat, weights=mask.ravel().astype(np.float64), minlength=r) / np.bincount(flat, minlength=r)


def _explained_model(network, target: str):
    """The ``(B, K)`` score model whose predicted class the maps explain (:mod:`common.attribution.maps`)."""
    from common.attribution.maps import IdentityLogitDifference

    return IdentityLogitDifference(network) if target == "identity" else network


def write_attribution_ranks(
    output_dir: str | Path,
    network,
    datalist_path: str | Path,
    preprocessing,
    attribution: Mapping[str, Any],
    device: Any = "cpu",
    seed: int = 0,
) -> Path:
    """Rank the regions of every attribution image for ``network``; write :data:`ATTRIBUTION_FILE`.

    Args:
        output_dir: the run's folder.
        network: the trained segmentation network (``target`` ``identity``: logits ``(N, 3, H, W)``, explained
            through :class:`common.attribution.maps.IdentityLogitDifference`) or scene classifier (``scene``:
            logits ``(N, 2)``), weights already loaded. Each image's own prediction is explained.
        datalist_path: the prepared datalist (its ``test`` split).
        preprocessing: the dictionary transform of the test images (``image``, ``label``).
        attribution: the checked ``attribution`` section (:func:`check_attribution`).
        device: where the network runs.
        seed: the run's seed (SLIC's initialisation).
    """
    import torch

    from common.attribution import maps, regions
    from common.io import atomic_write

    cfg = check_attribution(attribution)
    entries = attribution_entries(datalist_path, cfg["num_images"])
    images, labels = _load(entries, preprocessing)
    arr = images[:, 0].numpy().astype(np.float64)
    shape = tuple(arr.shape[1:])
    partitions = {f"grid{n}": np.asarray(regions.grid_partition(shape, n)) for n in cfg["grid_sizes"]}
    if cfg["slic_segments"]:
        partitions["slic"] = np.asarray(regions.slic_partition(regions.mean_edge_image(arr), cfg["slic_segments"]))
    scenes = np.array([str(e["scene"]) for e in entries])
    fov = [(arr[scenes == s] > 0).mean(0) > 0.5 for s in SCENE_ORDER]
    fov_difference = (fov[0] != fov[1]).astype(np.float64)
    coverage = (labels > 0).mean(0)
    out: dict[str, np.ndarray] = {
        "ids": np.array([str(e["id"]) for e in entries]),
        "scene": scenes,
        "identity": np.array([int(e["identity"]) for e in entries]),
        "mean_image": arr.mean(0).astype(np.float32),
    }
    network = network.to(device).eval()
    images = images.to(device)
    for name, part in partitions.items():
        out[f"partition__{name}"] = part.astype(np.int32)
        out[f"object_coverage__{name}"] = _region_fraction(coverage, part).astype(np.float32)
        out[f"fov_difference__{name}"] = _region_fraction(fov_difference, part).astype(np.float32)
    model = _explained_model(network, cfg["target"])
    layer = ("net." if cfg["target"] == "identity" else "") + str(cfg.get("gradcam_layer"))
    batch = int(cfg.get("batch_size", 64))
    torch.manual_seed(seed)
    for method in cfg["methods"]:
        if method == "gradcam":
            cam = maps.gradcam_maps(model, images, target_layer=layer, batch_size=batch)
            computed = {name: cam for name in partitions}
        else:
            computed = {name: maps.occlusion_maps(model, images, partitions[name], batch_size=batch)
                        for name in cfg["occlusion_partitions"]}  # fmt: skip
        for name, amap in computed.items():
            ranks = regions.rank_regions(regions.region_means(amap, partitions[name]))
            out[f"ranks__{method}__{name}"] = np.asarray(ranks, dtype=np.float32)
    meta = {"target": cfg["target"], "methods": list(cfg["methods"]), "num_images": len(entries),
            "partitions": {k: int(v.max()) + 1 for k, v in partitions.items()}, "seed": int(seed),
            "object_fraction": float(coverage.mean())}  # fmt: skip
    out["meta"] = np.array(json.dumps(meta))

    def write(tmp: str) -> None:
        buf = io.BytesIO()
        np.savez_compressed(buf, **out)
        Path(tmp).write_bytes(buf.getvalue())

    return atomic_write(Path(output_dir) / ATTRIBUTION_FILE, write)


def load_attribution_ranks(path: str | Path) -> dict:
    """An :data:`ATTRIBUTION_FILE` as ``{"meta", "ids", "ranks": {(method, partition): (N, R)}, "partition":
    {name: (H, W)}, "object_coverage": {name: (R,)}, "fov_difference": {name: (R,)}, "mean_image"}``.

    Raises ``FileNotFoundError`` naming the file when it is absent."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"OSCAR ranks {path} do not exist (the run wrote no attribution ranks)")
    with np.load(path) as z:
        out: dict[str, Any] = {"meta": json.loads(str(z["meta"])), "ids": [str(i) for i in z["ids"]],
                               "mean_image": z["mean_image"], "ranks": {}, "partition": {}, "object_coverage": {},
                               "fov_difference": {}}  # fmt: skip
        for key in z.files:
            parts = key.split("__")
            if parts[0] == "ranks":
                out["ranks"][(parts[1], parts[2])] = z[key]
            elif parts[0] in ("partition", "object_coverage", "fov_difference"):
                out[parts[0]][parts[1]] = z[key]
    return out


def write_scene_metrics(
    output_dir: str | Path,
    network,
    datalist_path: str | Path,
    preprocessing,
    settings: Mapping[str, Any],
    device: Any = "cpu",
    batch_size: int = 32,
) -> dict:
    """Test accuracy of the scene classifier on the whole test split; writes ``<output_dir>/metrics.json``
    (``metrics``: ``scene_accuracy``; ``per_sample``: id, scene, predicted scene) and returns the record."""
    import torch

    from common.metrics.record import write_metrics

    test = json.loads(Path(datalist_path).read_text()).get("test") or []
    network = network.to(device).eval()
    per_sample = []
    with torch.no_grad():
        for start in range(0, len(test), batch_size):
            chunk = test[start : start + batch_size]
            images, _ = _load(chunk, preprocessing)
            pred = network(images.to(device)).argmax(1).cpu().tolist()
            per_sample += [{"id": str(e["id"]), "scene": str(e["scene"]), "identity": int(e["identity"]),
                            "pred_scene": SCENE_ORDER[p]} for e, p in zip(chunk, pred)]  # fmt: skip
    accuracy = float(np.mean([p["scene"] == p["pred_scene"] for p in per_sample])) if per_sample else float("nan")
    extra = {"model": "scene", "attribution_file": ATTRIBUTION_FILE}
    return write_metrics(Path(output_dir) / "metrics.json", {**settings, "model": "scene"},
                         {"scene_accuracy": accuracy}, per_sample, extra)  # fmt: skip

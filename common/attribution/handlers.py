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
  L1-normalised attribution (1 = most attributed, ties averaged);
- ``partition__<partition>`` ``(H, W)`` int: region index of every pixel;
- ``object_coverage__<partition>`` ``(R,)``: mean fraction of each region covered by the object (label > 0);
- ``fov_difference__<partition>`` ``(R,)``: fraction of each region where the two scenes' fields of view differ
  (by construction of the scenes: pixels inside one scene's field of view and outside the other's);
- ``mean_image`` ``(H, W)``; ``meta``: JSON with the target, methods, partition sizes and ``object_fraction``
  (the mean fraction of an image covered by the object).

A test model TS (``oscar_ba_dir`` and ``oscar_sa_dir`` set: the output folders of the same seed's baseline BA and scene
model SA) then runs :func:`write_attenuation`: from the three rank files it finds the top shortcut regions (top
localisation scores, :func:`common.attribution.statistics.localisation_scores`), attenuates them in pixel space on
the whole test split and writes the common / rare Dice and flip fractions plain, attenuated and with as many random
regions attenuated to ``<output_dir>/attenuation.json`` and to ``metrics.json`` (``extra.oscar_attenuation``).

The summary (:mod:`common.study.shortcut_label_flips`) reads these files only; no network runs at report time.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "ATTENUATION_FILE",
    "ATTRIBUTION_FILE",
    "TARGETS",
    "AttenuationInputError",
    "AttributionConfigError",
    "attribution_entries",
    "check_attenuation",
    "check_attribution",
    "load_attribution_ranks",
    "scene_index",
    "shortcut_regions",
    "top_region_count",
    "unet_bottleneck",
    "write_attenuation",
    "write_attribution_ranks",
    "write_scene_metrics",
]

ATTRIBUTION_FILE = "attribution_ranks.npz"
ATTENUATION_FILE = "attenuation.json"
TARGETS = ("identity", "scene")  # segmentation identity decision | scene classifier decision
METHODS = ("gradcam", "occlusion")
SCENE_ORDER = ("sector", "linear")  # class index of each scene for the scene classifier


class AttributionConfigError(ValueError):
    """A bundle's ``attribution`` section is missing or wrong; the message names the id."""


class AttenuationInputError(ValueError):
    """The ``attenuation`` section is wrong, or the TS, BA and SA rank files cannot be paired (other images, other
    partition, or the combination missing); the message names the file or id."""


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
        seed: the run's seed (``torch.manual_seed`` before the attribution passes; the partitions do not depend
            on it).
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


ATTENUATION_MODES = ("mean", "blur")  # common.attribution.attenuation.attenuate_regions


def check_attenuation(attenuation: Mapping[str, Any] | None) -> dict:
    """Validate an ``attenuation`` section; returns it as a dict.

    Required: ``top_fraction`` in ``(0, 1]``, ``mode`` (one of :data:`ATTENUATION_MODES`), ``combination``
    (``"<method>/<partition>"``), ``num_random_controls`` (int >= 1). Optional: ``batch_size`` (default 64).

    Raises:
        AttenuationInputError: naming every wrong or missing ``attenuation#<key>``.
    """
    if not isinstance(attenuation, Mapping):
        raise AttenuationInputError("bundle config id 'attenuation' is missing (test-time attenuation needs it)")
    problems = []
    frac = attenuation.get("top_fraction")
    if not isinstance(frac, (int, float)) or not 0 < frac <= 1:
        problems.append(f"'attenuation#top_fraction' must lie in (0, 1], got {frac!r}")
    if attenuation.get("mode") not in ATTENUATION_MODES:
        problems.append(f"'attenuation#mode' must be one of {ATTENUATION_MODES}, got {attenuation.get('mode')!r}")
    combo = attenuation.get("combination")
    if not isinstance(combo, str) or combo.count("/") != 1:
        problems.append(f"'attenuation#combination' must be '<method>/<partition>', got {combo!r}")
    draws = attenuation.get("num_random_controls")
    if not isinstance(draws, int) or isinstance(draws, bool) or draws < 1:
        problems.append(f"'attenuation#num_random_controls' must be an int >= 1, got {draws!r}")
    if problems:
        raise AttenuationInputError("; ".join(problems))
    return dict(attenuation)


def top_region_count(top_fraction: float, num_regions: int) -> int:
    """How many regions "the top ``top_fraction``" of ``num_regions`` is: ``ceil(top_fraction * num_regions)``, at
    least 1 (7 of an 8 x 8 grid's 64 at 0.1); the one count the summary, the figures and attenuation use."""
    return max(1, int(math.ceil(top_fraction * num_regions - 1e-9)))


def shortcut_regions(ts: Mapping, ba: Mapping, sa: Mapping, combination: tuple[str, str], top_fraction: float):
    """The top shortcut regions of a test model from three loaded rank files (:func:`load_attribution_ranks`).

    Median rank profiles ``(R,)`` of TS, SA and BA for ``combination`` (method, partition), their localisation
    scores (:func:`common.attribution.statistics.localisation_scores`) and the ``k = ceil(top_fraction * R)``
    highest-scoring regions, highest first.

    Returns:
        ``(regions (k,) int, scores (R,) float64, partition (H, W) int)``.

    Raises:
        AttenuationInputError: the files rank other image ids, or lack the combination, or their partitions differ.
    """
    from common.attribution import regions, statistics

    for name, other in (("BA", ba), ("SA", sa)):
        if list(other["ids"]) != list(ts["ids"]):
            raise AttenuationInputError(
                f"OSCAR attenuation: the {name} rank file ranks other test images than this run's "
                f"({len(other['ids'])} vs {len(ts['ids'])} ids, first {other['ids'][:2]} vs {ts['ids'][:2]})"
            )
    method, part = combination
    for name, f in (("TS", ts), ("BA", ba), ("SA", sa)):
        if (method, part) not in f["ranks"] or part not in f["partition"]:
            raise AttenuationInputError(f"OSCAR attenuation: the {name} rank file has no ranks__{method}__{part}")
    partition = np.asarray(ts["partition"][part])
    for name, f in (("BA", ba), ("SA", sa)):
        if not np.array_equal(np.asarray(f["partition"][part]), partition):
            raise AttenuationInputError(f"OSCAR attenuation: the {name} rank file's partition {part} differs from TS's")
    p_ts, p_sa, p_ba = (regions.median_rank_profile(f["ranks"][(method, part)]) for f in (ts, sa, ba))
    scores = statistics.localisation_scores(p_ts, p_sa, p_ba)
    return statistics.top_regions(scores, top_region_count(top_fraction, len(scores))), scores, partition


def _group_metrics(network, images, labels, ids, groups, class_names, batch_size: int, transform=None) -> dict:
    """Per-group Dice and Flip decomposition of ``network`` on ``images`` ``(N, 1, H, W)`` (optionally through
    ``transform(batch)``), scored as the bundle's evaluation scores them: per image by
    :class:`common.handlers.SegmentationReport`, per group by :func:`common.metrics.shortcut.group_summary`.

    Returns ``{<group>: {"dice_mean", "dice", "correct", "flip", "miss", "num_images"}, "dice_gap" (common minus
    rare mean Dice), "flip_gap" (rare minus common flip fraction of ground-truth foreground)}``."""
    from types import SimpleNamespace

    import torch

    from common.handlers.segmentation_report import SegmentationReport
    from common.metrics.shortcut import group_summary

    report = SegmentationReport(len(class_names) + 1, class_names=class_names)
    report.reset()
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            x = images[start : start + batch_size]
            x = transform(x) if transform is not None else x
            out = {"pred": network(x).float().cpu(), "label": labels[start : start + batch_size]}
            report(SimpleNamespace(state=SimpleNamespace(output=out, batch={"id": ids[start : start + batch_size]})))
    group_of = dict(zip(ids, groups))
    records = [{**r, "group": group_of[str(r["id"])]} for r in report.results()["per_image"]]
    out: dict[str, Any] = {}
    for g in ("common", "rare"):
        s = group_summary([r for r in records if r["group"] == g], class_names)
        out[g] = {"dice_mean": s["dice_mean"], "dice": s["dice"], "correct": s["correct"], "flip": s["flip"],
                  "miss": s["miss"], "num_images": s["num_images"]}  # fmt: skip
    out["dice_gap"] = out["common"]["dice_mean"] - out["rare"]["dice_mean"]
    out["flip_gap"] = out["rare"]["flip"] - out["common"]["flip"]
    return out


def _mean_of(results: Sequence[Mapping]) -> dict:
    """Element-wise mean of equal-shaped nested dicts of numbers (the random draws)."""
    first = results[0]
    if isinstance(first, Mapping):
        return {k: _mean_of([r[k] for r in results]) for k in first}
    return float(np.mean([float(v) for v in results]))


def write_attenuation(
    output_dir: str | Path,
    network,
    datalist_path: str | Path,
    preprocessing,
    attenuation: Mapping[str, Any],
    ba_dir: str | Path | None,
    sa_dir: str | Path | None,
    device: Any = "cpu",
    seed: int = 0,
    class_names: Sequence[str] = ("identity_1", "identity_2"),
) -> dict | None:
    """Test-time attenuation of a test model's top shortcut regions; writes :data:`ATTENUATION_FILE` and merges the
    result into ``<output_dir>/metrics.json`` under ``extra.oscar_attenuation``.

    The top ``k = ceil(top_fraction * R)`` regions by localisation score (:func:`shortcut_regions`, from this run's
    :data:`ATTRIBUTION_FILE` and BA's and SA's) are attenuated in pixel space
    (:func:`common.attribution.attenuation.attenuate_regions`, ``mode``) on every test image; the network then runs
    three ways: ``plain``, ``attenuated`` (the top-k regions) and ``random`` (``k`` regions drawn uniformly without
    replacement from all ``R``, ``num_random_controls`` draws from ``numpy.random.default_rng(seed)``, metrics averaged
    over the draws). Each holds per group (``common``/``rare``) the mean Dice and the flip fraction, and the gaps
    ``dice_gap`` (common minus rare Dice) and ``flip_gap`` (rare minus common flip). ``narrowing`` =
    gap plain - gap attenuated and ``beyond_random`` = gap random - gap attenuated (per gap; positive: attenuating
    the shortcut regions narrows the gap, more than as many random regions).

    Args:
        output_dir: the run's folder (holds its :data:`ATTRIBUTION_FILE` and ``metrics.json``).
        network: the trained segmentation network (logits ``(N, C, H, W)``), weights loaded.
        datalist_path: the prepared datalist (its whole ``test`` split; entries with ``id`` and ``group``).
        preprocessing: the dictionary transform of the test images (``image``, ``label``).
        attenuation: the ``attenuation`` section (:func:`check_attenuation`).
        ba_dir, sa_dir: output folders of the same seed's baseline BA and scene model SA; ``None`` (either): not a test
            model, nothing is written and ``None`` is returned.
        device: where the network runs.
        seed: seeds the random-region draws.
        class_names: the foreground classes (identities), as the bundle's evaluation names them.

    Raises:
        AttenuationInputError: a wrong section, or rank files that cannot be paired.
        FileNotFoundError: a rank file or ``metrics.json`` is absent.
    """
    if ba_dir is None or sa_dir is None:
        return None
    import torch

    from common.attribution.attenuation import attenuate_regions
    from common.io import atomic_write_json
    from common.metrics.record import nan_to_none, write_metrics_record

    cfg = check_attenuation(attenuation)
    output_dir = Path(output_dir)
    metrics_path = output_dir / "metrics.json"
    if not metrics_path.is_file():
        raise FileNotFoundError(f"OSCAR attenuation: {metrics_path} does not exist (the evaluation runs first)")
    files = {name: load_attribution_ranks(Path(d) / ATTRIBUTION_FILE) for name, d in
             (("TS", output_dir), ("BA", ba_dir), ("SA", sa_dir))}  # fmt: skip
    combination = tuple(cfg["combination"].split("/"))
    top, scores, partition = shortcut_regions(files["TS"], files["BA"], files["SA"], combination, cfg["top_fraction"])
    num_regions, k = len(scores), len(top)

    test = json.loads(Path(datalist_path).read_text()).get("test") or []
    images, labels = _load(test, preprocessing)
    images = images.to(device)
    labels_t = torch.as_tensor(labels)[:, None]
    ids = [str(e["id"]) for e in test]
    groups = [str(e["group"]) for e in test]
    network = network.to(device).eval()
    batch = int(cfg.get("batch_size", 64))
    mode = cfg["mode"]

    def run(regions_=None) -> dict:
        transform = None if regions_ is None else (lambda x: attenuate_regions(x, partition, regions_, mode=mode))
        return _group_metrics(network, images, labels_t, ids, groups, list(class_names), batch, transform)

    rng = np.random.default_rng(seed)
    draws = [np.sort(rng.choice(num_regions, size=k, replace=False)) for _ in range(cfg["num_random_controls"])]
    plain, attenuated = run(), run(top)
    random_runs = [run(d) for d in draws]
    random = {**_mean_of(random_runs), "draws": [{"regions": [int(r) for r in d], "dice_gap": x["dice_gap"],
                                                  "flip_gap": x["flip_gap"]} for d, x in zip(draws, random_runs)]}  # fmt: skip
    gaps = ("dice_gap", "flip_gap")
    result = nan_to_none({
        "combination": cfg["combination"], "mode": mode, "top_fraction": float(cfg["top_fraction"]), "k": k,
        "num_regions": num_regions, "regions": [int(r) for r in top],
        "localisation": [float(v) for v in scores], "num_images": len(test),
        "num_random_controls": int(cfg["num_random_controls"]), "seed": int(seed),
        "ba_dir": str(ba_dir), "sa_dir": str(sa_dir),
        "plain": plain, "attenuated": attenuated, "random": random,
        "narrowing": {g: plain[g] - attenuated[g] for g in gaps},
        "beyond_random": {g: random[g] - attenuated[g] for g in gaps},
    })  # fmt: skip
    atomic_write_json(output_dir / ATTENUATION_FILE, result)
    record = json.loads(metrics_path.read_text())
    record.setdefault("extra", {})["oscar_attenuation"] = result
    write_metrics_record(metrics_path, record)
    return result

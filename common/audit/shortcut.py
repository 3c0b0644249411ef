"""Shortcut localisation on the user's model (``--shortcut ATTR``): OSCAR (Achara, Triantafillou, Puyol-Anton,
Hammers and King 2025, "Localising Shortcut Learning in Pixel Space via Ordinal Scoring Correlations for
Attribution Representations") with the library :mod:`common.attribution`, for 2-D segmentation bundles.

Three region-rank profiles over an 8 x 8 grid of the image (:func:`common.attribution.regions.grid_partition`,
region ``r`` = row ``r // 8``, column ``r % 8``, as fractions of each image):

- TS, the audited bundle (``--bundle``), and BA, a balanced baseline bundle (``--baseline``): per image,
  region-occlusion maps (:func:`common.attribution.maps.occlusion_maps`, each region filled with its mean, drops
  clamped at 0) of the target *foreground-class logit margin summed over the predicted foreground*: at every
  pixel whose argmax is not background, the largest foreground logit minus the background logit (channel 0),
  summed (:class:`ForegroundMargin`); then region means, within-image ranks (1 = most attributed) and the
  per-region median rank over the images (:mod:`common.attribution.regions`);
- SA, a predictor of the attribute: with ``--attribute-model`` a classifier bundle (``(B, K)`` logits), treated
  as TS and BA with its predicted class's logit as target; without one, an explainable **proxy, not OSCAR's
  trained SA**: the region means of the absolute difference between the mean images of the attribute's groups
  (the range over the groups' mean images for more than two groups), ranked (1 = most different). The proxy
  says where the groups' images differ on average, not where a model finds the attribute.

Statistics (:mod:`common.attribution.statistics`): the three Pearson correlations of the profiles with
permutation p-values, the partial correlation r(TS, SA | BA) with its permutation p-value and a 95% image
bootstrap interval (the bootstrap of :func:`~common.attribution.statistics.partial_correlation_bootstrap`, but
resampling images within each group so every resample keeps the group sizes, recomputing the proxy, and leaving
out, and counting, resamples where the partial correlation is undefined, e.g. a profile without spread), and the
regions with the highest localisation scores (TS and SA departing from BA in
the same direction), drawn over the cohort's mean image. These p-values describe the attribution profiles and
are not part of the report's corrected family of between-group tests.

Images are taken as stored in their NIfTI files (first axis = rows of the figure); each bundle's
``preprocessing`` prepares its own input. The cohort must be 2-D, one shape for all images.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["GRID", "ForegroundMargin", "check_shortcut", "shortcut_analysis", "shortcut_lines"]

GRID = 8  # cells per side of the analysis grid: 64 regions
TOP = 5  # regions shown and listed
PROXY = "a proxy, the region-wise absolute difference of the groups' mean images, not a trained SA model"


class ForegroundMargin(nn.Module):
    """A segmentation network's foreground evidence as one score per image, ``(B, C, H, W) -> (B, 1)``.

    ``t = sum over pixels predicted foreground of (max over foreground channels of the logit - background
    logit)``; the foreground mask (argmax not ``background``) is recomputed without gradient for every input, so
    occluding the object also shrinks it, and pixels predicted background contribute nothing.
    """

    def __init__(self, net: nn.Module, background: int = 0) -> None:
        super().__init__()
        self.net = net
        self.background = int(background)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.net(x)
        if logits.ndim != 4 or logits.shape[1] < 2:
            raise ValueError(f"expected (B, C >= 2, H, W) segmentation logits, got {tuple(logits.shape)}")
        others = [c for c in range(logits.shape[1]) if c != self.background]
        with torch.no_grad():
            fg = (logits.argmax(dim=1) != self.background).to(logits.dtype)
        margin = logits[:, others].max(dim=1).values - logits[:, self.background]
        return (margin * fg).flatten(1).sum(dim=1, keepdim=True)


def _spatial_shape(path: str) -> tuple[int, ...]:
    import nibabel as nib

    shape = tuple(int(n) for n in nib.load(path).shape)
    while len(shape) > 2 and shape[-1] == 1:
        shape = shape[:-1]
    return shape


def check_shortcut(entries: Sequence[Mapping[str, Any]], ids: Sequence[str], attribute: str, source: str):
    """The problems that stop ``--shortcut ATTR`` before any model runs, raised together as a
    :class:`common.data.DatalistError`: an entry without the attribute or the image, an attribute with one group,
    an image that is not 2-D (``(H, W)``, or ``(H, W, 1)``), images of different shapes.

    Returns the attribute's group per entry (strings) and the groups in sorted order.
    """
    from common.data.datalist import DatalistError

    problems: list[str] = []
    for tag, entry in zip(ids, entries):
        if entry.get(attribute) is None:
            problems.append(f"{source}: {tag} has no '{attribute}' attribute (--shortcut {attribute})")
    groups = [str(e.get(attribute)) for e in entries]
    order = sorted(set(groups))
    if not problems and len(order) < 2:
        problems.append(
            f"{source}: --shortcut {attribute}: every entry is in group '{order[0]}', an attribute needs two groups"
        )
    shapes = {}
    for tag, entry in zip(ids, entries):
        if "image" not in entry:
            problems.append(f"{source}: {tag} has no 'image' to explain (--shortcut {attribute})")
            continue
        shape = _spatial_shape(entry["image"])
        if len(shape) != 2:
            problems.append(f"{entry['image']}: --shortcut is 2-D only, the image has shape {shape}")
        shapes.setdefault(shape, entry["image"])
    if len(shapes) > 1 and not any("2-D only" in p for p in problems):
        (a, first), (b, second) = list(shapes.items())[:2]
        problems.append(
            f"{second}: --shortcut needs one image shape for the cohort's mean image, got {b} here and {a} in {first}"
        )
    if problems:
        raise DatalistError(problems, source)
    return groups, order


def _as_tensor(x) -> torch.Tensor:
    return x.as_tensor() if hasattr(x, "as_tensor") else torch.as_tensor(x)


def _prepared(model, path: str) -> torch.Tensor:
    """The bundle's preprocessing of one image as ``(1, C, H, W)`` float32 on the model's device."""
    x = _as_tensor(model.preprocessing({"image": path})["image"]).float()
    while x.ndim > 3 and x.shape[-1] == 1:
        x = x[..., 0]
    if x.ndim != 3:
        raise ValueError(f"{path}: the bundle's preprocessing gives {tuple(x.shape)}, not (C, H, W); 2-D only")
    return x[None].to(model.device)


def load_shortcut_models(
    bundle: str | os.PathLike,
    baseline: str | os.PathLike,
    attribute_model: str | os.PathLike | None,
    first_image: str,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The TS (``bundle``, with ``overrides``), BA and optional SA bundles as
    :class:`common.audit.uncertainty.BundleModel`, each run once on ``first_image`` to check its output:
    ``(1, C >= 2, H, W)`` segmentation logits for TS and BA, ``(1, K >= 2)`` class logits for SA.

    Raises:
        KeyError / FileNotFoundError: a bundle without an inference config, ``network``, ``preprocessing`` or
        weights; ValueError: an output of another shape.
    """
    from common.audit.infer import load_bundle_model

    dirs = {"ts": (bundle, "--bundle"), "ba": (baseline, "--baseline")}
    if attribute_model is not None:
        dirs["sa"] = (attribute_model, "--attribute-model")
    models = {}
    for role, (folder, option) in dirs.items():
        model = load_bundle_model(folder, overrides if role == "ts" else {})
        model.network.eval()
        with torch.no_grad():
            out = model.network(_prepared(model, first_image))
        ok = out.ndim == 2 and out.shape[1] >= 2 if role == "sa" else out.ndim == 4 and out.shape[1] >= 2
        if not ok:
            want = "(1, K >= 2) class logits" if role == "sa" else "(1, C >= 2, H, W) segmentation logits"
            raise ValueError(f"{option} {folder}: the network gives {tuple(out.shape)} for {first_image}, not {want}")
        models[role] = model
    return models


def _ranks(model, paths: Sequence[str], segmentation: bool, desc: str, progress: bool) -> np.ndarray:
    """``(N, R)`` within-image ranks of the occlusion region means of one model."""
    from tqdm import tqdm

    from common.attribution.maps import occlusion_maps
    from common.attribution.regions import grid_partition, rank_regions, region_means

    target = ForegroundMargin(model.network) if segmentation else model.network
    rows = []
    for path in tqdm(paths, desc=desc, unit="image", disable=not progress):
        x = _prepared(model, path)
        partition = grid_partition(tuple(x.shape[-2:]), GRID)
        maps = occlusion_maps(target, x, partition, class_idx=0 if segmentation else None)
        rows.append(region_means(maps, partition)[0])
    return rank_regions(np.stack(rows))


def _proxy_profile(
    images: np.ndarray, groups: np.ndarray, order: Sequence[str], idx: np.ndarray | None = None
) -> np.ndarray:
    """``(R,)`` ranks (1 = most different) of the region means of the range over the groups' mean images.

    ``images``: ``(N, H, W)``; ``idx``: a resample of image indices (default all once). The means are weighted
    sums (resample counts as weights), so a bootstrap resample copies no image.
    """
    from common.attribution.regions import grid_partition, rank_regions, region_means

    n = len(images)
    counts = np.bincount(np.arange(n) if idx is None else idx, minlength=n).astype(np.float32)
    flat = images.reshape(n, -1)
    means = []
    for g in order:
        weights = counts * (groups == g)
        means.append(weights @ flat / weights.sum())
    means = np.stack(means)
    difference = (means.max(axis=0) - means.min(axis=0)).reshape(images.shape[1:])  # |A - B| for two groups
    partition = grid_partition(difference.shape, GRID)
    return rank_regions(region_means(difference[None], partition))[0]


def _load_images(paths: Sequence[str]) -> np.ndarray:
    import nibabel as nib

    return np.stack([np.asarray(nib.load(p).dataobj, dtype=np.float32).reshape(_spatial_shape(p)) for p in paths])


def _figure(mean_image: np.ndarray, top: list[dict[str, Any]], attribute: str, path: Path) -> None:
    """The cohort's mean image, the analysis grid and the top regions outlined and numbered."""
    from common.study.report import save_figure, use_agg_backend

    use_agg_backend()
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    h, w = mean_image.shape
    rows = [c[0] for c in np.array_split(np.arange(h), GRID)] + [h]
    cols = [c[0] for c in np.array_split(np.arange(w), GRID)] + [w]
    fig, ax = plt.subplots(figsize=(5.0, 5.0 * h / w + 0.4))
    ax.imshow(mean_image, cmap="gray", interpolation="nearest")
    for y in rows[1:-1]:
        ax.axhline(y - 0.5, color="white", lw=0.4, alpha=0.5)
    for x in cols[1:-1]:
        ax.axvline(x - 0.5, color="white", lw=0.4, alpha=0.5)
    for k, t in enumerate(top, start=1):
        r, c = t["row"], t["col"]
        y0, x0 = rows[r] - 0.5, cols[c] - 0.5
        ax.add_patch(Rectangle((x0, y0), cols[c + 1] - cols[c], rows[r + 1] - rows[r], fill=False, ec="red", lw=2))
        ax.text(x0 + 0.5, y0 + 0.5, str(k), color="red", fontsize=10, va="top", ha="left", weight="bold")
    ax.set_title(f"Top regions of r(TS, SA | BA) by {attribute}")
    ax.set_xticks([])
    ax.set_yticks([])
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def shortcut_analysis(
    paths: Sequence[str],
    groups: Sequence[str],
    order: Sequence[str],
    models: Mapping[str, Any],
    attribute: str,
    output: str | os.PathLike,
    *,
    n_resamples: int = 2000,
    seed: int = 0,
    progress: bool = True,
    sources: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """OSCAR's profiles and statistics for the images ``paths`` (module docstring); writes
    ``shortcut_regions.png`` into ``output``.

    Args:
        paths: ``N`` 2-D images of one shape; groups: their attribute group; order: the groups.
        models: ``{"ts", "ba"[, "sa"]}`` from :func:`load_shortcut_models`.
        n_resamples: permutations of each test and bootstrap resamples; seed: their seed.
        sources: ``{"ts", "ba", "sa"}`` folders to record.

    Returns:
        ``{"attribute", "groups", "n_images", "grid", "target", "sa", "profiles": {"ts", "ba", "sa"} (R,),
        "correlations": {"ts_sa", "ts_ba", "sa_ba": {"r", "p"}}, "partial": {"r", "p", "ci_low", "ci_high",
        "level", "n_resamples", "n_undefined"}, "top_regions": [{"region", "row", "col", "score", "ts", "sa",
        "ba"}], "figure"}``; ranks are 1 = most attributed of ``R = 64`` regions, undefined values NaN.
    """
    from common.attribution.regions import median_rank_profile
    from common.attribution.statistics import (
        localisation_scores,
        partial_correlation,
        partial_correlation_test,
        profile_correlations,
        top_regions,
    )

    groups = np.asarray(groups, dtype=object)
    ranks = {
        role: _ranks(models[role], paths, role != "sa", f"{role.upper()} occlusion", progress)
        for role in ("ts", "ba", "sa")
        if role in models
    }
    images = _load_images(paths)
    profiles = {role: median_rank_profile(r) for role, r in ranks.items()}
    if "sa" not in models:
        profiles["sa"] = _proxy_profile(images, groups, order)
    ts, sa, ba = profiles["ts"], profiles["sa"], profiles["ba"]
    level = 0.95
    with np.errstate(invalid="ignore", divide="ignore"):
        correlations = profile_correlations(ts, sa, ba, num_permutations=n_resamples, seed=seed)
        r, p = partial_correlation_test(ts, sa, ba, num_permutations=n_resamples, seed=seed)
        # image bootstrap within each group (every resample keeps the group sizes); the proxy is recomputed
        rng = np.random.default_rng(seed)
        members = [np.flatnonzero(groups == g) for g in order]
        stats = np.empty(n_resamples)
        for b in range(n_resamples):
            idx = np.concatenate([rng.choice(m, m.size) for m in members])
            sa_b = np.median(ranks["sa"][idx], axis=0) if "sa" in ranks else _proxy_profile(images, groups, order, idx)
            stats[b] = partial_correlation(
                np.median(ranks["ts"][idx], axis=0), sa_b, np.median(ranks["ba"][idx], axis=0)
            )
        finite = stats[np.isfinite(stats)]
        undefined = int(n_resamples - finite.size)
        low, high = (
            np.percentile(finite, [100 * (1 - level) / 2, 100 * (1 + level) / 2]) if finite.size else (np.nan,) * 2
        )
        scores = localisation_scores(ts, sa, ba)
    top = []
    for region in top_regions(np.nan_to_num(scores, nan=-np.inf), TOP):
        region = int(region)
        top.append(
            {
                "region": region,
                "row": region // GRID,
                "col": region % GRID,
                "score": float(scores[region]),
                **{role: float(profiles[role][region]) for role in ("ts", "sa", "ba")},
            }
        )
    figure = Path(output) / "shortcut_regions.png"
    _figure(images.mean(axis=0), top, attribute, figure)
    sources = dict(sources or {})
    return {
        "attribute": attribute,
        "groups": list(order),
        "n_images": len(paths),
        "grid": GRID,
        "method": "occlusion of each grid region (filled with its mean), drops clamped at 0",
        "target": "TS, BA: foreground logit margin (largest foreground minus background logit) summed over the "
        "predicted foreground; SA classifier: its predicted class's logit",
        "models": {role: str(Path(sources[role]).resolve()) for role in sources},
        "sa": "classifier bundle" if "sa" in models else PROXY,
        "profiles": {role: profiles[role].tolist() for role in ("ts", "sa", "ba")},
        "correlations": correlations,
        "partial": {
            "r": float(r),
            "p": float(p),
            "ci_low": float(low),
            "ci_high": float(high),
            "level": level,
            "n_resamples": n_resamples,
            "n_undefined": undefined,
        },
        "top_regions": top,
        "figure": figure.name,
    }


def _num(x: float | None, spec: str = ".3f") -> str:
    return "-" if x is None or not np.isfinite(x) else format(x, spec)


def _pval(x: float | None) -> str:
    return "-" if x is None or not np.isfinite(x) else ("< 0.001" if x < 0.001 else f"{x:.3f}")


def shortcut_lines(section: Mapping[str, Any] | None) -> list[str]:
    """Markdown lines for the report: correlations, partial correlation, top regions and their map."""
    if not section:
        return []
    attr = section["attribute"]
    partial = section["partial"]
    proxy = section["sa"] == PROXY
    lines = [
        f"### Shortcut localisation by {attr} (OSCAR)",
        "",
        f"Region-rank profiles over an {section['grid']} x {section['grid']} grid ({section['n_images']} images, "
        f"groups {', '.join(section['groups'])}) of TS (the audited bundle), BA (the balanced baseline) and SA "
        + (
            f"({section['sa']}). **SA is a proxy**: it shows where the groups' images differ on average, not "
            "where a model trained to predict the attribute looks."
            if proxy
            else "(the attribute classifier bundle)."
        )
        + f" Attribution: {section['method']}; target: {section['target']}. Permutation p-values "
        f"({partial['n_resamples']} permutations), not part of the corrected family of between-group tests.",
        "",
        "| profiles | Pearson r | p |",
        "|---|---|---|",
    ]
    names = {"ts_sa": "TS, SA", "ts_ba": "TS, BA", "sa_ba": "SA, BA"}
    for key, name in names.items():
        c = section["correlations"][key]
        lines.append(f"| {name} | {_num(c['r'])} | {_pval(c['p'])} |")
    pct = f"{100 * partial['level']:g}%"
    lines += [
        f"| TS, SA given BA (partial) | {_num(partial['r'])} [{_num(partial['ci_low'])}, "
        f"{_num(partial['ci_high'])}] ({pct} bootstrap) | {_pval(partial['p'])} |",
        "",
        "A positive partial r(TS, SA | BA) means the audited model departs from the baseline in the regions "
        "where SA looks: a candidate shortcut. Its top regions (localisation score: TS and SA departing from BA "
        "together), median ranks out of 64 (1 = most attributed):",
        "",
        "| # | region (row, col) | score | TS rank | SA rank | BA rank |",
        "|---|---|---|---|---|---|",
    ]
    for k, t in enumerate(section["top_regions"], start=1):
        lines.append(
            f"| {k} | {t['region']} ({t['row']}, {t['col']}) | {_num(t['score'], '.2f')} | {_num(t['ts'], '.1f')} "
            f"| {_num(t['sa'], '.1f')} | {_num(t['ba'], '.1f')} |"
        )
    title = f"Shortcut regions by {attr}"
    return [*lines, "", f"![{title}]({section['figure']})", ""]

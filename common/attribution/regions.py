"""Partitions of the image plane and per-image region rankings of attribution maps.

A partition is an ``(H, W)`` integer map whose labels are ``0 .. R-1``; region ``r`` of every
per-region array (``(N, R)`` scores or ranks, ``(R,)`` profiles) is the pixel set
``partition == r``. Labels are ordered top-to-bottom, then left-to-right.

OSCAR (Achara et al., 2025) conventions followed here:

* maps are L1-normalised by dividing by their sum, without taking absolute values (the maps are
  non-negative: GradCAM after ReLU); the division does not change the ranking within an image;
* rank 1 is the *most* attributed region (ranks of the negated region means), ties get the
  average of the ranks they span;
* the dataset-level profile of a model is the per-region median of the image ranks.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.stats import rankdata

__all__ = [
    "grid_partition",
    "mean_edge_image",
    "median_rank_profile",
    "paint_regions",
    "rank_regions",
    "region_means",
    "slic_partition",
]


def grid_partition(shape_hw: tuple[int, int], n: int) -> np.ndarray:
    """Regular ``n x n`` grid.

    Args:
        shape_hw: image size ``(H, W)`` in pixels; need not be multiples of ``n`` (``n <= H, W``).
        n: cells per side.

    Returns:
        ``(H, W)`` int64 map with labels ``row * n + col`` in ``0 .. n*n - 1``. Cell heights
        (widths) differ by at most one pixel: the first ``H % n`` rows of cells are one pixel
        taller (``numpy.array_split`` boundaries). OSCAR's grid uses ``H // n`` and only supports
        multiples of ``n``, where both agree.
    """
    h, w = (int(s) for s in shape_hw)
    if n < 1 or n > h or n > w:
        raise ValueError(f"need 1 <= n <= min(H, W), got n={n} for shape {(h, w)}")
    rows = np.concatenate([np.full(len(c), i) for i, c in enumerate(np.array_split(np.arange(h), n))])
    cols = np.concatenate([np.full(len(c), j) for j, c in enumerate(np.array_split(np.arange(w), n))])
    return (rows[:, None] * n + cols[None, :]).astype(np.int64)


def mean_edge_image(images: np.ndarray) -> np.ndarray:
    """Mean Sobel edge magnitude over a set of images (the reference image for superpixels).

    Each image is converted to grey (``skimage.color.rgb2gray`` for 3 channels, the single channel
    otherwise), min-max scaled to ``[0, 1]``, passed through ``skimage.filters.sobel`` and the
    results are averaged, as in OSCAR.

    Args:
        images: ``(N, H, W)`` or channel-first ``(N, C, H, W)`` with ``C`` in ``{1, 3}``.

    Returns:
        ``(H, W)`` float32 mean edge magnitude.
    """
    from skimage.color import rgb2gray
    from skimage.filters import sobel

    images = np.asarray(images)
    if images.ndim == 3:
        images = images[:, None]
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"expected (N, H, W) or (N, C, H, W) with C in {{1, 3}}, got {images.shape}")
    acc = np.zeros(images.shape[2:], dtype=np.float64)
    for im in images:
        g = rgb2gray(np.moveaxis(im, 0, -1)) if im.shape[0] == 3 else im[0].astype(np.float64)
        g = (g - g.min()) / (np.ptp(g) + 1e-8)
        acc += sobel(g)
    return (acc / len(images)).astype(np.float32)


def slic_partition(mean_edge: np.ndarray, n_segments: int, compactness: float = 10.0) -> np.ndarray:
    """SLIC superpixels (Achanta et al., 2012, "SLIC Superpixels Compared to State-of-the-Art
    Superpixel Methods") of the mean edge image, shared by every image of the test set.

    Follows OSCAR: the ``(H, W)`` edge image is repeated to three channels (so scikit-image runs
    SLIC in CIELAB space), ``enforce_connectivity=False``, and labels are renumbered by region
    centroid, top-to-bottom then left-to-right. SLIC initialises on a regular grid, so the result
    is deterministic and takes no seed.

    Args:
        mean_edge: ``(H, W)`` reference image, e.g. from :func:`mean_edge_image`.
        n_segments: requested number of superpixels (the result may have a few fewer or more).
        compactness: SLIC trade-off between intensity and spatial proximity.

    Returns:
        ``(H, W)`` int64 map with consecutive labels ``0 .. R-1``.
    """
    from skimage.segmentation import slic

    mean_edge = np.asarray(mean_edge, dtype=np.float32)
    if mean_edge.ndim != 2:
        raise ValueError(f"expected an (H, W) image, got {mean_edge.shape}")
    labels = slic(
        np.repeat(mean_edge[..., None], 3, axis=2),
        n_segments=n_segments,
        compactness=compactness,
        start_label=0,
        enforce_connectivity=False,
    )
    return _order_by_centroid(labels)


def _order_by_centroid(labels: np.ndarray) -> np.ndarray:
    uniq, inv = np.unique(labels, return_inverse=True)
    inv = inv.reshape(labels.shape)
    yy, xx = np.indices(labels.shape)
    idx = np.arange(len(uniq))
    cy = ndimage.mean(yy, labels=inv, index=idx)
    cx = ndimage.mean(xx, labels=inv, index=idx)
    order = np.lexsort((cx, cy))
    remap = np.empty(len(uniq), dtype=np.int64)
    remap[order] = np.arange(len(uniq))
    return remap[inv]


def _check_partition(partition: np.ndarray) -> int:
    partition = np.asarray(partition)
    if partition.ndim != 2 or not np.issubdtype(partition.dtype, np.integer):
        raise ValueError(f"partition must be an (H, W) integer map, got {partition.dtype} {partition.shape}")
    r = int(partition.max()) + 1
    if partition.min() < 0 or len(np.unique(partition)) != r:
        raise ValueError("partition labels must be exactly 0 .. R-1")
    return r


def region_means(maps: np.ndarray, partition: np.ndarray, eps: float = 1e-16) -> np.ndarray:
    """Mean L1-normalised attribution per region.

    Args:
        maps: ``(N, H, W)`` attribution maps (non-negative, e.g. GradCAM after ReLU).
        partition: ``(H, W)`` labels ``0 .. R-1``.
        eps: added to each map's sum (OSCAR's ``1e-16``) so an all-zero map gives zeros.

    Returns:
        ``(N, R)`` float64: region ``r`` mean of ``map / (map.sum() + eps)``. No absolute value is
        taken (as in OSCAR), so signed maps keep their sign.
    """
    maps = np.asarray(maps, dtype=np.float64)
    partition = np.asarray(partition)
    if maps.ndim != 3 or maps.shape[1:] != partition.shape:
        raise ValueError(f"maps {maps.shape} do not match partition {partition.shape}")
    r = _check_partition(partition)
    flat = partition.ravel()
    counts = np.bincount(flat, minlength=r).astype(np.float64)
    normed = maps.reshape(len(maps), -1) / (maps.reshape(len(maps), -1).sum(axis=1, keepdims=True) + eps)
    sums = np.stack([np.bincount(flat, weights=m, minlength=r) for m in normed])
    return sums / counts


def rank_regions(scores: np.ndarray) -> np.ndarray:
    """Within-image ranks, 1 = most attributed region, ties averaged.

    Args:
        scores: ``(N, R)`` region scores, higher = more attributed.

    Returns:
        ``(N, R)`` float64 ranks in ``[1, R]``; each row sums to ``R (R + 1) / 2``.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2:
        raise ValueError(f"expected (N, R) scores, got {scores.shape}")
    return rankdata(-scores, method="average", axis=1)


def median_rank_profile(ranks: np.ndarray) -> np.ndarray:
    """Dataset-level profile: per-region median over images of ``(N, R)`` ranks -> ``(R,)``."""
    ranks = np.asarray(ranks, dtype=np.float64)
    if ranks.ndim != 2:
        raise ValueError(f"expected (N, R) ranks, got {ranks.shape}")
    return np.median(ranks, axis=0)


def paint_regions(values: np.ndarray, partition: np.ndarray) -> np.ndarray:
    """Pixel map of per-region values: ``(R,)`` values and ``(H, W)`` partition -> ``(H, W)``."""
    values = np.asarray(values)
    r = _check_partition(partition)
    if values.shape != (r,):
        raise ValueError(f"expected {r} values, got {values.shape}")
    return values[np.asarray(partition)]

"""Test-time attenuation of shortcut regions.

:func:`attenuate_regions` removes the content of chosen regions in pixel space (a region-mean fill
or a Gaussian blur), so the test model can be re-evaluated without its top-k localised shortcut
regions (:func:`..statistics.top_regions` of :func:`..statistics.localisation_scores`).

OSCAR (Achara et al., 2025) attenuates differently: it leaves the pixels unchanged and re-weights
the final global average pooling of the classifier's feature map with the localisation-score map
(down-weighting positive-score regions, up-weighting negative ones); :func:`rcs_pooling_weights`
gives those weights. Pixel-space attenuation needs no access to the network's pooling layer, so it
applies unchanged to segmentation networks.
"""

from __future__ import annotations

import numpy as np
import torch
from monai.networks.layers import GaussianFilter

__all__ = ["attenuate_regions", "rcs_pooling_weights"]


def attenuate_regions(
    images: torch.Tensor,
    partition: np.ndarray | torch.Tensor,
    regions,
    mode: str = "blur",
    sigma: float = 4.0,
) -> torch.Tensor:
    """Replace the pixels of the chosen regions.

    Args:
        images: ``(N, C, H, W)`` float tensor.
        partition: ``(H, W)`` integer labels ``0 .. R-1``.
        regions: region labels to attenuate (any iterable of ints; empty leaves images unchanged).
        mode: ``"mean"`` fills each chosen region, per image and channel, with its own mean
            intensity; ``"blur"`` substitutes a Gaussian-smoothed copy of the image (std ``sigma``
            pixels, MONAI ``GaussianFilter``) inside the chosen regions.
        sigma: blur standard deviation in pixels (``mode="blur"`` only).

    Returns:
        New ``(N, C, H, W)`` tensor; pixels outside the chosen regions are unchanged.
    """
    if images.ndim != 4:
        raise ValueError(f"expected (N, C, H, W) images, got {tuple(images.shape)}")
    part = torch.as_tensor(np.asarray(partition), device=images.device).long()
    if part.shape != images.shape[-2:]:
        raise ValueError(f"partition {tuple(part.shape)} does not match images {tuple(images.shape)}")
    regions = [int(r) for r in np.atleast_1d(np.asarray(regions, dtype=np.int64))]
    out = images.clone()
    if not regions:
        return out
    if mode == "mean":
        for r in regions:
            m = part == r
            if not bool(m.any()):
                raise ValueError(f"region {r} is not in the partition")
            out[..., m] = images[..., m].mean(dim=-1, keepdim=True)
    elif mode == "blur":
        blurred = GaussianFilter(spatial_dims=2, sigma=sigma)(images)
        m = torch.isin(part, torch.tensor(regions, device=part.device))
        out[..., m] = blurred[..., m].to(out.dtype)
    else:
        raise ValueError(f"mode must be 'blur' or 'mean', got {mode!r}")
    return out


def rcs_pooling_weights(score_map, up: float = 5.0, down: float = 2.0) -> np.ndarray:
    """OSCAR's pooling weights from a localisation-score map.

    ``m = score_map / max|score_map|``; ``w = 1 - m * (up if m < 0 else down)``: regions with positive
    score (shortcut) are down-weighted (and can reach negative weight for ``m > 1/down``), regions
    with negative score are up-weighted. The classifier then pools features as
    ``sum(f * w) / sum(w)`` over space.

    Args:
        score_map: ``(H, W)`` localisation scores painted onto pixels (or feature-map cells).
        up, down: OSCAR's defaults 5 and 2.

    Returns:
        ``(H, W)`` float64 weights.
    """
    m = np.asarray(score_map, dtype=np.float64)
    m = m / (np.abs(m).max() + 1e-8)
    return 1.0 - m * np.where(m < 0, up, down)

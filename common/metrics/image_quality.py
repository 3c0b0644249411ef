"""Image-quality metrics of the SR degradation study (Shrestha, Wang and Nakarmi 2023): NRMSE and HFEN.

Both take batch-first tensors ``(B, C, H, W[, D])`` and return one value per image, shape ``(B, 1)``, computed
over all channels and voxels of that image (the shape MONAI's regression metrics return).

- ``NRMSE = ||x_hat - x||_2 / ||x||_2``.
- ``HFEN = ||LoG(x_hat) - LoG(x)||_2 / ||LoG(x)||_2`` with a Laplacian of Gaussian of sigma 1.5 px on a
  15-sample support per axis (15x15 in 2D, 15^3 in 3D), shifted to zero mean so that it ignores constant offsets.
  Borders are padded by mirroring without repeating the edge sample (torch ``"reflect"``, scipy ``"mirror"``),
  so every spatial size must be at least 8.

The zero-mean nD kernel ``K - mean(K)`` is a sum of separable terms (one second-derivative term per axis and a
constant box), so it is applied with ``monai.networks.layers.separable_filtering`` instead of a dense 15^d conv.
"""

from __future__ import annotations

import torch
from monai.metrics.regression import RegressionMetric
from monai.networks.layers import separable_filtering
from monai.utils import MetricReduction

HFEN_SIGMA = 1.5
HFEN_SUPPORT = 15


def _log_terms(spatial_dims: int, sigma: float, support: int) -> list[tuple[float, list[torch.Tensor]]]:
    """Separable terms (weight, 1D taps per axis) whose sum is the zero-mean LoG kernel (float64)."""
    t = torch.arange(support, dtype=torch.float64) - (support - 1) / 2
    gauss = torch.exp(-(t**2) / (2 * sigma**2))
    second = (t**2 - sigma**2) / sigma**4 * gauss
    norm = float(gauss.sum()) ** spatial_dims
    terms = [
        (1.0 / norm, [second if axis == d else gauss for axis in range(spatial_dims)]) for d in range(spatial_dims)
    ]
    kernel_sum = spatial_dims * float(second.sum()) * float(gauss.sum()) ** (spatial_dims - 1) / norm
    box = torch.ones(support, dtype=torch.float64)
    terms.append((-kernel_sum / support**spatial_dims, [box] * spatial_dims))
    return terms


def log_kernel(spatial_dims: int, sigma: float = HFEN_SIGMA, support: int = HFEN_SUPPORT) -> torch.Tensor:
    """Dense zero-mean LoG kernel of shape ``(support,) * spatial_dims`` (float64), the sum of the separable terms."""
    kernel = torch.zeros((support,) * spatial_dims, dtype=torch.float64)
    for weight, taps in _log_terms(spatial_dims, sigma, support):
        outer = taps[0]
        for tap in taps[1:]:
            outer = torch.tensordot(outer, tap, dims=0)
        kernel = kernel + weight * outer
    return kernel


def laplacian_of_gaussian(x: torch.Tensor, sigma: float = HFEN_SIGMA, support: int = HFEN_SUPPORT) -> torch.Tensor:
    """Zero-mean LoG filter response of ``x`` (B, C, *spatial), same shape, mirror borders."""
    spatial_dims = x.ndim - 2
    if min(x.shape[2:]) <= support // 2:
        raise ValueError(f"HFEN needs every spatial size > {support // 2} (mirror padding), got {tuple(x.shape[2:])}.")
    work = x if x.dtype == torch.float64 else x.float()
    out = torch.zeros_like(work)
    for weight, taps in _log_terms(spatial_dims, sigma, support):
        out = out + weight * separable_filtering(work, [tap.to(work) for tap in taps], mode="reflect")
    return out


def _check(pred: torch.Tensor, gt: torch.Tensor) -> None:
    if pred.shape != gt.shape:
        raise ValueError(f"pred and gt shapes differ: {tuple(pred.shape)} vs {tuple(gt.shape)}.")
    if pred.ndim not in (4, 5):
        raise ValueError(f"expected batch-first images (B, C, H, W[, D]), got shape {tuple(pred.shape)}.")


def _relative_l2(diff: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Per-image ||diff||_2 / ||ref||_2, shape (B, 1)."""
    num = diff.flatten(1).norm(dim=1, keepdim=True)
    den = ref.flatten(1).norm(dim=1, keepdim=True)
    return num / den


def nrmse(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Per-image ``||pred - gt||_2 / ||gt||_2`` for (B, C, H, W[, D]) tensors; shape (B, 1)."""
    _check(pred, gt)
    dtype = torch.float64 if torch.float64 in (pred.dtype, gt.dtype) else torch.float32
    return _relative_l2(pred.to(dtype) - gt.to(dtype), gt.to(dtype))


def hfen(pred: torch.Tensor, gt: torch.Tensor, sigma: float = HFEN_SIGMA, support: int = HFEN_SUPPORT) -> torch.Tensor:
    """Per-image ``||LoG(pred) - LoG(gt)||_2 / ||LoG(gt)||_2`` for (B, C, H, W[, D]) tensors; shape (B, 1)."""
    _check(pred, gt)
    dtype = torch.float64 if torch.float64 in (pred.dtype, gt.dtype) else torch.float32
    log_gt = laplacian_of_gaussian(gt.to(dtype), sigma, support)
    log_pred = laplacian_of_gaussian(pred.to(dtype), sigma, support)
    return _relative_l2(log_pred - log_gt, log_gt)


class NRMSEMetric(RegressionMetric):
    """Cumulative NRMSE (``||x_hat - x||_2 / ||x||_2`` per image); ``aggregate()`` reduces (default mean)."""

    def __init__(self, reduction: MetricReduction | str = MetricReduction.MEAN, get_not_nans: bool = False) -> None:
        super().__init__(reduction=reduction, get_not_nans=get_not_nans)

    def _compute_metric(self, y_pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return nrmse(y_pred, y)


class HFENMetric(RegressionMetric):
    """Cumulative HFEN (LoG sigma 1.5 px, 15-sample support) per image; ``aggregate()`` reduces (default mean)."""

    def __init__(
        self,
        sigma: float = HFEN_SIGMA,
        support: int = HFEN_SUPPORT,
        reduction: MetricReduction | str = MetricReduction.MEAN,
        get_not_nans: bool = False,
    ) -> None:
        super().__init__(reduction=reduction, get_not_nans=get_not_nans)
        self.sigma = sigma
        self.support = support

    def _compute_metric(self, y_pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return hfen(y_pred, y, self.sigma, self.support)

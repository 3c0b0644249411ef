"""Attribution maps for the three OSCAR models (Achara et al., 2025) on 2-D inputs.

Every method explains a network with a ``(B, K)`` score output and explains, per image, the score
of its predicted class (OSCAR's choice: the target is the model's own prediction):

* a classifier (e.g. the sensitive-attribute model predicting the scene) is used as is: the
  target is the predicted class's logit;
* a segmentation network deciding an object's identity is wrapped in
  :class:`IdentityLogitDifference`, which reduces its ``(B, 3, H, W)`` logits to the two scores
  ``[t, -t]`` so that the predicted identity's score is ``|t|``.

Methods:

* :func:`gradcam_maps`: Grad-CAM (Selvaraju et al., 2017, "Grad-CAM: Visual Explanations from Deep
  Networks via Gradient-based Localization") through ``monai.visualize.GradCAM``, ReLU applied and
  bilinearly upsampled to the input size, without MONAI's min-max rescaling (the maps are
  L1-normalised downstream, as in OSCAR, which used Captum's ``LayerGradCam`` with
  ``relu_attributions=True``).
* :func:`occlusion_maps`: occlusion of the regions of the analysis partition, one region at a time
  (Zeiler and Fergus, 2014, "Visualizing and Understanding Convolutional Networks"). Chosen over
  ``monai.visualize.OcclusionSensitivity``, whose square patches slide over the pixel grid (about
  ``H W / stride^2`` forward passes per image) and do not align with superpixels: region occlusion
  costs exactly ``R`` forward passes per image and yields one value per region of the very
  partition used for ranking.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from monai.networks.layers import GaussianFilter
from monai.visualize import GradCAM
from torch import nn

__all__ = ["IdentityLogitDifference", "gradcam_maps", "occlusion_maps"]


class IdentityLogitDifference(nn.Module):
    """Identity decision of a segmentation network as a two-class score.

    For logits ``(B, K, H, W)`` with channels (background, identity A, identity B, ...), the target is

        ``t = sum over pixels predicted foreground of (logit_A - logit_B)``

    and the module returns ``(B, 2)`` ``[t, -t]``. ``logit_A - logit_B`` is the log-odds of A over B
    at a pixel (independent of the background logit), so ``t`` grows when the model leans to A over
    B inside the object, and pixels predicted background contribute nothing: the score does not
    depend on how much background the image has. The argmax of ``[t, -t]`` is the predicted
    identity and its score is ``|t|``. A pixel is foreground when its argmax channel is not
    ``background``; the mask is recomputed (without gradient) for every input, so occluding the
    object also shrinks the mask. With no foreground predicted, ``t = 0``.

    Args:
        net: segmentation network, ``(B, C, H, W) -> (B, K, H, W)`` logits.
        background: background channel index.
        identity_channels: channels ``(A, B)``.
    """

    def __init__(self, net: nn.Module, background: int = 0, identity_channels: Sequence[int] = (1, 2)):
        super().__init__()
        self.net = net
        self.background = int(background)
        self.identity_channels = tuple(int(c) for c in identity_channels)
        if len(self.identity_channels) != 2 or self.background in self.identity_channels:
            raise ValueError("identity_channels must be two channels other than background")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.net(x)
        with torch.no_grad():
            fg = (logits.argmax(dim=1) != self.background).to(logits.dtype)
        a, b = self.identity_channels
        t = ((logits[:, a] - logits[:, b]) * fg).flatten(1).sum(dim=1)
        return torch.stack([t, -t], dim=1)


class _SelectedScore(nn.Module):
    """``(B, K)`` scores -> ``(B, 1)`` score of each image's own class (argmax, or ``class_idx``).

    MONAI's ``GradCAM`` with ``class_idx=None`` indexes ``logits[:, argmax_vector]``, which for a
    batch with different predicted classes sums every image's score for every predicted class;
    selecting per image here keeps batched maps equal to one-image maps.
    """

    def __init__(self, net: nn.Module, class_idx: int | None = None):
        super().__init__()
        self.net = net
        self.class_idx = class_idx

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scores = self.net(x)
        if scores.ndim != 2:
            raise ValueError(f"expected (B, K) scores, got {tuple(scores.shape)}")
        if self.class_idx is None:
            idx = scores.detach().argmax(dim=1, keepdim=True)
        else:
            idx = torch.full((scores.shape[0], 1), int(self.class_idx), device=scores.device)
        return scores.gather(1, idx)


def gradcam_maps(
    model: nn.Module,
    images: torch.Tensor,
    target_layer: str,
    class_idx: int | None = None,
    batch_size: int = 8,
) -> np.ndarray:
    """Grad-CAM maps of each image's predicted class (or of ``class_idx``).

    Args:
        model: network with ``(B, K)`` scores, e.g. a MONAI classifier or
            ``IdentityLogitDifference(seg_net)``; put in eval mode during the call.
        images: ``(N, C, H, W)`` inputs.
        target_layer: name of the convolutional layer, as listed by ``model.named_modules()``
            (for ``IdentityLogitDifference(seg_net)`` it starts with ``"net."``); its output must be
            ``(B, C', h, w)``. The usual choice is the last spatial block before pooling (a
            classifier) or the deepest encoder/bottleneck block (a U-Net).
        class_idx: fixed class to explain; ``None`` explains each image's argmax.
        batch_size: images per backward pass.

    Returns:
        ``(N, H, W)`` float32 non-negative maps (ReLU of the channel-weighted activations,
        bilinearly upsampled), not rescaled.
    """
    if images.ndim != 4:
        raise ValueError(f"expected (N, C, H, W) images, got {tuple(images.shape)}")
    wrapper = _SelectedScore(model, class_idx)
    cam = GradCAM(wrapper, target_layers=f"net.{target_layer}", postprocessing=lambda m: m)
    out = []
    with torch.enable_grad():
        for start in range(0, images.shape[0], batch_size):
            # inputs that require grad keep full backward hooks on a first layer well defined
            batch = images[start : start + batch_size].detach().clone().requires_grad_(True)
            out.append(cam(batch, class_idx=0).detach()[:, 0].float().cpu().numpy())
    return np.concatenate(out, axis=0)


def occlusion_maps(
    model: nn.Module,
    images: torch.Tensor,
    partition: np.ndarray,
    fill: str = "mean",
    class_idx: int | None = None,
    batch_size: int = 16,
    positive_only: bool = True,
    sigma: float = 4.0,
) -> np.ndarray:
    """Region-occlusion maps: the drop of the explained score when a region is occluded.

    For each image, the explained class ``c`` is its argmax (or ``class_idx``) on the intact image;
    every region ``r`` of ``partition`` is occluded in turn (as :func:`..attenuation.attenuate_regions`
    with ``mode=fill`` does) and the map is ``score_c(x) - score_c(x with r occluded)`` painted on the
    pixels of ``r``.

    Args:
        model: network with ``(B, K)`` scores (see :func:`gradcam_maps`).
        images: ``(N, C, H, W)`` inputs.
        partition: ``(H, W)`` labels ``0 .. R-1``.
        fill: ``"mean"`` (region mean intensity) or ``"blur"``.
        class_idx: fixed class; ``None`` explains each image's prediction.
        batch_size: occluded copies per forward pass.
        positive_only: clamp drops at zero, keeping evidence *for* the explained class (the maps
            are then non-negative like Grad-CAM's, as OSCAR's L1 normalisation assumes).
        sigma: blur standard deviation in pixels (``fill="blur"``).

    Returns:
        ``(N, H, W)`` float32 maps, in units of the explained score (a logit).
    """
    if images.ndim != 4:
        raise ValueError(f"expected (N, C, H, W) images, got {tuple(images.shape)}")
    if fill not in ("mean", "blur"):
        raise ValueError(f"fill must be 'mean' or 'blur', got {fill!r}")
    partition = np.asarray(partition)
    n_regions = int(partition.max()) + 1
    if partition.shape != tuple(images.shape[-2:]) or len(np.unique(partition)) != n_regions:
        raise ValueError("partition must be (H, W) with labels exactly 0 .. R-1")
    part_t = torch.as_tensor(partition, device=images.device).long()
    flat = part_t.flatten()
    counts = torch.bincount(flat, minlength=n_regions).to(images.dtype)
    blur = GaussianFilter(spatial_dims=2, sigma=sigma).to(images.device) if fill == "blur" else None
    was_training = model.training
    model.eval()
    out = []
    try:
        with torch.inference_mode():
            for x in images:
                x = x[None]
                base = model(x)[0]
                c = int(base.argmax()) if class_idx is None else int(class_idx)
                if blur is None:  # (C, R) region means, one fill value per region and channel
                    means = torch.zeros(x.shape[1], n_regions, dtype=x.dtype, device=x.device)
                    means = means.index_add_(1, flat, x[0].flatten(1)) / counts
                else:
                    blurred = blur(x)
                drops = torch.empty(n_regions, device=images.device)
                for start in range(0, n_regions, batch_size):
                    regs = torch.arange(start, min(start + batch_size, n_regions), device=images.device)
                    masks = (part_t[None] == regs[:, None, None])[:, None]  # (k, 1, H, W)
                    filler = means[:, regs].T[:, :, None, None] if blur is None else blurred
                    occluded = torch.where(masks, filler, x)
                    drops[start : start + len(regs)] = base[c] - model(occluded)[:, c]
                if positive_only:
                    drops = drops.clamp_min(0)
                out.append(drops[part_t].float().cpu().numpy())
    finally:
        model.train(was_training)
    return np.stack(out)

"""Sampling-based uncertainty of a segmentation network: MC dropout, deep ensembles and test-time augmentation.

Each estimator turns one input into a stack of softmax probability maps, one per sample; the spread of the
biomarker measured on each sample's argmax mask (:func:`biomarker_samples`) is the estimator's uncertainty about
the biomarker, and :func:`uncertainty_map` the per-pixel view of the same spread.

- MC dropout (Gal & Ghahramani 2016, "Dropout as a Bayesian approximation: representing model uncertainty in
  deep learning"): dropout kept active at inference, one forward pass per sample.
- Deep ensemble (Lakshminarayanan, Pritzel & Blundell 2017, "Simple and scalable predictive uncertainty
  estimation using deep ensembles"): one sample per independently trained member.
- Test-time augmentation (Wang et al. 2019, "Aleatoric uncertainty estimation with test-time augmentation for
  medical image segmentation with convolutional neural networks"): random invertible spatial transforms of the
  input, predictions mapped back by the inverse transform (MONAI ``TestTimeAugmentation``).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from monai.transforms.utils import get_largest_connected_component_mask
from torch import nn

from common.metrics.precision import area_length_volume, lv_long_axis_length_mm, mask_area_mm2

__all__ = [
    "DROPOUT_TYPES",
    "mc_dropout_samples",
    "ensemble_samples",
    "default_tta_transform",
    "tta_samples",
    "biomarker_samples",
    "uncertainty_map",
]

DROPOUT_TYPES: tuple[type[nn.Module], ...] = (
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.AlphaDropout,
    nn.FeatureAlphaDropout,
)


@contextlib.contextmanager
def _training_flags_restored(network: nn.Module) -> Iterator[None]:
    """Restore every submodule's ``training`` flag on exit, even after an exception."""
    flags = [(m, m.training) for m in network.modules()]
    try:
        yield
    finally:
        for module, training in flags:
            module.training = training


def _forked_rng(image: torch.Tensor):
    """A seeded torch RNG scope that leaves the global CPU (and the image's CUDA device) RNG state untouched."""
    devices = [image.device] if image.device.type == "cuda" else []
    return torch.random.fork_rng(devices=devices)


def _softmax(logits: torch.Tensor) -> torch.Tensor:
    return torch.softmax(logits.float(), dim=1)


def mc_dropout_samples(network: nn.Module, image: torch.Tensor, num_samples: int, seed: int) -> torch.Tensor:
    """Monte Carlo dropout: ``num_samples`` forward passes with dropout active.

    The network runs in eval mode (normalisation layers use their running statistics) except its dropout modules
    (:data:`DROPOUT_TYPES`), which sample fresh masks on each pass. All training flags are restored afterwards,
    also on an exception. Masks come from ``torch.manual_seed(seed)`` inside ``torch.random.fork_rng``, so the
    same seed gives the same samples and the caller's RNG state is untouched.

    Args:
        network: segmentation network returning logits ``(B, C, H, W)``.
        image: ``(B, C_in, H, W)`` on the network's device.
        num_samples: number of passes ``N >= 1``.
        seed: seed of the dropout masks.

    Returns:
        Softmax probabilities over channels, ``(N, B, C, H, W)`` float32.

    Raises:
        ValueError: no dropout module, or all of them with probability 0.
    """
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    dropouts = [m for m in network.modules() if isinstance(m, DROPOUT_TYPES)]
    if not dropouts:
        raise ValueError(f"MC dropout needs a dropout module; {type(network).__name__} has none")
    if all(m.p == 0 for m in dropouts):
        raise ValueError(f"MC dropout needs a dropout probability > 0; all {len(dropouts)} dropout modules have p=0")
    with _training_flags_restored(network), _forked_rng(image), torch.inference_mode():
        network.eval()
        for module in dropouts:
            module.train()
        torch.manual_seed(seed)
        samples = torch.stack([_softmax(network(image)) for _ in range(num_samples)])
    return samples.clone()  # a normal tensor: inference tensors refuse in-place updates outside inference mode


def ensemble_samples(networks: Sequence[nn.Module], image: torch.Tensor) -> torch.Tensor:
    """Deep ensemble: one prediction per member, each in eval mode (training flags restored afterwards).

    Args:
        networks: ``K >= 1`` trained members with the same output channels.
        image: ``(B, C_in, H, W)`` on the members' device.

    Returns:
        Softmax probabilities ``(K, B, C, H, W)`` float32.
    """
    if len(networks) == 0:
        raise ValueError("an ensemble needs at least one member")
    samples = []
    for network in networks:
        with _training_flags_restored(network), torch.inference_mode():
            network.eval()
            samples.append(_softmax(network(image)))
    return torch.stack(samples).clone()  # a normal tensor, as in mc_dropout_samples


def default_tta_transform(
    keys: Sequence[str] = ("image",),
    seed: int = 0,
    rotate_rad: float = np.deg2rad(10.0),
    scale: float = 0.05,
    translate_px: float = 4.0,
    spatial_dims: int = 2,
):
    """Random invertible in-plane affine transform for test-time augmentation of a 2-D cardiac image.

    ``RandAffined`` with a rotation in ``[-rotate_rad, rotate_rad]`` (default 10 degrees), a scale factor per
    axis in ``[1 - scale, 1 + scale]`` and a translation in ``[-translate_px, translate_px]`` pixels,
    bilinear with border padding (so the inverted probability maps keep summing to 1 at the edge of the field of
    view). These mimic small differences in probe or slice placement between acquisitions.

    No flips: an apical (or cine long-axis) view is not mirror-symmetric. The LV lies on a fixed side of the image
    and the apex at the top of the sector, so a left-right flip shows a mirrored heart (chambers swapped) and an
    up-down flip moves the apex to the bottom: views a scanner never produces, whose variation measures the
    network's behaviour off its training distribution rather than the uncertainty of this acquisition.

    Args:
        keys: image keys, each ``(C, H, W)`` (or ``(C, H, W, D)`` with ``spatial_dims=3``).
        seed: seed of the transform's random state (:func:`tta_samples` re-seeds it from its own ``seed``).
        spatial_dims: 2, or 3 for a volume (rotation about each of the three axes).

    Returns:
        A seeded ``monai.transforms.Compose``.
    """
    from monai.transforms import Compose, EnsureTyped, RandAffined

    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
    keys = list(keys)
    transform = Compose(
        [
            EnsureTyped(keys=keys, track_meta=True),
            RandAffined(
                keys=keys,
                prob=1.0,
                rotate_range=(rotate_rad,) * (1 if spatial_dims == 2 else 3),
                scale_range=(scale,) * spatial_dims,
                translate_range=(translate_px,) * spatial_dims,
                mode="bilinear",
                padding_mode="border",
            ),
        ]
    )
    transform.set_random_state(seed=seed)
    return transform


def tta_samples(
    network: nn.Module,
    data: dict,
    num_samples: int,
    seed: int,
    transform,
    image_key: str = "image",
    batch_size: int | None = None,
) -> torch.Tensor:
    """Test-time augmentation of one image with MONAI's ``TestTimeAugmentation``.

    Each of ``num_samples`` copies of ``data`` goes through ``transform``, the network (eval mode, no gradients,
    training flags restored) predicts softmax probabilities, and ``Invertd`` maps each prediction back to the
    original grid with the inverse of that copy's transform (bilinear, so probabilities stay soft); MONAI's class is
    used as is, with ``return_full_data=True`` for the raw samples. ``TestTimeAugmentation`` reads the applied
    transforms from ``orig_key``, which defaults to ``"label"``; it is pointed at ``image_key`` here so no label is
    needed. A network returning a plain tensor gets the input batch's metadata on its output, since ``Invertd``
    only maps back ``MetaTensor`` predictions (and otherwise skips them with a warning; that warning is raised here
    as an error).

    Seeding: with ``num_workers=0`` MONAI's ``DataLoader`` re-seeds the transforms from torch's global generator
    (overriding their own random state) and then resets that generator to its initial seed. The call therefore
    runs under ``torch.random.fork_rng`` with ``torch.manual_seed(seed)``: the samples depend on ``seed`` only and
    the caller's RNG state is untouched.

    Args:
        network: segmentation network returning logits ``(B, C, H, W)``.
        data: one image dict; ``data[image_key]`` is ``(C_in, H, W)`` (no batch dimension).
        num_samples: number of augmented copies ``N``.
        seed: seed of the random transforms.
        transform: invertible random dictionary transform(s) on ``image_key``, e.g. :func:`default_tta_transform`.
        image_key: key of the image in ``data``.
        batch_size: copies per forward pass, a divisor of ``num_samples`` (default all at once).

    Returns:
        Softmax probabilities in the original image grid, ``(N, C, H, W)`` float32 plain tensor.
    """
    from monai.data import MetaTensor, TestTimeAugmentation

    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    batch_size = num_samples if batch_size is None else batch_size
    if num_samples % batch_size:
        raise ValueError(f"batch_size {batch_size} must divide num_samples {num_samples}")
    parameter = next(network.parameters(), None)
    device = parameter.device if parameter is not None else torch.as_tensor(data[image_key]).device

    def predict(batch: torch.Tensor) -> torch.Tensor:
        probs = _softmax(network(batch))
        if isinstance(batch, MetaTensor) and not isinstance(probs, MetaTensor):
            probs = MetaTensor(probs).copy_meta_from(batch)  # Invertd maps back MetaTensor predictions only
        return probs

    augmenter = TestTimeAugmentation(
        transform,
        batch_size=batch_size,
        num_workers=0,
        inferrer_fn=predict,
        device=device,
        image_key=image_key,
        orig_key=image_key,
        nearest_interp=False,
        return_full_data=True,
        progress=False,
    )
    rng_devices = [device] if torch.device(device).type == "cuda" else []
    with _training_flags_restored(network), torch.random.fork_rng(devices=rng_devices), torch.no_grad():
        network.eval()
        torch.manual_seed(seed)  # MONAI's DataLoader re-seeds the transforms from the global generator
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            samples = augmenter(dict(data), num_examples=num_samples)
    for warning in caught:
        if "transform info" in str(warning.message):  # Invertd skipped a prediction: it is not in the image grid
            raise RuntimeError(f"test-time augmentation could not invert the predictions: {warning.message}")
        warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    samples = samples.as_tensor() if hasattr(samples, "as_tensor") else torch.as_tensor(samples)
    return samples.float()


def biomarker_samples(
    prob_samples, spacing_mm, lv_label: int = 1, largest_component: bool = False
) -> list[dict[str, float]]:
    """Area-length LV biomarkers of every sample's argmax segmentation.

    Args:
        prob_samples: probabilities ``(N, C, H, W)`` for one image or ``(N, B, C, H, W)`` for a batch.
        spacing_mm: pixel size in mm, scalar or ``(row, col)``.
        lv_label: channel of the LV cavity.
        largest_component: measure only each mask's largest 8-connected component (MONAI's
            ``get_largest_connected_component_mask``): a few pixels labelled LV in the right heart or the atrium
            would otherwise stretch the Feret length.

    Returns:
        One dict per sample and image, sample-major (``N * B`` dicts; ``B = 1`` for 4-D input), with ``sample``
        and ``batch`` indices, ``area_mm2`` (:func:`~common.metrics.precision.mask_area_mm2`), ``length_mm``
        (:func:`~common.metrics.precision.lv_long_axis_length_mm`) and ``volume_ml``
        (:func:`~common.metrics.precision.area_length_volume`; 0 for an empty mask, NaN for a single pixel).
    """
    probs = torch.as_tensor(prob_samples).detach().cpu()
    if probs.ndim == 4:
        probs = probs[:, None]
    if probs.ndim != 5:
        raise ValueError(f"prob_samples must be (N, C, H, W) or (N, B, C, H, W), got shape {tuple(probs.shape)}")
    if not 0 <= lv_label < probs.shape[2]:
        raise ValueError(f"lv_label {lv_label} is not a channel of {probs.shape[2]}")
    masks = probs.argmax(dim=2) == lv_label
    rows = []
    for sample, per_image in enumerate(masks):
        for batch, mask in enumerate(per_image):
            if largest_component and mask.any():
                mask = get_largest_connected_component_mask(mask, connectivity=2)
            mask = mask.numpy()
            area = mask_area_mm2(mask, spacing_mm)
            length = lv_long_axis_length_mm(mask, spacing_mm)
            rows.append(
                {
                    "sample": float(sample),
                    "batch": float(batch),
                    "area_mm2": area,
                    "length_mm": length,
                    "volume_ml": area_length_volume(area, length),
                }
            )
    return rows


def uncertainty_map(prob_samples) -> torch.Tensor:
    """Per-pixel predictive entropy ``-sum_c p_c log p_c`` (nats) of the mean probability over samples.

    Zero where every sample puts all its mass on the same class; at most ``log C``. It counts both the spread
    between samples and each sample's own ambiguity (total predictive uncertainty).

    Args:
        prob_samples: ``(N, C, H, W)`` or ``(N, B, C, H, W)``.

    Returns:
        ``(H, W)`` or ``(B, H, W)`` float tensor.
    """
    probs = torch.as_tensor(prob_samples)
    if probs.ndim not in (4, 5):
        raise ValueError(f"prob_samples must be (N, C, H, W) or (N, B, C, H, W), got shape {tuple(probs.shape)}")
    mean = probs.float().mean(dim=0)
    channel = mean.ndim - 3
    return (-torch.special.xlogy(mean, mean).sum(dim=channel)).clamp_min(0.0)

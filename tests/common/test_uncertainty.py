"""MC dropout, ensemble and test-time augmentation samples, and the biomarkers and entropy read from them."""

import copy
import math

import numpy as np
import pytest
import torch
from monai.networks.nets import UNet
from torch import nn

from common.uncertainty import (
    biomarker_samples,
    default_tta_transform,
    ensemble_samples,
    mc_dropout_samples,
    tta_samples,
    uncertainty_map,
)


def _unet(dropout=0.3, seed=0):
    torch.manual_seed(seed)
    return UNet(spatial_dims=2, in_channels=1, out_channels=3, channels=(4, 8), strides=(2,), dropout=dropout)


def _ellipse(shape, centre, semi_axes):
    rows, cols = np.mgrid[: shape[0], : shape[1]]
    return ((rows - centre[0]) / semi_axes[0]) ** 2 + ((cols - centre[1]) / semi_axes[1]) ** 2 <= 1.0


class _Threshold(nn.Module):
    """Two-class logits ``(0, 40 (x - 0.5))``: the foreground probability is ~1 above 0.5 and ~0 below.

    Keeps every input batch it sees in ``inputs``.
    """

    def __init__(self, plain_output: bool = False):
        super().__init__()
        self.plain_output = plain_output
        self.conv = nn.Conv2d(1, 2, kernel_size=1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([0.0, 40.0]).view(2, 1, 1, 1))
            self.conv.bias.copy_(torch.tensor([0.0, -20.0]))
        self.inputs = []

    def forward(self, x):
        self.inputs.append(torch.as_tensor(x).clone())
        logits = self.conv(x)
        return logits.as_tensor() if self.plain_output and hasattr(logits, "as_tensor") else logits


def _dice(a, b):
    return float(2 * (a & b).sum() / (a.sum() + b.sum()))


def test_mc_dropout_samples_vary_between_passes_and_repeat_for_a_seed():
    net = _unet()
    image = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    rng_before = torch.get_rng_state()
    samples = mc_dropout_samples(net, image, num_samples=3, seed=0)
    assert torch.equal(torch.get_rng_state(), rng_before)  # the caller's RNG is untouched
    assert samples.shape == (3, 2, 3, 16, 16)
    assert torch.allclose(samples.sum(dim=2), torch.ones(3, 2, 16, 16), atol=1e-5)
    assert not torch.allclose(samples[0], samples[1])
    assert torch.equal(samples, mc_dropout_samples(net, image, num_samples=3, seed=0))
    assert not torch.allclose(samples, mc_dropout_samples(net, image, num_samples=3, seed=1))
    net.eval()
    with torch.no_grad():
        plain = torch.softmax(net(image), dim=1)
    assert not torch.allclose(samples[0], plain)  # dropout was active
    samples.mul_(1.0)  # a normal tensor, not an inference tensor


@pytest.mark.parametrize("training", [True, False])
def test_mc_dropout_restores_training_flags(training):
    net = _unet().train(training)
    mc_dropout_samples(net, torch.rand(1, 1, 8, 8), num_samples=2, seed=0)
    assert all(m.training is training for m in net.modules())


def test_mc_dropout_restores_training_flags_after_an_exception():
    class Failing(nn.Module):
        def __init__(self):
            super().__init__()
            self.drop = nn.Dropout2d(0.5)
            self.norm = nn.BatchNorm2d(1)

        def forward(self, x):
            assert self.drop.training and not self.norm.training
            raise RuntimeError("forward failed")

    net = Failing().train()
    with pytest.raises(RuntimeError, match="forward failed"):
        mc_dropout_samples(net, torch.rand(1, 1, 4, 4), num_samples=1, seed=0)
    assert all(m.training for m in net.modules())


def test_mc_dropout_needs_an_active_dropout_module():
    with pytest.raises(ValueError, match="has none"):
        mc_dropout_samples(nn.Conv2d(1, 2, 1), torch.rand(1, 1, 4, 4), num_samples=2, seed=0)
    with pytest.raises(ValueError, match="p=0"):
        mc_dropout_samples(nn.Sequential(nn.Conv2d(1, 2, 1), nn.Dropout(0.0)), torch.rand(1, 1, 4, 4), 2, 0)
    with pytest.raises(ValueError, match="num_samples"):
        mc_dropout_samples(_unet(), torch.rand(1, 1, 8, 8), num_samples=0, seed=0)


def test_ensemble_of_identical_members_gives_identical_samples_in_eval_mode():
    member = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.BatchNorm2d(3), nn.Dropout(0.5)).train()
    image = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    samples = ensemble_samples([member, copy.deepcopy(member)], image)
    assert samples.shape == (2, 2, 3, 8, 8)
    assert torch.equal(samples[0], samples[1])
    assert all(m.training for m in member.modules())
    with torch.no_grad():
        expected = torch.softmax(member.eval()(image), dim=1)  # running statistics, no dropout
    assert torch.allclose(samples[0], expected)
    other = ensemble_samples([_unet(None, seed=0), _unet(None, seed=1)], image)
    assert not torch.allclose(other[0], other[1])
    with pytest.raises(ValueError, match="at least one"):
        ensemble_samples([], image)


def test_tta_with_a_zero_range_transform_reproduces_the_plain_prediction():
    net = _unet(None)
    image = torch.rand(1, 16, 16, generator=torch.Generator().manual_seed(2))
    transform = default_tta_transform(seed=0, rotate_rad=0.0, scale=0.0, translate_px=0.0)
    samples = tta_samples(net, {"image": image}, num_samples=4, seed=0, transform=transform, batch_size=2)
    assert samples.shape == (4, 3, 16, 16) and type(samples) is torch.Tensor
    with torch.no_grad():
        plain = torch.softmax(net.eval()(image[None]), dim=1)[0]
    for sample in samples:
        assert torch.allclose(sample, plain, atol=1e-5)
    with pytest.raises(ValueError, match="spatial_dims"):
        default_tta_transform(spatial_dims=4)
    with pytest.raises(ValueError, match="divide"):
        tta_samples(net, {"image": image}, num_samples=4, seed=0, transform=transform, batch_size=3)


@pytest.mark.parametrize("plain_output", [False, True])
def test_tta_predictions_are_mapped_back_onto_the_image(plain_output):
    net = _Threshold(plain_output)
    image = torch.zeros(1, 40, 40)
    image[0, 6:14, 8:30] = 1.0  # an off-centre bar: rotation moves it noticeably
    mask = image[0] > 0.5
    transform = default_tta_transform(seed=0, rotate_rad=0.4, scale=0.1, translate_px=3.0)
    rng_before = torch.get_rng_state()
    samples = tta_samples(net, {"image": image}, num_samples=6, seed=3, transform=transform)
    assert torch.equal(torch.get_rng_state(), rng_before)
    assert samples.shape == (6, 2, 40, 40)
    assert torch.allclose(samples.sum(dim=1), torch.ones(6, 40, 40), atol=1e-4)
    seen = torch.cat(net.inputs)[:, 0] > 0.5
    assert min(_dice(s, mask) for s in seen) < 0.7  # the network saw moved bars ...
    assert min(_dice(s[1] > 0.5, mask) for s in samples) > 0.9  # ... and its predictions were moved back
    again = tta_samples(net, {"image": image}, num_samples=6, seed=3, transform=transform)
    assert torch.equal(samples, again)
    other = tta_samples(net, {"image": image}, num_samples=6, seed=4, transform=transform)
    assert not torch.allclose(samples, other)


def test_biomarker_samples_on_a_drawn_ellipse():
    a, b, spacing = 30.0, 12.0, 0.8  # semi-axes in pixels, pixel size in mm
    lv = torch.from_numpy(_ellipse((80, 40), (40, 20), (a, b)))
    other = torch.zeros_like(lv)
    other[2:6, 2:8] = True
    labels = torch.where(lv, 1, torch.where(other, 2, 0))
    probs = torch.nn.functional.one_hot(labels, 3).permute(2, 0, 1).float()
    rows = biomarker_samples(torch.stack([probs, probs]), spacing)
    assert len(rows) == 2 and [r["sample"] for r in rows] == [0.0, 1.0]
    area_mm2 = math.pi * a * b * spacing**2
    assert rows[0]["area_mm2"] == pytest.approx(area_mm2, rel=0.02)
    assert rows[0]["length_mm"] == pytest.approx(2 * a * spacing)
    spheroid_ml = 4 / 3 * math.pi * (a * spacing) * (b * spacing) ** 2 / 1000
    assert rows[0]["volume_ml"] == pytest.approx(spheroid_ml, rel=0.04)
    assert biomarker_samples(probs[None], spacing, lv_label=2)[0]["area_mm2"] == pytest.approx(24 * spacing**2)
    swapped = probs[[0, 2, 1]]  # the small block is now channel 1
    batch = biomarker_samples(torch.stack([probs, swapped])[None].expand(3, 2, 3, 80, 40), spacing)
    assert len(batch) == 6
    assert [(r["sample"], r["batch"]) for r in batch][:3] == [(0.0, 0.0), (0.0, 1.0), (1.0, 0.0)]
    assert batch[1]["area_mm2"] == pytest.approx(24 * spacing**2)
    assert batch[2]["area_mm2"] == rows[0]["area_mm2"]
    with pytest.raises(ValueError, match="lv_label"):
        biomarker_samples(probs[None], spacing, lv_label=3)


def test_uncertainty_map_is_the_entropy_of_the_mean_probability():
    onehot = torch.zeros(4, 3, 2, 2)
    onehot[:, 0] = 1.0  # every sample says class 0 everywhere ...
    onehot[:2, :, 0, 0] = torch.tensor([0.0, 1.0, 0.0])  # ... except pixel (0, 0): half class 0, half class 1
    entropy = uncertainty_map(onehot)
    assert entropy.shape == (2, 2)
    assert entropy[0, 0] == pytest.approx(math.log(2))
    assert torch.equal(entropy.flatten()[1:], torch.zeros(3))
    uniform = torch.full((2, 1, 4, 3, 3), 0.25)
    assert torch.allclose(uncertainty_map(uniform), torch.full((1, 3, 3), math.log(4)))
    with pytest.raises(ValueError, match="prob_samples"):
        uncertainty_map(torch.zeros(3, 2, 2))

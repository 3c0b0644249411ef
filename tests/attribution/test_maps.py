import numpy as np
import pytest
import torch
from monai.networks.nets import Classifier
from torch import nn

from common.attribution.maps import IdentityLogitDifference, gradcam_maps, occlusion_maps
from common.attribution.regions import grid_partition, rank_regions, region_means

H = W = 16


class LeftHalfSegNet(nn.Module):
    """Segmentation net whose identity logits see only the left half of the image.

    Channels: background (constant -50, so every pixel is foreground), A = +sum of features,
    B = -sum of features (or the reverse with ``prefer_b``), features = ReLU(conv(x * left) - 0.5).
    """

    def __init__(self, prefer_b: bool = False):
        super().__init__()
        self.encoder = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU())
        self.head = nn.Conv2d(4, 3, 1)
        g = torch.Generator().manual_seed(0)
        sign = -1.0 if prefer_b else 1.0
        with torch.no_grad():
            self.encoder[0].weight.copy_(torch.rand(4, 1, 3, 3, generator=g) / 9 + 0.05)
            self.encoder[0].bias.fill_(-0.5)
            self.head.weight.zero_()
            self.head.weight[1].fill_(sign)
            self.head.weight[2].fill_(-sign)
            self.head.bias.copy_(torch.tensor([-50.0, 0.0, 0.0]))
        left = torch.zeros(1, 1, H, W)
        left[..., : W // 2] = 1
        self.register_buffer("left", left)

    def forward(self, x):
        return self.head(self.encoder(x * self.left))


class LeftHalfClassifier(nn.Module):
    """Three-class classifier: class 2's logit grows with left-half features; others are constant."""

    def __init__(self):
        super().__init__()
        self.seg = LeftHalfSegNet()
        self.fc = nn.Linear(4, 3)
        with torch.no_grad():
            self.fc.weight.zero_()
            self.fc.weight[2].fill_(10.0)
            self.fc.bias.copy_(torch.tensor([0.5, 0.2, 0.0]))

    def forward(self, x):
        return self.fc(self.seg.encoder(x * self.seg.left).mean(dim=(2, 3)))


def _images(n=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, H, W, generator=g) * 2


def _left_fraction(maps):
    maps = np.asarray(maps)
    return maps[..., : W // 2].sum(axis=(1, 2)) / maps.sum(axis=(1, 2))


class ConstLogits(nn.Module):
    def __init__(self, logits):
        super().__init__()
        self.logits = logits

    def forward(self, x):
        return self.logits


def test_identity_target_sums_logit_difference_over_predicted_foreground():
    logits = torch.zeros(1, 3, 2, 2)
    logits[0, :, 0, 0] = torch.tensor([0.0, 3.0, 1.0])  # foreground, A - B = 2
    logits[0, :, 0, 1] = torch.tensor([0.0, 1.0, 4.0])  # foreground, A - B = -3
    logits[0, :, 1, 0] = torch.tensor([9.0, 5.0, 0.0])  # background: ignored despite A - B = 5
    logits[0, :, 1, 1] = torch.tensor([0.0, 2.0, -0.5])  # foreground, A - B = 2.5
    out = IdentityLogitDifference(ConstLogits(logits))(torch.zeros(1, 1, 2, 2))
    torch.testing.assert_close(out, torch.tensor([[1.5, -1.5]]))
    swapped = IdentityLogitDifference(ConstLogits(logits), identity_channels=(2, 1))(torch.zeros(1, 1, 2, 2))
    torch.testing.assert_close(swapped, torch.tensor([[-1.5, 1.5]]))
    with pytest.raises(ValueError):
        IdentityLogitDifference(ConstLogits(logits), background=1)


@pytest.mark.parametrize("prefer_b", [False, True])
def test_gradcam_on_segmentation_identity_is_on_the_left(prefer_b):
    model = IdentityLogitDifference(LeftHalfSegNet(prefer_b))
    x = _images()
    with torch.inference_mode():
        scores = model(x)
    assert bool((scores.argmax(dim=1) == int(prefer_b)).all())
    maps = gradcam_maps(model, x, target_layer="net.encoder", batch_size=2)
    assert maps.shape == (3, H, W) and maps.dtype == np.float32
    assert (maps >= 0).all()
    assert (_left_fraction(maps) > 0.95).all()
    # on the 4x4 grid, every top-8 region (rank <= 8) is a left-half region
    part = grid_partition((H, W), 4)
    ranks = rank_regions(region_means(maps, part))
    left_regions = np.unique(part[:, : W // 2])
    assert all(set(np.argsort(r)[:8]) == set(left_regions) for r in ranks)


def test_gradcam_batched_equals_single_image_with_mixed_predictions():
    torch.manual_seed(0)
    net = Classifier(in_shape=(1, H, W), classes=3, channels=(4, 8), strides=(2, 2))
    x = torch.randn(6, 1, H, W)
    with torch.inference_mode():
        preds = net.eval()(x).argmax(dim=1)
    target = "net.layer_1"  # the last convolutional block of MONAI's Classifier
    assert preds.unique().numel() > 1, "the check needs a batch with different predicted classes"
    batched = gradcam_maps(net, x, target_layer=target, batch_size=6)
    single = np.concatenate([gradcam_maps(net, x[i : i + 1], target_layer=target) for i in range(6)])
    np.testing.assert_allclose(batched, single, rtol=1e-4, atol=1e-6)
    fixed = gradcam_maps(net, x, target_layer=target, class_idx=int(preds[0]))
    np.testing.assert_allclose(fixed[0], single[0], rtol=1e-4, atol=1e-6)
    assert np.isfinite(batched).all() and batched.shape == (6, H, W)


def test_gradcam_classifier_variant_targets_predicted_class():
    model = LeftHalfClassifier()
    x = _images(4, seed=1)
    with torch.inference_mode():
        assert bool((model(x).argmax(dim=1) == 2).all())
    maps = gradcam_maps(model, x, target_layer="seg.encoder")
    assert (_left_fraction(maps) > 0.95).all()
    # class 0's logit is constant: no gradient, an all-zero map
    assert np.allclose(gradcam_maps(model, x, target_layer="seg.encoder", class_idx=0), 0.0)


@pytest.mark.parametrize("fill", ["mean", "blur"])
def test_occlusion_on_region_grid_is_on_the_left(fill):
    model = IdentityLogitDifference(LeftHalfSegNet(prefer_b=True))
    x = _images(2, seed=2)
    part = grid_partition((H, W), 4)
    maps = occlusion_maps(model, x, part, fill=fill, batch_size=5)
    assert maps.shape == (2, H, W) and (maps >= 0).all()
    assert np.allclose(maps[..., W // 2 + 2 :], 0.0)  # beyond the conv's reach of the left half
    assert (_left_fraction(maps) > 0.95).all()
    # constant within each region, equal to the drop of the predicted identity's score
    with torch.inference_mode():
        base = model(x[:1])[0, 1]
        occl, m = x[:1].clone(), torch.as_tensor(part == 0)
        occl[..., m] = occl[..., m].mean()
        drop = float(base - model(occl)[0, 1])
    if fill == "mean":
        assert maps[0][part == 0] == pytest.approx(np.full((part == 0).sum(), max(drop, 0.0)), rel=1e-5)


def test_occlusion_classifier_variant_and_signed_drops():
    model = LeftHalfClassifier()
    x = _images(2, seed=3)
    part = grid_partition((H, W), 2)
    signed = occlusion_maps(model, x, part, positive_only=False)
    clipped = occlusion_maps(model, x, part)
    np.testing.assert_allclose(clipped, np.maximum(signed, 0.0))
    assert np.allclose(signed[..., W // 2 + 2 :], 0.0, atol=1e-5)  # float32 rounding of batched passes: ~5e-7
    assert (signed[..., : W // 2] != 0).all()
    assert signed.min() < 0 < signed.max()  # this case has a region whose mean fill raises the score
    assert np.allclose(_left_fraction(clipped), 1.0, atol=1e-5)  # up to float32 rounding of batched passes
    assert model.training  # mode restored


@pytest.mark.parametrize("fill", ["mean", "blur"])
def test_occlusion_equals_one_region_at_a_time_attenuation(fill):
    from common.attribution.attenuation import attenuate_regions

    torch.manual_seed(1)
    net = Classifier(in_shape=(2, H, W), classes=3, channels=(4, 8), strides=(2, 2)).eval()
    x = torch.randn(2, 2, H, W)
    part = grid_partition((H, W), 3)  # 16 is not a multiple of 3: unequal cells
    maps = occlusion_maps(net, x, part, fill=fill, batch_size=4, positive_only=False, sigma=1.5)
    with torch.inference_mode():
        for i in range(2):
            base = net(x[i : i + 1])[0]
            c = int(base.argmax())
            for r in range(9):
                occl = attenuate_regions(x[i : i + 1], part, [r], mode=fill, sigma=1.5)
                expected = float(base[c] - net(occl)[0, c])
                np.testing.assert_allclose(maps[i][part == r], expected, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError):
        occlusion_maps(net, x, part, fill="zero")

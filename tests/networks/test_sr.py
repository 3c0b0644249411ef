"""SR networks: output shapes, the residual path equals bicubic interpolation, the study's configuration."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from common.networks import SRCNN, RRDBNet, SRDenseNet, SRInferer, sr_network
from common.networks.sr import SR_NETWORK_NAMES


@pytest.mark.parametrize("name", SR_NETWORK_NAMES)
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_output_shape_2d(name, scale):
    net = sr_network(name, scale=scale, width=0.25)
    out = net(torch.rand(2, 1, 10, 13))
    assert out.shape == (2, 1, 10 * scale, 13 * scale)


@pytest.mark.parametrize("name", SR_NETWORK_NAMES)
def test_output_shape_3d(name):
    net = sr_network(name, scale=2, spatial_dims=3, width=0.125)
    assert net(torch.rand(1, 1, 4, 5, 6)).shape == (1, 1, 8, 10, 12)


def _zero_last_layer(net: nn.Module) -> None:
    last = {SRCNN: lambda n: n.body[-1], SRDenseNet: lambda n: n.reconstruction[0], RRDBNet: lambda n: n.last}
    layer = last[type(net)](net)
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)


@pytest.mark.parametrize("name", SR_NETWORK_NAMES)
def test_residual_path_is_bicubic_interpolation(name):
    """With the body's last layer zeroed the output is exactly torch's bicubic up-sampling of the input."""
    net = sr_network(name, width=0.25)
    _zero_last_layer(net)
    x = torch.rand(1, 1, 12, 9)
    expected = F.interpolate(x, scale_factor=2, mode="bicubic", align_corners=False)
    torch.testing.assert_close(net(x), expected)


def test_non_residual_srcnn_with_identity_kernels_returns_its_input_upsampled():
    """Delta kernels through ReLU on a non-negative image reproduce the bicubic-up-sampled input (SRCNN's input)."""
    net = SRCNN(features=(1, 1), residual=False)
    for conv in net.body[::2]:
        nn.init.zeros_(conv.weight)
        nn.init.zeros_(conv.bias)
        k = conv.weight.shape[-1] // 2
        conv.weight.data[0, 0, k, k] = 1.0
    x = torch.rand(1, 1, 8, 8) * 0.5 + 0.25  # bicubic overshoot stays positive
    up = F.interpolate(x, scale_factor=2, mode="bicubic", align_corners=False)
    torch.testing.assert_close(net(x), up)


def test_srcnn_layout_is_9_5_5_with_64_32_filters():
    convs = [m for m in sr_network("srcnn").modules() if isinstance(m, nn.Conv2d)]
    assert [c.kernel_size for c in convs] == [(9, 9), (5, 5), (5, 5)]
    assert [c.out_channels for c in convs] == [64, 32, 1]


def test_srdensenet_layout_matches_the_study():
    net = sr_network("srdensenet")
    assert len(net.blocks) == 5
    assert all(len(b.layers) == 5 for b in net.blocks)
    dense_convs = [layer[0] for b in net.blocks for layer in b.layers]
    assert all(c.out_channels == 5 for c in dense_convs)  # growth rate 5
    acts = [m for m in net.modules() if isinstance(m, nn.LeakyReLU)]
    assert acts and all(a.negative_slope == 0.2 for a in acts)
    assert isinstance(net.reconstruction[-1], nn.Tanh)
    assert net.bottleneck[0].kernel_size == (1, 1)


def test_rrdbnet_has_three_rrdbs_of_three_dense_blocks():
    net = sr_network("rrdbnet")
    assert len(net.trunk) == 3
    assert all(len(block.body) == 3 for block in net.trunk)


def test_small_srcnn_learns_to_beat_bicubic_on_one_image():
    """A few dozen Adam steps on one pair already improve on plain bicubic up-sampling (the residual is learned)."""
    torch.manual_seed(0)
    g = torch.linspace(0, 1, 64)
    yy, xx = torch.meshgrid(g, g, indexing="ij")
    hr = (0.5 + 0.25 * torch.sin(40 * xx + 10 * yy) * torch.cos(25 * yy))[None, None]  # fine oblique texture
    lr = F.avg_pool2d(hr, 2)
    net = sr_network("srcnn", width=0.25)
    bicubic_mse = F.mse_loss(F.interpolate(lr, scale_factor=2, mode="bicubic"), hr).item()
    opt = torch.optim.Adam(net.parameters(), 3e-3)
    for _ in range(60):
        loss = F.mse_loss(net(lr), hr)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert F.mse_loss(net(lr), hr).item() < 0.9 * bicubic_mse


def test_unknown_name_and_bad_scale_raise():
    with pytest.raises(ValueError, match="unknown SR network"):
        sr_network("edsr")
    with pytest.raises(ValueError, match="scale"):
        sr_network("srcnn", scale=1.5)
    with pytest.raises(ValueError, match="width"):
        sr_network("srcnn", width=0)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_sr_inferer_runs_volumes_slice_by_slice(axis):
    net = sr_network("srcnn", width=0.125).eval()
    vol = torch.rand(1, 1, 6, 7, 5)
    with torch.no_grad():
        out = SRInferer(slice_axis=axis, sw_batch_size=3)(vol, net)
        ref = torch.stack([net(vol.select(axis + 2, i)) for i in range(vol.shape[axis + 2])], dim=axis + 2)
    torch.testing.assert_close(out, ref)
    with torch.no_grad():
        assert SRInferer()(torch.rand(1, 1, 6, 7), net).shape == (1, 1, 12, 14)

"""SegUNet: shapes for every down-sampling operator, parameter counts, and its input/encoder-decoder/head split."""

import pytest
import torch

from common.networks import DOWNSAMPLE_NAMES, SegUNet
from common.networks.unet import EncoderDecoder, match_size

CHANNELS = (4, 8, 16, 32)  # depth 3: sizes divisible by 8


def _n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("spatial_dims, size", [(2, (32, 16)), (3, (16, 16, 8))])
@pytest.mark.parametrize("name", DOWNSAMPLE_NAMES)
def test_forward_shape_every_operator(name, spatial_dims, size):
    torch.manual_seed(0)
    net = SegUNet(spatial_dims, in_channels=2, out_channels=3, channels=CHANNELS, downsample=name)
    out = net(torch.randn(2, 2, *size))
    assert out.shape == (2, 3, *size)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_parameter_count_independent_of_parameter_free_operators(spatial_dims):
    counts = {
        name: _n_params(SegUNet(spatial_dims, 1, 4, channels=CHANNELS, downsample=name)) for name in DOWNSAMPLE_NAMES
    }
    strided = counts.pop("strided_conv")
    assert len(set(counts.values())) == 1
    # strided_conv adds one C -> C conv (kernel 3, with bias) per level, C = channels[:-1]
    extra = sum(c * c * 3**spatial_dims + c for c in CHANNELS[:-1])
    assert strided - counts["maxpool"] == extra


def test_parameter_count_by_hand_2d():
    c0, c1 = 4, 8
    two_conv = lambda i, o: (i * o * 9 + o) + 2 * o + (o * o * 9 + o) + 2 * o  # noqa: E731  conv+bias, affine norm
    expected = (
        two_conv(1, c0)  # input block
        + two_conv(c0, c1)  # encoder level 1
        + (c1 * c0 * 4 + c0)  # transposed conv k2
        + two_conv(2 * c0, c0)  # decoder level 1
        + (2 * c0 * 2 + 2)  # head 1x1 conv
    )
    assert _n_params(SegUNet(2, 1, 2, channels=(c0, c1))) == expected


def test_forward_is_head_of_input_and_encoder_decoder_features():
    torch.manual_seed(0)
    net = SegUNet(2, 1, 3, channels=CHANNELS, downsample="flc").eval()
    x = torch.randn(1, 1, 24, 16)
    inp = net.input_block(x)
    dec = net.encoder_decoder(inp)
    assert inp.shape == dec.shape == (1, CHANNELS[0], 24, 16)
    torch.testing.assert_close(net(x), net.head(torch.cat([inp, dec], dim=1)))


@pytest.mark.parametrize("upsample", ["deconv", "interp"])
@pytest.mark.parametrize("name", ["maxpool", "strided_conv", "asap"])
def test_encoder_decoder_keeps_sizes_not_divisible_by_two_to_the_depth(name, upsample):
    enc_dec = EncoderDecoder(2, CHANNELS, downsample=name, upsample=upsample)
    x = torch.randn(2, CHANNELS[0], 21, 18)
    assert enc_dec(x).shape == x.shape


def test_every_parameter_gets_a_gradient():
    net = SegUNet(3, 1, 2, channels=(2, 4, 8), downsample="blurpool")
    net(torch.randn(2, 1, 8, 8, 8)).logsumexp(dim=1).sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


def test_match_size_pads_and_crops():
    x = torch.arange(6.0).reshape(1, 1, 2, 3)
    out = match_size(x, (3, 2))
    torch.testing.assert_close(out, torch.tensor([[[[0.0, 1.0], [3.0, 4.0], [3.0, 4.0]]]]))


def test_bad_input_is_rejected():
    net = SegUNet(2, 1, 2, channels=CHANNELS)
    with pytest.raises(ValueError, match=r"SegUNet expects \(B, 1, 2 spatial dims\)"):
        net(torch.zeros(1, 2, 16, 16))
    with pytest.raises(ValueError, match="smaller than 2\\*\\*depth = 8"):
        net(torch.zeros(1, 1, 16, 4))
    with pytest.raises(ValueError, match="unknown downsample operator"):
        SegUNet(2, 1, 2, downsample="median")

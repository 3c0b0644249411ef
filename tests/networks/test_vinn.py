"""VINN: output on the native grid, internal grid at the internal voxel size, same parameters as SegUNet."""

import pytest
import torch
from monai.data import MetaTensor

from common.networks.seg_planes import MultiPlaneSegmenter
from common.networks.unet import SegUNet
from common.networks.vinn import VINN, internal_size


def _capture_internal(net):
    sizes = []
    net.encoder_decoder.register_forward_hook(lambda m, inp, out: sizes.append(tuple(inp[0].shape[2:])))
    return sizes


def n_params(net):
    return sum(p.numel() for p in net.parameters())


@pytest.mark.parametrize("downsample", ["maxpool", "strided_conv", "flc"])
def test_same_parameter_count_as_segunet(downsample):
    vinn = VINN(2, 3, 4, (8, 16, 32), internal_spacing=1.0, downsample=downsample)
    unet = SegUNet(2, 3, 4, (8, 16, 32), downsample=downsample)
    assert n_params(vinn) == n_params(unet)
    assert [n for n, _ in vinn.named_parameters()] == [n for n, _ in unet.named_parameters()]


@pytest.mark.parametrize(
    "size, spacing, expected_internal",
    [
        ((45, 61), (1.0, 1.0), (23, 31)),  # 22.5 and 30.5 round half up
        ((45, 61), (2.0, 2.0), (45, 61)),  # native = internal: no resampling
        ((30, 40), (3.0, 3.0), (45, 60)),
        ((33, 50), (1.4, 3.0), (23, 75)),  # 33 * 0.7 = 23.1
    ],
)
def test_output_on_native_grid_and_internal_grid(size, spacing, expected_internal):
    torch.manual_seed(0)
    net = VINN(2, 1, 3, (4, 8), internal_spacing=2.0).eval()
    sizes = _capture_internal(net)
    x = torch.randn(2, 1, *size)
    with torch.no_grad():
        y = net(x, torch.tensor([spacing, spacing]))
    assert y.shape == (2, 3, *size)
    assert sizes == [expected_internal]
    assert net.internal_grid(size, spacing) == expected_internal


def test_spacing_from_metatensor_and_3d():
    net = VINN(3, 1, 2, (4, 8), internal_spacing=(2.0, 2.0, 2.0)).eval()
    sizes = _capture_internal(net)
    affine = torch.diag(torch.tensor([3.0, 3.0, 1.0, 1.0]))
    x = MetaTensor(torch.randn(1, 1, 10, 12, 16), affine=affine)
    with torch.no_grad():
        y = net(x)
    assert y.shape == (1, 2, 10, 12, 16)
    assert sizes == [internal_size((10, 12, 16), (3.0, 3.0, 1.0), (2.0, 2.0, 2.0))] == [(15, 18, 8)]


def test_internal_spacing_equal_native_is_segunet():
    """At the internal voxel size no resampling happens: VINN computes exactly SegUNet with the same weights."""
    torch.manual_seed(1)
    vinn = VINN(2, 2, 3, (4, 8), internal_spacing=1.5).eval()
    unet = SegUNet(2, 2, 3, (4, 8)).eval()
    unet.load_state_dict(vinn.state_dict())
    x = torch.randn(3, 2, 16, 24)
    with torch.no_grad():
        torch.testing.assert_close(vinn(x, 1.5), unet(x))


def test_mixed_spacings_in_one_batch_match_separate_calls():
    torch.manual_seed(2)
    net = VINN(2, 1, 2, (4, 8), internal_spacing=2.0).eval()
    x = torch.randn(3, 1, 20, 24)
    spacing = torch.tensor([[2.0, 2.0], [3.0, 3.0], [2.0, 2.0]])
    with torch.no_grad():
        joint = net(x, spacing)
        torch.testing.assert_close(joint[[0, 2]], net(x[[0, 2]], 2.0))
        torch.testing.assert_close(joint[1:2], net(x[1:2], 3.0))


def test_bad_spacing_raises():
    net = VINN(2, 1, 2, (4, 8), internal_spacing=2.0)
    with pytest.raises(ValueError, match="spacing"):
        net(torch.randn(1, 1, 16, 16), torch.tensor([[0.0, 1.0]]))
    with pytest.raises(ValueError, match="internal_spacing"):
        VINN(2, 1, 2, (4, 8), internal_spacing=(1.0, 2.0, 3.0))


@pytest.mark.parametrize("internal", [None, 2.0])
def test_multiplane_volume_grid_and_weights(internal):
    """2.5D: logits on the input grid; with three planes the result is the 0.4/0.4/0.2 weighted sum."""
    torch.manual_seed(3)
    seg = MultiPlaneSegmenter("all", thickness=3, out_channels=3, channels=(4, 8), internal_spacing=internal).eval()
    vol = MetaTensor(torch.randn(1, 1, 13, 17, 11), affine=torch.diag(torch.tensor([3.0, 3.0, 3.0, 1.0])))
    with torch.no_grad():
        out = seg(vol)
        assert out.shape == (1, 3, 13, 17, 11)
        parts = {}
        for plane in ("axial", "coronal", "sagittal"):
            single = MultiPlaneSegmenter(plane, 3, 3, (4, 8), internal_spacing=internal).eval()
            single.nets[plane].load_state_dict(seg.nets[plane].state_dict())
            parts[plane] = single(vol)
    expected = 0.4 * parts["axial"] + 0.4 * parts["coronal"] + 0.2 * parts["sagittal"]
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)

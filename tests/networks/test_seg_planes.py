"""MultiPlaneSegmenter: its TorchScript twin (torch.jit.script, MONAI ckpt_export) equals the eager volume mode."""

import pytest
import torch

from common.networks.seg_planes import MultiPlaneSegmenter


@pytest.mark.parametrize(
    "planes, internal_spacing, downsample, shape, spacing",
    [
        ("axial", 2.0, "maxpool", (16, 16, 16), None),  # VINN, plain tensor: 1 mm assumed, resampled to 2 mm
        ("all", 2.0, "avgpool", (13, 18, 11), [3.0, 2.5, 1.0]),  # VINN, odd sizes, anisotropic voxels
        ("all", None, "strided_conv", (13, 18, 11), None),  # U-Net, padding to a multiple of 2**depth
        ("coronal", None, "maxpool", (20, 17, 9), [3.0, 2.0, 1.0]),
    ],
)
def test_scripted_volume_mode_equals_eager(planes, internal_spacing, downsample, shape, spacing):
    torch.manual_seed(0)
    net = MultiPlaneSegmenter(planes, 3, 4, [4, 8, 16], downsample, internal_spacing=internal_spacing, slice_batch=5)
    net = net.eval()
    scripted = torch.jit.script(net)
    assert sorted(scripted.state_dict()) == sorted(net.state_dict())
    x = torch.rand(2, 1, *shape)
    s = None if spacing is None else torch.tensor([spacing, [2.5, 3.0, 2.0]])  # two voxel sizes in one batch
    with torch.no_grad():
        eager, ts = net(x, s), scripted(x, s)
    assert ts.shape == (2, 4, *shape)
    torch.testing.assert_close(ts, eager, rtol=1e-5, atol=1e-6)

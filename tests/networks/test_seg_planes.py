"""MultiPlaneSegmenter compiles with torch.jit.script (MONAI ckpt_export) and the scripted module equals the eager one."""

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
        ("axial", 2.0, "blurpool", (12, 10, 7), [3.0, 2.0, 1.0]),
        ("sagittal", None, "flc", (9, 12, 16), None),
        ("all", 2.0, "asap", (10, 9, 8), [2.0, 3.0, 2.0]),
    ],
)
def test_scripted_volume_mode_equals_eager(planes, internal_spacing, downsample, shape, spacing):
    torch.manual_seed(0)
    net = MultiPlaneSegmenter(planes, 3, 4, [4, 8, 16], downsample, internal_spacing=internal_spacing, slice_batch=5)
    net = net.eval()
    scripted = torch.jit.script(net)
    scripted_state = scripted.state_dict()  # also lists non-persistent buffers (BlurPool's fixed kernel)
    for key, value in net.state_dict().items():
        assert torch.equal(scripted_state[key], value), key
    x = torch.rand(2, 1, *shape)
    s = None if spacing is None else torch.tensor([spacing, [2.5, 3.0, 2.0]])  # two voxel sizes in one batch
    with torch.no_grad():
        eager, ts = net(x, s), scripted(x, s)
    assert ts.shape == (2, 4, *shape)
    torch.testing.assert_close(ts, eager, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("internal_spacing", [None, 2.0])
def test_scripted_slice_mode_equals_eager(internal_spacing):
    """Training's slice mode: ``(B, thickness, H, W)`` with ``plane=`` and two voxel sizes in one batch."""
    torch.manual_seed(1)
    net = MultiPlaneSegmenter("all", 3, 4, [4, 8, 16], "maxpool", internal_spacing=internal_spacing).eval()
    scripted = torch.jit.script(net)
    x = torch.rand(3, 3, 13, 10)
    s = torch.tensor([[3.0, 2.0], [2.0, 2.0], [3.0, 2.0]])
    with torch.no_grad():
        eager, ts = net(x, s, plane="coronal"), scripted(x, s, plane="coronal")
    assert ts.shape == (3, 4, 13, 10)
    torch.testing.assert_close(ts, eager, rtol=0, atol=0)
    with pytest.raises(Exception, match="plane"):
        scripted(x, s)  # three planes: the slice mode must be told which


def test_vinn_groups_voxel_sizes_exactly_as_separate_calls():
    """A batch with two voxel sizes gives, per sample, what a batch of one voxel size gives."""
    from common.networks.vinn import VINN

    torch.manual_seed(2)
    net = VINN(2, 1, 3, [4, 8], 2.0).eval()
    x = torch.rand(3, 1, 11, 9)
    s = torch.tensor([[3.0, 2.0], [2.0, 2.0], [3.0, 2.0]])
    with torch.no_grad():
        mixed = net(x, s)
        alone = torch.cat([net(x[i : i + 1], s[i]) for i in range(3)])
        scripted = torch.jit.script(net)(x, s)
    torch.testing.assert_close(mixed, alone, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(scripted, mixed, rtol=0, atol=0)
    assert not torch.allclose(mixed[0], net(x[:1], torch.tensor([2.0, 2.0]))[0])  # the voxel size matters


def test_vinn_does_not_resample_at_its_internal_voxel_size(monkeypatch):
    """At the internal voxel size the grid is the native one: no interpolation (an identity resampling is not
    bit-exact in training), and the output is SegUNet's with the same weights."""
    import torch.nn.functional as F

    from common.networks.unet import SegUNet
    from common.networks.vinn import VINN

    torch.manual_seed(3)
    vinn = VINN(2, 1, 3, [4, 8], 2.0).eval()
    unet = SegUNet(2, 1, 3, [4, 8]).eval()
    unet.load_state_dict(vinn.state_dict())
    calls = []
    interpolate = F.interpolate
    monkeypatch.setattr(F, "interpolate", lambda *a, **k: calls.append(k) or interpolate(*a, **k))
    x = torch.rand(2, 1, 12, 10)
    with torch.no_grad():
        same = vinn(x, torch.tensor([2.0, 2.0]))
        assert calls == [] and torch.equal(same, unet(x))
        vinn(x, torch.tensor([3.0, 2.0]))
    assert [c["size"] for c in calls] == [[18, 10], [12, 10]]  # to the internal grid and back

"""Every network and down-sampling operator compiles with ``torch.jit.script`` and equals its eager self.

Model-zoo's CI exports each bundle's network with MONAI's ``ckpt_export`` by scripting (no ``use_trace``); these
tests run that export for every bundle network variant (SR models, segmentation down-sampling operators) and check
the round trip, plus reference forwards showing the scriptable code computes the same numbers as before.
"""

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from monai.bundle import ConfigParser, ckpt_export

from common.networks.pooling import ASAPPool, BlurPool, FLCPool, downsample
from common.networks.sr import SR_NETWORK_NAMES, RRDBNet, interpolate_up, sr_network
from common.study.runner import BUNDLES_DIR


@pytest.mark.parametrize("name", SR_NETWORK_NAMES)
@pytest.mark.parametrize("spatial_dims, scale", [(2, 2), (2, 3), (2, 4), (3, 2)])
def test_sr_networks_script_and_match_eager(name, spatial_dims, scale):
    torch.manual_seed(0)
    net = sr_network(name, scale=scale, spatial_dims=spatial_dims, width=0.25).eval()
    scripted = torch.jit.script(net)
    x = torch.rand(2, 1, *([7] * spatial_dims))
    with torch.no_grad():
        eager, ts = net(x), scripted(x)
    assert ts.shape == (2, 1, *([7 * scale] * spatial_dims))
    torch.testing.assert_close(ts, eager, rtol=0, atol=1e-6)


@pytest.mark.parametrize("ndim, mode", [(4, "bicubic"), (5, "trilinear")])
def test_interpolate_up_equals_integer_scale_factor_interpolation(ndim, mode):
    """The float ``scale_factor`` (needed by TorchScript) gives bit-identical output to the former int one."""
    x = torch.rand(1, 2, *([5] * (ndim - 2)))
    ref = F.interpolate(x, scale_factor=3, mode=mode, align_corners=False)
    assert torch.equal(interpolate_up(x, 3), ref)


@pytest.mark.parametrize("scale, factors", [(2, [2]), (3, [3]), (4, [2, 2]), (6, [2, 3])])
def test_rrdbnet_forward_equals_reference_with_integer_nearest_steps(scale, factors):
    """RRDBNet's indexed up-sampling loop computes exactly what zip over (int factor, conv) pairs computes."""
    torch.manual_seed(1)
    net = RRDBNet(2, scale, features=4, growth=2, num_blocks=1).eval()
    assert net.up_factors == factors
    x = torch.rand(1, 1, 5, 6)
    with torch.no_grad():
        feat = net.first(x)
        feat = feat + net.trunk_conv(net.trunk(feat))
        for f, c in zip(factors, net.up_convs):
            feat = net.act(c(F.interpolate(feat, scale_factor=f, mode="nearest")))
        ref = F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False)
        ref = ref + net.last(net.act(net.hr_conv(feat)))
        assert torch.equal(net(x), ref)


@pytest.mark.parametrize(
    "make, shape",
    [
        (lambda: BlurPool(1, 3, 4), (2, 3, 9)),
        (lambda: BlurPool(2, 3, 3), (2, 3, 8, 11)),
        (lambda: BlurPool(2, 3, 5, pad_mode="constant"), (2, 3, 8, 11)),
        (lambda: BlurPool(2, 3, 3), (2, 3, 1, 6)),  # an axis too short to reflect: replicate fallback
        (lambda: BlurPool(3, 2, 1), (1, 2, 4, 5, 6)),  # filter size 1: no padding
        (lambda: downsample("blurpool", 3, 2), (1, 2, 6, 7, 8)),
        (lambda: FLCPool(2), (2, 3, 10, 13)),
        (lambda: FLCPool(3), (1, 2, 6, 7, 9)),
        (lambda: ASAPPool(1), (2, 3, 11)),
        (lambda: ASAPPool(2), (2, 3, 10, 13)),
        (lambda: ASAPPool(3), (1, 2, 6, 7, 9)),
    ],
)
def test_pooling_operators_script_and_match_eager(make, shape):
    op = make()
    scripted = torch.jit.script(op)
    x = torch.rand(*shape, dtype=torch.float64)
    torch.testing.assert_close(scripted(x), op(x), rtol=0, atol=1e-12)
    torch.testing.assert_close(scripted(x.float()), op(x.float()), rtol=0, atol=1e-6)


def test_scripted_blurpool_rejects_wrong_channels():
    scripted = torch.jit.script(BlurPool(2, 3))
    with pytest.raises(Exception, match="built for 3 channels"):
        scripted(torch.rand(1, 2, 8, 8))


def _export_round_trip(bundle: str, tmp_path: Path, **override) -> None:
    """``ckpt_export`` by scripting (model-zoo's default) and compare the loaded TorchScript model with eager."""
    configs = BUNDLES_DIR / bundle / "configs"
    config_file, meta_file = str(configs / "inference.yaml"), str(configs / "metadata.json")
    parser = ConfigParser()
    parser.read_config(config_file)
    parser.read_meta(meta_file)
    parser.update(override)
    torch.manual_seed(0)
    net = parser.get_parsed_content("network_def", instantiate=True).eval()
    ckpt, ts = tmp_path / "model.pt", tmp_path / "model.ts"
    torch.save(net.state_dict(), ckpt)
    ckpt_export(
        net_id="network_def",
        filepath=str(ts),
        ckpt_file=str(ckpt),
        meta_file=meta_file,
        config_file=config_file,
        key_in_ckpt="",
        **override,
    )
    loaded = torch.jit.load(str(ts))
    x = torch.rand(1, 1, 16, 16) if bundle != "segmentation_resolution_bias" else torch.rand(1, 1, 16, 14, 12)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), net(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("model", SR_NETWORK_NAMES)
def test_ckpt_export_scripts_sr_bundle(model, tmp_path):
    _export_round_trip("sr_degradation_bias", tmp_path, model=model, width=0.25)


@pytest.mark.parametrize("downsample_name", ["maxpool", "strided_conv", "avgpool", "blurpool", "flc", "asap"])
@pytest.mark.parametrize("approach", ["vinn", "h_only"])
def test_ckpt_export_scripts_segmentation_bundle(downsample_name, approach, tmp_path):
    _export_round_trip(
        "segmentation_resolution_bias", tmp_path, downsample=downsample_name, approach=approach, channels=[4, 8]
    )


def test_ckpt_export_scripts_label_error_bundle(tmp_path):
    _export_round_trip("label_error_refurbishment", tmp_path)

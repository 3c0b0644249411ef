"""The SR collapse experiment: it refuses the published seeds and tells a dead SRCNN from a live one."""

import pytest
import torch

from common.networks.sr import SRCNN
from tests.tuning import sr_collapse


def test_refuses_published_seeds():
    with pytest.raises(SystemExit):
        sr_collapse.main(["--seeds", "100", "2"])


def _loader(n=3, size=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [
        {"image": torch.rand(1, 1, size, size, generator=g), "label": torch.rand(1, 1, 2 * size, 2 * size, generator=g)}
        for _ in range(n)
    ]


def test_measure_counts_live_units_and_gain():
    torch.manual_seed(0)
    net = SRCNN(scale=2, features=(8, 4))
    with torch.no_grad():
        net.body[4].weight.zero_()
        net.body[4].bias.zero_()  # residual branch outputs 0: the network is its bicubic path
        net.body[2].bias.copy_(torch.tensor([5.0, 5.0, -1e3, -1e3]))  # two units always on, two always off
    out = sr_collapse.measure(net, _loader())
    assert out["units"] == 4 and out["live_units"] == 2
    assert out["gain_db"] == pytest.approx(0.0, abs=1e-5)

    with torch.no_grad():
        net.body[2].bias.fill_(-1e3)  # the collapse: every last hidden unit dead
        net.body[4].bias.fill_(0.05)  # a constant offset moves the PSNR but no unit is alive
    dead = sr_collapse.measure(net, _loader())
    assert dead["live_units"] == 0 and dead["gain_db"] != pytest.approx(0.0, abs=1e-3)

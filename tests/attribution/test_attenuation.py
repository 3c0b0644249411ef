import numpy as np
import pytest
import torch

from common.attribution.attenuation import attenuate_regions, rcs_pooling_weights
from common.attribution.regions import grid_partition


def _images(n=2, c=2, h=12, w=12, seed=0):
    return torch.rand(n, c, h, w, generator=torch.Generator().manual_seed(seed))


def test_mean_fill_replaces_only_chosen_regions_with_their_own_mean():
    x = _images()
    part = grid_partition((12, 12), 3)
    out = attenuate_regions(x, part, [4, 0], mode="mean")
    chosen = torch.as_tensor(np.isin(part, [4, 0]))
    torch.testing.assert_close(out[..., ~chosen], x[..., ~chosen])
    for r in (0, 4):
        m = torch.as_tensor(part == r)
        expected = x[..., m].mean(dim=-1, keepdim=True).expand_as(x[..., m])  # per image and channel
        torch.testing.assert_close(out[..., m], expected)
    # region means are preserved, variance inside the region is gone
    m4 = torch.as_tensor(part == 4)
    assert float(out[..., m4].std(dim=-1).max()) < 1e-6
    assert not torch.equal(out[0, 0][m4], out[1, 0][m4])  # each image keeps its own mean
    torch.testing.assert_close(attenuate_regions(x, part, [], mode="mean"), x)


def test_blur_smooths_inside_regions_only():
    x = _images(1, 1, 16, 16, seed=1)
    part = grid_partition((16, 16), 2)
    out = attenuate_regions(x, part, [3], mode="blur", sigma=2.0)
    m = torch.as_tensor(part == 3)
    torch.testing.assert_close(out[..., ~m], x[..., ~m])
    assert float(out[..., m].std()) < 0.5 * float(x[..., m].std())
    # a constant image is a fixed point away from the border effects of zero padding
    c = torch.full((1, 1, 16, 16), 0.7)
    torch.testing.assert_close(attenuate_regions(c, part, [0], mode="blur", sigma=1.0)[..., 4:7, 4:7], c[..., 4:7, 4:7])


def test_bad_arguments():
    x = _images()
    part = grid_partition((12, 12), 3)
    with pytest.raises(ValueError):
        attenuate_regions(x, part, [1], mode="zero")
    with pytest.raises(ValueError):
        attenuate_regions(x, part, [9], mode="mean")
    with pytest.raises(ValueError):
        attenuate_regions(x, grid_partition((10, 12), 3), [1])


def test_rcs_pooling_weights_down_weight_shortcut_regions():
    s = np.array([[2.0, -1.0], [0.0, 0.5]])
    w = rcs_pooling_weights(s)
    # m = s / 2 -> [[1, -0.5], [0, 0.25]]; w = 1 - 2 m (m >= 0), 1 - 5 m (m < 0)
    np.testing.assert_allclose(w, [[-1.0, 3.5], [1.0, 0.5]], atol=1e-7)

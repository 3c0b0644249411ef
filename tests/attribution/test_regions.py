import numpy as np
import pytest
from scipy import ndimage
from scipy.stats import rankdata

from common.attribution.regions import (
    grid_partition,
    mean_edge_image,
    median_rank_profile,
    paint_regions,
    rank_regions,
    region_means,
    slic_partition,
)


@pytest.mark.parametrize("shape,n", [((32, 32), 8), ((37, 50), 8), ((17, 16), 16), ((5, 7), 1)])
def test_grid_covers_every_pixel_once_with_near_equal_cells(shape, n):
    p = grid_partition(shape, n)
    assert p.shape == shape
    assert np.array_equal(np.unique(p), np.arange(n * n))
    rows, cols = p // n, p % n
    # each cell is a rectangle: row index depends on y only, column index on x only
    assert np.all(rows == rows[:, :1]) and np.all(cols == cols[:1, :])
    heights = np.bincount(rows[:, 0], minlength=n)
    widths = np.bincount(cols[0], minlength=n)
    assert heights.sum() == shape[0] and widths.sum() == shape[1]
    assert heights.max() - heights.min() <= 1 and widths.max() - widths.min() <= 1
    # labels run row-major: top-left 0, top-right n-1, bottom-left n*(n-1)
    assert p[0, 0] == 0 and p[0, -1] == n - 1 and p[-1, 0] == n * (n - 1)


def test_grid_rejects_too_many_cells():
    with pytest.raises(ValueError):
        grid_partition((4, 10), 5)


def _two_halves(n=6, h=32, w=32, seed=0):
    rng = np.random.default_rng(seed)
    ims = np.zeros((n, h, w), np.float32)
    ims[:, :, w // 2 :] = 1.0
    return ims + 0.02 * rng.standard_normal(ims.shape).astype(np.float32)


def test_mean_edge_image_peaks_at_the_boundary():
    e = mean_edge_image(_two_halves())
    col_profile = e.mean(axis=0)
    assert set(np.argsort(col_profile)[-2:]) == {15, 16}
    # channel-first RGB input with identical channels gives the same grey edge image
    rgb = np.repeat(_two_halves()[:, None], 3, axis=1)
    np.testing.assert_allclose(mean_edge_image(rgb), e, atol=1e-3)


def test_slic_on_two_halves_does_not_straddle_the_edge():
    ims = _two_halves()
    ref = ims.mean(axis=0)  # the two-halves image itself; its edge image has one vertical ridge
    p = slic_partition(ref, n_segments=8)
    assert np.array_equal(np.unique(p), np.arange(p.max() + 1))
    for r in range(p.max() + 1):
        cols = np.nonzero(p == r)[1]
        assert cols.max() < 16 or cols.min() >= 16, f"region {r} spans the edge"
    # labels ordered by centroid: top-to-bottom, then left-to-right
    yy, xx = np.indices(p.shape)
    idx = np.arange(p.max() + 1)
    cy, cx = ndimage.mean(yy, p, idx), ndimage.mean(xx, p, idx)
    assert np.array_equal(np.lexsort((cx, cy)), idx)


def test_region_means_normalise_then_average():
    part = np.array([[0, 0, 1], [2, 2, 1]])
    maps = np.array([[[1.0, 3.0, 2.0], [0.0, 0.0, 4.0]]])  # sum 10
    got = region_means(maps, part)
    np.testing.assert_allclose(got, [[0.2, 0.3, 0.0]])
    # a scaled copy of a map has the same normalised means
    np.testing.assert_allclose(region_means(7.0 * maps, part), got)
    np.testing.assert_allclose(region_means(np.zeros_like(maps), part), [[0.0, 0.0, 0.0]])


def test_region_means_rejects_gaps_in_labels():
    with pytest.raises(ValueError):
        region_means(np.ones((1, 2, 2)), np.array([[0, 0], [2, 2]]))


def test_rank_one_is_most_attributed_and_ties_are_averaged():
    scores = np.array([[0.1, 0.5, 0.5, 0.0], [4.0, 3.0, 2.0, 1.0]])
    ranks = rank_regions(scores)
    np.testing.assert_array_equal(ranks, [[3.0, 1.5, 1.5, 4.0], [1.0, 2.0, 3.0, 4.0]])
    np.testing.assert_allclose(ranks.sum(axis=1), 4 * 5 / 2)
    rng = np.random.default_rng(3)
    s = rng.integers(0, 4, size=(5, 9)).astype(float)
    np.testing.assert_array_equal(rank_regions(s), np.stack([rankdata(-row) for row in s]))


def test_median_rank_profile_and_paint():
    ranks = np.array([[1.0, 2.0, 3.0], [3.0, 1.0, 2.0], [2.0, 1.0, 3.0], [1.0, 3.0, 2.0]])
    np.testing.assert_allclose(median_rank_profile(ranks), [1.5, 1.5, 2.5])
    part = np.array([[0, 1], [2, 2]])
    np.testing.assert_array_equal(paint_regions(np.array([5, 6, 7]), part), [[5, 6], [7, 7]])

"""Volume bias: hand-computed cases, NaN for empty ground truth, spacing, label-map/one-hot equivalence."""

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.networks.utils import one_hot

from common.metrics import label_volumes, volume_bias


def _mask(n_voxels: int, label: int = 1, shape=(4, 4, 4)) -> torch.Tensor:
    y = torch.zeros(1, 1, *shape)
    y.view(-1)[:n_voxels] = label
    return y


def test_hand_computed_over_and_under_segmentation():
    torch.testing.assert_close(volume_bias(_mask(6), _mask(5)), torch.tensor([[0.2]], dtype=torch.float64))
    torch.testing.assert_close(volume_bias(_mask(4), _mask(5)), torch.tensor([[-0.2]], dtype=torch.float64))
    torch.testing.assert_close(volume_bias(_mask(5), _mask(5)), torch.tensor([[0.0]], dtype=torch.float64))


def test_background_channel_and_empty_ground_truth_gives_nan():
    gt = _mask(5, label=1, shape=(2, 5))  # 10 voxels: 5 of class 1, 5 background
    pred = _mask(6, label=2, shape=(2, 5))  # class 2 predicted but absent in gt; class 1 missed
    bias = volume_bias(pred, gt, include_background=True)
    assert bias.shape == (1, 3)
    assert bias[0, 0].item() == pytest.approx((4 - 5) / 5)
    assert bias[0, 1].item() == pytest.approx(-1.0)
    assert torch.isnan(bias[0, 2])
    assert volume_bias(pred, gt).shape == (1, 2)  # background dropped


def test_one_hot_and_label_map_agree_and_mix():
    rng = np.random.default_rng(0)
    gt = torch.from_numpy(rng.integers(0, 4, size=(3, 1, 6, 7, 5)))
    pred = torch.from_numpy(rng.integers(0, 4, size=(3, 1, 6, 7, 5)))
    ref = volume_bias(pred, gt)
    counts_p = np.stack([np.bincount(p.ravel(), minlength=4) for p in pred.numpy()])
    counts_g = np.stack([np.bincount(g.ravel(), minlength=4) for g in gt.numpy()])
    np.testing.assert_allclose(ref.numpy(), ((counts_p - counts_g) / counts_g)[:, 1:])
    torch.testing.assert_close(volume_bias(one_hot(pred, 4), one_hot(gt, 4)), ref)
    torch.testing.assert_close(volume_bias(one_hot(pred, 4), gt), ref)
    torch.testing.assert_close(volume_bias(pred.float(), gt.float()), ref)


def test_spacing_scales_volumes_not_the_ratio():
    gt, pred = _mask(5), _mask(6)
    assert label_volumes(gt, spacing=(2.0, 1.0, 0.5))[0, 1].item() == pytest.approx(5.0)
    assert label_volumes(gt, spacing=3.0)[0, 1].item() == pytest.approx(135.0)
    assert volume_bias(pred, gt, spacing=(2.0, 1.0, 0.5)).item() == pytest.approx(0.2)
    per_sample = label_volumes(torch.cat([gt, gt]), spacing=[[1.0, 1.0, 1.0], [2.0, 2.0, 2.0]])
    np.testing.assert_allclose(per_sample[:, 1].numpy(), [5.0, 40.0])


def test_metatensor_pixdim_is_used_for_volumes():
    gt = MetaTensor(_mask(5), affine=torch.diag(torch.tensor([2.0, 3.0, 1.0, 1.0])))
    assert label_volumes(gt)[0, 1].item() == pytest.approx(30.0)


def test_bad_labels_are_rejected():
    with pytest.raises(ValueError, match="non-integer"):
        label_volumes(torch.full((1, 1, 2, 2), 0.5))
    with pytest.raises(ValueError, match="negative"):
        label_volumes(-_mask(3))
    with pytest.raises(ValueError, match="num_classes is 2"):
        label_volumes(_mask(3, label=2), num_classes=2)
    with pytest.raises(ValueError, match="differ in batch or spatial shape"):
        volume_bias(_mask(3), _mask(3, shape=(4, 4, 3)))
    with pytest.raises(ValueError, match="spacing must be"):
        label_volumes(_mask(3), spacing=(1.0, 1.0))


# --- found by mutation testing (tests/MUTANTS.md) ---------------------------------------------------------------


def test_one_spatial_dim_bool_masks_and_two_channel_one_hot():
    line = torch.tensor([[[0, 1, 1, 2, 2, 2]]])  # (B, 1, N)
    assert label_volumes(line).tolist() == [[1.0, 2.0, 3.0]]  # num_classes = max label + 1
    mask = torch.tensor([[[True, False, True, True]]])
    assert label_volumes(mask).tolist() == [[1.0, 3.0]]
    two = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]]])  # (B, C=2, N) one-hot: channel sums
    assert label_volumes(two).tolist() == [[1.0, 2.0]]
    assert volume_bias(two, torch.tensor([[[0, 1, 0]]])).tolist() == [[1.0]]  # 2 predicted vs 1 true voxel


def test_soft_one_hot_volumes_are_summed_in_float64():
    probs = torch.rand(1, 3, 200, 300, generator=torch.Generator().manual_seed(0)).softmax(1)  # float32
    expected = probs.double().sum((2, 3))
    torch.testing.assert_close(label_volumes(probs), expected, rtol=1e-13, atol=0)


def test_empty_images_give_empty_volumes():
    empty = torch.zeros(1, 1, 0)
    assert label_volumes(empty).shape == (1, 0)
    assert label_volumes(empty, num_classes=3).tolist() == [[0.0, 0.0, 0.0]]
    assert volume_bias(empty, empty).shape == (1, 0)
    assert volume_bias(empty, empty, include_background=True).shape == (1, 1)


def test_one_ground_truth_voxel():
    assert volume_bias(_mask(2), _mask(1)).tolist() == [[1.0]]


def test_one_hot_prediction_against_label_map_with_fewer_labels():
    gt = _mask(4)  # labels 0 and 1 only
    pred = one_hot(_mask(5, label=3), 4)  # 4 one-hot channels fix the number of classes
    bias = volume_bias(pred, gt)
    assert bias.shape == (1, 3)
    assert bias[0, 0].item() == -1.0 and torch.isnan(bias[0, 1:]).all()


def test_batched_metatensor_spacing_is_per_sample():
    from monai.data.utils import list_data_collate

    a = MetaTensor(_mask(5)[0], affine=torch.diag(torch.tensor([2.0, 1.0, 1.0, 1.0])))
    b = MetaTensor(_mask(5)[0], affine=torch.diag(torch.tensor([1.0, 3.0, 0.5, 1.0])))
    batch = list_data_collate([a, b])
    assert batch.is_batch
    volumes = label_volumes(batch)
    assert type(volumes) is torch.Tensor  # plain tensors, no metadata tracking in results
    assert volumes[:, 1].tolist() == [10.0, 7.5]


def test_volume_bias_uses_one_spacing_for_both_even_if_only_one_has_metadata():
    plain, meta = _mask(6), MetaTensor(_mask(5), affine=torch.diag(torch.tensor([2.0, 2.0, 2.0, 1.0])))
    assert volume_bias(plain, meta).item() == pytest.approx(0.2)  # not 6 voxels vs 5 * 8 mm^3
    meta_pred = MetaTensor(_mask(6), affine=torch.diag(torch.tensor([2.0, 2.0, 2.0, 1.0])))
    assert volume_bias(meta_pred, _mask(5)).item() == pytest.approx(0.2)
    with pytest.raises(ValueError, match="finite and positive"):
        volume_bias(plain, meta, spacing=-1.0)  # a given spacing is still checked


def test_spacing_checks_and_messages():
    with pytest.raises(ValueError, match=r"spacing must be finite and positive, got \[0.0, 1.0, 1.0\]"):
        label_volumes(_mask(3), spacing=(0.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="finite and positive"):
        label_volumes(_mask(3), spacing=(-1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="finite and positive"):
        label_volumes(_mask(3), spacing=(np.inf, 1.0, 1.0))
    with pytest.raises(ValueError, match=r"spacing must be a scalar, \(3,\) or \(2, 3\); got \(3, 3\)"):
        label_volumes(torch.cat([_mask(3), _mask(3)]), spacing=np.ones((3, 3)))
    with pytest.raises(ValueError, match=r"got \(1, 1, 3\)"):
        label_volumes(_mask(3), spacing=np.ones((1, 1, 3)))


def test_input_messages_name_the_argument():
    with pytest.raises(
        ValueError, match=r"^y must be \(B, C, \*spatial\) with at least one spatial dim, got shape \(4, 4\)$"
    ):
        label_volumes(torch.zeros(4, 4))
    with pytest.raises(ValueError, match=r"^pred must be \(B, C"):
        volume_bias(torch.zeros(4, 4), _mask(3))
    with pytest.raises(ValueError, match=r"^gt must be \(B, C"):
        volume_bias(_mask(3), torch.zeros(4, 4))
    with pytest.raises(ValueError, match=r"^label map holds non-integer values; pass one-hot input for soft volumes$"):
        label_volumes(torch.full((1, 1, 2), 1.5))
    with pytest.raises(ValueError, match=r"different numbers of one-hot channels: \[3, 4\]"):
        volume_bias(one_hot(_mask(3), 3), one_hot(_mask(3), 4))


def test_soft_two_channel_prediction_fixes_the_number_of_classes():
    soft = torch.tensor([[[0.7, 0.6, 0.2, 0.9]], [[0.3, 0.4, 0.8, 0.1]]]).permute(1, 0, 2)  # (B=1, C=2, N=4)
    gt = torch.zeros(1, 1, 4)  # background only: the label map alone would mean one class
    bias = volume_bias(soft, gt, include_background=True)
    assert bias.shape == (1, 2)
    assert bias[0, 0].item() == pytest.approx((2.4 - 4.0) / 4.0) and torch.isnan(bias[0, 1])

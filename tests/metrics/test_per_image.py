"""dice_and_flip_counts: hand-computed Dice and flip counts of small asymmetric label maps."""

import math

import pytest
import torch

from common.metrics import dice_and_flip_counts


def test_hand_computed_dice_and_counts():
    label = torch.tensor([[[0, 1, 1, 2], [2, 2, 0, 0]]])[None]  # (1, 1, 2, 4): class 1 x2, class 2 x3, no class 3
    pred = torch.tensor([[[1, 1, 2, 2], [2, 0, 0, 3]]])[None]
    dice, counts = dice_and_flip_counts(pred, label, num_classes=4)
    # class 1: pred {0,1}, label {1,2} -> 2*1/(2+2); class 2: pred {2,3,4}, label {3,4,5} -> 2*2/(3+3)
    assert dice.shape == (1, 3)
    assert dice[0, 0].item() == pytest.approx(0.5) and dice[0, 1].item() == pytest.approx(2 / 3)
    assert math.isnan(dice[0, 2].item())  # class 3 absent from the label (ignore_empty)
    # label foreground pixels 1,2,3,4,5 -> pred 1 (correct), 2 (flip), 2 (correct), 2 (correct), 0 (miss)
    assert counts.tolist() == [[3.0, 1.0, 1.0, 5.0]]


def test_float_maps_are_rounded_and_batches_kept_apart():
    label = torch.tensor([[[[1.0, 0.0]]], [[[0.0, 0.0]]]])  # (2, 1, 1, 2); second image without foreground
    pred = torch.tensor([[[[1.0, 1.0]]], [[[2.0, 0.0]]]])
    dice, counts = dice_and_flip_counts(pred, label, num_classes=3)
    assert dice[0, 0].item() == pytest.approx(2 / 3)
    assert counts.tolist() == [[1.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 0.0]]
    with pytest.raises(ValueError, match="label maps"):
        dice_and_flip_counts(pred, label[:1], num_classes=3)

"""Label Dice and relative area change between two label maps, by hand."""

import numpy as np
import pytest
import torch

from common.metrics import label_dice, relative_area_change


def test_label_dice_averages_the_classes_present_in_either_map():
    a = np.array([[1, 1, 2, 0], [0, 0, 0, 3]])
    b = np.array([[1, 0, 2, 2], [0, 0, 0, 0]])
    # class 1: 2*1/(2+1) = 2/3; class 2: 2*1/(1+2) = 2/3; class 3 only in a: 0
    assert label_dice(a, b, range(1, 4)) == pytest.approx((2 / 3 + 2 / 3 + 0.0) / 3)
    assert label_dice(a, b, range(1, 3)) == pytest.approx(2 / 3)
    assert label_dice(np.zeros((2, 2), int), np.zeros((2, 2), int), range(1, 4)) == 1.0
    # channel-first tensors give the same value as plain arrays
    assert label_dice(torch.as_tensor(a)[None].float(), b[None], [1, 2, 3]) == pytest.approx(4 / 9)
    with pytest.raises(ValueError, match="differ in shape"):
        label_dice(a, b[:, :2], [1])


def test_relative_area_change_is_relative_to_the_reference():
    label = np.array([[1, 1, 1, 2], [0, 0, 0, 3]])
    ref = np.array([[1, 0, 2, 2], [0, 0, 0, 0]])
    # class 1: |3-1|/1 = 2; class 2: |1-2|/2 = 0.5; class 3 absent from the reference: skipped
    assert relative_area_change(label, ref, [1, 2, 3]) == pytest.approx(1.25)
    # swapped arguments: class 1 |1-3|/3, class 2 |2-1|/1, class 3 |0-1|/1
    assert relative_area_change(ref, label, [1, 2, 3]) == pytest.approx((2 / 3 + 1 + 1) / 3)
    assert relative_area_change(label, np.zeros_like(ref), [1, 2]) == 0.0

"""GroupedScoresMetric: per-image scores buffered with group labels, aggregated by group."""

import math

import pytest
import torch

from common.metrics.grouped import GroupedScoresMetric


class Difference(GroupedScoresMetric):
    names = ("diff", "ratio")
    statistic = "median"

    def _scores(self, y_pred, y):
        return torch.stack([y_pred - y, y_pred / y], dim=1)


def test_groups_in_first_appearance_order_with_nan_ignoring_medians():
    metric = Difference()
    metric(torch.tensor([1.0, 5.0, 2.0]), torch.tensor([1.0, 1.0, 4.0]), groups=["b", "a", "b"])
    metric(torch.tensor([math.nan, 3.0]), torch.tensor([1.0, 1.0]), groups=["a", "a"])
    out = metric.aggregate()
    assert list(out["diff"]) == ["b", "a"]
    assert out["diff"] == {"b": pytest.approx(-1.0), "a": pytest.approx(3.0)}  # a: median of 4, nan, 2
    assert out["ratio"]["b"] == pytest.approx((1.0 + 0.5) / 2)
    assert metric.counts() == {"b": 2, "a": 3}
    assert metric.per_sample()[1] == {"group": "a", "diff": 4.0, "ratio": 5.0}
    metric.reset()
    assert metric.aggregate() == {"diff": {}, "ratio": {}} and metric.per_sample() == []


def test_mean_statistic_default_group_and_bad_calls():
    class Mean(Difference):
        statistic = "mean"

    metric = Mean()
    metric(torch.tensor([1.0, 4.0]), torch.tensor([1.0, 1.0]))
    assert metric.aggregate()["diff"] == {"all": pytest.approx(1.5)}
    with pytest.raises(ValueError, match="Mean: 1 group labels for a batch of 2 images"):
        metric(torch.tensor([1.0, 4.0]), torch.tensor([1.0, 1.0]), groups=["x"])
    with pytest.raises(ValueError, match="needs the target images y"):
        metric(torch.tensor([1.0]))

"""The metrics.json record every bundle writes: built, checked, and bad records named."""

import json
import math

import numpy as np
import pytest

from common.metrics import metrics_record, validate_metrics_record, write_metrics_record


def test_record_has_the_four_parts_and_plain_numbers(tmp_path):
    record = metrics_record(
        {"approach": "vinn"},
        {"dice_gm_L": 0.75, "auc_gm": math.nan, "n": 3},
        [{"id": "s1", "group": "L", "dice": 0.7}],
        {"groups": {"L": {"n": 1}}},
    )
    assert record == {
        "settings": {"approach": "vinn"},
        "metrics": {"dice_gm_L": 0.75, "auc_gm": None, "n": 3.0},
        "per_sample": [{"id": "s1", "group": "L", "dice": 0.7}],
        "extra": {"groups": {"L": {"n": 1}}},
    }
    path = write_metrics_record(tmp_path / "metrics.json", record)
    assert json.loads(open(path).read()) == record


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"settings": {}, "metrics": {"a": "x"}, "per_sample": [], "extra": {}}, "values must be numbers or null"),
        ({"settings": {}, "metrics": {}, "per_sample": [{"group": "L"}], "extra": {}}, "need an 'id' (entries [0])"),
        ({"settings": {}, "metrics": {}, "per_sample": {}, "extra": {}}, "'per_sample' must be a list"),
        ({"metrics": {}, "per_sample": [], "extra": {}}, "'settings' must be a mapping"),
        ({"settings": {}, "metrics": {}, "per_sample": [], "extra": {}, "groups": {}}, "unexpected top-level keys"),
    ],
)
def test_bad_records_are_named(record, message):
    with pytest.raises(ValueError, match="run/metrics.json: not a metrics record") as err:
        validate_metrics_record(record, "run/metrics.json")
    assert message in str(err.value)


def test_a_bad_record_is_not_written(tmp_path):
    with pytest.raises(ValueError):
        write_metrics_record(tmp_path / "metrics.json", {"settings": {}, "metrics": {"a": [1]}})
    assert not (tmp_path / "metrics.json").exists()


def test_the_run_time_the_study_runner_adds_is_allowed():
    validate_metrics_record({"settings": {}, "metrics": {}, "per_sample": [], "extra": {}, "_run": {"seconds": 1}})


def test_nan_to_none_replaces_nested_nan_and_keeps_the_rest():
    from common.metrics.record import nan_to_none

    nan = float("nan")
    value = {"a": nan, "b": [1.5, np.float32("nan"), {"c": nan, "d": 2}], "e": (nan, 0.0), "f": "nan", "g": None}
    assert nan_to_none(value) == {"a": None, "b": [1.5, None, {"c": None, "d": 2}], "e": (None, 0.0), "f": "nan",
                                  "g": None}  # fmt: skip
    assert nan_to_none(float("inf")) == float("inf")  # Inf kept unless asked for
    assert nan_to_none([float("-inf"), 3.0, nan], infinite=True) == [None, 3.0, None]
    assert nan_to_none(7) == 7 and type(nan_to_none(7)) is int


def test_write_metrics_builds_writes_and_returns_the_record(tmp_path):
    from common.metrics import write_metrics

    path = tmp_path / "metrics.json"
    record = write_metrics(path, {"seed": 2}, {"dice": 0.5, "auc": math.nan}, [{"id": "a", "group": "L"}], {"k": [1]})
    assert record == {"settings": {"seed": 2}, "metrics": {"dice": 0.5, "auc": None},
                      "per_sample": [{"id": "a", "group": "L"}], "extra": {"k": [1]}}  # fmt: skip
    assert json.loads(path.read_text()) == record
    assert write_metrics(None, {}, {"x": 1}, [])["metrics"] == {"x": 1.0}  # build only
    with pytest.raises(ValueError, match="need an 'id'"):
        write_metrics(tmp_path / "bad.json", {}, {}, [{"group": "L"}])
    assert not (tmp_path / "bad.json").exists()

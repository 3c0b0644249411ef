"""metrics.json record messages found by mutation testing (tests/MUTANTS.md): the source named, every problem
listed, the first five offenders."""

import pytest

from common.metrics.record import validate_metrics_record, write_metrics_record

GOOD = {"settings": {}, "metrics": {"dice": 0.5}, "per_sample": [{"id": "a"}], "extra": {}}


def test_messages_name_the_source_and_join_every_problem():
    bad = {"settings": [], "metrics": {f"m{i}": "x" for i in range(7)}, "per_sample": [{}] * 7, "extra": {}}
    with pytest.raises(ValueError) as info:
        validate_metrics_record(bad)
    assert str(info.value) == (
        "metrics.json: not a metrics record: 'settings' must be a mapping; "
        "'metrics' values must be numbers or null, not for m0, m1, m2, m3, m4; "
        "'per_sample' entries need an 'id' (entries [0, 1, 2, 3, 4])"
    )


def test_write_names_the_file(tmp_path):
    path = tmp_path / "run" / "metrics.json"
    path.parent.mkdir()
    with pytest.raises(ValueError, match=rf"^{path}: not a metrics record: 'extra' must be a mapping$"):
        write_metrics_record(path, {**GOOD, "extra": None})
    assert not path.exists()
    write_metrics_record(path, GOOD)
    assert path.is_file()

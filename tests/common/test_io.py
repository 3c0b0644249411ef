import json
import os

import pytest
import torch

from common.io import atomic_torch_save, atomic_write_json, atomic_write_text


def test_atomic_write_json_round_trip_and_no_temp_left(tmp_path):
    path = tmp_path / "sub" / "results.json"
    atomic_write_json(path, {"a": 1.5, "t": torch.tensor([1, 2])})
    assert json.loads(path.read_text()) == {"a": 1.5, "t": [1, 2]}
    assert os.listdir(path.parent) == ["results.json"]


def test_failed_write_keeps_previous_version(tmp_path):
    path = tmp_path / "report.md"
    atomic_write_text(path, "old")

    with pytest.raises(TypeError):
        atomic_write_json(path, {"bad": object()})
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["report.md"]


def test_atomic_torch_save_loads_with_weights_only(tmp_path):
    path = tmp_path / "model.pt"
    atomic_torch_save({"w": torch.arange(3.0)}, path)
    assert torch.equal(torch.load(path, weights_only=True)["w"], torch.arange(3.0))


def test_written_file_has_umask_mode(tmp_path):
    old = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644

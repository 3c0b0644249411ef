"""``--uncertainty``: per-case volume intervals from an ensemble, MC dropout or TTA of a tiny bundle."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from common.audit.__main__ import main
from tests.audit.cohort_files import case_entry, write_datalist

SHAPE = (8, 8, 8)  # 1 mm voxels: 512 voxels, 0.512 mL

# A 1x1x1 convolution then dropout; with THRESHOLD weights class 1 wins where the image is above 0.5.
INFERENCE_JSON = {
    "imports": ["$import torch"],
    "bundle_root": ".",
    "device": "$torch.device('cpu')",
    "network_def": "$torch.nn.Sequential(torch.nn.Conv3d(1, 2, 1), torch.nn.Dropout(0.5))",
    "network": "$@network_def.to(@device)",
    "preprocessing": {
        "_target_": "Compose",
        "transforms": [
            {"_target_": "LoadImaged", "keys": "image", "image_only": True},
            {"_target_": "EnsureChannelFirstd", "keys": "image"},
            {"_target_": "EnsureTyped", "keys": "image", "dtype": "$torch.float32"},
        ],
    },
    "inferer": {"_target_": "SimpleInferer"},
    "handlers": [
        {
            "_target_": "CheckpointLoader",
            "load_path": "$@bundle_root + '/models/model.pt'",
            "load_dict": {"model": "@network"},
            "map_location": "cpu",
        }
    ],
}


def _weights(w1: float, b1: float) -> dict:
    """Logits: class 0 = 0, class 1 = w1 * x + b1."""
    return {"0.weight": torch.tensor([0.0, w1]).reshape(2, 1, 1, 1, 1), "0.bias": torch.tensor([0.0, b1])}


THRESHOLD = _weights(2.0, -1.0)
EVERYWHERE = _weights(0.0, 1.0)


def _bundle(root: Path) -> Path:
    bundle = root / "bundle"
    (bundle / "configs").mkdir(parents=True)
    (bundle / "models").mkdir()
    (bundle / "configs" / "inference.json").write_text(json.dumps(INFERENCE_JSON))
    torch.save(THRESHOLD, bundle / "models" / "model.pt")
    return bundle


def _cohort(root: Path, sizes: dict[str, tuple[str, int]], shape=SHAPE) -> Path:
    """One case per name: a cube of ``size`` voxels a side (image 1 inside, 0 outside) in ``group``."""
    entries = []
    for name, (group, size) in sizes.items():
        cube = np.zeros(shape, np.uint8)
        lo = (shape[0] - size) // 2
        cube[lo : lo + size, lo : lo + size, lo : lo + size] = 1
        entries.append(case_entry(root, name, cube, cube, cube, group=group))
    return write_datalist(root, entries)


def _run(tmp_path, datalist, bundle, *extra) -> dict:
    out = tmp_path / "audit"
    argv = [str(datalist), "--output", str(out), "--by", "group", "--bundle", str(bundle), "--labels", "1=cube"]
    assert main([*argv, "--no-progress", "--no-surface", "--n-resamples", "50", *extra]) == 0
    return json.loads((out / "results.json").read_text())


def test_ensemble_intervals_by_hand(tmp_path):
    datalist = _cohort(tmp_path, {"c2": ("a", 2), "c3": ("a", 3), "c4": ("b", 4)})
    bundle = _bundle(tmp_path)
    torch.save(THRESHOLD, tmp_path / "threshold.pt")
    torch.save({"model": EVERYWHERE}, tmp_path / "everywhere.pt")  # nested under the load_dict name
    members = ["--member", str(tmp_path / "threshold.pt"), "--member", str(tmp_path / "everywhere.pt")]
    results = _run(tmp_path, datalist, bundle, "--uncertainty", "ensemble", *members)
    section = results["uncertainty"]
    assert section["method"] == "ensemble" and section["num_samples"] == 2 and section["level"] == 0.95
    widths = {}
    assert [c["id"] for c in section["cases"]] == [c["id"] for c in results["cases"]]
    for case, size in zip(section["cases"], (2, 3, 4)):
        s = case["structures"]["cube"]
        # two samples: the cube (size^3 voxels) and the whole image (512); linear percentiles at 2.5% and 97.5%
        true_ml, all_ml = size**3 / 1000, 0.512
        assert s["median_ml"] == pytest.approx((true_ml + all_ml) / 2)
        assert s["low_ml"] == pytest.approx(true_ml + 0.025 * (all_ml - true_ml))
        assert s["high_ml"] == pytest.approx(true_ml + 0.975 * (all_ml - true_ml))
        widths[size] = s["width_ml"]
        assert widths[size] == pytest.approx(0.95 * (all_ml - true_ml))
    by = section["by"]["group"]
    assert by["a"]["cube"] == {"n": 2, "mean_width_ml": pytest.approx((widths[2] + widths[3]) / 2)}
    assert by["b"]["cube"] == {"n": 1, "mean_width_ml": pytest.approx(widths[4])}
    report = (tmp_path / "audit" / "report.md").read_text()
    assert "### Volume uncertainty (ensemble, 2 samples)" in report
    assert f"| group | a | cube | 2 | {(widths[2] + widths[3]) / 2:.3f} |" in report


def test_mc_dropout_intervals_repeat_for_a_seed(tmp_path):
    datalist = _cohort(tmp_path, {"c3": ("a", 3), "c4": ("b", 4)})
    bundle = _bundle(tmp_path)
    first = _run(tmp_path, datalist, bundle, "--uncertainty", "mc_dropout", "--uncertainty-samples", "8")
    again = _run(tmp_path, datalist, bundle, "--uncertainty", "mc_dropout", "--uncertainty-samples", "8")
    assert first["uncertainty"]["cases"] == again["uncertainty"]["cases"]
    other = _run(tmp_path, datalist, bundle, "--uncertainty", "mc_dropout", "--uncertainty-samples", "8", "--seed", "1")
    assert other["uncertainty"]["cases"] != first["uncertainty"]["cases"]
    for case, size in zip(first["uncertainty"]["cases"], (3, 4)):
        s = case["structures"]["cube"]
        # each cube voxel's class-1 logit (1) is dropped (a tie, class 0 wins) or doubled: kept with p = 0.5;
        # background logits (-1) stay below class 0 either way
        assert 0 < s["low_ml"] <= s["median_ml"] <= s["high_ml"] < size**3 / 1000
        assert s["width_ml"] > 0


def test_tta_intervals_stay_near_the_true_volume(tmp_path):
    datalist = _cohort(tmp_path, {"c6": ("a", 6), "c8": ("b", 8)}, shape=(24, 24, 24))  # 8+ voxels of margin
    bundle = _bundle(tmp_path)
    results = _run(tmp_path, datalist, bundle, "--uncertainty", "tta", "--uncertainty-samples", "6")
    for case, size in zip(results["uncertainty"]["cases"], (6, 8)):
        s = case["structures"]["cube"]
        assert s["median_ml"] == pytest.approx(size**3 / 1000, rel=0.05)  # predictions mapped back onto the cube
        assert s["width_ml"] > 0


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--uncertainty", "tta"], "give --bundle"),
        (["--uncertainty", "ensemble", "--bundle", "."], "at least two --member"),
        (["--member", "a.pt", "--bundle", "."], "--member is for --uncertainty ensemble"),
        (["--uncertainty", "tta", "--bundle", ".", "--uncertainty-samples", "1"], "at least 2"),
    ],
)
def test_uncertainty_option_errors(tmp_path, capsys, extra, message):
    datalist = _cohort(tmp_path, {"c2": ("a", 2)})
    with pytest.raises(SystemExit):
        main([str(datalist), "--output", str(tmp_path / "o"), "--by", "group", *extra])
    assert message in capsys.readouterr().err


def test_mc_dropout_without_dropout_says_so(tmp_path):
    datalist = _cohort(tmp_path, {"c2": ("a", 2), "c3": ("b", 3)})
    bundle = _bundle(tmp_path)
    config = dict(INFERENCE_JSON, network_def="$torch.nn.Sequential(torch.nn.Conv3d(1, 2, 1))")
    (bundle / "configs" / "inference.json").write_text(json.dumps(config))
    torch.save({k: v for k, v in THRESHOLD.items() if k.startswith("0.")}, bundle / "models" / "model.pt")
    argv = [str(datalist), "--output", str(tmp_path / "o"), "--by", "group", "--bundle", str(bundle)]
    with pytest.raises(ValueError, match="has none"):
        main([*argv, "--uncertainty", "mc_dropout", "--no-progress", "--no-surface", "--n-resamples", "50"])

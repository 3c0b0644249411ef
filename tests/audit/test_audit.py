"""``common.audit`` on constructed cohorts whose bias, AUC, flips and trend are known by construction."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import stats

from common.audit import load_cohort, run_audit
from common.audit.__main__ import main
from common.data import DatalistError

SHAPE = (16, 16, 8)
SPACING = (2.0, 2.0, 2.0)  # 8 mm^3 per voxel


def _save(path: Path, data: np.ndarray, spacing=SPACING, dtype=np.uint8) -> str:
    nib.save(nib.Nifti1Image(data.astype(dtype), np.diag([*spacing, 1.0])), str(path))
    return str(path)


def _box(nx: int, ny: int, nz: int, value: int = 1, shape=SHAPE) -> np.ndarray:
    a = np.zeros(shape, np.uint8)
    a[2 : 2 + nx, 2 : 2 + ny, 2 : 2 + nz] = value
    return a


# Group H: prediction = manual box. Group L: prediction = manual box grown by one voxel on each side in x and y,
# i.e. (nx + 2, ny + 2, nz). L's manual boxes are smaller, its predicted ones are exactly H's manual boxes.
H_BOXES = [(6, 6, 4), (7, 6, 4), (7, 7, 4), (8, 7, 4)]  # 144, 168, 196, 224 voxels
L_BOXES = [(4, 4, 4), (5, 4, 4), (5, 5, 4), (6, 5, 4)]  # 64, 80, 100, 120 voxels -> predicted 144 .. 224


def _two_group_cohort(root: Path) -> Path:
    entries = []
    for group, boxes, grow in (("H", H_BOXES, 0), ("L", L_BOXES, 2)):
        for k, (nx, ny, nz) in enumerate(boxes):
            label = _box(nx, ny, nz)
            pred = np.zeros(SHAPE, np.uint8)
            off = 2 - grow // 2
            pred[off : off + nx + grow, off : off + ny + grow, 2 : 2 + nz] = 1
            entries.append(
                {
                    "image": _save(root / f"{group}{k}_img.nii.gz", label, dtype=np.float32),
                    "label": _save(root / f"{group}{k}_lab.nii.gz", label),
                    "prediction": _save(root / f"{group}{k}_pred.nii.gz", pred),
                    "group": group,
                }
            )
    path = root / "datalist.json"
    path.write_text(json.dumps({"training": entries[:5], "test": entries[5:]}))
    return path


def test_volume_bias_and_auc_recovered(tmp_path):
    datalist = _two_group_cohort(tmp_path)
    results = run_audit(datalist, tmp_path / "out", ["group"], progress=False, n_resamples=500, min_group_size=4)
    h, low = results["by"]["group"]["H"]["label_1"], results["by"]["group"]["L"]["label_1"]
    assert h["n"] == low["n"] == 4
    # H: prediction == label: bias exactly 0 with a zero-width interval, Dice 1, surface distance 0
    assert h["volume_bias"] == {"median": 0.0, "ci_low": 0.0, "ci_high": 0.0, "values": [0.0] * 4}
    assert h["dice"] == pytest.approx(1.0)
    assert h["surface_distance"] == pytest.approx(0.0)
    assert h["flip"] == {"correct": 1.0, "flip": 0.0, "miss": 0.0}
    # L by hand: 144/64, 168/80, 196/100, 224/120 minus 1
    expected = [144 / 64 - 1, 168 / 80 - 1, 196 / 100 - 1, 224 / 120 - 1]
    assert low["volume_bias"]["values"] == pytest.approx(expected)
    assert low["volume_bias"]["median"] == pytest.approx((expected[1] + expected[2]) / 2)
    assert expected[3] <= low["volume_bias"]["ci_low"] <= low["volume_bias"]["median"] <= low["volume_bias"]["ci_high"]
    assert low["volume_bias"]["ci_high"] <= expected[0]
    # Dice of a box inside its grown box: 2|A| / (|A| + |B|)
    assert low["dice"] == pytest.approx(
        np.mean([2 * a / (a + b) for a, b in zip([64, 80, 100, 120], [144, 168, 196, 224])])
    )
    assert low["flip"] == {"correct": 1.0, "flip": 0.0, "miss": 0.0}  # over-segmentation misses nothing
    # volumes in ml from the 2 mm voxels: 8 mm^3 each
    assert h["volume_true_ml"] == pytest.approx((168 + 196) / 2 * 8 / 1000)
    assert low["volume_true_ml"] == pytest.approx((80 + 100) / 2 * 8 / 1000)
    assert low["volume_pred_ml"] == pytest.approx(h["volume_pred_ml"])
    # manual volumes separate the groups perfectly; predicted ones are identical sets: 6 wins + 4 ties of 16 pairs
    auc = results["auc"]["group"]["label_1"]
    assert auc["positive"] == "H"
    assert auc["manual"] == pytest.approx(1.0)
    assert auc["predicted"] == pytest.approx((6 + 0.5 * 4) / 16)
    # disparity: H exact, L over-segments; sensitivity 1 everywhere, L's false positives equal its volume bias
    d = results["disparity"]["group"]["label_1"]
    dice_l = [2 * a / (a + b) for a, b in zip([64, 80, 100, 120], [144, 168, 196, 224])]
    assert d["dice"]["means"] == pytest.approx({"H": 1.0, "L": np.mean(dice_l)})
    assert (d["dice"]["worst"], d["dice"]["best"]) == ("L", "H")
    assert d["dice"]["gap"]["estimate"] == pytest.approx(1 - np.mean(dice_l))
    assert d["dice"]["ratio"]["estimate"] == pytest.approx(np.mean(dice_l))
    assert d["dice"]["equity_scaled"]["estimate"] == pytest.approx(
        np.mean([1.0] * 4 + dice_l) / (1 + (1 - np.mean(dice_l)) / 2)
    )
    welch = stats.ttest_ind([1.0] * 4, dice_l, equal_var=False)
    assert d["dice"]["test"]["statistic"] == pytest.approx(welch.statistic**2)
    assert d["volume_bias"]["gap"]["estimate"] == pytest.approx(np.mean(expected))
    assert d["volume_bias"]["gap"]["ci_low"] <= np.mean(expected) <= d["volume_bias"]["gap"]["ci_high"]
    assert d["sensitivity"]["means"] == {"H": 1.0, "L": 1.0}
    assert d["fp_rate"]["means"] == pytest.approx({"H": 0.0, "L": np.mean(expected)})
    assert low["sensitivity"] == 1.0 and low["fp_rate"] == pytest.approx(np.mean(expected))
    # three tests (Dice, volume bias, AUC), each Holm-corrected over the three
    assert results["tests"] == {"n": 3, "correction": "holm", "correction_name": "Holm"}
    tests = [d["dice"]["test"], d["volume_bias"]["test"], auc["test"]]
    order = sorted(range(3), key=lambda k: tests[k]["p"])
    holm, running = [0.0] * 3, 0.0
    for rank, k in enumerate(order):  # Holm by hand: (3 - rank) x p, made monotone, capped at 1
        running = max(running, min(1.0, (3 - rank) * tests[k]["p"]))
        holm[k] = running
    assert [t["p_corrected"] for t in tests] == pytest.approx(holm)
    # report: findings first, then tables and figures
    report = (tmp_path / "out" / "report.md").read_text()
    findings = report.split("## Findings")[1].split("## Tables")[0]
    assert "3 between-group tests made" in findings and "Holm-corrected over all 3" in findings
    assert "- label_1 is over-segmented in group L by +103.0% [" in findings
    assert "- label_1 shows no clear volume bias in group H: +0.0% [0.0, 0.0]" in findings
    assert (
        "- label_1: the model shrinks the group difference: manual volumes are larger in group H than in L, "
        "predicted ones separate the groups less well (AUC 0.50 predicted vs 1.00 manual); the AUC difference is "
        in findings
    )
    assert f"- label_1 Dice by group: worst in group L ({np.mean(dice_l):.3f}), best in group H (1.000); gap " in (
        findings
    )
    assert "- label_1 mean volume bias by group: highest in group L (+" in findings
    assert (
        "- label_1 errors by group: group H neither misses nor adds voxels (misses 0.0% of the manual voxels, adds "
        "0.0% false positives); group L over-segments (misses 0.0% of the manual voxels, adds "
        f"{100 * np.mean(expected):.1f}% false positives)" in findings
    )
    assert findings.index("over-segmented") < report.index("## Tables") < report.index("## Figures")
    assert (tmp_path / "out" / "volume_bias_by_group.png").stat().st_size > 1000
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert saved["by"]["group"]["L"]["label_1"]["volume_bias"]["median"] == pytest.approx(low["volume_bias"]["median"])
    assert set(saved["versions"]) >= {"python", "numpy", "monai"}
    assert len(saved["cases"]) == 8


def test_flip_decomposition_known_swap(tmp_path):
    # case a: structure 1 has 5 manual voxels; predicted 3 as 1, 1 as structure 2 (flip), 1 as background (miss)
    label = np.zeros(SHAPE, np.uint8)
    label[1, 1, 1:6] = 1
    label[8:10, 8:10, 2:4] = 2
    pred = label.copy()
    pred[1, 1, 4] = 2
    pred[1, 1, 5] = 0
    entries = [
        {
            "image": _save(tmp_path / "a_img.nii.gz", label, dtype=np.float32),
            "label": _save(tmp_path / "a_lab.nii.gz", label),
            "prediction": _save(tmp_path / "a_pred.nii.gz", pred),
            "site": "a",
        },
        {
            "image": _save(tmp_path / "b_img.nii.gz", label, dtype=np.float32),
            "label": _save(tmp_path / "b_lab.nii.gz", label),
            "prediction": _save(tmp_path / "b_lab.nii.gz", label),
            "site": "b",
        },
    ]
    (tmp_path / "list.json").write_text(json.dumps(entries))  # a top-level list
    results = run_audit(tmp_path / "list.json", tmp_path / "out", ["site"], labels={1: "lv", 2: "myo"}, progress=False)
    site = results["by"]["site"]
    assert site["a"]["lv"]["flip"] == pytest.approx({"correct": 0.6, "flip": 0.2, "miss": 0.2})
    assert site["a"]["myo"]["flip"] == {"correct": 1.0, "flip": 0.0, "miss": 0.0}
    assert site["b"]["lv"]["flip"] == {"correct": 1.0, "flip": 0.0, "miss": 0.0}
    # lv: 5 manual voxels, 3 predicted; myo: 8 manual, 9 predicted
    assert site["a"]["lv"]["volume_bias"]["median"] == pytest.approx(3 / 5 - 1)
    assert site["a"]["myo"]["volume_bias"]["median"] == pytest.approx(9 / 8 - 1)
    assert site["a"]["lv"]["dice"] == pytest.approx(2 * 3 / (5 + 3))
    assert results["structures"] == {"1": "lv", "2": "myo"}
    # one case per site: both too small to compare (default minimum 5), reported, nothing compared
    assert results["too_small"] == {"site": {"a": 1, "b": 1}}
    assert results["disparity"] == {} and results["auc"] == {} and results["tests"]["n"] == 0
    report = (tmp_path / "out" / "report.md").read_text()
    assert "- site a is too small to compare: 1 case, fewer than 5; it is in the tables" in report
    assert "| a (too small) | lv |" in report


def _trend_cohort(root: Path) -> Path:
    # manual: 5x5x4 = 100 voxels; prediction adds 10 * s voxels: bias = 0.1 * s exactly
    entries = []
    for k, s in enumerate([1.0, 2.0, 3.0, 4.0, 5.0, 2.5]):
        label = _box(5, 5, 4)
        pred = label.copy()
        extra = int(round(10 * s))
        flat = pred[:, :, 7].reshape(-1)
        flat[:extra] = 1
        pred[:, :, 7] = flat.reshape(SHAPE[:2])
        entries.append(
            {
                "image": _save(root / f"s{k}_img.nii.gz", label, dtype=np.float32),
                "label": _save(root / f"s{k}_lab.nii.gz", label),
                "prediction": _save(root / f"s{k}_pred.nii.gz", pred),
                "spacing": s,
            }
        )
    path = root / "trend.json"
    path.write_text(json.dumps({"validation": entries}))
    return path


def test_continuous_attribute_trend_recovered(tmp_path):
    results = run_audit(_trend_cohort(tmp_path), tmp_path / "out", ["spacing"], progress=False, bins=2)
    t = results["trend"]["spacing"]["label_1"]
    assert t["slope"] == pytest.approx(0.1)
    assert t["intercept"] == pytest.approx(0.0, abs=1e-12)
    assert t["r"] == pytest.approx(1.0)
    assert t["ci_low"] == pytest.approx(0.1) and t["ci_high"] == pytest.approx(0.1)
    assert t["n"] == 6
    # --bins 2: quantile groups by the median 2.75: {1, 2, 2.5} and {3, 4, 5}
    groups = results["by"]["spacing"]
    assert [g["label_1"]["n"] for g in groups.values()] == [3, 3]
    low, high = groups.values()
    assert low["label_1"]["volume_bias"]["median"] == pytest.approx(0.2)
    assert high["label_1"]["volume_bias"]["median"] == pytest.approx(0.4)
    report = (tmp_path / "out" / "report.md").read_text()
    assert "- label_1 volume bias rises with spacing: +10.00 points per unit of spacing" in report
    assert (tmp_path / "out" / "volume_bias_vs_spacing.png").is_file()


def test_continuous_attribute_without_bins_has_trend_only(tmp_path):
    results = run_audit(_trend_cohort(tmp_path), tmp_path / "out", ["spacing"], progress=False)
    assert "spacing" not in results["by"]
    assert results["trend"]["spacing"]["label_1"]["slope"] == pytest.approx(0.1)
    assert results["attributes"]["spacing"]["kind"] == "continuous"


# --- validation: one problem kind per test, each naming the file or entry --------------------------------


def _entries(root: Path, n: int = 2) -> list[dict]:
    out = []
    for k in range(n):
        label = _box(4 + k, 4, 4)
        out.append(
            {
                "image": _save(root / f"v{k}_img.nii.gz", label, dtype=np.float32),
                "label": _save(root / f"v{k}_lab.nii.gz", label),
                "prediction": _save(root / f"v{k}_pred.nii.gz", label),
                "group": "ab"[k % 2],
            }
        )
    return out


def _problems(root: Path, entries, **kwargs) -> DatalistError:
    (root / "dl.json").write_text(json.dumps({"training": entries}))
    with pytest.raises(DatalistError) as info:
        load_cohort(root / "dl.json", kwargs.pop("by", ["group"]), **kwargs)
    return info.value


def test_validation_missing_file(tmp_path):
    entries = _entries(tmp_path)
    entries[1]["prediction"] = str(tmp_path / "nowhere_pred.nii.gz")
    err = _problems(tmp_path, entries)
    assert err.problems == [f"{tmp_path / 'nowhere_pred.nii.gz'}: file not found"]


def test_validation_unreadable_file(tmp_path):
    entries = _entries(tmp_path)
    Path(entries[0]["label"]).write_bytes(b"\x1f\x8b not a gzip stream")
    err = _problems(tmp_path, entries)
    assert len(err.problems) == 1
    assert err.problems[0].startswith(f"{entries[0]['label']}: unreadable or truncated image file")


def test_validation_shape_mismatch(tmp_path):
    entries = _entries(tmp_path)
    _save(Path(entries[1]["prediction"]), np.zeros((16, 16, 4)))
    err = _problems(tmp_path, entries)
    assert err.problems == [
        f"{entries[1]['prediction']}: prediction shape (16, 16, 4) does not match label {entries[1]['label']} "
        "shape (16, 16, 8)"
    ]


def test_validation_voxel_size_mismatch(tmp_path):
    entries = _entries(tmp_path)
    _save(Path(entries[0]["prediction"]), _box(4, 4, 4), spacing=(1.0, 1.0, 2.0))
    err = _problems(tmp_path, entries)
    assert err.problems == [
        f"{entries[0]['prediction']}: prediction voxel size [1.0, 1.0, 2.0] mm does not match label "
        f"{entries[0]['label']} voxel size [2.0, 2.0, 2.0] mm"
    ]


def test_validation_missing_attribute(tmp_path):
    entries = _entries(tmp_path, 3)
    del entries[2]["group"]
    err = _problems(tmp_path, entries)
    assert err.problems == [f"{tmp_path / 'dl.json'}: training[2] has no 'group' attribute (--by group)"]


def test_validation_empty_group(tmp_path):
    entries = _entries(tmp_path, 5)
    for e, age in zip(entries, [30, 30, 30, 30, 70]):
        e["age"] = age
    err = _problems(tmp_path, entries, by=["age"], bins=3)
    assert len(err.problems) >= 1
    assert all("empty group" in p and p.startswith(f"{tmp_path / 'dl.json'}: --by age --bins 3") for p in err.problems)


def test_validation_single_group(tmp_path):
    entries = _entries(tmp_path, 2)
    for e in entries:
        e["group"] = "a"
    err = _problems(tmp_path, entries)
    assert err.problems == [f"{tmp_path / 'dl.json'}: --by group: every entry is in group 'a', nothing to compare"]


def test_validation_prediction_required_without_bundle(tmp_path):
    entries = _entries(tmp_path)
    del entries[0]["prediction"]
    err = _problems(tmp_path, entries)
    assert err.problems == [
        f"{tmp_path / 'dl.json'}: training[0] has no 'prediction' and no --bundle was given to make one"
    ]


def test_validation_reports_all_problems_at_once(tmp_path):
    entries = _entries(tmp_path, 4)
    entries[0]["label"] = str(tmp_path / "gone_lab.nii.gz")
    del entries[1]["group"]
    _save(Path(entries[3]["prediction"]), np.zeros((8, 16, 8)))
    err = _problems(tmp_path, entries)
    assert len(err.problems) == 3
    text = str(err)
    assert "gone_lab.nii.gz: file not found" in text
    assert "training[1] has no 'group'" in text
    assert f"{entries[3]['prediction']}: prediction shape (8, 16, 8)" in text
    assert text.startswith(f"invalid datalist {tmp_path / 'dl.json'}: 3 problems")


def test_split_selects_entries(tmp_path):
    cohort = load_cohort(_two_group_cohort(tmp_path), ["group"], split="training")
    assert cohort.ids == [f"training[{k}]" for k in range(5)]
    assert cohort.attributes["group"].groups == ["H", "H", "H", "H", "L"]
    everything = load_cohort(tmp_path / "datalist.json", ["group"])
    assert everything.ids[5:] == ["test[0]", "test[1]", "test[2]"]
    with pytest.raises(DatalistError, match="no split 'nope'"):
        load_cohort(tmp_path / "datalist.json", ["group"], split="nope")


# --- command line ---------------------------------------------------------------------------------------


def test_cli_predictions_only(tmp_path, monkeypatch, capsys):
    import common.audit.infer as infer

    def no_inference(*args, **kwargs):
        raise AssertionError("a predictions-only audit must not run inference")

    monkeypatch.setattr(infer, "predict_missing", no_inference)
    monkeypatch.setattr(infer, "run_bundle_on_image", no_inference)
    datalist = _two_group_cohort(tmp_path)
    out = tmp_path / "audit"
    rc = main(
        [str(datalist), "--output", str(out), "--by", "group", "--labels", "1=cube", "--no-progress"]
        + ["--min-group-size", "4", "--correction", "fdr_bh", "--no-surface"]
    )
    assert rc == 0
    results = json.loads((out / "results.json").read_text())
    assert results["command"].startswith("python -m common.audit ")
    assert "--labels 1=cube" in results["command"]
    assert results["datalist"] == str(datalist)
    assert results["by"]["group"]["H"]["cube"]["volume_bias"]["median"] == 0.0
    assert results["auc"]["group"]["cube"]["manual"] == 1.0
    assert not (out / "predictions").exists()
    assert "- cube is over-segmented in group L by +103.0%" in (out / "report.md").read_text()
    assert results["tests"]["correction_name"] == "Benjamini-Hochberg"
    assert "Benjamini-Hochberg-corrected over all 3" in (out / "report.md").read_text()
    html = (out / "report.html").read_text()
    assert html.count('src="data:image/png;base64,') == 2 and "<table>" in html


def test_cli_reports_datalist_errors(tmp_path, capsys):
    entries = _entries(tmp_path)
    entries[0]["prediction"] = str(tmp_path / "missing.nii.gz")
    (tmp_path / "dl.json").write_text(json.dumps(entries))
    rc = main([str(tmp_path / "dl.json"), "--output", str(tmp_path / "o"), "--by", "group", "--no-progress"])
    assert rc == 1
    err = capsys.readouterr().err
    assert f"{tmp_path / 'missing.nii.gz'}: file not found" in err
    assert not (tmp_path / "o" / "results.json").exists()


# --- bundle inference and resume ------------------------------------------------------------------------

INFERENCE_JSON = {
    "imports": ["$import glob", "$import os", "$import torch", "$import numpy"],
    "bundle_root": ".",
    "output_dir": "$@bundle_root + '/eval'",
    "dataset_dir": "/workspace/data",
    "datalist": "$list(sorted(glob.glob(@dataset_dir + '/*.nii.gz')))",
    "device": "$torch.device('cpu')",
    "network_def": {"_target_": "torch.nn.Conv3d", "in_channels": 1, "out_channels": 2, "kernel_size": 1},
    "network": "$@network_def.to(@device)",
    "preprocessing": {
        "_target_": "Compose",
        "transforms": [
            {"_target_": "LoadImaged", "keys": "image"},
            {"_target_": "EnsureChannelFirstd", "keys": "image"},
            {"_target_": "EnsureTyped", "keys": "image", "dtype": "$torch.float32"},
        ],
    },
    "dataset": {"_target_": "Dataset", "data": "$[{'image': i} for i in @datalist]", "transform": "@preprocessing"},
    "dataloader": {
        "_target_": "DataLoader",
        "dataset": "@dataset",
        "batch_size": 1,
        "shuffle": False,
        "num_workers": 0,
    },
    "inferer": {"_target_": "SimpleInferer"},
    "postprocessing": {
        "_target_": "Compose",
        "transforms": [
            {"_target_": "AsDiscreted", "keys": "pred", "argmax": True},
            {
                "_target_": "SaveImaged",
                "keys": "pred",
                "output_dir": "@output_dir",
                "output_postfix": "seg",
                "output_dtype": "$numpy.uint8",
                "resample": False,
                "print_log": False,
            },
        ],
    },
    "handlers": [
        {
            "_target_": "CheckpointLoader",
            "load_path": "$@bundle_root + '/models/model.pt'",
            "load_dict": {"model": "@network"},
            "map_location": "cpu",
        }
    ],
    "evaluator": {
        "_target_": "SupervisedEvaluator",
        "device": "@device",
        "val_data_loader": "@dataloader",
        "network": "@network",
        "inferer": "@inferer",
        "postprocessing": "@postprocessing",
        "val_handlers": "@handlers",
    },
    "run": ["$@evaluator.run()"],
}


def _tiny_bundle(root: Path) -> Path:
    """A model-zoo-format bundle whose 1x1x1 convolution thresholds the image at 0.5 (class 1 above)."""
    import torch

    bundle = root / "tiny_bundle"
    (bundle / "configs").mkdir(parents=True)
    (bundle / "models").mkdir()
    (bundle / "configs" / "inference.json").write_text(json.dumps(INFERENCE_JSON))
    meta = {"network_data_format": {"outputs": {"pred": {"channel_def": {"0": "background", "1": "cube"}}}}}
    (bundle / "configs" / "metadata.json").write_text(json.dumps(meta))
    # logits: class 0 = 0, class 1 = 2 * x - 1
    torch.save(
        {"weight": torch.tensor([0.0, 2.0]).reshape(2, 1, 1, 1, 1), "bias": torch.tensor([0.0, -1.0])},
        bundle / "models" / "model.pt",
    )
    return bundle


def test_bundle_inference_and_resume(tmp_path, monkeypatch):
    import common.audit.infer as infer

    shape = (8, 8, 8)
    entries = []
    for k, (group, size) in enumerate((("a", 3), ("b", 4))):
        label = np.zeros(shape, np.uint8)
        label[1 : 1 + size, 1 : 1 + size, 1 : 1 + size] = 1
        entries.append(
            {
                "image": _save(tmp_path / f"img{k}.nii.gz", label, spacing=(1.0, 1.0, 1.0), dtype=np.float32),
                "label": _save(tmp_path / f"lab{k}.nii.gz", label, spacing=(1.0, 1.0, 1.0)),
                "group": group,
            }
        )
    (tmp_path / "dl.json").write_text(json.dumps({"test": entries}))
    bundle = _tiny_bundle(tmp_path)
    out = tmp_path / "audit"
    calls = []
    real = infer.run_bundle_on_image

    def counting(bundle_dir, image, output_dir, overrides=()):
        calls.append(Path(image).name)
        return real(bundle_dir, image, output_dir, overrides)

    monkeypatch.setattr(infer, "run_bundle_on_image", counting)
    args = [str(tmp_path / "dl.json"), "--output", str(out), "--by", "group", "--bundle", str(bundle), "--no-progress"]
    assert main(args) == 0
    assert calls == ["img0.nii.gz", "img1.nii.gz"]
    written = sorted(p.name for p in (out / "predictions").iterdir())
    assert written == ["img0.nii.gz", "img1.nii.gz"]  # no scratch folders left behind
    results = json.loads((out / "results.json").read_text())
    assert results["structures"] == {"1": "cube"}  # named from the bundle's metadata
    for group in ("a", "b"):  # the thresholding network reproduces the labels
        assert results["by"]["group"][group]["cube"]["dice"] == pytest.approx(1.0)
        assert results["by"]["group"][group]["cube"]["volume_bias"]["median"] == 0.0
    assert results["cases"][0]["prediction"] == str(out / "predictions" / "img0.nii.gz")

    # a second run recomputes nothing; after losing one prediction (a killed run) only that one is redone
    mtime = (out / "predictions" / "img1.nii.gz").stat().st_mtime_ns
    calls.clear()
    assert main(args) == 0
    assert calls == []
    (out / "predictions" / "img0.nii.gz").unlink()
    assert main(args) == 0
    assert calls == ["img0.nii.gz"]
    assert (out / "predictions" / "img1.nii.gz").stat().st_mtime_ns == mtime


def test_collection_bundle_with_input_image_and_override(tmp_path):
    """This collection's 3D bundle (``input_image`` style config), random weights given by ``--override``."""
    import torch
    from monai.bundle import ConfigParser

    bundle = Path(__file__).resolve().parents[2] / "bundles" / "segmentation_resolution_bias"
    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "inference.yaml"))
    parser["bundle_root"] = str(bundle)
    torch.manual_seed(0)
    torch.save(parser.get_parsed_content("network_def").state_dict(), tmp_path / "random.pt")
    rng = np.random.default_rng(0)
    entries = []
    for k in range(2):
        image = rng.random((16, 16, 16)).astype(np.float32)
        entries.append(
            {
                "image": _save(tmp_path / f"t1_{k}.nii.gz", image, dtype=np.float32),
                "label": _save(tmp_path / f"t1_{k}_lab.nii.gz", (image > 0.5) * 2),
                "site": "ab"[k],
            }
        )
    (tmp_path / "dl.json").write_text(json.dumps(entries))
    out = tmp_path / "audit"
    argv = [str(tmp_path / "dl.json"), "--output", str(out), "--by", "site", "--bundle", str(bundle)]
    assert main([*argv, "--override", f"ckpt_path={tmp_path / 'random.pt'}", "--no-progress", "--no-surface"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["structures"] == {"1": "other_csf", "2": "grey_matter", "3": "white_matter"}
    for k in range(2):
        pred = nib.load(str(out / "predictions" / f"t1_{k}.nii.gz"))
        assert pred.shape[:3] == (16, 16, 16)  # mapped back to the input grid
    grey = results["by"]["site"]["a"]["grey_matter"]
    grey_voxels = int((nib.load(entries[0]["label"]).get_fdata() == 2).sum())
    assert grey["n"] == 1 and grey["volume_true_ml"] == pytest.approx(grey_voxels * 8 / 1000)
    assert grey["volume_pred_ml"] == pytest.approx(results["cases"][0]["structures"]["grey_matter"]["volume_pred_ml"])


def test_trend_of_constant_bias_is_flat():
    from common.audit.measure import fit_trend

    assert fit_trend([1.0, 2.0, 3.0], [0.0, 0.0, 0.0]) == {
        "slope": 0.0,
        "ci_low": 0.0,
        "ci_high": 0.0,
        "intercept": 0.0,
        "r": None,
        "n": 3,
    }
    assert fit_trend([1.0, 1.0, 1.0], [0.1, 0.2, 0.3])["slope"] is None  # no spread in the attribute
    assert fit_trend([1.0, 2.0], [0.1, 0.2])["slope"] is None  # two points: no interval


def test_measure_case_crop_gives_whole_image_values(tmp_path):
    """Measurements on the foreground's bounding box equal MONAI's on the whole image (structures off-centre,
    one touching the image border)."""
    import torch
    from monai.metrics import compute_average_surface_distance, compute_dice

    from common.audit.measure import measure_case

    rng = np.random.default_rng(3)
    label = np.zeros((24, 20, 12), np.uint8)
    label[3:9, 4:12, 2:7] = 1
    label[9:13, 0:6, 3:8] = 2  # touches the y = 0 border
    pred = label.copy()
    noise = rng.random(label.shape) < 0.15
    pred[noise] = rng.integers(0, 3, int(noise.sum()))
    lab = _save(tmp_path / "lab.nii.gz", label, spacing=(1.0, 1.5, 2.0))
    prd = _save(tmp_path / "pred.nii.gz", pred, spacing=(1.0, 1.5, 2.0))
    case = measure_case("c", prd, lab, {1: "a", 2: "b"})
    y_pred = torch.from_numpy(np.stack([pred == 1, pred == 2])[None].astype(np.float32))
    y = torch.from_numpy(np.stack([label == 1, label == 2])[None].astype(np.float32))
    asd = compute_average_surface_distance(y_pred, y, include_background=True, symmetric=True, spacing=[1.0, 1.5, 2.0])
    dice = compute_dice(y_pred, y, include_background=True)
    for k, name in enumerate(("a", "b")):
        assert case.structures[name]["surface_distance"] == pytest.approx(float(asd[0, k]))
        assert case.structures[name]["dice"] == pytest.approx(float(dice[0, k]))
        v = k + 1
        tp = int(((pred == v) & (label == v)).sum())
        assert case.structures[name]["sensitivity"] == pytest.approx(tp / int((label == v).sum()))
        assert case.structures[name]["fp_rate"] == pytest.approx(((pred == v).sum() - tp) / (label == v).sum())
        assert case.flip_counts[name][3] == int((label == v).sum())

"""Bundle segmentation_resolution_bias: configs parse, smoke train + evaluate, inference on the input grid, gloo DDP."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser

from common.metrics.record import validate_metrics_record

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "bundles" / "segmentation_resolution_bias" / "configs"
TINY = {
    "slice_thickness": "3",
    "channels": "[4,8]",
    "slices_per_volume": "3",
    "batch_size": "8",
}


def _env():
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def _bundle(configs, overrides, launcher=None, timeout=600):
    files = [str(CONFIGS / c) for c in configs]
    cmd = (launcher or [sys.executable, "-m"]) + ["monai.bundle", "run", "--config_file", repr(files)]
    cmd += ["--logging_file", str(CONFIGS / "logging.conf")]
    for k, v in overrides.items():
        cmd += [f"--{k}", str(v)]
    proc = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def tiny_population(tmp_path_factory):
    """A 2+1+2 subjects-per-group embedded population (2 mm / 3 mm); returns its datalist path."""
    from common.data.mni_population import MNIPopulationConfig, generate_mni_population

    cfg = MNIPopulationConfig(n_train=2, n_val=1, n_test=2)
    return generate_mni_population(tmp_path_factory.mktemp("seg_pop"), cfg, seed=0)


def test_metadata_and_configs_parse():
    meta = json.loads((CONFIGS / "metadata.json").read_text())
    assert meta["version"] in meta["changelog"]
    assert meta["network_data_format"]["outputs"]["pred"]["channel_def"] == {
        "0": "background",
        "1": "other_csf",
        "2": "grey_matter",
        "3": "white_matter",
    }
    parser = ConfigParser()
    parser.read_config([str(CONFIGS / "train.yaml"), str(CONFIGS / "evaluate.yaml")])
    for key in ("approach", "high_spacing", "low_spacing", "downsample", "plane", "slice_thickness", "datalist"):
        assert key in parser, key
    for key in ("network_def", "network", "run", "initialize", "train#trainer", "validate#evaluator"):
        assert key in parser, key
    infer = ConfigParser()
    infer.read_config(str(CONFIGS / "inference.yaml"))
    for key in ("network_def", "preprocessing", "inferer", "postprocessing", "dataset", "evaluator", "ckpt_path"):
        assert key in infer, key


def test_all_approaches_have_the_same_parameter_count():
    counts = {}
    for approach in ("h_only", "resampled", "scale_aug", "vinn"):
        parser = ConfigParser()
        parser.read_config(str(CONFIGS / "train.yaml"))
        parser["approach"] = approach
        net = parser.get_parsed_content("network_def")
        counts[approach] = sum(p.numel() for p in net.parameters())
        assert net.is_vinn == (approach == "vinn")
    assert len(set(counts.values())) == 1, counts


def test_bad_datalist_fails_before_training(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"training": [{"image": "missing.nii.gz", "label": "missing_seg.nii.gz", "group": "H"}]}))
    files = [str(CONFIGS / "train.yaml")]
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", files[0], "--datalist", str(bad)]
    cmd += ["--output_dir", str(tmp_path / "out")]
    proc = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "missing.nii.gz" in out and "not found" in out
    assert "Epoch" not in out


@pytest.mark.slow
def test_smoke_train_evaluate_and_inference(tmp_path, tiny_population):
    out = tmp_path / "run"
    ckpt = out / "model.pt"
    _bundle(
        ["train.yaml", "evaluate.yaml"],
        {
            **TINY,
            "datalist": tiny_population,
            "approach": "vinn",
            "epochs": 1,
            "val_interval": 1,
            "train_first": True,
            "output_dir": out,
            "ckpt_path": ckpt,
        },
    )
    record = json.loads((out / "metrics.json").read_text())
    validate_metrics_record(record)
    metrics = record["extra"]
    assert set(metrics["groups"]) == {"H", "L"}
    assert metrics["groups"]["L"]["n"] == 2
    gm = metrics["groups"]["L"]["volume_bias"]["grey_matter"]
    assert record["metrics"]["volume_bias_grey_matter_L"] == gm["median"]
    assert len(gm["values"]) == 2 and gm["median"] == pytest.approx(float(np.median(gm["values"])))
    auc = metrics["auc"]["grey_matter"]
    assert auc["manual"] in (0.0, 0.25, 0.5, 0.75, 1.0) and 0.0 <= auc["pred"] <= 1.0
    assert {s["group"] for s in record["per_sample"]} == {"H", "L"} and all(s["id"] for s in record["per_sample"])
    for s in record["per_sample"]:
        assert s["volume_true"]["grey_matter"] > 0
        flip = s["flip_counts"]
        assert flip[0] + flip[1] + flip[2] == pytest.approx(flip[3])
    assert record["settings"]["approach"] == "vinn"
    assert any(p.name.startswith("events.out.tfevents") for p in out.iterdir())
    state = torch.load(ckpt, weights_only=True)
    assert "model" in state  # the key MONAI Label reads

    # inference: a 2.5 x 3 x 3.5 mm volume in LPS orientation -> label map on exactly that grid
    src = nib.load(
        str(Path(tiny_population).parent / json.loads(Path(tiny_population).read_text())["test"][0]["image_hr"])
    )
    data = src.get_fdata()[::-1, ::-1, :].copy()[:, :, ::2][:60, :70]
    affine = np.diag([-2.5, -3.0, 3.5, 1.0])
    affine[:3, 3] = [100.0, 120.0, -70.0]
    img_path = tmp_path / "subject.nii.gz"
    nib.save(nib.Nifti1Image(data.astype(np.float32), affine), str(img_path))
    _bundle(
        ["inference.yaml"],
        {**TINY, "input_image": img_path, "ckpt_path": ckpt, "output_dir": tmp_path / "pred", "approach": "vinn"},
    )
    seg = nib.load(str(tmp_path / "pred" / "subject_seg.nii.gz"))
    assert seg.shape == data.shape
    np.testing.assert_allclose(seg.affine, affine, atol=1e-4)
    values = np.unique(seg.get_fdata())
    assert set(values.tolist()) <= {0.0, 1.0, 2.0, 3.0}


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("torchrun", path=str(Path(sys.executable).parent)) is None, reason="no torchrun")
def test_two_process_gloo_training(tmp_path, tiny_population):
    out = tmp_path / "ddp"
    launcher = [str(Path(sys.executable).parent / "torchrun"), "--standalone", "--nproc_per_node", "2", "-m"]
    _bundle(
        ["train.yaml", "multi_gpu_train.yaml"],
        {
            **TINY,
            "datalist": tiny_population,
            "approach": "scale_aug",
            "epochs": 1,
            "val_interval": 5,
            "output_dir": out,
            "ckpt_path": out / "model.pt",
        },
        launcher=launcher,
    )
    state = torch.load(out / "model.pt", weights_only=True)
    assert not any(k.startswith("module.") for k in state["model"])

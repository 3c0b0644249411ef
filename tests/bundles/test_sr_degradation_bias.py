"""Bundle ``sr_degradation_bias``: configs parse, smoke train + evaluate, inference NIfTI, 2-process gloo run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from common.metrics.record import validate_metrics_record
from common.study.runner import REPO_ROOT, bundle_command
from tests.bundles.cli import run_command

BUNDLE = REPO_ROOT / "bundles" / "sr_degradation_bias"
CONFIGS = BUNDLE / "configs"
KINDS = ["gaussian", "hann", "hamming", "bicubic", "mean", "median"]
TINY = {
    "model": "srcnn",
    "width": 0.125,
    "epochs": 1,
    "num_slices": [4, 2, 2],
    "patch_size": 32,
    "patches_per_image": 2,
    "batch_size": 4,
    "val_interval": 1,
    "num_threads": 1,
}


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}


def _run(cmd: list[str], cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess:
    proc = run_command(cmd, cwd, _env())
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def data_cache(tmp_path_factory) -> Path:
    """Embedded MNI slices generated once for the module (the bundle's default data)."""
    from common.data import generate_sr_slices

    cache = tmp_path_factory.mktemp("sr_cache")
    generate_sr_slices(cache, 0, plane="axial", num_slices=TINY["num_slices"])
    return cache


def test_metadata_and_layout():
    for rel in ["LICENSE", "docs/README.md", "docs/data_license.txt", "models/.gitkeep"]:
        assert (BUNDLE / rel).is_file(), rel
    for name in ["train.yaml", "evaluate.yaml", "inference.yaml", "multi_gpu_train.yaml", "logging.conf"]:
        assert (CONFIGS / name).is_file(), name
    meta = json.loads((CONFIGS / "metadata.json").read_text())
    assert meta["version"] in meta["changelog"]
    for key in ["monai_version", "pytorch_version", "numpy_version", "required_packages_version", "task"]:
        assert key in meta
    fmt = meta["network_data_format"]
    assert fmt["inputs"]["image"]["num_channels"] == 1
    assert fmt["outputs"]["pred"]["channel_def"] == {"0": "super-resolved image"}


def test_configs_parse_with_study_ids():
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config([str(CONFIGS / "train.yaml"), str(CONFIGS / "evaluate.yaml")])
    for key in [
        "train_degradation",
        "test_degradations",
        "model",
        "loss",
        "scale",
        "patch_size",
        "epochs",
        "seed",
        "bundle_root",
        "device",
        "datalist",
        "dataset_dir",
        "output_dir",
        "ckpt_path",
        "val_interval",
        "network_def",
        "network",
        "train#trainer",
        "validate#evaluator",
        "initialize",
        "run",
    ]:
        assert key in parser, key
    assert parser["test_degradations"] == KINDS
    assert parser["scale"] == 2
    parser["model"], parser["width"] = "rrdbnet", 0.25
    net = parser.get_parsed_content("network_def")
    assert net(torch.rand(1, 1, 8, 8)).shape == (1, 1, 16, 16)
    for loss in ["mse", "l1", "ssim"]:
        parser["loss"] = loss
        fn = parser.get_parsed_content("loss_function", lazy=False)
        assert float(fn(torch.ones(1, 1, 16, 16), torch.ones(1, 1, 16, 16))) == pytest.approx(0.0, abs=1e-6)
    inf = ConfigParser()
    inf.read_config(str(CONFIGS / "inference.yaml"))
    for key in ["network_def", "preprocessing", "inferer", "postprocessing", "dataset", "evaluator", "ckpt_path"]:
        assert key in inf, key


@pytest.mark.slow
def test_smoke_train_then_evaluate_only_reproduces_metrics(tmp_path, data_cache):
    """Train + evaluate in one process, then evaluate the saved checkpoint alone: same metrics, all six kinds."""
    common = {**TINY, "cache_dir": str(data_cache), "ckpt_path": str(tmp_path / "model.pt")}
    cmd = bundle_command("sr_degradation_bias", ["train.yaml", "evaluate.yaml"], {**common, "train_first": True})
    _run(cmd + ["--output_dir", str(tmp_path / "train"), "--train_degradation", "combined"])
    record = json.loads((tmp_path / "train" / "metrics.json").read_text())
    validate_metrics_record(record)
    curve = json.loads((tmp_path / "train" / "validation_curve.json").read_text())
    assert curve["metric"] == "val_psnr" and [p["epoch"] for p in curve["points"]] == [1]
    assert curve["points"][0]["metrics"]["val_psnr"] > 0 and curve["points"][0]["cpu_seconds"] > 0
    first = record["extra"]
    assert set(first["mean"]["psnr"]) == set(KINDS)
    assert first["num_images"] == {k: 2 for k in KINDS}
    assert record["settings"]["train_degradation"] == "combined"
    assert sorted(p["kind"] for p in record["per_sample"]) == sorted(KINDS * 2)
    for m in ["psnr", "ssim", "nrmse", "hfen"]:
        assert set(first["bicubic_interpolation"][m]) == set(KINDS)
    assert 10 < first["mean"]["psnr"]["gaussian"] < 60
    ckpt = torch.load(tmp_path / "model.pt", weights_only=True)
    assert "model" in ckpt and "optimizer" in ckpt
    assert list((tmp_path / "train").glob("events.out.tfevents*")), "no TensorBoard event file"

    cmd = bundle_command("sr_degradation_bias", ["train.yaml", "evaluate.yaml"], common)
    _run(cmd + ["--output_dir", str(tmp_path / "eval"), "--train_degradation", "combined"])
    again = json.loads((tmp_path / "eval" / "metrics.json").read_text())["extra"]
    for m in ["psnr", "ssim", "nrmse", "hfen"]:
        for k in KINDS:
            assert again["mean"][m][k] == pytest.approx(first["mean"][m][k], rel=1e-5)


def _write_nifti(path: Path, data: np.ndarray, affine: np.ndarray) -> Path:
    nib.save(nib.Nifti1Image(data.astype(np.float32), affine), str(path))
    return path


def test_training_caches_degraded_slices_and_crops_aligned_patch_pairs(tmp_path):
    """``train#dataset`` caches every brain-cropped HR slice with its whole-slice degradation and takes aligned
    HR / LR patches per iteration; validation keeps whole slices."""
    from monai.bundle import ConfigParser

    from common.transforms import Degrade

    rng = np.random.default_rng(0)
    entries = []
    for i in range(3):
        img = np.zeros((60, 52))
        img[6:55, 5:47] = rng.random((49, 42))  # a brain-like foreground with a zero border
        entries.append({"image": _write_nifti(tmp_path / f"{i}.nii.gz", img, np.eye(4)).name})
    (tmp_path / "list.json").write_text(json.dumps({"training": entries, "validation": entries[:1]}))
    parser = ConfigParser()
    parser.read_config(str(CONFIGS / "train.yaml"))
    parser.update(
        {
            "datalist": str(tmp_path / "list.json"),
            "output_dir": str(tmp_path / "out"),
            "train_degradation": "combined",  # entries 0, 1, 2: bicubic, gaussian, mean
            "patch_size": 24,
            "patches_per_image": 4,
        }
    )
    dataset = parser.get_parsed_content("train#dataset")
    for cached in dataset._cache:
        assert cached["label"].shape[1:] == (57, 50)  # foreground bounding box + 4-pixel margin
        torch.testing.assert_close(cached["image"], Degrade(cached["degradation"], 2)(cached["label"]))
    for i in range(len(dataset)):
        for sample in dataset[i]:
            assert sample["label"].shape == (1, 24, 24) and sample["image"].shape == (1, 12, 12)
            alone = Degrade(sample["degradation"], 2)(sample["label"])
            torch.testing.assert_close(alone[:, 3:-3, 3:-3], sample["image"][:, 3:-3, 3:-3])
    whole = parser.get_parsed_content("validate#dataset")[0]
    assert whole["label"].shape == (1, 60, 52) and whole["image"].shape == (1, 30, 26)


@pytest.mark.slow
def test_inference_writes_super_resolved_nifti_with_new_voxel_size(tmp_path):
    """2D: shape x2 and pixdim / 2 in the header; 3D slice by slice: the slice axis keeps its size and spacing."""
    from monai.bundle import run

    from common.networks import sr_network

    torch.manual_seed(0)
    net = sr_network("srcnn", width=0.125)
    torch.save({"model": net.state_dict()}, tmp_path / "model.pt")
    rng = np.random.default_rng(0)
    affine = np.array([[1.5, 0, 0, -40.0], [0, 2.0, 0, -60.0], [0, 0, 3.0, 10.0], [0, 0, 0, 1]])
    img2d = _write_nifti(tmp_path / "slice.nii.gz", rng.random((20, 24)), affine)
    img3d = _write_nifti(tmp_path / "vol.nii.gz", rng.random((20, 24, 5)), affine)
    for img, axis in [(img2d, 2), (img3d, 2)]:
        run(
            config_file=str(CONFIGS / "inference.yaml"),
            input_image=str(img),
            output_dir=str(tmp_path / "out"),
            ckpt_path=str(tmp_path / "model.pt"),
            model="srcnn",
            width=0.125,
            slice_axis=axis,
        )
    out2d = nib.load(str(tmp_path / "out" / "slice_sr.nii.gz"))
    assert out2d.shape[:2] == (40, 48)
    np.testing.assert_allclose(out2d.header.get_zooms()[:2], (0.75, 1.0))
    # the field of view is kept: voxel (0, 0) of the SR image is a quarter of an LR voxel inside LR voxel (0, 0)
    np.testing.assert_allclose(out2d.affine[:2, 3], [-40.0 - 0.375, -60.0 - 0.5])
    out3d = nib.load(str(tmp_path / "out" / "vol_sr.nii.gz"))
    assert out3d.shape == (40, 48, 5)
    np.testing.assert_allclose(out3d.header.get_zooms(), (0.75, 1.0, 3.0))
    np.testing.assert_allclose(out3d.affine[2, 3], 10.0)
    data = np.asarray(out3d.dataobj)
    assert np.isfinite(data).all() and data.min() >= 0.0 and data.max() <= 1.0


@pytest.mark.slow
def test_two_process_gloo_training(tmp_path, data_cache):
    files = [str(CONFIGS / "train.yaml"), str(CONFIGS / "multi_gpu_train.yaml")]
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",  # rendezvous on a free local port
        "--nproc_per_node",
        "2",
        "-m",
        "monai.bundle",
        "run",
        "--config_file",
        repr(files),
    ]
    overrides = {
        **TINY,
        "cache_dir": str(data_cache),
        "ckpt_path": str(tmp_path / "model.pt"),
        "output_dir": str(tmp_path / "out"),
    }
    for k, v in overrides.items():
        cmd += [f"--{k}", v if isinstance(v, str) else repr(v)]
    _run(cmd)
    ckpt = torch.load(tmp_path / "model.pt", weights_only=True)
    assert not any(k.startswith("module.") for k in ckpt["model"]), "rank 0 saves the unwrapped network"


def test_bad_datalist_fails_before_training_naming_the_file(tmp_path):
    from common.data import DatalistError
    from common.data.sr_pairs import sr_pair_datalist

    bad = tmp_path / "list.json"
    bad.write_text(json.dumps({"training": [{"image": "missing.nii.gz"}], "validation": [{"image": "also.nii.gz"}]}))
    with pytest.raises(DatalistError, match="missing.nii.gz"):
        sr_pair_datalist(str(bad), "", tmp_path, "bicubic", KINDS)
    with pytest.raises(ValueError, match="train_degradation"):
        sr_pair_datalist(str(bad), "", tmp_path, "lanczos", KINDS)

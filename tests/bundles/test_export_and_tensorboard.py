"""Each bundle exports to a self-contained folder that trains without this checkout, and its
smoke run writes the documented TensorBoard scalars and image panels (read with TensorBoard's reader)."""

import os
import subprocess
import sys

import pytest

from common.export import common_files_for, export_bundle
from common.study.runner import BUNDLE_NAMES, REPO_ROOT
from tests.tensorboard_events import read_events

# Smallest settings that still train, validate and evaluate (bundle ids, as on the command line).
SMOKE = {
    "label_error_refurbishment": {
        "epochs": 2, "detect_epoch": 2, "vog_checkpoints": 2, "vog_first_epoch": 1, "loss_window": 1,
        "num_train": 8, "num_val": 2, "num_test": 3, "val_interval": 2, "num_threads": 1,
    },
    "sr_degradation_bias": {
        "train_first": True, "model": "srcnn", "width": 0.125, "epochs": 1, "num_slices": [4, 2, 2],
        "patch_size": 32, "patches_per_image": 2, "batch_size": 4, "val_interval": 1, "num_threads": 1,
    },
    "shortcut_label_flips": {
        "epochs": 2, "num_train": 16, "num_val": 4, "num_test": 8, "val_interval": 2, "num_threads": 1,
        "channels": [4, 8],
    },
    "segmentation_resolution_bias": {
        "train_first": True, "epochs": 1, "val_interval": 1, "num_train": 1, "num_val": 1, "num_test": 1,
        "slice_thickness": 3, "channels": [4, 8], "slices_per_volume": 3, "batch_size": 8, "num_threads": 1,
    },
    "biomarker_precision": {
        "epochs": 2, "num_train": 8, "num_val": 2, "num_test": 3, "val_interval": 2, "num_members": 2,
        "num_samples": 4, "num_threads": 1,
    },
}  # fmt: skip
# Documented TensorBoard scalar tags (a subset each run must contain).
SCALARS = {
    "label_error_refurbishment": {"train_loss", "val_mean_dice"},
    "shortcut_label_flips": {"train_loss", "val_mean_dice"},
    "sr_degradation_bias": {"train_loss", "val_psnr", "test/psnr/gaussian", "test/ssim/median", "test/hfen/bicubic"},
    "segmentation_resolution_bias": {
        "train_loss", "val_mean_dice", "val_dice_grey_matter_L", "val_volume_bias_grey_matter_L", "val_auc_grey_matter",
        "test_mean_dice", "test_dice_grey_matter_H", "test_volume_bias_grey_matter_L", "test_auc_grey_matter",
    },
    "biomarker_precision": {"train_loss", "val_mean_dice", "evaluate/dice_mean_ensemble", "evaluate/ef_bias_tta"},
}  # fmt: skip


def test_export_finds_lazily_exported_modules():
    files = {p.relative_to(REPO_ROOT).as_posix() for p in common_files_for(["$common.metrics.volume_bias(x, y)"])}
    assert {"common/metrics/__init__.py", "common/metrics/volume.py", "common/_lazy.py"} <= files
    assert "common/metrics/flip.py" not in files


def test_export_refuses_a_non_empty_destination(tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty"):
        export_bundle("sr_degradation_bias", tmp_path)
    assert (tmp_path / "keep.txt").read_text() == "mine"


@pytest.mark.slow
@pytest.mark.parametrize("name", BUNDLE_NAMES)
def test_exported_bundle_trains_outside_the_checkout(name, tmp_path):
    dest = export_bundle(name, tmp_path / name)
    assert (dest / "common" / "__init__.py").is_file() and not (dest / "common" / "study").exists()
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "monai.bundle",
        "run",
        "--config_file",
        "['configs/train.yaml','configs/evaluate.yaml']",
    ]
    cmd += ["--logging_file", "configs/logging.conf", "--output_dir", str(out), "--ckpt_path", str(out / "model.pt")]
    for key, value in SMOKE[name].items():
        cmd += [f"--{key}", value if isinstance(value, str) else repr(value)]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=dest, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (out / "model.pt").is_file() and (out / "metrics.json").is_file()

    scalars, images = read_events(out)
    assert SCALARS[name] <= scalars, f"missing TensorBoard scalars {SCALARS[name] - scalars}"
    assert images >= 1

"""MLflow tracking of every bundle's train + evaluate run through MONAI's bundle runner (``--tracking``).

Skipped unless ``mlflow`` is installed (``nox -s tracking`` installs it from requirements-tracking.txt). Each bundle
trains a tiny model with ``--tracking bundles/<name>/mlflow_tracking.yaml`` into a local SQLite store in tmp and the test
reads the store back with MLflow's client: the training loss per iteration (the same values as the TensorBoard
events the bundle writes anyway), the learning rate, the validation key metric per validation, the run parameters,
and the test metrics of the evaluation run where the evaluator has metrics (the same numbers as ``metrics.json``).
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from common.study.runner import REPO_ROOT, bundle_command, bundle_dir

mlflow = pytest.importorskip("mlflow")

EPOCHS = 2
# bundle -> (tiny overrides, validation metric, evaluator metric -> metrics.json key, or None)
CASES = {
    "label_error_refurbishment": (
        {"epochs": EPOCHS, "detect_epoch": 2, "vog_checkpoints": 2, "vog_first_epoch": 1, "loss_window": 1,
         "num_train": 8, "num_val": 2, "num_test": 3, "val_interval": 1, "num_threads": 1},
        "val_mean_dice",
        None,  # its test evaluator reports through SegmentationReport, not engine metrics
    ),
    "shortcut_label_flips": (
        {"epochs": EPOCHS, "num_train": 8, "num_val": 4, "num_test": 4, "val_interval": 1, "num_threads": 1},
        "val_mean_dice",
        None,  # its test evaluator reports through SegmentationReport, not engine metrics
    ),
    "segmentation_resolution_bias": (
        {"epochs": EPOCHS, "slice_thickness": 3, "channels": [4, 8], "slices_per_volume": 3, "batch_size": 8,
         "num_train": 1, "num_val": 1, "num_test": 1, "val_interval": 1, "train_first": True, "num_threads": 1},
        "val_mean_dice",
        ("test_mean_dice", "mean_dice"),
    ),
    "sr_degradation_bias": (
        {"epochs": EPOCHS, "model": "srcnn", "width": 0.125, "num_slices": [4, 2, 2], "patch_size": 32,
         "patches_per_image": 2, "batch_size": 4, "val_interval": 1, "train_first": True, "num_threads": 1},
        "val_psnr",
        ("psnr_bicubic", "psnr_bicubic"),
    ),
}  # fmt: skip


def _tensorboard_losses(logdir) -> list[float]:
    acc = EventAccumulator(str(logdir), size_guidance={"scalars": 0})
    acc.Reload()
    return [e.value for e in sorted(acc.Scalars("train_loss"), key=lambda e: e.step)]


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CASES))
def test_train_and_evaluate_are_tracked_in_mlflow(name, tmp_path):
    overrides, val_metric, test_metric = CASES[name]
    out = tmp_path / "run"
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    cmd = bundle_command(
        name,
        ["train.yaml", "evaluate.yaml"],
        {**overrides, "output_dir": out, "ckpt_path": out / "model.pt", "cache_dir": tmp_path / "cache"},
    )
    cmd += ["--tracking", str(bundle_dir(name) / "mlflow_tracking.yaml"), "--tracking_uri", uri]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(name)
    assert experiment is not None, f"no MLflow experiment named {name}"
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 2 and all(r.info.status == "FINISHED" for r in runs)
    train_runs = [r for r in runs if "train_loss" in r.data.metrics]
    assert len(train_runs) == 1
    train, evaluation = train_runs[0], next(r for r in runs if r is not train_runs[0])

    assert train.data.params["max_epochs"] == str(EPOCHS)
    epoch_length = int(train.data.params["epoch_length"])
    losses = client.get_metric_history(train.info.run_id, "train_loss")
    assert [m.step for m in sorted(losses, key=lambda m: m.step)] == list(range(1, EPOCHS * epoch_length + 1))
    tensorboard = _tensorboard_losses(out)  # what the bundle's own TensorBoard handler recorded
    assert [m.value for m in sorted(losses, key=lambda m: m.step)] == pytest.approx(tensorboard, rel=1e-6)
    assert len(client.get_metric_history(train.info.run_id, "lr_group_0")) == EPOCHS * epoch_length  # per iteration
    assert [m.step for m in client.get_metric_history(train.info.run_id, val_metric)] == list(range(1, EPOCHS + 1))
    assert "train_loss" not in evaluation.data.metrics
    if test_metric is not None:
        logged, key = test_metric
        recorded = json.loads((out / "metrics.json").read_text())["metrics"][key]
        assert evaluation.data.metrics[logged] == pytest.approx(recorded, rel=1e-6)

"""Two-process (gloo) training reaches the metrics of single-process training, within a stated tolerance.

The super-resolution bundle trains twice on the same embedded slices: once with ``torchrun --nproc_per_node 2``
and ``multi_gpu_train.yaml`` (per-rank batch ``B / 2``, so the effective batch and the number of optimizer steps
per epoch equal the single-process run's), once in a single process with batch ``B``. Both checkpoints are then
evaluated by the same ``evaluate.yaml``. Only the order of samples and the random patches differ between the two,
so the test PSNR per degradation must agree within ``PSNR_TOLERANCE_DB``.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from common.study.runner import REPO_ROOT

BUNDLE = REPO_ROOT / "bundles" / "sr_degradation_bias"
PSNR_TOLERANCE_DB = 1.0
SETTINGS = {
    "model": "srcnn",
    "width": 0.25,
    "epochs": 3,
    "num_slices": [8, 2, 2],
    "patch_size": 32,
    "patches_per_image": 4,
    "val_interval": 3,
    "lr": 0.002,
    "num_threads": 1,
    "test_degradations": ["bicubic", "gaussian"],
}
BATCH = 4


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _evaluate(out: Path, cache: Path, ckpt: Path, train_first: bool) -> dict:
    from monai.bundle import run

    run(
        config_file=[str(BUNDLE / "configs" / "train.yaml"), str(BUNDLE / "configs" / "evaluate.yaml")],
        logging_file=str(BUNDLE / "configs" / "logging.conf"),
        output_dir=str(out),
        ckpt_path=str(ckpt),
        cache_dir=str(cache),
        batch_size=BATCH,
        train_first=train_first,
        **SETTINGS,
    )
    return json.loads((out / "metrics.json").read_text())["metrics"]["psnr"]


@pytest.mark.slow
def test_two_process_gloo_metrics_match_single_process(tmp_path):
    cache = tmp_path / "cache"
    single = _evaluate(tmp_path / "single", cache, tmp_path / "single" / "model.pt", train_first=True)

    ckpt = tmp_path / "ddp" / "model.pt"
    files = [str(BUNDLE / "configs" / "train.yaml"), str(BUNDLE / "configs" / "multi_gpu_train.yaml")]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1"]
    cmd += ["--master_port", str(_free_port()), "-m", "monai.bundle", "run", "--config_file", repr(files)]
    overrides = {**SETTINGS, "batch_size": BATCH // 2, "cache_dir": cache, "ckpt_path": ckpt}
    overrides["output_dir"] = tmp_path / "ddp"
    for key, value in overrides.items():
        cmd += [
            f"--{key}",
            str(value) if isinstance(value, Path) else repr(value) if not isinstance(value, str) else value,
        ]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    distributed = _evaluate(tmp_path / "ddp_eval", cache, ckpt, train_first=False)

    assert distributed.keys() == single.keys()
    gaps = {k: abs(distributed[k] - single[k]) for k in single}
    print(f"test PSNR single {single}, two-process {distributed}")
    assert max(gaps.values()) < PSNR_TOLERANCE_DB, f"PSNR gap (dB) {gaps}: single {single}, 2-process {distributed}"

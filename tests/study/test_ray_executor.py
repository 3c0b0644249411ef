"""``--executor ray``: a smoke study's runs as tasks on a real local Ray head (127.0.0.1).

Skipped where ``ray`` is not installed; ``nox -s ray`` installs it and runs this file.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("ray")

from common.study import engine  # noqa: E402
from common.study import sr_degradation_bias as study  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def ray_head(tmp_path):
    ray_bin = Path(sys.executable).with_name("ray")
    port = _free_port()
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    temp = Path("/tmp") / f"rayt{port}"  # Ray's socket paths must stay short
    start = [str(ray_bin), "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port),
             "--num-cpus", "2", "--num-gpus", "0", "--include-dashboard", "false", "--temp-dir", str(temp),
             "--disable-usage-stats"]  # fmt: skip
    subprocess.run(start, check=True, env=env, capture_output=True, timeout=180)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        import ray

        if ray.is_initialized():
            ray.shutdown()
        subprocess.run([str(ray_bin), "stop", "--force"], env=env, capture_output=True, timeout=120)
        shutil.rmtree(temp, ignore_errors=True)


@pytest.mark.slow
def test_smoke_study_on_a_local_ray_head_matches_the_local_executor(tmp_path, ray_head):
    out_ray = tmp_path / "ray" / "sr_degradation_bias"
    engine.run_study(study.SPEC, "smoke", out_ray, seeds=(0,), executor="ray", address=ray_head)
    out_local = tmp_path / "local" / "sr_degradation_bias"
    engine.run_study(study.SPEC, "smoke", out_local, seeds=(0,))
    ray_record = json.loads((out_ray / "results.json").read_text())
    local_record = json.loads((out_local / "results.json").read_text())
    expected_runs = len(study.SPEC.study("smoke", (0,)).runs)  # every smoke setting once
    assert len(ray_record["runs"]) == expected_runs and not any(r["reused"] for r in ray_record["runs"])
    assert ray_record["summary"]["psnr"] == local_record["summary"]["psnr"]  # same seeds, same numbers
    assert engine.code_fingerprint(bundle=study.BUNDLE) == ray_record["code_fingerprint"]

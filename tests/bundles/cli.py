"""One bundle run from the command line, as a user types it (``python -m monai.bundle run``), for the bundle tests."""

import os
import subprocess
import sys
from pathlib import Path

from common.study.runner import REPO_ROOT

# A rank of a two-process gloo run can abort in torch's process-group teardown at process exit (``std::terminate``
# from a thread still joinable), after the run finished and wrote every output; seen only on a loaded 2-core CPU
# (two of 1,480 tests in one fresh-clone run, none in six reruns of the same two tests). The run is made once more on
# exactly that signature; any other failure, or the same abort twice, fails the test.
TEARDOWN_ABORT = "terminate called without an active exception"


def run_command(cmd: list[str], cwd: Path, env: dict) -> subprocess.CompletedProcess:
    """``cmd`` as a subprocess (text output captured); a ``torch.distributed.run`` command whose only trouble was
    the teardown abort (:data:`TEARDOWN_ABORT`) is run once more."""
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    if proc.returncode != 0 and "torch.distributed.run" in cmd and TEARDOWN_ABORT in proc.stderr:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    return proc


def bundle_cli(configs_dir: Path, configs, *args, check: bool = True, torchrun: bool = False):
    """Run the merged ``configs`` (file names in ``configs_dir``) with ``args`` overrides; one thread, or two
    processes under ``torch.distributed.run`` with ``torchrun``. Asserts a zero exit code unless ``check`` is false."""
    files = [str(configs_dir / c) for c in configs]
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"] if torchrun else [sys.executable]  # fmt: skip
    cmd = [*launcher, "-m", "monai.bundle", "run", "--config_file", repr(files) if len(files) > 1 else files[0]]
    cmd += ["--logging_file", str(configs_dir / "logging.conf"), *map(str, args)]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    proc = run_command(cmd, REPO_ROOT, env)
    if check:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc

"""One bundle run from the command line, as a user types it (``python -m monai.bundle run``), for the bundle tests."""

import os
import subprocess
import sys
from pathlib import Path

from common.study.runner import REPO_ROOT


def bundle_cli(configs_dir: Path, configs, *args, check: bool = True, torchrun: bool = False):
    """Run the merged ``configs`` (file names in ``configs_dir``) with ``args`` overrides; one thread, or two
    processes under ``torch.distributed.run`` with ``torchrun``. Asserts a zero exit code unless ``check`` is false."""
    files = [str(configs_dir / c) for c in configs]
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"] if torchrun else [sys.executable]  # fmt: skip
    cmd = [*launcher, "-m", "monai.bundle", "run", "--config_file", repr(files) if len(files) > 1 else files[0]]
    cmd += ["--logging_file", str(configs_dir / "logging.conf"), *map(str, args)]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, env=env)
    if check:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc

"""Run one bundle setting as an ordinary ``monai.bundle run`` and collect its metrics.

A study is a grid of such runs. Every bundle's ``evaluate.yaml`` writes
``<output_dir>/metrics.json`` (atomically); :func:`run_bundle` returns it.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
BUNDLES_DIR = REPO_ROOT / "bundles"


def bundle_names(root: str | os.PathLike = REPO_ROOT) -> tuple[str, ...]:
    """Every bundle of the collection: the folders ``bundles/<name>/`` with a ``configs/metadata.json``, sorted."""
    return tuple(sorted(p.parent.parent.name for p in (Path(root) / "bundles").glob("*/configs/metadata.json")))


BUNDLE_NAMES = bundle_names()


@functools.cache
def load_spec(name: str, root: str | os.PathLike = REPO_ROOT):
    """The :class:`common.study.engine.StudySpec` of bundle ``name``: ``SPEC`` in ``common/study/<name>.py``
    (under ``root``; a tree other than this repository's is loaded from that file)."""
    import importlib
    import importlib.util

    root = Path(root)
    path = root / "common" / "study" / f"{name}.py"
    if not path.is_file():
        raise ValueError(f"bundle {name!r} has no study module {path}")
    if root.resolve() == REPO_ROOT:
        module = importlib.import_module(f"common.study.{name}")
    else:
        loader_spec = importlib.util.spec_from_file_location(f"_study_{name}", path)
        module = importlib.util.module_from_spec(loader_spec)
        loader_spec.loader.exec_module(module)
    spec = getattr(module, "SPEC", None)
    if spec is None:
        raise ValueError(f"{path}: defines no SPEC (a common.study.engine.StudySpec)")
    return spec


class BundleRunError(RuntimeError):
    """A bundle run exited non-zero; the message carries the command and its last output."""


def bundle_dir(name: str) -> Path:
    path = BUNDLES_DIR / name
    if not (path / "configs").is_dir():
        raise ValueError(f"unknown bundle {name!r}: no {path / 'configs'}; known: {', '.join(bundle_names())}")
    return path


def bundle_command(name: str, configs: Sequence[str], overrides: Mapping[str, Any]) -> list[str]:
    """The ``python -m monai.bundle run`` command line for one setting.

    ``configs`` are file names inside ``bundles/<name>/configs`` merged in order
    (e.g. ``["train.yaml", "evaluate.yaml"]``); ``overrides`` become ``--key value``.
    """
    cfg_dir = bundle_dir(name) / "configs"
    files = [str(cfg_dir / c) for c in configs]
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", repr(files) if len(files) > 1 else files[0]]
    cmd += ["--logging_file", str(cfg_dir / "logging.conf")]
    for key, value in overrides.items():
        cmd += [f"--{key}", _cli_value(value)]
    return cmd


def _cli_value(value: Any) -> str:
    """Render a Python value so that fire parses it back to the same value."""
    if isinstance(value, str):
        return value
    if isinstance(value, Path):
        return str(value)
    return repr(value)


def run_bundle(
    name: str,
    configs: Sequence[str],
    overrides: Mapping[str, Any],
    output_dir: str | os.PathLike,
    log_file: str | os.PathLike | None = None,
) -> dict:
    """Run one setting in a fresh process and return its ``metrics.json``.

    ``output_dir`` is passed as the bundle's ``output_dir`` id. The run's
    stdout/stderr go to ``log_file`` (default ``<output_dir>/run.log``).
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    overrides = {**overrides, "output_dir": str(output_dir)}
    cmd = bundle_command(name, configs, overrides)
    log_file = Path(log_file) if log_file else output_dir / "run.log"
    from common.numerics import host_pins

    # the numeric pins (common/numerics.py) from the start, so numpy's take effect too; a user's own value wins
    env = {**host_pins(), **os.environ}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    t0 = time.perf_counter()
    with open(log_file, "w") as log:
        log.write(shlex.join(cmd) + "\n")
        log.flush()
        proc = subprocess.run(cmd, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)
    if proc.returncode != 0:
        tail = Path(log_file).read_text().splitlines()[-25:]
        raise BundleRunError(f"bundle run failed (exit {proc.returncode}): {shlex.join(cmd)}\n" + "\n".join(tail))
    metrics_path = output_dir / "metrics.json"
    if not metrics_path.exists():
        raise BundleRunError(f"bundle run wrote no {metrics_path}: {shlex.join(cmd)}")
    metrics = json.loads(metrics_path.read_text())
    metrics.setdefault("_run", {})
    metrics["_run"].update({"command": shlex.join(cmd), "seconds": round(time.perf_counter() - t0, 2)})
    return metrics


def study_command(
    bundle: str, profile: str, output_dir: str | os.PathLike, seeds: Sequence[int], grid: str | None = None
) -> str:
    """The command line that reproduces a study whose report lands in ``output_dir`` (``<DIR>/<bundle>``, or
    ``<DIR>/<bundle>-<grid>`` for a named grid)."""
    args = ["python", "-m", "common.study", bundle, "--profile", profile, "--output", str(Path(output_dir).parent)]
    args += ["--grid", grid] if grid else []
    return shlex.join([*args, "--seeds", *map(str, seeds)])


def environment_record(seed: int | None = None) -> dict:
    """Seeds, versions and numerics (:func:`common.numerics.numerics_record`) recorded in every ``results.json``."""
    import monai
    import numpy
    import torch

    from common.numerics import numerics_record

    numerics = numerics_record()
    for key in ("late_pins", "numpy_dispatch", "blas"):  # this process's, not the runs' (they start pinned)
        numerics.pop(key)
    return {
        "seed": seed,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "monai": monai.__version__,
        "numpy": numpy.__version__,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "cuda": torch.cuda.is_available(),
        "numerics": numerics,
    }

"""Pin the floating-point code paths that differ between x86-64 CPUs, and record what was in force.

Importing this module calls :func:`pin_numerics` (every bundle config imports it first), so oneDNN, MKL and
ATen take the pinned paths in a plain ``python -m monai.bundle run``: they read their variables at their first
convolution or call, after the config's imports. numpy and its OpenBLAS read theirs when numpy is imported,
which ``monai.bundle`` does before any config; for those the pins must be in the environment from the start:
``eval "$(python -m common.numerics)"`` exports them all (the study runner passes them to every run it starts), and
:func:`numerics_record` lists any that came too late under ``late_pins``.

Each pin, and the experiment behind it (same training, same seed, on an AVX-512 host):

- ``ONEDNN_MAX_CPU_ISA=AVX2``: oneDNN convolutions use AVX-512 kernels where present; capped at AVX2 the
  digits change, so AVX-512 and AVX2 hosts disagree without it.
- ``MKL_CBWR=COMPATIBLE``: the convolutions oneDNN does not take run im2col + MKL sgemm. MKL honours only
  ``AUTO`` and ``COMPATIBLE`` on non-Intel CPUs (``AVX2`` falls back to ``AUTO`` there), and ``COMPATIBLE``
  is the branch MKL documents as giving the same results on Intel and compatible CPUs; it changes the digits.
- ``ATEN_CPU_CAPABILITY=avx2``: ATen's own kernels dispatch on AVX-512 / AVX2; no op tried gave other digits
  under avx2 than avx512, but the pin makes an AVX-512 host run the kernels an AVX2 host runs.
- ``NPY_DISABLE_CPU_FEATURES``: numpy 2.x dispatches exp, log, power, arctan, expm1 and log1p to AVX-512
  kernels (targets ``X86_V4``, ``AVX512_ICL``, ``AVX512_SPR``) whose digits differ from the AVX2 ones. It
  takes dispatch targets, not single features; disabling a target the CPU lacks is allowed.
- ``OPENBLAS_CORETYPE=Haswell`` (only where the CPU has AVX2 and FMA) and ``OPENBLAS_NUM_THREADS=1``:
  numpy's matrix products change digits with OpenBLAS's kernel choice (SkylakeX vs Haswell) and its thread
  count.

torch's own thread count also changes digits; each bundle sets it (``num_threads``; studies use 1), and
:func:`numerics_record` records it.
"""

from __future__ import annotations

import os
import platform
import shlex
import sys

NUMERIC_PINS: dict[str, str] = {
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "MKL_CBWR": "COMPATIBLE",
    "ATEN_CPU_CAPABILITY": "avx2",
    "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR",
    "OPENBLAS_CORETYPE": "Haswell",
    "OPENBLAS_NUM_THREADS": "1",
}
# read when numpy is imported: setting them later in the same process has no effect
NUMPY_PINS = ("NPY_DISABLE_CPU_FEATURES", "OPENBLAS_CORETYPE", "OPENBLAS_NUM_THREADS")


def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo ({} where there is none)."""
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read().split("\n\n", 1)[0]
    except OSError:
        return {}
    return {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in text.splitlines())}


def host_simd() -> str:
    """The CPU's highest SIMD level as ATen names them (AVX512, AVX2 or DEFAULT), from /proc/cpuinfo's flags."""
    flags = set(_cpuinfo().get("flags", "").split())
    if {"avx512f", "avx512bw", "avx512vl", "avx512dq"} <= flags:
        return "AVX512"
    return "AVX2" if {"avx2", "fma"} <= flags else "DEFAULT"


def host_pins() -> dict[str, str]:
    """The pins that apply on this host: none off x86-64; no OpenBLAS core type without AVX2 and FMA."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return {}
    pins = dict(NUMERIC_PINS)
    flags = set(_cpuinfo().get("flags", "").split())
    if not {"avx2", "fma"} <= flags:
        del pins["OPENBLAS_CORETYPE"]  # a forced Haswell kernel would fault on this CPU
    return pins


def pin_numerics() -> dict[str, str]:
    """Set each of :func:`host_pins` in ``os.environ`` unless already set; return those it set.

    Call it before torch's first convolution. The numpy pins (:data:`NUMPY_PINS`) it sets after numpy was
    imported take effect in child processes only; :func:`numerics_record` lists them under ``late_pins``.
    """
    set_now = {k: v for k, v in host_pins().items() if k not in os.environ}
    os.environ.update(set_now)
    return set_now


def _numpy_dispatch() -> list[str]:
    """numpy's dispatch targets in use on this host."""
    try:
        from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__
    except ImportError:  # numpy 1.x
        from numpy.core._multiarray_umath import __cpu_dispatch__, __cpu_features__
    return [t for t in __cpu_dispatch__ if __cpu_features__.get(t)]


def _blas() -> list[dict]:
    """The BLAS libraries loaded in this process, with kernel choice and threads (where threadpoolctl is)."""
    try:
        import threadpoolctl
    except ImportError:
        return []
    keys = ("internal_api", "version", "architecture", "num_threads")
    return [{k: lib.get(k) for k in keys} for lib in threadpoolctl.threadpool_info() if lib.get("user_api") == "blas"]


def late_pins(dispatch: list[str], blas: list[dict]) -> list[str]:
    """The numpy pins set in the environment but not in force: numpy was imported before they were set."""
    late = []
    disabled = set(os.environ.get("NPY_DISABLE_CPU_FEATURES", "").replace(",", " ").split())
    if disabled & set(dispatch):
        late.append("NPY_DISABLE_CPU_FEATURES")
    openblas = [b for b in blas if b.get("internal_api") == "openblas"]
    core, threads = os.environ.get("OPENBLAS_CORETYPE"), os.environ.get("OPENBLAS_NUM_THREADS")
    if core and any((b.get("architecture") or "").lower() != core.lower() for b in openblas):
        late.append("OPENBLAS_CORETYPE")
    if threads and any(str(b.get("num_threads")) != threads for b in openblas):
        late.append("OPENBLAS_NUM_THREADS")
    return late


def numerics_record() -> dict:
    """What decides this process's floating-point digits: CPU, SIMD level, pins in force, versions, threads."""
    import monai
    import numpy
    import torch

    dispatch, blas = _numpy_dispatch(), _blas()
    return {
        "cpu_model": _cpuinfo().get("model name") or platform.processor() or platform.machine(),
        "cpu_simd": host_simd(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),  # ATen's level in force (pinned: AVX2)
        "pins": {k: os.environ.get(k) for k in NUMERIC_PINS},
        "late_pins": late_pins(dispatch, blas),
        "numpy_dispatch": dispatch,
        "blas": blas,
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "monai": monai.__version__,
        "torch_num_threads": torch.get_num_threads(),
        "torch_num_interop_threads": torch.get_num_interop_threads(),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "MKL_NUM_THREADS": os.environ.get("MKL_NUM_THREADS"),
    }


def shell_exports(pins: dict[str, str]) -> str:
    """``export`` lines for ``pins``, for a shell's ``eval``."""
    return "".join(f"export {k}={shlex.quote(v)}\n" for k, v in pins.items())


PINNED_AT_IMPORT = pin_numerics()

if __name__ == "__main__":  # the pins this shell has not set yet
    sys.stdout.write(shell_exports(PINNED_AT_IMPORT))

"""The numeric pins: same training digits on an AVX-512 host and an AVX2 host once pinned; provenance record."""

import os
import platform
import subprocess
import sys

import numpy
import pytest
import torch

import common.numerics as numerics
from common.numerics import NUMERIC_PINS, host_pins, late_pins, numerics_record, pin_numerics, shell_exports
from common.study.runner import REPO_ROOT

# a few SGD steps of a small conv net on fixed random data; prints every trained weight's bytes. `pin` imports
# common.numerics after torch, as a bundle config's first import does
TRAIN = """
import sys, torch
if sys.argv[1] == "pin":
    import common.numerics
torch.manual_seed(0)
torch.set_num_threads(1)
net = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 8, 3, padding=1),
                          torch.nn.ReLU(), torch.nn.Conv2d(8, 3, 1))
opt = torch.optim.SGD(net.parameters(), lr=0.1)
x, y = torch.randn(4, 1, 32, 32), torch.randint(0, 3, (4, 32, 32))
for _ in range(5):
    opt.zero_grad()
    torch.nn.functional.cross_entropy(net(x), y).backward()
    opt.step()
print(b"".join(p.detach().numpy().tobytes() for p in net.parameters()).hex())
"""
AVX2_HOST = {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}  # what an AVX2-only CPU dispatches to


def _train(host: dict, pin: bool) -> str:
    env = {k: v for k, v in os.environ.items() if k not in NUMERIC_PINS}
    proc = subprocess.run([sys.executable, "-c", TRAIN, "pin" if pin else "plain"], cwd=REPO_ROOT,
                          env={**env, **host}, capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


@pytest.mark.skipif(numerics.host_simd() != "AVX512", reason="needs an AVX-512 host to compare with AVX2 dispatch")
def test_pins_give_an_avx512_host_the_digits_of_an_avx2_host():
    plain_avx512, plain_avx2 = _train({}, pin=False), _train(AVX2_HOST, pin=False)
    assert plain_avx512 != plain_avx2  # without the pins the host's instruction set shows in the weights
    assert _train({}, pin=True) == _train(AVX2_HOST, pin=True)


@pytest.fixture
def no_pins(monkeypatch):
    for key in NUMERIC_PINS:
        monkeypatch.delenv(key, raising=False)


def test_pin_numerics_sets_what_is_unset_and_keeps_a_user_value(no_pins, monkeypatch):
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE")
    expected = {k: v for k, v in host_pins().items() if k != "ONEDNN_MAX_CPU_ISA"}
    assert expected  # this x86-64 host has pins to set
    assert pin_numerics() == expected
    assert os.environ["ONEDNN_MAX_CPU_ISA"] == "AVX512_CORE"
    assert all(os.environ[k] == v for k, v in expected.items())
    assert pin_numerics() == {}  # all set now


def test_host_pins_only_on_x86_64_and_no_forced_openblas_core_without_avx2(monkeypatch):
    if platform.machine().lower() not in ("x86_64", "amd64"):
        pytest.skip("x86-64 host only")
    assert host_pins() == NUMERIC_PINS or "avx2" not in numerics._cpuinfo().get("flags", "")
    monkeypatch.setattr(numerics, "_cpuinfo", lambda: {"flags": "sse sse2 avx"})
    assert "OPENBLAS_CORETYPE" not in host_pins()
    assert numerics.host_simd() == "DEFAULT"
    monkeypatch.setattr(numerics.platform, "machine", lambda: "aarch64")
    assert host_pins() == {}


def test_numerics_record_names_cpu_pins_versions_and_threads():
    record = numerics_record()
    assert {"cpu_model", "cpu_simd", "cpu_capability", "pins", "late_pins", "numpy_dispatch", "blas", "torch", "numpy",
            "monai", "torch_num_threads", "torch_num_interop_threads", "OMP_NUM_THREADS", "MKL_NUM_THREADS"} <= set(record)  # fmt: skip
    assert record["cpu_model"]
    assert record["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert record["pins"] == {k: os.environ.get(k) for k in NUMERIC_PINS}
    assert record["torch"] == torch.__version__ and record["numpy"] == numpy.__version__
    assert record["torch_num_threads"] == torch.get_num_threads()


def test_late_pins_names_numpy_pins_that_are_not_in_force(monkeypatch):
    monkeypatch.setenv("NPY_DISABLE_CPU_FEATURES", "X86_V4 AVX512_ICL")
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")
    pinned = [{"internal_api": "openblas", "architecture": "Haswell", "num_threads": 1}]
    assert late_pins(["X86_V3"], pinned) == []
    unpinned = [{"internal_api": "openblas", "architecture": "SkylakeX", "num_threads": 4}]
    assert late_pins(["X86_V3", "X86_V4"], unpinned) == [
        "NPY_DISABLE_CPU_FEATURES", "OPENBLAS_CORETYPE", "OPENBLAS_NUM_THREADS"]  # fmt: skip


def test_shell_exports_quote_values():
    assert shell_exports({"A": "x y", "B": "1"}) == "export A='x y'\nexport B=1\n"

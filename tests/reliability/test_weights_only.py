"""Every checkpoint is loaded with ``torch.load(..., weights_only=True)``: a scan of the sources and configs."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pytest
import torch

from common.handlers.resume import ResumableCheckpoint
from common.study.runner import REPO_ROOT

SCANNED = ("common", "bundles", "tests")


def _python_files() -> list[Path]:
    return [p for d in SCANNED for p in (REPO_ROOT / d).rglob("*.py") if "__pycache__" not in p.parts]


def _config_files() -> list[Path]:
    return [p for ext in ("yaml", "json") for p in (REPO_ROOT / "bundles").rglob(f"*.{ext}")]


def _is_torch_load(func: ast.expr) -> bool:
    return isinstance(func, ast.Attribute) and func.attr == "load" and getattr(func.value, "id", None) == "torch"


def _weights_only_true(call: ast.Call) -> bool:
    return any(k.arg == "weights_only" and getattr(k.value, "value", None) is True for k in call.keywords)


def _python_offenders(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    return [
        f"{path.relative_to(REPO_ROOT)}:{node.lineno}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and _is_torch_load(node.func) and not _weights_only_true(node)
    ]


def _call_arguments(text: str, start: int) -> str:
    """The text between the parenthesis at ``start`` and its match."""
    depth = 0
    for i in range(start, len(text)):
        depth += {"(": 1, ")": -1}.get(text[i], 0)
        if depth == 0:
            return text[start + 1 : i]
    return text[start + 1 :]


def _config_offenders(path: Path) -> list[str]:
    text = path.read_text()
    out = []
    for m in re.finditer(r"torch\.load\s*\(", text):
        if not re.search(r"weights_only\s*=\s*True", _call_arguments(text, m.end() - 1)):
            out.append(f"{path.relative_to(REPO_ROOT)}:{text.count(chr(10), 0, m.start()) + 1}")
    for m in re.finditer(r"_target_['\"]?\s*:\s*['\"]?torch\.load\b", text):
        block = text[m.start() : m.start() + 400]
        if not re.search(r"weights_only['\"]?\s*:\s*(true|True)", block):
            out.append(f"{path.relative_to(REPO_ROOT)}:{text.count(chr(10), 0, m.start()) + 1}")
    return out


def test_scanner_catches_an_unsafe_call(tmp_path):
    bad = tmp_path / "x.py"
    bad.write_text("import torch\nstate = torch.load('m.pt')\nok = torch.load('m.pt', weights_only=True)\n")
    tree = ast.parse(bad.read_text())
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and _is_torch_load(n.func)]
    assert [_weights_only_true(c) for c in calls] == [False, True]
    assert _call_arguments("f(a, g(b), c) tail", 1) == "a, g(b), c"


def test_python_sources_load_checkpoints_weights_only():
    offenders = [o for p in _python_files() for o in _python_offenders(p)]
    assert offenders == [], f"torch.load without weights_only=True at {offenders}"


def test_bundle_configs_load_checkpoints_weights_only():
    files = _config_files()
    assert len(files) >= 3
    offenders = [o for p in files for o in _config_offenders(p)]
    assert offenders == [], f"torch.load without weights_only=True at {offenders}"


def test_monai_checkpoint_loader_is_weights_only():
    """The bundles load checkpoints with MONAI's CheckpointLoader; it must stay weights_only."""
    from monai.handlers import CheckpointLoader

    assert "weights_only=True" in inspect.getsource(CheckpointLoader.__call__)


class _Payload:
    """An arbitrary object: a pickle that only an unsafe load would execute."""


def test_a_pickled_object_in_a_checkpoint_is_refused(tmp_path):
    path = tmp_path / "m.resume.pt"
    net = torch.nn.Linear(2, 1)
    torch.save({"network": net.state_dict(), "extra": _Payload()}, path)
    handler = ResumableCheckpoint(path, {"network": net})
    from ignite.engine import Engine

    with pytest.raises(RuntimeError, match=r"m\.resume\.pt: cannot read the resume checkpoint"):
        handler.resume(Engine(lambda e, b: None))

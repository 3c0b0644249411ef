"""Which files of ``common`` a bundle's runs (or a study's summaries) can execute: the static import closure.

A bundle run executes the ``common`` modules its configs name (``$import common.x``, ``_target_: common.x.Y``,
``$common.x.f(...)``) and everything those import, at module level or inside functions. :func:`import_closure`
follows ``import`` / ``from ... import`` statements (absolute and relative) through the source files with
:mod:`ast`, resolving names a package exports lazily (``_EXPORTS = {"Name": "submodule"}`` in its
``__init__.py``, see :mod:`common._lazy`) to the submodule that defines them. Every package ``__init__.py`` on
the way counts too. This is what a run's key and a published result's fingerprint hash, so a change to code a
bundle never imports leaves its runs and published numbers valid.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable
from pathlib import Path

__all__ = ["config_modules", "import_closure", "is_lazy_package_init", "module_file"]

_DOTTED = re.compile(r"\bcommon(?:\.[A-Za-z_][A-Za-z0-9_]*)+|\bcommon\b")


def module_file(root: Path, dotted: str) -> Path | None:
    """``common.a.b`` -> ``root/common/a/b.py`` or ``root/common/a/b/__init__.py``; ``None`` if neither exists."""
    base = root.joinpath(*dotted.split("."))
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    return None


def _lazy_exports(init: Path, table: str = "_EXPORTS") -> dict[str, str]:
    """``_EXPORTS`` of a package ``__init__.py`` (public name -> submodule), or ``{}``; with ``table="_MOVED"``
    the names that moved out of the package (public name -> their dotted module now)."""
    try:
        tree = ast.parse(init.read_text())
    except (OSError, SyntaxError):
        return {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == table for t in node.targets):
            try:
                value = ast.literal_eval(node.value)
            except ValueError:
                return {}
            return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}
    return {}


def is_lazy_package_init(path: Path) -> bool:
    """True for an ``__init__.py`` that only declares lazy exports (docstring, imports, ``_EXPORTS``, ``_MOVED``,
    ``__all__``, ``__getattr__ = lazy_getattr(...)``, see :mod:`common._moved`): it runs no code of its own, and which submodule a name resolves to is
    already part of the closure, so its text need not be hashed (adding an export elsewhere changes no run)."""
    if path.name != "__init__.py":
        return False
    try:
        tree = ast.parse(path.read_text())
    except (OSError, SyntaxError):
        return False
    allowed = {"_EXPORTS", "_MOVED", "__all__", "__getattr__"}
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            continue
        if isinstance(node, ast.Assign) and all(isinstance(t, ast.Name) and t.id in allowed for t in node.targets):
            continue
        return False
    return bool(_lazy_exports(path))


def _resolve(root: Path, dotted: str) -> list[str]:
    """The modules a dotted reference needs: each existing module along it, and for a name a package exports
    lazily, the submodule that defines it."""
    parts = dotted.split(".")
    found: list[str] = []
    for i in range(1, len(parts) + 1):
        name = ".".join(parts[:i])
        if module_file(root, name) is not None:
            found.append(name)
            continue
        last = module_file(root, found[-1]) if found else None
        if last is not None and last.name == "__init__.py":
            sub = _lazy_exports(last).get(parts[i - 1])
            if sub is not None:
                found.append(f"{found[-1]}.{sub}")
            elif (home := _lazy_exports(last, "_MOVED").get(parts[i - 1])) is not None:
                found.append(home)
        break
    return found


def _imports(path: Path, module: str) -> list[str]:
    """Dotted names of every ``common`` module (or attribute of one) ``path`` imports anywhere in its code."""
    tree = ast.parse(path.read_text())
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            out += [f"{prefix}.{a.name}" for a in node.names if a.name != "*"] + [prefix]
    return [name for name in out if name == "common" or name.startswith("common.")]


def config_modules(texts: Iterable[str]) -> set[str]:
    """Every ``common...`` dotted reference in config texts."""
    return {m.group(0) for text in texts for m in _DOTTED.finditer(text)}


def import_closure(root: str | Path, start: Iterable[str]) -> list[Path]:
    """Source files of every ``common`` module reachable from the dotted references ``start``, sorted."""
    root = Path(root)
    todo = [m for ref in start for m in _resolve(root, ref)]
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = module_file(root, name)
        if path is None:
            continue
        parent = name.rpartition(".")[0]
        if parent:
            todo.append(parent)
        todo += [m for ref in _imports(path, name) for m in _resolve(root, ref)]
    files = {module_file(root, name) for name in seen}
    files.add(root / "common" / "__init__.py")
    return sorted(p for p in files if p is not None and p.is_file())

"""Export a bundle as a self-contained directory: ``python -m common.export <bundle> DIR``.

The exported directory is an ordinary MONAI bundle that needs no checkout of
this repository: the modules of ``common`` that its configs use (found by
following imports from the configs' ``common.*`` references) are copied to
``DIR/common``, which MONAI puts on ``sys.path`` when it runs the bundle
(the bundle root is added by ``ConfigWorkflow.run``; running from inside
``DIR`` also puts it on the path). ``bundle_root`` is set to ``"."`` so that
``python -m monai.bundle run --config_file configs/train.yaml`` works from
inside ``DIR``. Trained weights in ``models/`` are copied when present.
"""

from __future__ import annotations

import argparse
import ast
import re
import shutil
import sys
from pathlib import Path

import yaml

from common.io import atomic_write_text
from common.study.runner import BUNDLE_NAMES, REPO_ROOT, bundle_dir

COMMON_ROOT = REPO_ROOT / "common"
_CONFIG_REF = re.compile(r"\bcommon(?:\.[A-Za-z_]\w*)+")


def _module_file(module: str) -> Path | None:
    """File of a dotted ``common...`` module name, or ``None`` if it names an attribute."""
    rel = Path(*module.split("."))
    for candidate in (REPO_ROOT / rel.with_suffix(".py"), REPO_ROOT / rel / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _lazy_exports(init_file: Path, table: str = "_EXPORTS") -> dict[str, str]:
    """The ``_EXPORTS`` table (public name -> module) of a package ``__init__.py``, if any; with
    ``table="_MOVED"`` the names that moved out of the package (public name -> dotted module now)."""
    for node in ast.parse(init_file.read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == table for t in node.targets):
            return ast.literal_eval(node.value)
    return {}


def _code_strings(tree: ast.AST) -> list[str]:
    """String constants of a module that code can use: not docstrings, not the ``_MOVED`` table (a moved name
    is followed only when something refers to it)."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (
            isinstance(body, list)
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
        ):
            skip.add(id(body[0].value))
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "_MOVED" for t in node.targets):
            skip.update(id(n) for n in ast.walk(node.value))
    return [
        n.value
        for n in ast.walk(tree)
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in skip
    ]


def _resolve(name: str) -> list[Path]:
    """Files needed to import ``name`` (a module or ``module.attribute``), with parent packages."""
    parts = name.split(".")
    attribute = None
    while parts and _module_file(".".join(parts)) is None:
        attribute = parts.pop()  # strip attribute names: common.metrics.volume_bias -> common.metrics
    files = [_module_file(".".join(parts[:i])) for i in range(1, len(parts) + 1)]
    if attribute and files and files[-1] is not None and files[-1].name == "__init__.py":
        module = _lazy_exports(files[-1]).get(attribute)
        if module:
            files.append(_module_file(".".join([*parts, module])))
        elif (home := _lazy_exports(files[-1], "_MOVED").get(attribute)) is not None:
            files += _resolve(home)
    return [f for f in files if f is not None]


def _imports_of(path: Path) -> set[str]:
    """``common...`` names a module imports, including lazily exported ones it names in ``_EXPORTS``."""
    source = path.read_text()
    tree = ast.parse(source, filename=str(path))
    package = ".".join(path.relative_to(REPO_ROOT).with_suffix("").parts)
    package = package.rsplit(".", 1)[0]  # the package a relative import starts from
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names if a.name.split(".")[0] == "common")
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            if base.split(".")[0] == "common":
                names.add(base)
                names.update(f"{base}.{a.name}" for a in node.names)
    names.update(ref for text in _code_strings(tree) for ref in _CONFIG_REF.findall(text))
    return names


def common_files_for(config_texts: list[str]) -> list[Path]:
    """All ``common`` files reachable from ``common.*`` references in the given config texts."""
    todo = {ref for text in config_texts for ref in _CONFIG_REF.findall(text)}
    todo.add("common")
    seen: set[Path] = set()
    while todo:
        for path in _resolve(todo.pop()):
            if path not in seen:
                seen.add(path)
                todo |= _imports_of(path)
    return sorted(seen)


def export_bundle(name: str, dest: str | Path) -> Path:
    """Write bundle ``name`` with the ``common`` modules it needs into ``dest``; return ``dest``."""
    src = bundle_dir(name)
    dest = Path(dest)
    if dest.exists() and any(dest.iterdir()):
        raise FileExistsError(f"export destination {dest} exists and is not empty")
    shutil.copytree(src, dest, dirs_exist_ok=True, ignore=shutil.ignore_patterns("eval", "__pycache__", "*.pyc"))
    config_texts = []
    for cfg in sorted((dest / "configs").glob("*.yaml")):
        text = cfg.read_text()
        config_texts.append(text)
        data = yaml.safe_load(text) or {}
        if isinstance(data, dict) and "bundle_root" in data:
            text = re.sub(r"(?m)^bundle_root:.*$", 'bundle_root: "."', text)
            atomic_write_text(cfg, text)
    for path in common_files_for(config_texts):
        target = dest / path.relative_to(REPO_ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    return dest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m common.export", description=__doc__.splitlines()[0])
    parser.add_argument("bundle", choices=BUNDLE_NAMES)
    parser.add_argument("dest", type=Path)
    args = parser.parse_args(argv)
    try:
        out = export_bundle(args.bundle, args.dest)
    except (FileExistsError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"exported {args.bundle} to {out.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

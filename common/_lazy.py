"""Lazy package exports: ``from common.metrics import volume_bias`` imports only ``common/metrics/volume.py``."""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable, Mapping
from typing import Any


def lazy_getattr(package: str, exports: Mapping[str, str]) -> Callable[[str], Any]:
    """A module-level ``__getattr__`` resolving ``exports`` (public name -> module in ``package``) on first use.

    A dotted module (``"common.transforms.flip_risk"``) marks a name that moved out of ``package``: it resolves
    there, with a ``DeprecationWarning``."""

    def __getattr__(name: str) -> Any:
        if name in exports:
            home = exports[name]
            if "." in home:  # a name that moved to another package: still importable here, with a warning
                warnings.warn(f"{package}.{name} moved to {home}.{name}", DeprecationWarning, stacklevel=2)
                return getattr(importlib.import_module(home), name)
            return getattr(importlib.import_module(f"{package}.{home}"), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__

"""Names that moved to another package stay importable from their old package, with a ``DeprecationWarning``.

A package ``__init__.py`` declares ``_MOVED = {"Name": "common.new.module"}`` beside its lazy ``_EXPORTS`` and sets
``__getattr__ = moved_getattr(__name__, _MOVED, lazy_getattr(__name__, _EXPORTS))``: the old import path keeps
working without the old package importing the new one at load time.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable, Mapping
from typing import Any


def moved_getattr(package: str, moved: Mapping[str, str], fallback: Callable[[str], Any]) -> Callable[[str], Any]:
    """A module-level ``__getattr__``: ``moved`` names (public name -> their module now) resolve there with a
    ``DeprecationWarning``; every other name goes to ``fallback``."""

    def __getattr__(name: str) -> Any:
        if name in moved:
            warnings.warn(f"{package}.{name} moved to {moved[name]}.{name}", DeprecationWarning, stacklevel=2)
            return getattr(importlib.import_module(moved[name]), name)
        return fallback(name)

    return __getattr__

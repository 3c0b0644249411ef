"""Field checks shared by the embedded-data configs (:class:`~common.data.MNIPopulationConfig`,
:class:`~common.data.EchoPhantomConfig`, :class:`~common.data.shortcut_phantom.ShortcutPhantomConfig`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["require"]


def require(config: Any, names: Iterable[str], ok: Callable[[Any], bool], requirement: str) -> None:
    """Raise ``ValueError("<Config>.<name> must be <requirement>, got <value>")`` for the first field of
    ``names`` whose value fails ``ok``."""
    for name in names:
        value = getattr(config, name)
        if not ok(value):
            raise ValueError(f"{type(config).__name__}.{name} must be {requirement}, got {value!r}")

"""One clear line for bad input on the command line, instead of a chained traceback.

``python -m monai.bundle run`` wraps an error raised inside a config expression in
``RuntimeError("Failed to evaluate ConfigExpression ...")``, so a bad datalist ends the run with a long chained
traceback whose last line does not say what is wrong. :func:`install_input_error_hook` (first entry of a bundle's
``initialize``) installs a ``sys.excepthook`` that, when an uncaught exception has a
:class:`common.data.DatalistError` anywhere in its cause chain, prints only ``error: <that message>`` (every
problem, one line each, each naming its file) and lets Python exit with status 1. Other errors, and callers that
catch exceptions in-process (``monai.bundle.run`` in a notebook or a test), are not affected. Set
``BUNDLE_TRACEBACK=1`` to get the full traceback anyway.
"""

from __future__ import annotations

import os
import sys
from types import TracebackType

__all__ = ["install_input_error_hook", "input_error_in_chain"]

INPUT_ERROR_NAMES = ("DatalistError",)


def input_error_in_chain(exc: BaseException | None) -> BaseException | None:
    """The first exception in ``exc``'s ``__cause__`` / ``__context__`` chain that is a bad-input error, or None."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if any(c.__name__ in INPUT_ERROR_NAMES for c in type(exc).__mro__):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def _hook(previous):
    def hook(exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        found = input_error_in_chain(exc)
        if found is None or os.environ.get("BUNDLE_TRACEBACK"):
            previous(exc_type, exc, tb)
            return
        print(f"error: {found}", file=sys.stderr, flush=True)

    hook.previous = previous  # type: ignore[attr-defined]
    return hook


def install_input_error_hook() -> None:
    """Install the hook once per process (idempotent); returns ``None`` so a config expression can call it."""
    if getattr(sys.excepthook, "previous", None) is None:
        sys.excepthook = _hook(sys.excepthook)

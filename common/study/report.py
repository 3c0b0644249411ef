"""Small helpers for the studies' ``report.md`` and figures."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], floatfmt: str = ".3f") -> str:
    """A GitHub-flavoured markdown table; floats formatted with ``floatfmt``, ``None`` as ``-``."""

    def cell(v: Any) -> str:
        if v is None:
            return "-"
        if isinstance(v, float):
            return format(v, floatfmt)
        return str(v)

    lines = ["| " + " | ".join(map(str, headers)) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def use_agg_backend() -> None:
    """Select matplotlib's file-only backend (no display on servers and CI)."""
    import matplotlib

    matplotlib.use("Agg")


def save_figure(fig, path, dpi: int = 110) -> None:
    """Write a matplotlib figure as PNG atomically (temporary name, then rename)."""
    from common.io import atomic_write

    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight"))

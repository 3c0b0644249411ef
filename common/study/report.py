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


def report_header(record: dict, title: str) -> list[str]:
    """The opening lines every study report shares: what ran, on which code, the command, and the claims."""
    from common.study.engine import format_claim

    seeds = record["seeds"]
    n_settings = len({r["name"] for r in record["runs"]})
    commit = (record.get("git") or {}).get("commit") or "unknown"
    lines = [
        f"# {title}",
        "",
        f"Profile `{record['profile']}`, seeds {', '.join(map(str, seeds))}: {n_settings} settings x "
        f"{len(seeds)} seeds = {len(record['runs'])} bundle runs, {record['seconds']:.0f} s wall from the first "
        f"run's start to the last one's end ({record['run_seconds']:.0f} s summed over runs). Code fingerprint `{record['code_fingerprint']}`, "
        f"commit `{commit[:10]}`. Produced by:",
        "",
        f"    {record['command']}",
        "",
        "## Claims",
        "",
    ]
    lines += [f"- {format_claim(c)}" for c in record["claims"]] or ["(none)"]
    lines += [
        "",
        f"Tables give the median over the {len(seeds)} seed(s) of each number; figures show seed {seeds[0]}.",
        "",
    ]
    return lines

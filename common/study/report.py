"""Small helpers for the studies' ``report.md`` and figures."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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


def fmt(value: Any, spec: str = ".3f") -> str:
    """``value`` formatted with ``spec``; ``-`` for ``None``."""
    return "-" if value is None else format(value, spec)


def seed_cell(median: Any, per_seed: Sequence[Any], spec: str = ".3f", scale: float = 1.0, unit: str = "") -> str:
    """The "median (each seed)" cell every study table uses: ``0.812 (0.800 / 0.810 / 0.830)``; values times
    ``scale`` with ``unit`` appended (``+4.2% (+3.9% / ...)``)."""
    show = lambda v: "-" if v is None else format(scale * v, spec) + unit  # noqa: E731
    return f"{show(median)} ({' / '.join(show(v) for v in per_seed)})"


def figure_lines(figures: Sequence[str]) -> list[str]:
    """Markdown image lines for the study's figures."""
    from pathlib import Path

    return [f"![{Path(n).name}]({n})\n" for n in figures]


def format_value(v: float | None, unit: str = "") -> str:
    """A claim's number as reports print it: ``-`` when missing, ``+x.x%`` for ``unit="%"``, else 3 digits."""
    if v is None:
        return "-"
    if unit == "%":
        return f"{100 * v:+.1f}%"
    return f"{v:.3g}"


def format_claim(claim: Mapping[str, Any]) -> str:
    """One report line: verdict, 95% interval against the margin, then the per-seed description and the text."""
    fmt = lambda v: format_value(v, claim.get("unit", ""))  # noqa: E731
    lo, hi = claim.get("ci95") or (None, None)
    seeds = ", ".join(f"{s}: {fmt(v)}" for s, v in claim["per_seed"].items())
    kind = "primary" if claim.get("primary", True) else "secondary"
    side = f"{claim.get('direction', '>')} {fmt(claim['margin'])}" if "margin" in claim else ""
    split = ""
    if claim.get("sd_within") is not None and claim.get("sd_seeds") is not None:
        scale = 100 if claim.get("unit") == "%" else 1
        sd = lambda v: f"{scale * v:.2g}{'%' if scale == 100 else ''}"  # noqa: E731
        split = (f"; sd over seeds {sd(claim['sd_seeds'])}, within a run's test set {sd(claim['sd_within'])}, "
                 f"training {sd(claim['sd_training'])}")  # fmt: skip
    return (
        f"**{claim.get('verdict', 'inconclusive')}** ({kind}; 95% interval [{fmt(lo)}, {fmt(hi)}], paper's side "
        f"{side}{split}; holds in {claim['holds_in']} of {claim['of']} seeds: {seeds}): {claim['claim']}"
        + (f" Estimand: {claim['estimand']}." if claim.get("estimand") else "")
    )


def claims_section(claims: Sequence[dict]) -> list[str]:
    """The claims as report lines, primary first, each with its verdict and interval."""
    ordered = [c for c in claims if c.get("primary", True)] + [c for c in claims if not c.get("primary", True)]
    lines = [f"- {format_claim(c)}" for c in ordered] or ["(none)"]
    n_primary = sum(1 for c in claims if c.get("primary", True))
    if any(c.get("sd_within") is not None for c in claims):
        how = ("Verdicts: a random-effects 95% interval over the seeds (Student t with seeds - 1 degrees of freedom; "
               "one seed's variance is the larger of the variance over seeds and the mean within-run variance, a "
               "bootstrap over each run's test units with every run of a seed redrawn alike; every seed draws its "
               "own data, test set and initialisation, so the spread over seeds holds both parts, and the within-run "
               "part is its floor)")  # fmt: skip
    else:
        how = ("Verdicts: a Student t 95% interval over the seeds (each seed draws its own data, test set and "
               "initialisation, so the spread over seeds holds both sampling and training variation)")  # fmt: skip
    lines += [
        "",
        f"{how}; **supported** when it lies wholly on the paper's side of the margin, **refuted** when wholly on the "
        f'other side, **inconclusive** otherwise. The {n_primary} primary claims are Holm-corrected together; "holds '
        'in k of n seeds" only describes the seeds.',
    ]
    return lines


def report_header(record: dict, title: str) -> list[str]:
    """The opening lines every study report shares: what ran, on which machine and code, the command, the claims."""
    seeds = record["seeds"]
    n_settings = len({r["name"] for r in record["runs"]})
    commit = (record.get("git") or {}).get("commit") or "unknown"
    env = record.get("environment") or {}
    numerics = env.get("numerics") or {}
    pins = ", ".join(f"`{k}={v}`" for k, v in (numerics.get("pins") or {}).items()) or "none recorded"
    threads = (record.get("profile_settings") or {}).get("settings", {}).get("num_threads")
    lines = [
        f"# {title}",
        "",
        f"Profile `{record['profile']}`, seeds {', '.join(map(str, seeds))}: {n_settings} settings x "
        f"{len(seeds)} seeds = {len(record['runs'])} bundle runs, {record['seconds']:.0f} s wall from the first "
        f"run's start to the last one's end ({record['run_seconds']:.0f} s summed over runs). Code fingerprint "
        f"`{record['code_fingerprint']}`, commit `{commit[:10]}`. Produced by:",
        "",
        f"    {record['command']}",
        "",
        f"Machine: {env.get('cpu_count', '?')} cores of {numerics.get('cpu_model') or env.get('platform', 'an unrecorded CPU')}"
        f" (highest SIMD level {numerics.get('cpu_simd') or 'unrecorded'}); Python {env.get('python', '?')}, torch "
        f"{env.get('torch', '?')}, MONAI {env.get('monai', '?')}, NumPy {env.get('numpy', '?')}; torch threads per run: "
        f"{'default' if not threads else threads}; numeric pins in every run: {pins}.",
        "",
        "## Claims",
        "",
    ]
    lines += claims_section(record["claims"])
    lines += [
        "",
        f"Tables give the median over the {len(seeds)} seed(s) of each number; figures show seed {seeds[0]}.",
        "",
    ]
    return lines


def render_report(spec, record: dict, figures: Sequence[str]) -> str:
    """A study's ``report.md``: the shared header (what ran, claims and verdicts), then the study's own sections."""
    title = spec.title + (f": {record['grid']} grid" if record.get("grid") else "")
    return (
        "\n".join(report_header(record, f"{title} ({record['profile']} profile)"))
        + "\n"
        + spec.report(record, list(figures))
    )

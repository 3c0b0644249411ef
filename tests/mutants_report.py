"""Score per module of a ``mutmut run`` (``nox -s mutants``): ``python -m tests.mutants_report [--equivalents FILE]``.

Reads the ``mutants/**/*.py.meta`` files that mutmut 3 leaves in the folder it ran in. A mutant is *killed* when a
test failed (or timed out) with it, *survived* when every test passed, *no tests* when no selected test ran its
function. Mutants listed as equivalent in ``tests/MUTANTS.md`` (a line starting with ``- `name` ``) behave exactly
like the original code, so no test can kill them: they are left out of the adjusted score.

    score     = killed / (killed + survived + no tests)
    adjusted  = killed / (killed + survived + no tests - equivalent)
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import defaultdict
from pathlib import Path

MODULES = ("common/metrics", "common/transforms", "common/networks/pooling.py")

KILLED = {1, 3, 24, -24, 36, 152, 255}  # a failing test, a pytest internal error, or a timeout
SURVIVED = {0}
NO_TESTS = {5, 33}


def module_of(path: str) -> str:
    for m in MODULES:
        if path == m or path.startswith(m + "/"):
            return m
    return path


def load_results(root: Path) -> dict[str, int | None]:
    """``{mutant name: exit code}`` over every ``mutants/**/*.py.meta`` under ``root``."""
    results: dict[str, int | None] = {}
    for meta in sorted((root / "mutants").rglob("*.py.meta")):
        results.update(json.loads(meta.read_text())["exit_code_by_key"])
    return results


def load_equivalents(path: Path | None) -> dict[str, str]:
    """``{mutant name: one-line reason}`` from the equivalents list of ``tests/MUTANTS.md``."""
    if path is None or not path.is_file():
        return {}
    found = {}
    for line in path.read_text().splitlines():
        m = re.match(r"^\s*[-*] `([^`\s]+__mutmut_\d+)`:?\s*(.*)$", line)
        if m:
            found[m.group(1)] = m.group(2)
    return found


def mutant_path(name: str) -> str:
    """``common.metrics.flip.x__fractions__mutmut_3`` -> ``common/metrics/flip.py``."""
    module = name.rsplit(".", 1)[0]
    return module.replace(".", "/") + ".py"


def summarize(results: dict[str, int | None], equivalents: dict[str, str]) -> dict[str, dict]:
    statuses = ("killed", "survived", "no_tests", "other", "not_checked", "equivalent")
    rows: dict[str, dict] = defaultdict(lambda: dict.fromkeys(statuses, 0))
    survivors: dict[str, list[str]] = defaultdict(list)
    for name, code in results.items():
        if code is None:
            status = "not_checked"
        elif code in KILLED:
            status = "killed"
        elif code in SURVIVED:
            status = "survived"
        elif code in NO_TESTS:
            status = "no_tests"
        else:
            status = "other"
        for key in {module_of(mutant_path(name)), mutant_path(name)}:
            rows[key][status] += 1
            if status in ("survived", "no_tests") and name in equivalents:
                rows[key]["equivalent"] += 1
        if status in ("survived", "no_tests", "other"):
            survivors[module_of(mutant_path(name))].append(name)
    out = {}
    for key, r in rows.items():
        checked = r["killed"] + r["survived"] + r["no_tests"] + r["other"]
        adjusted = checked - r["equivalent"]
        out[key] = {
            **r,
            "checked": checked,
            "score": r["killed"] / checked if checked else None,
            "adjusted_score": r["killed"] / adjusted if adjusted else None,
            "survivors": sorted(survivors.get(key, [])),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("."), help="folder mutmut ran in (holds mutants/)")
    parser.add_argument("--equivalents", type=Path, default=Path("tests/MUTANTS.md"))
    parser.add_argument("--json", type=Path, help="also write the summary as JSON here")
    args = parser.parse_args(argv)
    results = load_results(args.root)
    if not results:
        print(f"no mutmut results under {args.root / 'mutants'}: run `mutmut run` first", file=sys.stderr)
        return 1
    equivalents = load_equivalents(args.equivalents)
    summary = summarize(results, equivalents)
    header = f"{'module':<44}{'killed':>8}{'survived':>10}{'no tests':>10}{'equiv.':>8}{'unchecked':>11}"
    print(header + f"{'score':>9}{'adjusted':>10}")
    for key in sorted(summary, key=lambda k: (module_of(k), k != module_of(k), k)):
        r = summary[key]
        label = key if key in MODULES else "  " + key.rsplit("/", 1)[-1]
        score = "-" if r["score"] is None else f"{100 * r['score']:.1f}%"
        adjusted = "-" if r["adjusted_score"] is None else f"{100 * r['adjusted_score']:.1f}%"
        print(
            f"{label:<44}{r['killed']:>8}{r['survived']:>10}{r['no_tests']:>10}{r['equivalent']:>8}"
            f"{r['not_checked']:>11}{score:>9}{adjusted:>10}"
        )
    for module in MODULES:
        names = summary.get(module, {}).get("survivors", [])
        open_names = [n for n in names if n not in equivalents]
        if open_names:
            print(f"\n{module}: {len(open_names)} surviving mutants not listed as equivalent (mutmut show NAME):")
            print("\n".join(f"  {n}" for n in open_names))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Run the side-by-side benchmarks: ``python -m tests.benchmarks [group ...]``.

Each ``bench_<group>.py`` module here has a ``main()`` that prints its table of
ratios measured in one run. Benchmarks are not tests: nothing here asserts a time.
"""

import importlib
import pkgutil
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    here = Path(__file__).parent
    groups = sorted(m.name[len("bench_") :] for m in pkgutil.iter_modules([str(here)]) if m.name.startswith("bench_"))
    chosen = argv or groups
    unknown = set(chosen) - set(groups)
    if unknown:
        print(f"unknown benchmark group(s) {sorted(unknown)}; known: {groups}", file=sys.stderr)
        return 2
    for group in chosen:
        print(f"\n## {group}\n", flush=True)
        importlib.import_module(f"tests.benchmarks.bench_{group}").main()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

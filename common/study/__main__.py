"""``python -m common.study <bundle|all> --profile {smoke,quick,full} --output DIR``.

Each bundle's study lives in ``common/study/<bundle>.py`` and exposes
``run_study(profile, output_dir, seed) -> Path`` returning its ``report.md``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

from common.study.runner import BUNDLE_NAMES, BundleRunError

PROFILES = ("smoke", "quick", "full")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m common.study", description=__doc__)
    parser.add_argument("bundle", choices=[*BUNDLE_NAMES, "all"])
    parser.add_argument("--profile", choices=PROFILES, default="quick")
    parser.add_argument("--output", type=Path, default=Path("runs"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    names = BUNDLE_NAMES if args.bundle == "all" else (args.bundle,)
    reports = []
    for name in names:
        module = importlib.import_module(f"common.study.{name}")
        t0 = time.perf_counter()
        try:
            report = module.run_study(args.profile, args.output / name, seed=args.seed)
        except (BundleRunError, ValueError, FileNotFoundError) as err:
            print(f"error: study {name} stopped: {err}", file=sys.stderr)
            return 1
        print(f"{name}: {args.profile} study finished in {time.perf_counter() - t0:.0f} s")
        reports.append(report)
    for report in reports:
        print(f"report: {Path(report).resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``python -m common.study <bundle|all> --profile {smoke,quick,full} --output DIR [--seeds 0 1 2]``.

``--power`` runs the profile on tuning seeds (default 100 101 102; seeds below 100 are refused) into
``DIR/<bundle>-tuning`` and writes ``power.json`` and ``power.md`` there: each claim's interval half-width against
the number of seeds and the test-set size (:mod:`common.study.power`).

Every folder ``bundles/<name>/`` is a bundle; its study is the ``SPEC`` (a :class:`common.study.engine.StudySpec`:
profiles, grid builder, summary, claims, report sections) in ``common/study/<name>.py``, and
:mod:`common.study.engine` runs it. Rerunning the same command reuses every finished run
whose settings and code are unchanged, so an interrupted study resumes.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from common.study import engine
from common.study.runner import BundleRunError, bundle_names, load_spec

PROFILES = ("smoke", "quick", "full")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m common.study", description=__doc__)
    parser.add_argument("bundle", choices=[*bundle_names(), "all", "published"],
                        help="a bundle, every bundle (all), or every published study: each bundle's quick profile and "
                        "each named grid with a committed record (published)")  # fmt: skip
    parser.add_argument("--profile", choices=PROFILES, default="quick")
    parser.add_argument("--output", type=Path, default=Path("runs"))
    parser.add_argument(
        "--seeds", type=int, nargs="+", help="seeds to repeat every setting with (default: smoke 0; quick, full 0 1 2)"
    )
    parser.add_argument("--seed", type=int, help="a single seed (same as --seeds N)")
    parser.add_argument("--executor", choices=("local", "ray"), default="local")
    parser.add_argument("--address", help="Ray cluster address for --executor ray (default: auto)")
    parser.add_argument("--jobs", type=int, help="local runs side by side (default: the profile's)")
    parser.add_argument(
        "--grid",
        help="a study's named grid instead of its profile's default (e.g. segmentation_resolution_bias: pooling)",
    )
    parser.add_argument("--power", action="store_true",
                        help="size the study: run it on tuning seeds (100 and up) and project each claim's interval "
                        "half-width against the number of seeds")  # fmt: skip
    args = parser.parse_args(argv)
    if args.seed is not None and args.seeds:
        parser.error("give --seeds or --seed, not both")
    seeds = [args.seed] if args.seed is not None else args.seeds
    if args.power:
        seeds = seeds or [100, 101, 102]
        if min(seeds) < 100 or args.bundle in ("all", "published"):
            parser.error("--power: one bundle, on tuning seeds 100 and up (published seeds never size a study)")

    names = bundle_names() if args.bundle in ("all", "published") else (args.bundle,)
    if args.bundle == "published":
        from common.study.render import load_grid_results

        if args.profile != "quick" or args.grid:
            parser.error("published: the quick profile of every bundle and its published grids (no --grid)")
        studies = [(n, None) for n in names]
        studies += [(n, g) for n in names for g in load_spec(n).grids if load_grid_results(n, g) is not None]
    else:
        studies = [(n, args.grid) for n in names]
    reports = []
    for name, grid in studies:
        t0 = time.perf_counter()
        try:
            report = engine.run_study(
                load_spec(name), args.profile, _study_dir(args, name, grid), seeds,
                executor=args.executor, address=args.address, jobs=args.jobs, grid=grid,
            )  # fmt: skip
        except (BundleRunError, ValueError, FileNotFoundError, RuntimeError) as err:
            print(f"error: study {name} stopped: {err}", file=sys.stderr)
            return 1
        print(f"{name}: {args.profile} study finished in {time.perf_counter() - t0:.0f} s")
        reports.append(report)
        if args.power:
            reports.append(_write_power(load_spec(name), Path(report).parent, grid))
    for report in reports:
        print(f"report: {Path(report).resolve()}")
    return 0


def _study_dir(args, name: str, grid: str | None) -> Path:
    return args.output / (f"{name}-{grid}" if grid else name) if not args.power else args.output / f"{name}-tuning"


def _test_set(record: dict) -> dict:
    """The profile's test-set settings the power table was measured at (``num_test``-like keys, and ``num_slices``,
    whose last entry is the SR study's test slices)."""
    settings = (record.get("profile_settings") or {}).get("settings") or {}
    return {k: v for k, v in settings.items() if "test" in k or k == "num_slices"}


def _write_power(spec, folder: Path, grid: str | None) -> Path:
    """``power.json`` and ``power.md`` from the tuning study's ``results.json`` in ``folder``."""
    import json

    from common.io import atomic_write_text
    from common.study.power import power_table, render_power
    from common.study.render import dump_json

    record = json.loads((folder / "results.json").read_text())
    claims = spec.claims_for(grid or spec.profile(record["profile"]).grid)
    rows = power_table(claims, record["summary"]["per_seed"], within=record.get("within_run_sd"))
    seeds = " ".join(map(str, record["seeds"]))
    command = f"python -m common.study {spec.bundle} --profile {record['profile']} --power --output {folder.parent}"
    power = {"study": spec.bundle, "profile": record["profile"], "seeds": record["seeds"],
             "command": f"{command} --seeds {seeds}",
             "git": record.get("git"), "code_fingerprint": record.get("code_fingerprint"),
             "test_set": _test_set(record), "claims": rows}  # fmt: skip
    atomic_write_text(folder / "power.json", dump_json(power))
    atomic_write_text(folder / "power.md", render_power(rows, record["seeds"]))
    return folder / "power.md"


if __name__ == "__main__":
    sys.exit(main())

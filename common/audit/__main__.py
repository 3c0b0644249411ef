"""``python -m common.audit DATALIST --output DIR --by ATTR [--by ATTR ...] [options]``: bias audit of a model.

Two ways to get the predictions:

- in the datalist: every entry carries ``prediction`` (a segmentation file of any tool, on the image's grid);
  no model is run;
- ``--bundle DIR``: a MONAI bundle (this collection's, an exported one or a model-zoo-format one) whose
  ``configs/inference.json`` / ``.yaml`` segments the entries without ``prediction``; predictions are written to
  ``<output>/predictions/`` and reused by a rerun (a killed audit resumes).

Writes ``results.json``, ``report.md`` and PNG figures into ``--output``. Exit status 1 with every problem of the
datalist (one line each) when it is not usable.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from common.audit.cohort import parse_labels
from common.data.datalist import DatalistError


def _override(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--override {text!r} is not KEY=VALUE")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m common.audit", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("datalist", type=Path, help="decathlon-style JSON: a list of entries or an object of splits")
    p.add_argument("--output", type=Path, required=True, help="folder for results.json, report.md, figures")
    p.add_argument("--by", action="append", required=True, metavar="ATTR", help="attribute to group by (repeatable)")
    p.add_argument("--bins", type=int, metavar="K", help="also cut numeric attributes into K quantile groups")
    p.add_argument(
        "--categorical", action="append", default=[], metavar="ATTR", help="treat a numeric attribute as categorical"
    )
    p.add_argument("--labels", help="structure names, e.g. 1=lv_cavity,2=myocardium (default: label_<value>)")
    p.add_argument("--bundle", type=Path, metavar="DIR", help="MONAI bundle to predict entries without 'prediction'")
    p.add_argument(
        "--override",
        action="append",
        default=[],
        type=_override,
        metavar="KEY=VALUE",
        help="override a bundle config value (JSON or string), e.g. ckpt_path=/models/model.pt (repeatable)",
    )
    p.add_argument("--split", help="audit only this split of the datalist (default: every list in it)")
    p.add_argument("--dataset-dir", type=Path, help="base of relative paths (default: the datalist's folder)")
    p.add_argument("--n-resamples", type=int, default=2000, help="bootstrap resamples (default 2000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.add_argument("--no-surface", action="store_true", help="skip the surface distance (slow on large volumes)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        labels = parse_labels(args.labels)
    except ValueError as e:
        parser.error(str(e))
    if args.bins is not None and args.bins < 2:
        parser.error("--bins must be at least 2")
    if args.bundle is not None and not args.bundle.is_dir():
        parser.error(f"--bundle {args.bundle}: not a folder")
    from common.audit.run import run_audit

    try:
        run_audit(
            args.datalist,
            args.output,
            args.by,
            bundle=args.bundle,
            labels=labels,
            split=args.split,
            dataset_dir=args.dataset_dir,
            bins=args.bins,
            categorical=args.categorical,
            overrides=dict(args.override),
            n_resamples=args.n_resamples,
            seed=args.seed,
            surface=not args.no_surface,
            progress=not args.no_progress,
            command=shlex.join(["python", "-m", "common.audit", *argv]),
        )
    except DatalistError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {args.output / 'report.md'} and {args.output / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``python -m common.audit DATALIST --output DIR --by ATTR [--by ATTR ...] [options]``: bias audit of a model.

``DATALIST`` is a decathlon-style JSON file, or a BIDS root folder whose ``participants.tsv`` lists the
participants and their attributes (``--by`` defaults to all its columns), with ``--prediction-pattern`` (and
``--label-pattern``) naming each participant's files under ``--derivatives``, e.g.
``seg/{participant_id}/anat/{participant_id}_dseg.nii.gz``.

Two ways to get the predictions:

- in the datalist: every entry carries ``prediction`` (a segmentation file of any tool, on the image's grid);
  no model is run;
- ``--bundle DIR``: a MONAI bundle (this collection's, an exported one or a model-zoo-format one) whose
  ``configs/inference.json`` / ``.yaml`` segments the entries without ``prediction``; predictions are written to
  ``<output>/predictions/`` and reused by a rerun (a killed audit resumes).

``--keep-probabilities`` (with ``--bundle``; off by default, since it runs the network a second time) keeps the
network's softmax of every case the bundle predicts and reports calibration by group from it (expected calibration
error, its tested gap, reliability diagrams), as for probability-map predictions; no probability map is written.

``--shortcut ATTR --baseline BA_DIR [--attribute-model SA_DIR]`` (with ``--bundle``, 2-D segmentation bundles)
adds OSCAR's shortcut localisation: region-rank profiles of occlusion maps of the bundle (TS), the balanced
baseline (BA) and an attribute classifier (SA; without one, a proxy from the groups' mean images), their
correlations, the partial correlation r(TS, SA | BA) and its top regions over the cohort's mean image.

``--uncertainty {tta,mc_dropout,ensemble}`` (with ``--bundle``; an ensemble loads each ``--member CKPT`` into the
bundle's network) adds every case's 95% structure-volume interval over the samples and the mean interval width
per group.

Writes ``results.json``, ``report.md``, a self-contained ``report.html`` and PNG figures into ``--output``. Exit status 1 with every problem of the
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
    p.add_argument(
        "datalist", type=Path, help="decathlon-style JSON (a list of entries or an object of splits) or a BIDS root"
    )
    p.add_argument("--output", type=Path, required=True, help="folder for results.json, report.md/.html, figures")
    p.add_argument("--by", action="append", default=[], metavar="ATTR", help="attribute to group by (repeatable)")
    p.add_argument("--intersect", action="store_true", help="also compare the combinations of the --by groups")
    p.add_argument("--control", metavar="ATTR", help="stratify every comparison by this attribute (e.g. site)")
    p.add_argument(
        "--min-group-size", type=int, default=5, metavar="N", help="compare only groups of at least N cases (5)"
    )
    p.add_argument(
        "--correction",
        choices=["holm", "fdr_bh"],
        default="holm",
        help="multiple-test correction over every test of the report: holm (family-wise, default) or fdr_bh",
    )
    bids = p.add_argument_group("BIDS input (DATALIST is a BIDS root folder)")
    bids.add_argument("--derivatives", type=Path, metavar="DIR", help="base of the patterns (default ROOT/derivatives)")
    bids.add_argument(
        "--prediction-pattern",
        metavar="PATTERN",
        help="prediction file per participant, e.g. "
        "pred/{participant_id}_dseg.nii.gz ({subject} is the id without 'sub-'; * allowed)",
    )
    bids.add_argument("--label-pattern", metavar="PATTERN", help="manual label file per participant (same form)")
    bids.add_argument("--image-pattern", metavar="PATTERN", help="image per participant, relative to the BIDS root")
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
    p.add_argument(
        "--keep-probabilities",
        action="store_true",
        help="with --bundle: also run its network for its softmax (mapped back to the image grid) and report "
        "calibration per group (ECE, its tested gap, reliability diagrams) as for probability-map predictions",
    )
    shortcut = p.add_argument_group("shortcut localisation (OSCAR; 2-D segmentation bundles)")
    shortcut.add_argument(
        "--shortcut",
        metavar="ATTR",
        help="compare region-rank profiles of occlusion maps of the --bundle (TS), a --baseline (BA) and an "
        "attribute model (SA) for this attribute",
    )
    shortcut.add_argument("--baseline", type=Path, metavar="DIR", help="balanced baseline bundle (BA)")
    shortcut.add_argument(
        "--attribute-model",
        type=Path,
        metavar="DIR",
        help="classifier bundle predicting ATTR (SA); without it SA is a proxy: the region-wise absolute "
        "difference of the groups' mean images",
    )
    p.add_argument(
        "--uncertainty",
        choices=["tta", "mc_dropout", "ensemble"],
        help="also report per-case volume intervals (2.5-97.5 percentiles over samples of the --bundle's network) "
        "and their mean width per group",
    )
    p.add_argument(
        "--member",
        action="append",
        default=[],
        type=Path,
        metavar="CKPT",
        help="ensemble member: a checkpoint for the --bundle's network (repeat: at least 2 for --uncertainty ensemble)",
    )
    p.add_argument(
        "--uncertainty-samples", type=int, default=20, metavar="N", help="samples per case for tta/mc_dropout (20)"
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
    if args.min_group_size < 2:
        parser.error("--min-group-size must be at least 2")
    if args.shortcut is not None and (args.bundle is None or args.baseline is None):
        parser.error("--shortcut ATTR compares the --bundle DIR (TS) with a --baseline DIR (BA): give both")
    if args.shortcut is None and (args.baseline is not None or args.attribute_model is not None):
        parser.error("--baseline and --attribute-model are for --shortcut ATTR")
    for option, folder in (("--baseline", args.baseline), ("--attribute-model", args.attribute_model)):
        if folder is not None and not folder.is_dir():
            parser.error(f"{option} {folder}: not a folder")
    if args.keep_probabilities and args.bundle is None:
        parser.error("--keep-probabilities keeps a bundle network's softmax: give --bundle DIR")
    if args.uncertainty is not None and args.bundle is None:
        parser.error("--uncertainty samples a model: give --bundle DIR")
    if args.uncertainty == "ensemble" and len(args.member) < 2:
        parser.error("--uncertainty ensemble needs at least two --member CKPT checkpoints")
    if args.member and args.uncertainty != "ensemble":
        parser.error("--member is for --uncertainty ensemble")
    if args.uncertainty_samples < 2:
        parser.error("--uncertainty-samples must be at least 2")
    source = args.datalist
    if args.datalist.is_dir():
        from common.audit.bids import BidsInput

        source = BidsInput(
            args.datalist, args.prediction_pattern, args.label_pattern, args.image_pattern, args.derivatives
        )
    elif any(v is not None for v in (args.prediction_pattern, args.label_pattern, args.image_pattern)):
        parser.error(f"{args.datalist}: the --*-pattern options need a BIDS root folder as DATALIST")
    elif not args.by:
        parser.error("--by ATTR is required with a datalist (a BIDS root uses its participants.tsv columns)")
    from common.audit.run import run_audit

    try:
        run_audit(
            source,
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
            intersect=args.intersect,
            control=args.control,
            min_group_size=args.min_group_size,
            correction=args.correction,
            uncertainty=args.uncertainty,
            members=args.member,
            uncertainty_samples=args.uncertainty_samples,
            keep_probabilities=args.keep_probabilities,
            shortcut=args.shortcut,
            baseline=args.baseline,
            attribute_model=args.attribute_model,
        )
    except DatalistError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {args.output / 'report.html'}, {args.output / 'report.md'} and {args.output / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

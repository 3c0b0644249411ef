"""Tuning-seed experiment: group L's appearance in the segmentation study (``contrast_l``), never the published seeds.

``python -m tests.tuning.seg_group_model [--output DIR] [--seeds 100 101 102]`` runs the quick profile's approach
grid (without the control arm) once per named ``contrast_l`` preset (``inverted``, the default, and ``reduced``)
on tuning seeds through the study engine (runs are reused when their settings and code are unchanged), and
writes ``DIR/group_model.json``: per preset, the study's claims and, per seed and as medians, group L's
grey-matter volume bias, grey-matter Dice and the group AUC of every approach.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from common.study import engine
from common.study import segmentation_resolution_bias as seg
from common.study.engine import StudySpec, code_fingerprint, git_commit

PRESETS = ("inverted", "reduced")
TUNING_SEEDS = (100, 101, 102)


def preset_spec(contrast: str, spec: StudySpec = seg.SPEC) -> StudySpec:
    """``spec`` whose quick profile has ``contrast_l=contrast`` and no control arm (a new spec; ``spec`` and its
    profiles are left as they are)."""
    quick = spec.profiles["quick"]
    preset = dataclasses.replace(
        quick, settings={**quick.settings, "contrast_l": contrast}, axes={**quick.axes, "control": False}
    )
    return dataclasses.replace(spec, profiles={**spec.profiles, "quick": preset})


def run_preset(contrast: str, seeds, output: Path) -> Path:
    """The quick approach grid with ``contrast_l=contrast`` over ``seeds`` into ``output/contrast``."""
    engine.run_study(preset_spec(contrast), "quick", output / contrast, seeds=list(seeds))
    return output / contrast / "results.json"


def summarize(results: dict) -> dict:
    """The claims and the per-seed and median group-L numbers of one preset's ``results.json``."""
    s = results["summary"]
    keys = ("volume_bias_L", "dice_L", "auc")
    return {
        "claims": [{k: c[k] for k in ("claim", "holds_in", "of", "median")} for c in results.get("claims", [])],
        "median": {k: s[k] for k in keys},
        "per_seed": {seed: {k: v[k] for k in keys} for seed, v in s["per_seed"].items()},
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.tuning.seg_group_model", description=__doc__)
    parser.add_argument("--output", type=Path, default=Path("runs/tuning_group_model"))
    parser.add_argument("--seeds", type=int, nargs="+", default=list(TUNING_SEEDS))
    args = parser.parse_args(argv)
    if set(args.seeds) & {0, 1, 2}:
        parser.error("seeds 0, 1 and 2 are the published seeds: tune on 100 and up")
    report = {
        "command": "python -m tests.tuning.seg_group_model",
        "seeds": args.seeds,
        "git": git_commit(),
        "code_fingerprint": code_fingerprint(bundle=seg.BUNDLE),
        "presets": {c: summarize(json.loads(run_preset(c, args.seeds, args.output).read_text())) for c in PRESETS},
    }
    (args.output / "group_model.json").write_text(json.dumps(report, indent=1))
    print(json.dumps({c: v["claims"] for c, v in report["presets"].items()}, indent=1))
    print(f"written: {args.output / 'group_model.json'}")


if __name__ == "__main__":
    main()

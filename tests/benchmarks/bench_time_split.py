"""Where a study's run time goes: start-up, training, validation and test, from the runs' own logs.

``python -m tests.benchmarks.bench_time_split DIR [DIR ...]`` reads every ``DIR/runs/<setting>/seed<k>/run.log``
(ignite's "Engine run finished. Time taken" lines) and ``run_record.json`` (the run's wall seconds) of a finished
study folder (e.g. ``runs/segmentation_resolution_bias``) and prints, per setting, the median over seeds of:

- training: the trainer's run minus the validations inside it;
- validation: every evaluator run that finished while the trainer ran;
- test: the evaluator runs after the trainer finished (the evaluation of ``evaluate.yaml``);
- start-up and the rest: the run's wall seconds minus the three (process start, imports, data checks, writing).

``python -m tests.benchmarks time_split`` does the same for the folders in ``$STUDY_DIRS`` (colon-separated).
A benchmark, not a test: nothing here asserts a time.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from statistics import median

_FINISHED = re.compile(r"ignite\.engine\.engine\.(\w+) - INFO - Engine run finished\. Time taken: (\d+):(\d+):([\d.]+)")


def split_log(text: str) -> dict[str, float]:
    """Seconds of training, validation and test in one ``run.log`` (ignite's engine lines, in order)."""
    train = validation = test = 0.0
    trainer_done = False
    for engine, h, m, s in _FINISHED.findall(text):
        seconds = int(h) * 3600 + int(m) * 60 + float(s)
        if "Trainer" in engine:
            train += seconds
            trainer_done = True
        elif trainer_done:
            test += seconds
        else:
            validation += seconds
    return {"training": max(train - validation, 0.0), "validation": validation, "test": test}


def split_run(run_dir: Path) -> dict[str, float] | None:
    """:func:`split_log` of a finished run plus ``startup_and_rest`` and ``total`` (its wall seconds)."""
    log, record = run_dir / "run.log", run_dir / "run_record.json"
    if not (log.is_file() and record.is_file()):
        return None
    total = json.loads(record.read_text()).get("seconds")
    if total is None:
        return None
    parts = split_log(log.read_text(errors="replace"))
    return {**parts, "startup_and_rest": max(total - sum(parts.values()), 0.0), "total": float(total)}


def table(study_dir: Path) -> str:
    """Markdown: per setting, the median over seeds of each part (seconds) and its share of the total."""
    rows = []
    for setting in sorted(p for p in (study_dir / "runs").glob("*") if p.is_dir()):
        splits = [s for s in (split_run(d) for d in sorted(setting.glob("seed*"))) if s]
        if not splits:
            continue
        med = {k: median(s[k] for s in splits) for k in splits[0]}
        cells = [
            f"{med[k]:.1f} ({med[k] / med['total']:.0%})"
            for k in ("startup_and_rest", "training", "validation", "test")
        ]
        rows.append(f"| {setting.name} | {len(splits)} | " + " | ".join(cells) + f" | {med['total']:.1f} |")
    head = "| setting | seeds | start-up and rest, s | training, s | validation, s | test, s | total, s |\n"
    return head + "|---|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> None:
    dirs = argv if argv else [d for d in os.environ.get("STUDY_DIRS", "").split(":") if d]
    if not dirs:
        print("give study folders (DIR/runs/<setting>/seed<k>/run.log), or STUDY_DIRS=dir1:dir2")
        return
    for d in dirs:
        print(f"\n### {d}\n\n" + table(Path(d)))


if __name__ == "__main__":
    main(sys.argv[1:])

"""Published results, rendered from committed results files: ``python -m common.study.render [--check]``.

Each bundle's quick-study ``results.json`` and figures are committed under ``bundles/<name>/docs/results/``.
The results section of ``bundles/<name>/docs/README.md`` and the quick-results section of the top-level
``README.md`` (each between ``<!-- results:begin -->`` and ``<!-- results:end -->``) are rendered from those
files and never typed by hand.

- ``python -m common.study.render``: rewrite the sections from the committed files.
- ``python -m common.study.render --from DIR``: first copy ``DIR/<bundle>/results.json`` and its figures
  (a finished ``python -m common.study all --profile quick --output DIR``) into ``docs/results``.
  A named grid's output there (``DIR/<bundle>-<grid>``, e.g. the segmentation study's ``pooling``) is copied
  to ``docs/results/<grid>.json`` and rendered between ``<!-- <grid>:begin -->`` and ``<!-- <grid>:end -->``.
- ``python -m common.study.render --convergence-from DIR``: first copy ``DIR/<bundle>/convergence.{json,png}``
  (``python -m tests.benchmarks convergence`` with ``BENCH_CONVERGENCE_OUT=DIR``) into ``docs/results``; the
  bundle docs' section between ``<!-- convergence:begin -->`` and ``<!-- convergence:end -->`` is rendered from
  the committed ``convergence.json``.
- ``python -m common.study.render --check``: exit 1 when a section differs from its rendering, or when a
  committed file was made by other code than the working tree's (its code fingerprint is stale).
"""

from __future__ import annotations

import argparse
import importlib
import json
import shutil
import statistics
import sys
from pathlib import Path

from common.io import atomic_write_text
from common.study.engine import code_fingerprint, format_claim
from common.study.runner import BUNDLE_NAMES, REPO_ROOT

BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
CONVERGENCE_BEGIN, CONVERGENCE_END = "<!-- convergence:begin -->", "<!-- convergence:end -->"
GROUP_MODEL_BEGIN, GROUP_MODEL_END = "<!-- group-model:begin -->", "<!-- group-model:end -->"
SR_COLLAPSE_BEGIN, SR_COLLAPSE_END = "<!-- sr-collapse:begin -->", "<!-- sr-collapse:end -->"
NOTE = "<!-- rendered by `python -m common.study.render` from docs/results/quick.json; do not edit by hand -->"
TITLES = {
    "segmentation_resolution_bias": "Segmentation resolution bias",
    "sr_degradation_bias": "Super-resolution degradation bias",
    "label_error_refurbishment": "Label errors and refurbishment",
    "shortcut_label_flips": "Shortcut learning and label flips",
}


def results_dir(bundle: str, root: Path = REPO_ROOT) -> Path:
    return root / "bundles" / bundle / "docs" / "results"


def load_results(bundle: str, root: Path = REPO_ROOT) -> dict | None:
    """The committed quick-study record of ``bundle``, or ``None`` when none is committed."""
    path = results_dir(bundle, root) / "quick.json"
    return json.loads(path.read_text()) if path.is_file() else None


# Named grids published besides a bundle's quick study (``python -m common.study <bundle> --grid NAME``, which
# writes ``DIR/<bundle>-<grid>``): committed as ``docs/results/<grid>.json`` with figures in ``docs/results/<grid>/``
# and rendered between ``<!-- <grid>:begin -->`` and ``<!-- <grid>:end -->`` in the bundle docs.
NAMED_GRIDS = {"segmentation_resolution_bias": ("pooling",)}


def named_grids(bundle: str) -> tuple[str, ...]:
    return NAMED_GRIDS.get(bundle, ())


def load_grid_results(bundle: str, grid: str, root: Path = REPO_ROOT) -> dict | None:
    """The committed record of a named grid (``docs/results/<grid>.json``), or ``None``."""
    path = results_dir(bundle, root) / f"{grid}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def grid_markers(grid: str) -> tuple[str, str]:
    return f"<!-- {grid}:begin -->", f"<!-- {grid}:end -->"


def render_bundle_section(bundle: str, record: dict | None, figure_dir: str = "results") -> str:
    """The bundle docs' results section: the study's report, headings two levels down, figures in ``figure_dir``."""
    if record is None:
        return "No committed quick-study results yet (`python -m common.study.render --from DIR`)."
    module = importlib.import_module(f"common.study.{bundle}")
    text = module.render_report(record, [f"{figure_dir}/{f}" for f in record.get("figures", [])])
    lines = [("##" + line) if line.startswith("#") else line for line in text.splitlines()]
    return "\n".join(line.rstrip() for line in lines).strip()


def render_readme_section(records: dict[str, dict | None]) -> str:
    """The top-level README's quick-results section: per study, its command, run time and claims."""
    out = []
    for bundle, record in records.items():
        out.append(f"### {TITLES[bundle]}")
        out.append("")
        if record is None:
            out += ["No committed quick-study results yet.", ""]
            continue
        commit = (record.get("git") or {}).get("commit") or "unknown"
        out += [
            f"`{record['command']}`: {len(record['runs'])} runs, {record['seconds'] / 60:.0f} min wall on "
            f"{record['environment']['cpu_count']} CPUs (code fingerprint `{record['code_fingerprint']}`, "
            f"commit `{commit[:10]}`). Full tables and figures: "
            f"[bundles/{bundle}/docs/README.md](bundles/{bundle}/docs/README.md).",
            "",
        ]
        out += [f"- {format_claim(c)}" for c in record["claims"]]
        out.append("")
    return "\n".join(out).strip()


def _replace_section(text: str, body: str, path: Path, begin: str = BEGIN, end: str = END, note: str = NOTE) -> str:
    if begin not in text or end not in text:
        raise ValueError(f"{path}: no {begin} ... {end} section to render into")
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{begin}\n{note}\n\n{body}\n\n{end}{tail}"


def _fmt(value, spec: str = ".0f") -> str:
    return "-" if value is None else format(value, spec)


def render_convergence_section(report: dict, figure: str | None = "results/convergence.png") -> str:
    """The time-to-target table of a convergence benchmark report (``tests/benchmarks/bench_convergence.py``).

    Two recipes ``old`` and ``new`` get a ``new / old`` column; a bundle measured with its one ``current``
    recipe gets that recipe's column only. The target is relative to the first recipe's plateau.
    """
    seeds = ", ".join(map(str, report["seeds"]))
    recipes = list(report["recipes"])
    compared = recipes == ["old", "new"]
    lines = [
        f"CPU seconds of the training process until `{report['metric']}` first reaches "
        f"{report['target_fraction']:g} x the {recipes[0]} recipe's plateau, tuning seeds {seeds}: median (per seed).",
        "",
        "| case | target | "
        + " | ".join(f"{r} recipe" for r in recipes)
        + (" | new / old" if compared else "")
        + f" | test metrics, median ({' -> '.join(recipes)}) |",
        "|---|---|" + "---|" * (len(recipes) + compared + 1),
    ]
    for case, entry in report["cases"].items():
        cols = []
        for recipe in recipes:
            rec = entry["recipes"][recipe]
            each = " / ".join(_fmt(v["cpu_seconds_to_target"]) for v in rec["per_seed"].values())
            cols.append(f"{_fmt(rec['median_cpu_seconds_to_target'])} s ({each})")
        medians = [entry["recipes"][r]["median_test"] for r in recipes]
        tests = "; ".join(f"{k} " + " -> ".join(_fmt(m[k], ".3f") for m in medians) for k in medians[0])
        if compared:
            cols.append(_fmt(entry["ratio_new_over_old"], ".2f"))
        lines.append(f"| {case} | {entry['target']:.3f} | {' | '.join(cols)} | {tests} |")
    described = [
        f"{r.capitalize()} recipe: " + ", ".join(f"`{k}` {v}" for k, v in report["recipes"][r].items()) + "."
        for r in recipes
    ]
    lines += ["", " ".join(described) + " A `-` never reached the target."]
    if figure:
        lines += ["", f"![validation metric against CPU seconds]({figure})"]
    return "\n".join(lines)


def render_group_model_section(report: dict) -> str:
    """The group-model tuning table (``python -m tests.tuning.seg_group_model``): per ``contrast_l`` preset,
    group L's grey-matter volume bias and the group AUC per approach (median, then every seed), and the claims."""
    seeds = list(report["presets"][next(iter(report["presets"]))]["per_seed"])
    commit = (report.get("git") or {}).get("commit") or "?"
    lines = [
        f"Tuning seeds {', '.join(seeds)}; code fingerprint `{report['code_fingerprint']}`, commit `{commit[:10]}`. "
        f"Produced by `{report['command']}`. Median (seeds {' / '.join(seeds)}).",
        "",
        "| `contrast_l` | approach | group-L GM volume bias | group-L GM Dice | GM group AUC |",
        "|---|---|---|---|---|",
    ]

    def cell(preset: dict, key: str, approach: str, spec: str, scale: float = 1.0, unit: str = "") -> str:
        each = [preset["per_seed"][s][key].get(approach) for s in seeds]
        med = preset["median"][key].get(approach)
        show = lambda v: _fmt(None if v is None else scale * v, spec)  # noqa: E731
        return f"{show(med)}{unit} ({' / '.join(show(v) for v in each)})"

    for name, preset in report["presets"].items():
        for approach in preset["median"]["volume_bias_L"]:
            lines.append(
                f"| {name} | {approach} | {cell(preset, 'volume_bias_L', approach, '+.1f', 100, '%')} | "
                f"{cell(preset, 'dice_L', approach, '.3f')} | {cell(preset, 'auc', approach, '.2f')} |"
            )
    lines += ["", "| `contrast_l` | claim | holds in | median |", "|---|---|---|---|"]
    for name, preset in report["presets"].items():
        for c in preset["claims"]:
            claim = c["claim"].replace("|", "\\|")  # a table cell
            lines.append(f"| {name} | {claim} | {c['holds_in']}/{c['of']} | {_fmt(c['median'], '.3g')} |")
    return "\n".join(lines)


def render_sr_collapse_section(report: dict) -> str:
    """The SR collapse tuning table (``python -m tests.tuning.sr_collapse``): per candidate recipe, how many runs
    end their first epochs with no live unit in SRCNN's last hidden layer, and the validation gain over bicubic."""
    commit = (report.get("git") or {}).get("commit") or "?"
    seeds = ", ".join(str(s) for s in report["seeds"])
    lines = [
        f"Tuning seeds {seeds}, every quick training set, the first {report['epochs']} epochs of the full schedule; "
        f"code fingerprint `{report['code_fingerprint']}`, commit `{commit[:10]}`. Produced by `{report['command']}`.",
        "",
        "| recipe | runs | dead (no live unit) | at most 2 live units | live units, median [min, max] | "
        "validation gain over bicubic, median [min] |",
        "|---|---|---|---|---|---|",
    ]
    for name in dict.fromkeys(r["candidate"] for r in report["runs"]):  # in the order they ran
        runs = [r for r in report["runs"] if r["candidate"] == name]
        live = sorted(r["live_units"] for r in runs)
        gains = sorted(r["gain_db"] for r in runs)
        units = runs[0]["units"] if runs else "?"
        lines.append(
            f"| {name} | {len(runs)} | {sum(v == 0 for v in live)} | {sum(v <= 2 for v in live)} | "
            f"{statistics.median(live):g} of {units} [{live[0]}, {live[-1]}] | "
            f"{statistics.median(gains):+.2f} dB [{gains[0]:+.2f}] |"
        )
    return "\n".join(lines)


TUNING_SECTIONS = {
    "tuning_group_model.json": (render_group_model_section, GROUP_MODEL_BEGIN, GROUP_MODEL_END),
    "tuning_sr_collapse.json": (render_sr_collapse_section, SR_COLLAPSE_BEGIN, SR_COLLAPSE_END),
}
"""A tuning experiment's committed report in a bundle's ``docs/results``: its renderer and its markers."""


def rendered_documents(root: Path = REPO_ROOT) -> dict[Path, str]:
    """Every document with a results section, as it should read after rendering."""
    records = {b: load_results(b, root) for b in BUNDLE_NAMES}
    docs = {}
    for bundle, record in records.items():
        path = root / "bundles" / bundle / "docs" / "README.md"
        docs[path] = _replace_section(path.read_text(), render_bundle_section(bundle, record), path)
        convergence = results_dir(bundle, root) / "convergence.json"
        if convergence.is_file():
            note = "<!-- rendered by `python -m common.study.render` from docs/results/convergence.json -->"
            body = render_convergence_section(json.loads(convergence.read_text()))
            docs[path] = _replace_section(docs[path], body, path, CONVERGENCE_BEGIN, CONVERGENCE_END, note)
        for grid in named_grids(bundle):
            grid_record = load_grid_results(bundle, grid, root)
            if grid_record is not None:
                note = f"<!-- rendered by `python -m common.study.render` from docs/results/{grid}.json -->"
                body = render_bundle_section(bundle, grid_record, f"results/{grid}")
                docs[path] = _replace_section(docs[path], body, path, *grid_markers(grid), note)
        for name, (render, begin, end) in TUNING_SECTIONS.items():
            tuning = results_dir(bundle, root) / name
            if tuning.is_file():
                note = f"<!-- rendered by `python -m common.study.render` from docs/results/{name} -->"
                docs[path] = _replace_section(docs[path], render(json.loads(tuning.read_text())), path, begin, end, note)
    readme = root / "README.md"
    docs[readme] = _replace_section(readme.read_text(), render_readme_section(records), readme)
    return docs


def stale_results(root: Path = REPO_ROOT) -> list[str]:
    """One line per committed results file (a quick study's, a named grid's) whose code fingerprint (``common``
    and the bundle's own configs) differs from the working tree's."""
    problems = []
    for bundle in BUNDLE_NAMES:
        current = code_fingerprint(root, bundle=bundle)
        published = [(results_dir(bundle, root) / "quick.json", load_results(bundle, root), "nox -s results")]
        published += [
            (
                results_dir(bundle, root) / f"{grid}.json",
                load_grid_results(bundle, grid, root),
                f"python -m common.study {bundle} --profile quick --grid {grid} --output DIR",
            )
            for grid in named_grids(bundle)
        ]
        for i, (path, record, rerun) in enumerate(published):
            if record is None:
                if i == 0:  # every bundle publishes its quick study; a named grid is optional
                    problems.append(f"{path}: missing")
            elif record.get("code_fingerprint") != current:
                problems.append(
                    f"{path}: stale, made by code {record.get('code_fingerprint')}, the working tree is {current} "
                    f"(rerun: {rerun})"
                )
    return problems


# Per-run detail the published record leaves out (it stays in the study's own results.json and each run's
# metrics.json): every run's per-sample records and the label-error detectors' score, flag and flagged id of
# every training sample (the figures drawn from them are committed). The rest (every number the docs render)
# keeps each committed file under 1 MB.
DROPPED = (
    ("per_sample",),
    ("extra", "detection", "scores"),
    ("extra", "detection", "flags"),
    ("extra", "detection", "flagged"),
    ("_run",),  # each run's command line (the record keeps one example) and seconds (kept beside the metrics)
)


def slim_record(record: dict) -> dict:
    """``record`` without the :data:`DROPPED` per-run detail; every number the docs render is kept."""
    runs = []
    for run in record.get("runs", []):
        run = json.loads(json.dumps(run))
        for path in DROPPED:
            node = run.get("metrics", {})
            for key in path[:-1]:
                node = node.get(key, {}) if isinstance(node, dict) else {}
            if isinstance(node, dict):
                node.pop(path[-1], None)
        runs.append(run)
    return {**record, "runs": runs}


def _publish(src: Path, dest: Path, figure_dir: Path) -> None:
    """Copy the quick-profile record ``src`` to ``dest`` without the :data:`DROPPED` detail, and its figures
    into ``figure_dir``."""
    record = json.loads(src.read_text())
    if record.get("profile") != "quick":
        raise ValueError(f"{src}: profile {record.get('profile')!r}; the published results are the quick profile")
    dest.parent.mkdir(parents=True, exist_ok=True)
    if record.get("figures"):
        figure_dir.mkdir(parents=True, exist_ok=True)
    for figure in record.get("figures", []):
        shutil.copyfile(src.parent / figure, figure_dir / figure)
    # one space of indent: the committed files are read by people and diffed, and stay well under 1 MB
    atomic_write_text(dest, json.dumps(slim_record(record), indent=1) + "\n")


def import_results(source: Path, root: Path = REPO_ROOT) -> list[str]:
    """Copy ``source/<bundle>/results.json`` (as ``quick.json``) and each named grid's
    ``source/<bundle>-<grid>/results.json`` (as ``<grid>.json``, figures in ``<grid>/``), without the
    :data:`DROPPED` detail, with their figures, into each bundle's docs."""
    copied = []
    for bundle in BUNDLE_NAMES:
        dest = results_dir(bundle, root)
        src = source / bundle / "results.json"
        if src.is_file():
            _publish(src, dest / "quick.json", dest)
            copied.append(bundle)
        for grid in named_grids(bundle):
            src = source / f"{bundle}-{grid}" / "results.json"
            if src.is_file():
                _publish(src, dest / f"{grid}.json", dest / grid)
                copied.append(f"{bundle} ({grid})")
    return copied


def import_convergence(source: Path, root: Path = REPO_ROOT) -> list[str]:
    """Copy ``source/<bundle>/convergence.json`` and ``convergence.png`` into each bundle's docs."""
    copied = []
    for bundle in BUNDLE_NAMES:
        src = source / bundle / "convergence.json"
        if src.is_file():
            dest = results_dir(bundle, root)
            dest.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dest / "convergence.json")
            if (src.parent / "convergence.png").is_file():
                shutil.copyfile(src.parent / "convergence.png", dest / "convergence.png")
            copied.append(bundle)
    return copied


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m common.study.render", description=__doc__)
    parser.add_argument("--check", action="store_true", help="only check: docs rendered and results not stale")
    parser.add_argument("--from", dest="source", type=Path, help="import a quick study's output folder first")
    parser.add_argument(
        "--convergence-from",
        type=Path,
        help="import a convergence benchmark's output folder first (BENCH_CONVERGENCE_OUT)",
    )
    args = parser.parse_args(argv)
    if args.check:
        problems = [f"{path}: differs from its rendering (run: python -m common.study.render)"
                    for path, text in rendered_documents().items() if path.read_text() != text]  # fmt: skip
        problems += stale_results()
        for line in problems:
            print(line, file=sys.stderr)
        print("results: " + ("stale or unrendered" if problems else "rendered and current"))
        return 1 if problems else 0
    if args.source:
        copied = import_results(args.source)
        print(f"imported: {', '.join(copied) or 'nothing'} from {args.source}")
    if args.convergence_from:
        copied = import_convergence(args.convergence_from)
        print(f"imported convergence: {', '.join(copied) or 'nothing'} from {args.convergence_from}")
    for path, text in rendered_documents().items():
        if path.read_text() != text:
            atomic_write_text(path, text)
            print(f"rendered: {path.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

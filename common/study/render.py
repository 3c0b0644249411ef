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
import gzip
import io
import json
import shutil
import sys
from pathlib import Path

from common.io import atomic_write_text
from common.study.engine import code_fingerprint, uncommitted_paths
from common.study.report import format_claim, render_report
from common.study.runner import REPO_ROOT, bundle_names, load_spec

BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
CONVERGENCE_BEGIN, CONVERGENCE_END = "<!-- convergence:begin -->", "<!-- convergence:end -->"
NOTE = "<!-- rendered by `python -m common.study.render` from docs/results/quick.json; do not edit by hand -->"


def results_dir(bundle: str, root: Path = REPO_ROOT) -> Path:
    return root / "bundles" / bundle / "docs" / "results"


def load_record(path: Path) -> dict | None:
    """A committed record (``<name>.json``) with its runs (``<name>_runs.json.gz``) put back; ``None`` without one."""
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    runs = path.with_name(f"{path.stem}_runs.json.gz")
    if "runs" not in record:
        record["runs"] = json.loads(gzip.decompress(runs.read_bytes())) if runs.is_file() else []
    return record


def attach_per_sample(record: dict, path: Path) -> dict:
    """``record`` (:func:`load_record`) with each run's ``per_sample`` records read back from its
    ``<name>_per_sample.csv.gz`` (:func:`write_per_sample`): numbers as floats (exactly as written), empty cells as
    ``None``, bracketed lists parsed, dotted columns nested again (``dice.grey_matter``)."""
    import math

    import pandas as pd

    table = pd.read_csv(path, keep_default_na=True)
    by_run: dict[tuple[str, str], list[dict]] = {}
    for row in table.to_dict("records"):
        sample: dict = {}
        for key, value in row.items():
            if key in ("run", "seed"):
                continue
            if isinstance(value, float) and math.isnan(value):
                value = None
            elif isinstance(value, str) and value.startswith("["):
                value = json.loads(value.replace("None", "null").replace("nan", "NaN"))
            node = sample
            *parents, leaf = key.split(".")
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = value
        by_run.setdefault((str(row["run"]), str(row["seed"])), []).append(sample)
    runs = []
    for run in record.get("runs", []):
        rows = by_run.get((run["name"], str(run.get("seed"))))
        runs.append({**run, "metrics": {**run["metrics"], "per_sample": rows}} if rows else run)
    return {**record, "runs": runs}


def load_results(bundle: str, root: Path = REPO_ROOT) -> dict | None:
    """The committed quick-study record of ``bundle``, or ``None`` when none is committed."""
    return load_record(results_dir(bundle, root) / "quick.json")


def named_grids(bundle: str, root: Path = REPO_ROOT) -> tuple[str, ...]:
    """The named grids a bundle's study publishes beside its quick study (its ``SPEC.grids``): committed as
    ``docs/results/<grid>.json`` with figures in ``docs/results/<grid>/``, rendered between ``<!-- <grid>:begin -->``
    and ``<!-- <grid>:end -->`` in the bundle docs."""
    return tuple(load_spec(bundle, root).grids)


def load_grid_results(bundle: str, grid: str, root: Path = REPO_ROOT) -> dict | None:
    """The committed record of a named grid (``docs/results/<grid>.json``), or ``None``."""
    return load_record(results_dir(bundle, root) / f"{grid}.json")


def render_bundle_section(bundle: str, record: dict | None, figure_dir: str = "results", root: Path = REPO_ROOT) -> str:
    """The bundle docs' results section: the study's report, headings two levels down, figures in ``figure_dir``."""
    if record is None:
        return "No committed quick-study results yet (`python -m common.study.render --from DIR`)."
    text = render_report(load_spec(bundle, root), record, [f"{figure_dir}/{f}" for f in record.get("figures", [])])
    lines = [("##" + line) if line.startswith("#") else line for line in text.splitlines()]
    if record.get("archived"):
        commit = ((record.get("git") or {}).get("commit") or "unknown")[:10]
        lines[1:1] = [
            "",
            f"> **Archived result, not rerun at the current code.** {record['archived']['reason']} It was made by code "
            f"`{record.get('code_fingerprint')}` at commit `{commit}`; its numbers are that code's, not the current "
            "code's.",
        ]
    return "\n".join(line.rstrip() for line in lines).strip()


def render_readme_section(records: dict[str, dict | None], root: Path = REPO_ROOT) -> str:
    """The top-level README's quick-results section: per study, its command, machine, run time and claims."""
    out = []
    for bundle, record in records.items():
        out.append(f"### {load_spec(bundle, root).title}")
        out.append("")
        if record is None:
            out += ["No committed quick-study results yet.", ""]
            continue
        commit = (record.get("git") or {}).get("commit") or "unknown"
        env = record["environment"]
        cpu = (env.get("numerics") or {}).get("cpu_model") or "an unrecorded CPU"
        out += [
            f"`{record['command']}`: {len(record['runs'])} runs, {record['seconds'] / 60:.0f} min wall on "
            f"{env['cpu_count']} cores of {cpu} (code fingerprint `{record['code_fingerprint']}`, "
            f"commit `{commit[:10]}`). Full tables and figures: "
            f"[bundles/{bundle}/docs/README.md](bundles/{bundle}/docs/README.md).",
            "",
        ]
        primary = [c for c in record["claims"] if c.get("primary", True)]
        out += [f"- {format_claim(c)}" for c in primary]
        if len(primary) < len(record["claims"]):
            out.append(f"- and {len(record['claims']) - len(primary)} secondary claims, in the bundle docs.")
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


def render_power_section(power: dict) -> str:
    """A committed ``docs/results/power.json`` (``python -m common.study <bundle> --power``, copied there): what
    made it, then :func:`common.study.power.render_power`."""
    from common.study.power import render_power

    commit = ((power.get("git") or {}).get("commit") or "unknown")[:10]
    test_set = ", ".join(f"`{k}={v}`" for k, v in (power.get("test_set") or {}).items()) or "the profile's"
    lines = [
        f"Measured on tuning seeds {', '.join(map(str, power['seeds']))} of the `{power['profile']}` profile (test "
        f"set: {test_set}), at commit `{commit}`, code `{power.get('code_fingerprint')}`, by:",
        "",
        f"    {power.get('command')}",
        "",
        "Half-widths are those of the 95% interval of the mean over seeds (the random-effects interval of the "
        "verdicts: one seed's sd is the larger of the sd over seeds and the test-set sd of the second table); "
        "\"seeds to decide\" is the least number of seeds whose interval clears the margin when the effect is as "
        "large as on the tuning seeds.",
        "",
    ]
    table = render_power(power["claims"], power["seeds"]).split("\n", 2)[2]  # the seeds are named above
    return "\n".join(lines) + table


def section_markers(name: str) -> tuple[str, str]:
    """The markers of a named section (a grid's, a tuning report's by its file stem) in a bundle's docs."""
    return f"<!-- {name}:begin -->", f"<!-- {name}:end -->"


def rendered_documents(root: Path = REPO_ROOT) -> dict[Path, str]:
    """Every document with a results section, as it should read after rendering."""
    records = {b: load_results(b, root) for b in bundle_names(root)}
    docs = {}
    for bundle, record in records.items():
        spec = load_spec(bundle, root)
        path = root / "bundles" / bundle / "docs" / "README.md"
        docs[path] = _replace_section(path.read_text(), render_bundle_section(bundle, record, root=root), path)
        convergence = results_dir(bundle, root) / "convergence.json"
        if convergence.is_file():
            note = "<!-- rendered by `python -m common.study.render` from docs/results/convergence.json -->"
            body = render_convergence_section(json.loads(convergence.read_text()))
            docs[path] = _replace_section(docs[path], body, path, CONVERGENCE_BEGIN, CONVERGENCE_END, note)
        for grid in spec.grids:
            grid_record = load_grid_results(bundle, grid, root)
            if grid_record is not None:
                note = f"<!-- rendered by `python -m common.study.render` from docs/results/{grid}.json -->"
                body = render_bundle_section(bundle, grid_record, f"results/{grid}", root)
                docs[path] = _replace_section(docs[path], body, path, *section_markers(grid), note)
        for name, render in spec.tuning.items():
            tuning = results_dir(bundle, root) / name
            if tuning.is_file():
                note = f"<!-- rendered by `python -m common.study.render` from docs/results/{name} -->"
                body = render(json.loads(tuning.read_text()))
                docs[path] = _replace_section(docs[path], body, path, *section_markers(Path(name).stem), note)
        power = results_dir(bundle, root) / "power.json"
        if power.is_file():
            note = "<!-- rendered by `python -m common.study.render` from docs/results/power.json -->"
            body = render_power_section(json.loads(power.read_text()))
            docs[path] = _replace_section(docs[path], body, path, *section_markers("power"), note)
    readme = root / "README.md"
    docs[readme] = _replace_section(readme.read_text(), render_readme_section(records, root), readme)
    return docs


def stale_results(root: Path = REPO_ROOT) -> list[str]:
    """One line per committed results file (a quick study's, a named grid's) whose code fingerprint (``common``
    and the bundle's own configs) differs from the working tree's."""
    problems = []
    for bundle in bundle_names(root):
        current = code_fingerprint(root, bundle=bundle)
        published = [(results_dir(bundle, root) / "quick.json", load_results(bundle, root), "nox -s results")]
        published += [
            (
                results_dir(bundle, root) / f"{grid}.json",
                load_grid_results(bundle, grid, root),
                f"python -m common.study {bundle} --profile quick --grid {grid} --output DIR",
            )
            for grid in named_grids(bundle, root)
        ]
        for i, (path, record, rerun) in enumerate(published):
            if record is None:
                if i == 0:  # every bundle publishes its quick study; a named grid is optional
                    problems.append(f"{path}: missing")
            elif record.get("archived") and i > 0:
                continue  # a named grid published as archived says so in the docs; a quick study never is
            elif record.get("code_fingerprint") != current:
                problems.append(
                    f"{path}: stale, made by code {record.get('code_fingerprint')}, the working tree is {current} "
                    f"(rerun: {rerun})"
                )
    return problems


# Per-run detail the published record moves out of its JSON: every run's per-sample records go into the gzipped CSV
# beside it (:func:`per_sample_table`); the label-error detectors' score, flag and flagged id of every training
# sample stay in the study's own results.json and each run's metrics.json (the figures drawn from them are
# committed). The rest (every number the docs render) keeps each committed file under 1 MB.
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


def per_sample_table(record: dict):
    """Every run's per-sample records as one flat ``pandas.DataFrame``: columns ``run``, ``seed`` and the records'
    keys, nested ones joined by ``.`` (``dice.grey_matter``)."""
    import pandas as pd

    rows = [{"run": run["name"], "seed": run.get("seed"), **sample}
            for run in record.get("runs", []) for sample in run.get("metrics", {}).get("per_sample", [])]  # fmt: skip
    return pd.json_normalize(rows, sep=".")


def _write_gzip(dest: Path, data: bytes) -> None:
    """``data`` gzipped to ``dest``, byte-identical for identical data (no time stamp or name in the header)."""
    from common.io import atomic_write

    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0, filename="") as gz:
        gz.write(data)
    atomic_write(dest, lambda tmp: Path(tmp).write_bytes(buf.getvalue()))


def write_record(record: dict, dest: Path) -> None:
    """A published record: ``dest`` (JSON as the model zoo's checks want it) without its runs, which go, slimmed
    (:func:`slim_record`), to ``<dest stem>_runs.json.gz``; :func:`load_record` reads both back."""
    slim = slim_record(record)
    _write_gzip(dest.with_name(f"{dest.stem}_runs.json.gz"), json.dumps(slim["runs"]).encode())
    atomic_write_text(dest, dump_json({k: v for k, v in slim.items() if k != "runs"}))


def write_per_sample(table, dest: Path) -> None:
    """``table`` (:func:`per_sample_table`) as a gzipped CSV, byte-identical for identical tables (no time stamp or
    name in the gzip header)."""
    _write_gzip(dest, table.to_csv(index=False, lineterminator="\n").encode())


def read_per_sample(path: Path) -> list[dict]:
    """The rows of a :func:`write_per_sample` file, every value a string (``""`` where missing)."""
    import pandas as pd

    return pd.read_csv(path, dtype=str, keep_default_na=False).to_dict("records")


def dump_json(record: dict) -> str:
    """A committed JSON file as the MONAI model zoo's checks want it: 4-space indent, key order kept, final newline."""
    return json.dumps(record, indent=4) + "\n"


def _publish(src: Path, dest: Path, figure_dir: Path) -> None:
    """Copy the quick-profile record ``src`` to ``dest`` (:func:`write_record`), its per-sample records to
    ``<dest stem>_per_sample.csv.gz``, and its figures into ``figure_dir``."""
    record = json.loads(src.read_text())
    if record.get("profile") != "quick":
        raise ValueError(f"{src}: profile {record.get('profile')!r}; the published results are the quick profile")
    if (record.get("git") or {}).get("dirty"):
        raise ValueError(f"{src}: made from a tree with uncommitted code (git.dirty); commit, rerun, then publish")
    dest.parent.mkdir(parents=True, exist_ok=True)
    if record.get("figures"):
        figure_dir.mkdir(parents=True, exist_ok=True)
    for figure in record.get("figures", []):
        shutil.copyfile(src.parent / figure, figure_dir / figure)
    write_per_sample(per_sample_table(record), dest.with_name(f"{dest.stem}_per_sample.csv.gz"))
    write_record(record, dest)


def archive_results(path: Path, reason: str) -> None:
    """Mark a committed named-grid record as archived: it keeps its numbers and fingerprint, the docs say it was not
    rerun at the current code and why, and the staleness check passes it over."""
    record = load_record(path)
    if record is None:
        raise FileNotFoundError(f"{path}: no committed record to archive")
    if not reason.strip():
        raise ValueError(f"{path}: archiving needs a reason")
    record["archived"] = {"reason": reason.strip()}
    write_record(record, path)


def import_results(source: Path, root: Path = REPO_ROOT) -> list[str]:
    """Copy ``source/<bundle>/results.json`` (as ``quick.json``) and each named grid's
    ``source/<bundle>-<grid>/results.json`` (as ``<grid>.json``, figures in ``<grid>/``), without the
    :data:`DROPPED` detail, with their figures, into each bundle's docs."""
    copied = []
    for bundle in bundle_names(root):
        dest = results_dir(bundle, root)
        src = source / bundle / "results.json"
        if src.is_file():
            _publish(src, dest / "quick.json", dest)
            copied.append(bundle)
        for grid in named_grids(bundle, root):
            src = source / f"{bundle}-{grid}" / "results.json"
            if src.is_file():
                _publish(src, dest / f"{grid}.json", dest / grid)
                copied.append(f"{bundle} ({grid})")
    return copied


def import_convergence(source: Path, root: Path = REPO_ROOT) -> list[str]:
    """Copy ``source/<bundle>/convergence.json`` and ``convergence.png`` into each bundle's docs."""
    copied = []
    for bundle in bundle_names(root):
        src = source / bundle / "convergence.json"
        if src.is_file():
            dest = results_dir(bundle, root)
            dest.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dest / "convergence.json")
            if (src.parent / "convergence.png").is_file():
                shutil.copyfile(src.parent / "convergence.png", dest / "convergence.png")
            copied.append(bundle)
    return copied


def require_clean_tree(root: Path = REPO_ROOT) -> None:
    """Raise ``RuntimeError`` naming the paths under ``common/`` or ``bundles/`` that differ from the last commit
    (``bundles/*/docs/results``, which this command writes, aside): published numbers come from committed code."""
    dirty = [p for p in uncommitted_paths(root, ["common", "bundles"]) if Path(p).parts[2:4] != ("docs", "results")]
    if dirty:
        raise RuntimeError(
            f"uncommitted changes in {', '.join(dirty)}: commit them first, so that the published numbers "
            "name the code that made them (--allow-dirty to import anyway)"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m common.study.render", description=__doc__)
    parser.add_argument("--check", action="store_true", help="only check: docs rendered and results not stale")
    parser.add_argument("--from", dest="source", type=Path, help="import a quick study's output folder first")
    parser.add_argument(
        "--convergence-from",
        type=Path,
        help="import a convergence benchmark's output folder first (BENCH_CONVERGENCE_OUT)",
    )
    parser.add_argument("--allow-dirty", action="store_true", help="--from with uncommitted code (tests only)")
    parser.add_argument("--archive", type=Path, help="mark a committed named-grid record as archived (with --reason)")
    parser.add_argument("--reason", default="", help="why an archived record is not rerun")
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
        if not args.allow_dirty:
            try:
                require_clean_tree()
            except RuntimeError as err:
                parser.error(str(err))
        copied = import_results(args.source)
        print(f"imported: {', '.join(copied) or 'nothing'} from {args.source}")
    if args.archive:
        archive_results(args.archive, args.reason)
        print(f"archived: {args.archive}")
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

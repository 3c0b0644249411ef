"""Published results, rendered from committed results files: ``python -m common.study.render [--check]``.

Each bundle's quick-study ``results.json`` and figures are committed under ``bundles/<name>/docs/results/``.
The results section of ``bundles/<name>/docs/README.md`` and the quick-results section of the top-level
``README.md`` (each between ``<!-- results:begin -->`` and ``<!-- results:end -->``) are rendered from those
files and never typed by hand.

- ``python -m common.study.render``: rewrite the sections from the committed files.
- ``python -m common.study.render --from DIR``: first copy ``DIR/<bundle>/results.json`` and its figures
  (a finished ``python -m common.study all --profile quick --output DIR``) into ``docs/results``.
- ``python -m common.study.render --check``: exit 1 when a section differs from its rendering, or when a
  committed file was made by other code than the working tree's (its code fingerprint is stale).
"""

from __future__ import annotations

import argparse
import importlib
import json
import shutil
import sys
from pathlib import Path

from common.io import atomic_write_json, atomic_write_text
from common.study.engine import code_fingerprint, format_claim
from common.study.runner import BUNDLE_NAMES, REPO_ROOT

BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
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


def render_bundle_section(bundle: str, record: dict | None) -> str:
    """The bundle docs' results section: the study's report, headings two levels down, figures in results/."""
    if record is None:
        return "No committed quick-study results yet (`python -m common.study.render --from DIR`)."
    module = importlib.import_module(f"common.study.{bundle}")
    text = module.render_report(record, [f"results/{f}" for f in record.get("figures", [])])
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


def _replace_section(text: str, body: str, path: Path) -> str:
    if BEGIN not in text or END not in text:
        raise ValueError(f"{path}: no {BEGIN} ... {END} section to render into")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{NOTE}\n\n{body}\n\n{END}{tail}"


def rendered_documents(root: Path = REPO_ROOT) -> dict[Path, str]:
    """Every document with a results section, as it should read after rendering."""
    records = {b: load_results(b, root) for b in BUNDLE_NAMES}
    docs = {}
    for bundle, record in records.items():
        path = root / "bundles" / bundle / "docs" / "README.md"
        docs[path] = _replace_section(path.read_text(), render_bundle_section(bundle, record), path)
    readme = root / "README.md"
    docs[readme] = _replace_section(readme.read_text(), render_readme_section(records), readme)
    return docs


def stale_results(root: Path = REPO_ROOT) -> list[str]:
    """One line per committed results file whose code fingerprint differs from the working tree's code."""
    current = code_fingerprint(root)
    problems = []
    for bundle in BUNDLE_NAMES:
        record = load_results(bundle, root)
        if record is None:
            problems.append(f"{results_dir(bundle, root) / 'quick.json'}: missing")
        elif record.get("code_fingerprint") != current:
            problems.append(
                f"{results_dir(bundle, root) / 'quick.json'}: stale, made by code {record.get('code_fingerprint')}, "
                f"the working tree is {current} (rerun: nox -s results)"
            )
    return problems


# Per-run detail the published record leaves out (it stays in the study's own results.json and each run's
# metrics.json): every run's per-sample records and the label-error detectors' score of every training sample
# under every variant. The rest (every number the docs render) keeps each committed file under 1 MB.
DROPPED = (("per_sample",), ("extra", "detection", "scores"))


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


def import_results(source: Path, root: Path = REPO_ROOT) -> list[str]:
    """Copy ``source/<bundle>/results.json`` (as ``quick.json``, without the :data:`DROPPED` detail) and its
    figures into each bundle's docs."""
    copied = []
    for bundle in BUNDLE_NAMES:
        src = source / bundle / "results.json"
        if not src.is_file():
            continue
        record = json.loads(src.read_text())
        if record.get("profile") != "quick":
            raise ValueError(f"{src}: profile {record.get('profile')!r}; the published results are the quick profile")
        dest = results_dir(bundle, root)
        dest.mkdir(parents=True, exist_ok=True)
        for figure in record.get("figures", []):
            shutil.copyfile(src.parent / figure, dest / figure)
        atomic_write_json(dest / "quick.json", slim_record(record))
        copied.append(bundle)
    return copied


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m common.study.render", description=__doc__)
    parser.add_argument("--check", action="store_true", help="only check: docs rendered and results not stale")
    parser.add_argument("--from", dest="source", type=Path, help="import a quick study's output folder first")
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
    for path, text in rendered_documents().items():
        if path.read_text() != text:
            atomic_write_text(path, text)
            print(f"rendered: {path.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

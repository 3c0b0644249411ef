"""The study engine: a study is data (runs x seeds), one runner executes it, results carry medians over seeds.

A :class:`Study` lists its :class:`Run` settings (each a set of bundle overrides plus the axis labels the
summary groups by) and the seeds to repeat them with. :func:`execute` runs every (setting, seed) pair as
an ordinary ``python -m monai.bundle run`` (:func:`common.study.runner.run_bundle`), side by side on this
machine (``executor="local"``) or as tasks on an existing Ray cluster (``executor="ray"``). Each run's
``run_record.json`` keeps a key made of its resolved overrides and the fingerprint of the code a bundle run
executes (:func:`code_fingerprint` without ``common/study`` and ``common/audit``); a rerun of the same study skips every run whose
key still matches, so a killed study resumes where it stopped, and a changed summary or report is recomputed
from the finished runs in seconds.

:func:`median_over_seeds` and :func:`evaluate_claims` turn one summary per seed into the published numbers:
the median of every number over seeds, and for each of a study's claims the number of seeds it holds in.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import statistics
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.io import atomic_write_json
from common.study.runner import REPO_ROOT, run_bundle

__all__ = [
    "Claim",
    "Profile",
    "StudySpec",
    "Run",
    "Study",
    "code_fingerprint",
    "fingerprint_files",
    "evaluate_claims",
    "execute",
    "git_commit",
    "uncommitted_paths",
    "grid",
    "median_over_seeds",
    "run_key",
]

# Overrides that only say where a run writes; they do not change its numbers and stay out of its key.
PATH_KEYS = ("output_dir", "ckpt_path", "cache_dir")


@dataclass(frozen=True)
class Run:
    """One setting of a study: ``overrides`` for the bundle, ``labels`` (axis values) for the summary.

    ``after`` maps an override id to the name of another run of the same seed: this run starts once that run has
    finished, gets its output folder as that override, and its key holds that run's key, so it reruns whenever the
    run it reads reruns (e.g. a model evaluated with its baseline's saved attributions)."""

    name: str
    overrides: Mapping[str, Any]
    labels: Mapping[str, Any] = field(default_factory=dict)
    after: Mapping[str, str] = field(default_factory=dict)


@dataclass
class Study:
    """A grid of bundle runs repeated over ``seeds``.

    Args:
        bundle: bundle name under ``bundles/``.
        profile: ``smoke``, ``quick`` or ``full``.
        runs: the settings; names must be unique.
        seeds: every setting runs once per seed (data, split and initialisation follow the seed).
        jobs: local runs side by side.
        configs: config files merged for each run.
        resources: per-run resources declared to Ray (``num_cpus``, ``num_gpus``).
        prepare: called once per distinct ``data_keys`` values (and seed) with that run's overrides,
            before the parallel runs start, so shared generated data are written once.
        data_keys: the overrides that select the generated data.
    """

    bundle: str
    profile: str
    runs: list[Run]
    seeds: Sequence[int] = (0,)
    jobs: int = 2
    configs: Sequence[str] = ("train.yaml", "evaluate.yaml")
    resources: Mapping[str, float] = field(default_factory=lambda: {"num_cpus": 1, "num_gpus": 0})
    prepare: Callable[[dict], None] | None = None
    data_keys: Sequence[str] = ()

    def __post_init__(self) -> None:
        names = [r.name for r in self.runs]
        dupes = sorted(n for n, c in Counter(names).items() if c > 1)
        if dupes:
            raise ValueError(f"study {self.bundle}: run names must be unique, repeated: {', '.join(dupes)}")
        if not self.seeds:
            raise ValueError(f"study {self.bundle}: no seeds given")
        self.seeds = tuple(int(s) for s in self.seeds)


def grid(
    prefix: str,
    base: Mapping[str, Any],
    axes: Mapping[str, Sequence[Any]],
    to_overrides: Callable[[dict], dict] | None = None,
    labels: Mapping[str, Any] | None = None,
    name: Callable[[dict], str] | None = None,
    where: Callable[[dict], bool] | None = None,
) -> list[Run]:
    """Every combination of ``axes`` as a :class:`Run` named ``<prefix>_<value>_<value>...`` (or ``name(point)``).

    The axis values become labels (plus ``grid=prefix`` and ``labels``); they are also the overrides, unless
    ``to_overrides`` maps them (e.g. a resolution pair to ``high_spacing``/``low_spacing``). ``where(point)``
    keeps only the combinations it accepts.
    """
    runs = []
    names = list(axes)
    for values in itertools.product(*(axes[a] for a in names)):
        point = dict(zip(names, values))
        if where is not None and not where(point):
            continue
        extra = to_overrides(point) if to_overrides else point
        tag = "_".join(_tag(v) for v in values)
        runs.append(
            Run(
                name=name(point) if name else f"{prefix}_{tag}" if tag else prefix,
                overrides={**base, **extra},
                labels={"grid": prefix, **(labels or {}), **point},
            )
        )
    return runs


def _tag(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "-".join(_tag(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}".replace(".", "p")
    return str(value)


# ---------------------------------------------------------------------------------------------- identity


# Packages of ``common`` that never run inside a bundle process (the study runner and reports, the audit tool).
OUTSIDE_BUNDLE_RUNS = ("study", "audit")


def fingerprint_files(
    root: str | Path = REPO_ROOT, bundle_runs_only: bool = False, bundle: str | None = None
) -> list[Path]:
    """The files :func:`code_fingerprint` hashes, in its order.

    - no ``bundle``: all of ``common/**/*.py`` and ``bundles/*/configs/*``;
    - ``bundle``: ``bundles/<bundle>/configs/*`` and the ``common`` modules those configs import, directly or
      through other modules (:func:`common.study.code_files.import_closure`; package ``__init__`` files that only
      declare lazy exports are left out), plus, unless ``bundle_runs_only``,
      the modules its study module ``common.study.<bundle>`` imports (summaries, claims and reports).
    """
    from common.study.code_files import config_modules, import_closure, is_lazy_package_init

    root = Path(root)
    configs = sorted(p for p in (root / "bundles").glob(f"{bundle or '*'}/configs/*") if p.is_file())
    if bundle is None:
        files = sorted(p for p in (root / "common").rglob("*.py") if "__pycache__" not in p.parts)
        if bundle_runs_only:
            outside = [root / "common" / name for name in OUTSIDE_BUNDLE_RUNS]
            files = [p for p in files if not any(o in p.parents for o in outside)]
    else:
        start = config_modules(p.read_text(errors="replace") for p in configs)
        if not bundle_runs_only:
            start.add(f"common.study.{bundle}")
        files = [p for p in import_closure(root, start) if not is_lazy_package_init(p)]
    return files + configs


def code_fingerprint(root: str | Path = REPO_ROOT, bundle_runs_only: bool = False, bundle: str | None = None) -> str:
    """Hash (16 hex digits) of the code that produces a study's numbers (:func:`fingerprint_files`), by relative
    path and content (so a fresh clone gives the same value).

    ``bundle_runs_only=True`` is a run's key: a change to a report reruns no bundle run, and a change to code no
    run of the bundle imports leaves its runs (and its published results) valid.
    """
    root = Path(root)
    digest = hashlib.sha256()
    for path in fingerprint_files(root, bundle_runs_only, bundle):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def uncommitted_paths(root: str | Path, paths: Sequence[str]) -> list[str]:
    """The files under ``paths`` (relative to ``root``) that differ from the last commit, untracked ones included.
    Raises ``RuntimeError`` when git cannot tell."""
    cmd = ["git", "status", "--porcelain=v1", "-z", "--untracked-files=all", "--", *paths]
    try:
        proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True)
    except OSError as err:
        raise RuntimeError(f"cannot tell whether {root} is committed: {err}") from err
    if proc.returncode != 0:
        raise RuntimeError(f"cannot tell whether {root} is committed: git status failed: {proc.stderr.strip()}")
    entries, out = iter(proc.stdout.split("\0")), []
    for entry in entries:
        if not entry:
            continue
        if entry[0] in "RC":  # a rename or copy: its old path follows
            next(entries, None)
        out.append(entry[3:])
    return out


def git_commit(root: str | Path = REPO_ROOT, bundle: str | None = None) -> dict:
    """``{"commit": sha or None, "dirty": bool or None}``; dirty means uncommitted changes in the fingerprinted code:
    ``bundle``'s :func:`fingerprint_files`, or with no ``bundle`` every bundle's."""
    root = Path(root)
    paths = [p.relative_to(root).as_posix() for p in fingerprint_files(root, bundle=bundle)]
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True)
        dirty = bool(uncommitted_paths(root, paths))
    except (OSError, subprocess.CalledProcessError, RuntimeError):
        return {"commit": None, "dirty": None}
    return {"commit": sha.stdout.strip(), "dirty": dirty}


def run_key(bundle: str, configs: Sequence[str], overrides: Mapping[str, Any], fingerprint: str) -> str:
    """The identity of one run's numbers: bundle, configs, overrides (without output paths) and code."""
    payload = {
        "bundle": bundle,
        "configs": list(configs),
        "overrides": {k: v for k, v in overrides.items() if k not in PATH_KEYS},
        "code": fingerprint,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:20]


# ---------------------------------------------------------------------------------------------- execution


def _resolved_overrides(run: Run, seed: int, output_dir: Path) -> tuple[Path, dict]:
    run_dir = output_dir / "runs" / run.name / f"seed{seed}"
    overrides = {
        **run.overrides,
        "seed": seed,
        "train_first": True,
        "cache_dir": str(output_dir / "cache"),
        "ckpt_path": str(run_dir / "model.pt"),
        "output_dir": str(run_dir),
    }
    return run_dir, json.loads(json.dumps(overrides))  # plain JSON values: tuples become lists


def _fmt_seconds(s: float) -> str:
    s = int(round(s))
    return f"{s // 60}:{s % 60:02d}"


def execute(
    study: Study,
    output_dir: str | Path,
    executor: str = "local",
    address: str | None = None,
    progress: Callable[[dict], str] | None = None,
    log: Callable[[str], None] = lambda line: print(line, flush=True),
) -> list[dict]:
    """Run every (setting, seed) of ``study`` into ``output_dir/runs/<name>/seed<k>/``.

    Returns one dict per run in study order (seeds outer): ``{**labels, "name", "seed", "overrides",
    "metrics", "seconds", "reused"}``. ``progress(metrics)`` gives the short text of a run's progress line.
    """
    if executor not in ("local", "ray"):
        raise ValueError(f"unknown executor {executor!r}; expected 'local' or 'ray'")
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    fingerprint = code_fingerprint(bundle_runs_only=True, bundle=study.bundle)
    tasks = _tasks(study, output_dir, fingerprint)

    results: dict[int, dict] = {}
    todo = []
    for i, task in enumerate(tasks):
        record_file = task["run_dir"] / "run_record.json"
        if record_file.is_file():
            try:
                record = json.loads(record_file.read_text())
            except json.JSONDecodeError:
                record = {}
            if record.get("key") == task["key"]:
                done_at = record.get("finished", record_file.stat().st_mtime)  # older records: the file's time
                results[i] = _result(task, record["metrics"], record.get("seconds"), reused=True, finished=done_at)
                continue
        todo.append(i)
    if results:
        log(f"{study.bundle}: {len(results)} of {len(tasks)} runs reused (same settings and code)")

    if study.prepare and todo:
        seen = set()
        for i in todo:
            o = tasks[i]["overrides"]
            data_id = json.dumps([o.get("seed"), *[o.get(k) for k in study.data_keys]], default=str)
            if data_id not in seen:
                seen.add(data_id)
                study.prepare(o)

    t0 = time.perf_counter()
    lock = threading.Lock()
    count = [len(results)]

    def finished(i: int, metrics: dict) -> None:
        task = tasks[i]
        seconds = metrics.get("_run", {}).get("seconds")
        done_at = time.time()
        atomic_write_json(
            task["run_dir"] / "run_record.json",
            {"key": task["key"], "code_fingerprint": fingerprint, "overrides": task["overrides"],
             "seconds": seconds, "finished": done_at, "metrics": metrics},
        )  # fmt: skip
        with lock:
            results[i] = _result(task, metrics, seconds, reused=False, finished=done_at)
            count[0] += 1
            fresh_done = count[0] - (len(tasks) - len(todo))
            elapsed = time.perf_counter() - t0
            eta = elapsed / fresh_done * (len(todo) - fresh_done)
            text = progress(metrics) if progress else ""
            log(
                f"[{count[0]}/{len(tasks)}] {task['run'].name} seed {task['seed']}: {text}"
                f" ({seconds or 0:.0f} s; elapsed {_fmt_seconds(elapsed)}, ETA {_fmt_seconds(eta)})"
            )

    if todo:
        log(f"{study.bundle}: {len(todo)} runs ({len(study.runs)} settings x {len(study.seeds)} seeds), {executor}")
    for wave in _waves(tasks, todo):  # runs that read other runs' outputs start once those have finished
        if executor == "local":
            with ThreadPoolExecutor(max_workers=max(1, study.jobs)) as pool:
                futures = {
                    pool.submit(
                        run_bundle, study.bundle, list(study.configs), tasks[i]["overrides"], tasks[i]["run_dir"]
                    ): i
                    for i in wave
                }
                for future in as_completed(futures):
                    finished(futures[future], future.result())
        else:
            _execute_ray(study, [tasks[i] for i in wave], wave, address, finished)
    return [results[i] for i in range(len(tasks))]


def _tasks(study: Study, output_dir: Path, fingerprint: str) -> list[dict]:
    """Every (run, seed) with its folder, overrides and key; a run's ``after`` references are resolved to the
    output folders of the same seed's runs (overrides) and to their keys (in this run's key)."""
    by_name: dict[tuple[str, int], dict] = {}
    names = {run.name for run in study.runs}
    pending = [(run, seed) for seed in study.seeds for run in study.runs]
    order = {(run.name, seed): i for i, (run, seed) in enumerate(pending)}
    while pending:
        ready = [(r, s) for r, s in pending if all((up, s) in by_name for up in r.after.values())]
        if not ready:
            missing = sorted({up for r, _ in pending for up in r.after.values() if up not in names})
            raise ValueError(f"{study.bundle}: runs read runs that are not in the study ({', '.join(missing)})"
                             if missing else f"{study.bundle}: runs read each other in a circle")  # fmt: skip
        for run, seed in ready:
            run_dir, overrides = _resolved_overrides(run, seed, output_dir)
            upstream = {key: by_name[up, seed] for key, up in run.after.items()}
            overrides |= {key: str(task["run_dir"]) for key, task in upstream.items()}
            keyed = {k: v for k, v in overrides.items() if k not in run.after}
            keyed["after"] = {key: task["key"] for key, task in sorted(upstream.items())}
            key = run_key(study.bundle, study.configs, keyed if run.after else overrides, fingerprint)
            by_name[run.name, seed] = {"run": run, "seed": seed, "run_dir": run_dir, "overrides": overrides,
                                       "key": key}  # fmt: skip
            pending.remove((run, seed))
    tasks = sorted(by_name.values(), key=lambda t: order[t["run"].name, t["seed"]])
    for t in tasks:
        t["after"] = [order[up, t["seed"]] for up in t["run"].after.values()]
    return tasks


def _waves(tasks: list[dict], todo: list[int]) -> list[list[int]]:
    """``todo`` in waves: each wave's runs read only runs of earlier waves (or runs already finished)."""
    left, done, waves = list(todo), set(range(len(tasks))) - set(todo), []
    while left:
        wave = [i for i in left if all(j in done for j in tasks[i]["after"])]
        waves.append(wave)
        done |= set(wave)
        left = [i for i in left if i not in done]
    return waves


def _result(task: dict, metrics: dict, seconds, reused: bool, finished: float | None = None) -> dict:
    run = task["run"]
    out = {**run.labels, "name": run.name, "seed": task["seed"], "overrides": task["overrides"],
           "metrics": metrics, "seconds": seconds, "finished": finished, "reused": reused}  # fmt: skip
    curve = read_validation_curve(Path(task["run_dir"]) / "validation_curve.json")
    if curve is not None:
        out["validation_curve"] = curve
    return out


def read_validation_curve(path: Path) -> dict | None:
    """A run's ``validation_curve.json`` (:class:`common.handlers.convergence.ValidationCurve`) reduced to its
    own metric: ``{"metric", "epoch": [...], "cpu_seconds": [...], "value": [...]}``; ``None`` without one."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
    metric = data.get("metric")
    points = [p for p in data.get("points", []) if metric in p.get("metrics", {})]
    return {
        "metric": metric,
        "epoch": [p["epoch"] for p in points],
        "cpu_seconds": [p["cpu_seconds"] for p in points],
        "value": [p["metrics"][metric] for p in points],
    }


def runs_span_seconds(results: Sequence[Mapping[str, Any]]) -> float | None:
    """Wall time from the first run's start to the last run's end (``finished`` minus ``seconds``), whether
    the runs were made now or reused: what the study's runs took, not what this invocation took."""
    spans = [(r["finished"] - (r["seconds"] or 0.0), r["finished"]) for r in results if r.get("finished")]
    return round(max(e for _, e in spans) - min(s for s, _ in spans), 1) if spans else None


def _ray_run(bundle: str, configs: list[str], overrides: dict, run_dir: str) -> dict:
    """One run inside a Ray worker: the same subprocess as a local run (the repository must be at the same
    path on every node)."""
    from common.study.runner import run_bundle as run

    return run(bundle, configs, overrides, run_dir)


def _execute_ray(study: Study, tasks: list[dict], indices: list[int], address: str | None, finished) -> None:
    try:
        import ray
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise RuntimeError("--executor ray needs the 'ray' package: pip install 'ray[default]'") from err
    ray.init(
        address=address or "auto",
        runtime_env={"env_vars": {"PYTHONPATH": str(REPO_ROOT)}},
        log_to_driver=False,
        ignore_reinit_error=True,
    )
    remote = ray.remote(**{k: v for k, v in study.resources.items() if k in ("num_cpus", "num_gpus")})(_ray_run)
    pending = {
        remote.remote(study.bundle, list(study.configs), t["overrides"], str(t["run_dir"])): i
        for t, i in zip(tasks, indices)
    }
    try:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                finished(pending.pop(ref), ray.get(ref))
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)


# ---------------------------------------------------------------------------------------------- over seeds


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and not (isinstance(x, float) and math.isnan(x))


def median_over_seeds(per_seed: Mapping[Any, Any]) -> Any:
    """Combine one summary per seed into one of the same structure.

    Numbers: median over the seeds that have one (``None`` where none has); booleans: true when true in more
    than half of the seeds; strings and other values: the most common (first seed's on ties); dicts and
    equal-length lists: element by element.
    """
    values = list(per_seed.values())
    present = [v for v in values if v is not None]
    if not present:
        return None
    if all(isinstance(v, Mapping) for v in present):
        keys = list(dict.fromkeys(k for v in present for k in v))
        return {k: median_over_seeds({i: v.get(k) for i, v in enumerate(present)}) for k in keys}
    if all(isinstance(v, bool) for v in present):
        return sum(present) > len(present) / 2
    if all(_is_number(v) for v in present):
        return float(statistics.median(present))
    if all(isinstance(v, (list, tuple)) for v in present) and len({len(v) for v in present}) == 1:
        return [median_over_seeds({i: v[j] for i, v in enumerate(present)}) for j in range(len(present[0]))]
    hashable = [json.dumps(v, sort_keys=True, default=str) for v in present]
    winner = Counter(hashable).most_common(1)[0][0]
    return present[hashable.index(winner)]


@dataclass(frozen=True)
class Claim:
    """A paper's statement, declared before the seeds run and decided on one value per seed.

    Args:
        id: short name.
        text: the statement in the paper's own direction, with its source (authors, year).
        value: ``value(summary) -> float | None``, the estimand on one seed's summary (``None``: missing).
        margin: the threshold the paper's statement is judged against, in the estimand's units.
        direction: the paper's side of ``margin``: ``">"`` or ``"<"``.
        estimand: what ``value`` measures, with units, as the report shows it.
        primary: primary claims are decided together (Holm); secondary ones each alone.
        unit: ``"%"`` shows values as signed percentages.
    """

    id: str
    text: str
    value: Callable[[Mapping[str, Any]], float | None]
    margin: float
    direction: str = ">"
    estimand: str = ""
    primary: bool = True
    unit: str = ""

    def __post_init__(self) -> None:
        if self.direction not in (">", "<"):
            raise ValueError(f"claim {self.id}: direction must be '>' or '<', got {self.direction!r}")

    def holds(self, v: float) -> bool:
        """Whether one seed's value lies on the paper's side of the margin (a description, not the verdict)."""
        return v > self.margin if self.direction == ">" else v < self.margin


def evaluate_claims(claims: Iterable[Claim], per_seed: Mapping[int, Mapping[str, Any]],
                    within: Mapping[str, Mapping[str, float | None]] | None = None) -> list[dict]:  # fmt: skip
    """Each claim's declaration, its value per seed, and its verdict (:mod:`common.study.stats`).

    ``within``: per claim id, each seed's within-run (test-set bootstrap) standard deviation
    (:func:`common.study.within.within_run_sds`); omitted, the interval is over seeds alone.

    ``[{id, claim, estimand, margin, direction, primary, unit, per_seed: {seed: value}, holds_per_seed,
    holds_in, of, median, mean, ci95: [lo, hi], n, p_support, p_refute, sd_seeds, sd_within, sd_training,
    within_per_seed, verdict}]``.
    """
    from common.study.stats import claim_interval, verdicts

    claims = list(claims)
    out = []
    for claim in claims:
        vals: dict[str, float | None] = {}
        held: dict[str, bool] = {}
        for seed, summary in per_seed.items():
            try:
                v = claim.value(summary)
            except (KeyError, TypeError, ZeroDivisionError, ValueError):
                v = None
            v = None if v is None or not _is_number(v) or math.isinf(v) else float(v)
            vals[str(seed)] = v
            held[str(seed)] = bool(v is not None and claim.holds(v))
        present = [v for v in vals.values() if v is not None]
        within_sds = None if within is None else {str(k): v for k, v in (within.get(claim.id) or {}).items()}
        interval = claim_interval(present, claim.margin, claim.direction,
                                  within_sds=None if within_sds is None else
                                  [within_sds.get(k) for k, v in vals.items() if v is not None])  # fmt: skip
        out.append(
            {
                "id": claim.id,
                "claim": claim.text,
                "estimand": claim.estimand,
                "margin": claim.margin,
                "direction": claim.direction,
                "primary": claim.primary,
                "unit": claim.unit,
                "holds_in": sum(held.values()),
                "of": len(vals),
                "median": float(statistics.median(present)) if present else None,
                "per_seed": vals,
                "holds_per_seed": held,
                "within_per_seed": within_sds,
                **interval,
            }
        )
    for entry, verdict in zip(out, verdicts(out, [c.primary for c in claims])):
        entry["verdict"] = verdict
    return out


# ---------------------------------------------------------------------------------------------- one study

DEFAULT_SEEDS = {"smoke": (0,), "quick": (0, 1, 2), "full": (0, 1, 2)}


@dataclass(frozen=True)
class Profile:
    """One profile of a study: ``settings`` (bundle overrides of every run), ``axes`` (what the study varies,
    read by its ``runs`` builder), ``jobs`` (local runs side by side) and ``grid`` (the default named grid)."""

    settings: Mapping[str, Any]
    axes: Mapping[str, Any] = field(default_factory=dict)
    jobs: int = 2
    grid: str | None = None


@dataclass(frozen=True)
class StudySpec:
    """Everything a study module declares, in one object (``SPEC`` in ``common/study/<bundle>.py``).

    Args:
        bundle: the bundle folder's name under ``bundles/``.
        title: the study's title in reports and the README.
        profiles: ``smoke``, ``quick`` and ``full``.
        runs: ``runs(profile, grid) -> [Run]``, the grid builder (``grid`` is ``None`` for the profile's default).
        summarize: ``summarize(runs) -> dict``, pure: one seed's runs (each ``{**labels, "metrics", ...}``) to numbers.
        claims: the paper's statements, declared before seeds 0-2 run (:class:`Claim`).
        report: ``report(record, figures) -> str``, the study's own markdown sections (tables, text); the shared
            header with the claims is added by :func:`common.study.report.render_report`.
        figures: ``figures(record, output_dir) -> [file names]``; reads only ``record`` and run outputs.
        progress: ``progress(metrics) -> str``, a run's short progress text.
        grids: named grids published beside the quick study (``--grid NAME``), each with its own claims.
        tuning: ``{"<file>.json": renderer}``, tuning reports committed under ``docs/results`` and rendered
            between ``<!-- <file stem>:begin -->`` and ``<!-- <file stem>:end -->`` in the bundle docs.
        configs: config files merged for each run.
        prepare, data_keys: see :class:`Study`.
        resampling: how each run's test set is redrawn for the within-run part of the claims' intervals
            (:class:`common.study.within.TestResampling`); ``None``: intervals over seeds alone.
    """

    bundle: str
    title: str
    profiles: Mapping[str, Profile]
    runs: Callable[[Profile, str | None], list[Run]]
    summarize: Callable[[Sequence[Mapping[str, Any]]], dict]
    claims: Sequence[Claim]
    report: Callable[[dict, list[str]], str]
    figures: Callable[[dict, Path], list[str]] = lambda record, output_dir: []
    progress: Callable[[dict], str] = lambda metrics: ""
    grids: Mapping[str, Sequence[Claim]] = field(default_factory=dict)
    tuning: Mapping[str, Callable[[dict], str]] = field(default_factory=dict)
    configs: Sequence[str] = ("train.yaml", "evaluate.yaml")
    prepare: Callable[[dict], None] | None = None
    data_keys: Sequence[str] = ()
    resampling: Any = None

    def profile(self, name: str) -> Profile:
        if name not in self.profiles:
            raise ValueError(
                f"study {self.bundle}: unknown profile {name!r}; expected one of {', '.join(self.profiles)}"
            )
        return self.profiles[name]

    def study(self, profile: str, seeds: Sequence[int], grid: str | None = None) -> Study:
        """The runs of ``profile`` (grid ``grid``, default the profile's) over ``seeds``."""
        if grid is not None and grid not in self.grids and grid != self.profile(profile).grid:
            known = ", ".join(self.grids) or "none"
            raise ValueError(f"study {self.bundle} has no grid {grid!r} (grids: {known})")
        prof = self.profile(profile)
        return Study(self.bundle, profile, self.runs(prof, grid), seeds, jobs=prof.jobs, configs=self.configs,
                     prepare=self.prepare, data_keys=self.data_keys)  # fmt: skip

    def claims_for(self, grid: str | None) -> Sequence[Claim]:
        return self.grids[grid] if grid in self.grids else self.claims


def merge_seeds(results: Sequence[Mapping[str, Any]]) -> list[dict]:
    """One entry per setting (study order): its labels, ``seeds``, and ``metrics`` as the median over seeds
    of every number (:func:`median_over_seeds`). Lists of per-sample values are not meaningful after this
    (each seed has its own samples): use one seed's runs for distributions."""
    by_name: dict[str, list[Mapping[str, Any]]] = {}
    for r in results:
        by_name.setdefault(r["name"], []).append(r)
    merged = []
    for runs in by_name.values():
        first = runs[0]
        merged.append(
            {
                **{k: v for k, v in first.items() if k not in ("seed", "metrics", "seconds", "reused")},
                "seeds": [r["seed"] for r in runs],
                "metrics": median_over_seeds({r["seed"]: r["metrics"] for r in runs}),
            }
        )
    return merged


def run_study(
    spec: StudySpec,
    profile: str,
    output_dir: str | Path,
    seeds: Sequence[int] | None = None,
    executor: str = "local",
    address: str | None = None,
    jobs: int | None = None,
    grid: str | None = None,
) -> Path:
    """Run ``spec``'s grid of ``profile`` over ``seeds``; write ``results.json``, figures and ``report.md``.

    Returns the path of ``report.md``.
    """
    import shlex

    from common.io import atomic_write_text
    from common.study.report import render_report
    from common.study.runner import bundle_command, environment_record, study_command

    seeds = tuple(DEFAULT_SEEDS[profile] if seeds is None else seeds)
    study = spec.study(profile, seeds, grid)
    if jobs:
        study.jobs = jobs
    output_dir = Path(output_dir)
    command = study_command(spec.bundle, profile, output_dir, seeds, grid)
    t0 = time.perf_counter()
    results = execute(study, output_dir, executor=executor, address=address, progress=spec.progress)
    record = summarize_record(spec, profile, grid, seeds, results)
    prof = spec.profile(profile)
    record.update({
        "command": command,
        "environment": environment_record(seeds[0]),
        "git": git_commit(bundle=spec.bundle),
        "code_fingerprint": code_fingerprint(bundle=spec.bundle),
        "seconds": runs_span_seconds(results) or round(time.perf_counter() - t0, 1),
        "invocation_seconds": round(time.perf_counter() - t0, 1),
        "reused_runs": sum(r["reused"] for r in results),
        "run_seconds": round(sum(r["seconds"] or 0 for r in results), 1),
        "profile_settings": json.loads(json.dumps({"settings": prof.settings, "axes": prof.axes, "jobs": prof.jobs},
                                                  default=str)),
        "example_run_command": shlex.join(bundle_command(study.bundle, study.configs, study.runs[0].overrides)),
    })  # fmt: skip
    record["figures"] = spec.figures(record, output_dir)
    atomic_write_json(output_dir / "results.json", record)
    report = output_dir / "report.md"
    atomic_write_text(report, render_report(spec, record, record["figures"]))
    return report


def summarize_record(
    spec: StudySpec, profile: str, grid: str | None, seeds: Sequence[int], results: Sequence[Mapping[str, Any]]
) -> dict:
    """The science of a finished study, from its runs alone: per-seed summaries, their medians, each claim's
    within-run bootstrap standard deviation per seed (``within_run_sd``; ``None`` without ``spec.resampling``) and
    the claims' verdicts (``{"study", "profile", "grid", "seeds", "summary", "within_run_sd", "claims", "runs"}``)."""
    from common.study.within import within_run_sds

    per_seed = {str(s): spec.summarize([r for r in results if r["seed"] == s]) for s in seeds}
    claims = spec.claims_for(grid or spec.profile(profile).grid)
    within = within_run_sds(spec, claims, results, seeds)
    return {
        "study": spec.bundle,
        "profile": profile,
        "grid": grid,
        "seeds": list(seeds),
        "summary": {**median_over_seeds(per_seed), "seeds": list(seeds), "per_seed": per_seed},
        "within_run_sd": within,
        "claims": evaluate_claims(claims, per_seed, within),
        "runs": list(results),
    }

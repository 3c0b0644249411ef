"""Sampling variation within a run: a bootstrap over each run's test units, for every claim of a study.

A seed's claim value comes from a finite test set (subjects, images). Redrawing that test set with replacement and
recomputing the claim gives the part of its variation that a larger test set would shrink; the spread of the
values over seeds holds that part and the training noise together. :func:`within_run_sd` measures the first per
seed; :func:`common.study.stats.claim_interval` combines both (a random-effects interval), and
:mod:`common.study.power` projects the interval half-width to other test-set sizes.

A study declares how its test set is redrawn with a :class:`TestResampling` (``StudySpec.resampling``):

- ``unit``: the per-sample key naming one test unit, or a function of a per-sample record giving its unit; every
  per-sample record of the unit moves with it (a heart's three estimators; one test slice scored under every
  degradation);
- ``strata``: a per-sample key whose levels keep their unit counts (the two groups of a group AUC);
- ``from_samples``: ``from_samples(run) -> run``: recomputes, from the redrawn ``run["metrics"]["per_sample"]``,
  every metric the study's ``summarize`` reads that is not computed from the per-sample records already;
- ``prepare``: ``prepare(runs) -> runs``, once per seed before the redraws: may store in each per-sample record
  what a redraw cannot change (a subject's own statistics), so that ``summarize`` does not recompute it per draw.

Runs of one seed that hold the same test units get the same redraw (a paired bootstrap: two approaches scored on
the same subjects stay paired). In the k-th extra copy of a unit the key ``rename`` (``unit`` itself when it is a
key) becomes ``"<value>#k"`` in every run, so code that matches records by it still pairs them and never merges
copies.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["TestResampling", "redraw_runs", "within_run_sd", "within_run_sds"]


@dataclass(frozen=True)
class TestResampling:
    """How a study's test set is redrawn for the within-run bootstrap (see the module docstring)."""

    __test__ = False  # a declaration, not a pytest test class

    unit: str | Callable[[Mapping[str, Any]], str] = "id"
    strata: str | None = None
    from_samples: Callable[[dict], dict] | None = None
    draws: int = 200
    rename: str = "id"
    prepare: Callable[[list], list] | None = None

    def unit_of(self, row: Mapping[str, Any]) -> str:
        return str(self.unit(row) if callable(self.unit) else row[self.unit])

    @property
    def renamed_key(self) -> str:
        return self.rename if callable(self.unit) else self.unit


def _units(run: Mapping[str, Any], resampling: TestResampling) -> list[str]:
    seen: dict[str, None] = {}
    for row in run["metrics"].get("per_sample", []):
        if not callable(resampling.unit) and resampling.unit not in row:
            raise KeyError(f"run {run.get('name')!r}: a per-sample record has no {resampling.unit!r} (the study's "
                           "test unit)")  # fmt: skip
        seen.setdefault(resampling.unit_of(row), None)
    return list(seen)


def _draw(units: Sequence[str], strata: Mapping[str, Any], rng: np.random.Generator) -> list[str]:
    """Units drawn with replacement within each stratum, as many per stratum as it holds."""
    by_stratum: dict[Any, list[str]] = {}
    for u in units:
        by_stratum.setdefault(strata.get(u), []).append(u)
    drawn: list[str] = []
    for _, members in sorted(by_stratum.items(), key=lambda kv: str(kv[0])):
        drawn.extend(members[i] for i in rng.integers(0, len(members), len(members)))
    return drawn


def redraw_runs(runs: Sequence[Mapping[str, Any]], resampling: TestResampling, rng: np.random.Generator) -> list[dict]:
    """One bootstrap replicate of one seed's ``runs``: each run's per-sample records redrawn by unit (the same
    draw for runs with the same units), then ``resampling.from_samples`` applied. Runs without per-sample
    records are returned unchanged."""
    # each unit's stratum from the first run of the seed whose record of it has one (a scene classifier scored on
    # the same images may not know their groups)
    strata: dict[str, Any] = {}
    if resampling.strata:
        for run in runs:
            for r in run.get("metrics", {}).get("per_sample") or []:
                if r.get(resampling.strata) is not None:
                    strata.setdefault(resampling.unit_of(r), r[resampling.strata])
    draws: dict[tuple[str, ...], list[str]] = {}
    out = []
    for run in runs:
        rows = run.get("metrics", {}).get("per_sample") or []
        if not rows:
            out.append(dict(run))
            continue
        units = tuple(_units(run, resampling))
        if units not in draws:
            draws[units] = _draw(units, strata, rng)
        by_unit: dict[str, list[dict]] = {}
        for r in rows:
            by_unit.setdefault(resampling.unit_of(r), []).append(r)
        key = resampling.renamed_key
        copies: dict[str, int] = {}
        new_rows = []
        for u in draws[units]:
            k = copies.get(u, 0)
            copies[u] = k + 1
            new_rows.extend(r if k == 0 else {**r, key: f"{r.get(key)}#{k}"} for r in by_unit[u])
        new = {**run, "metrics": {**run["metrics"], "per_sample": new_rows}}
        out.append(resampling.from_samples(new) if resampling.from_samples else new)
    return out


def _value(claim, summary) -> float | None:
    try:
        v = claim.value(summary)
    except (KeyError, TypeError, ZeroDivisionError, ValueError):
        return None
    if v is None or isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    return float(v)


def within_run_sd(claims: Sequence, summarize: Callable[[list], dict], runs: Sequence[Mapping[str, Any]],
                  resampling: TestResampling, seed: int) -> dict[str, float | None]:  # fmt: skip
    """Per claim id, the bootstrap standard deviation (ddof 1) of the claim's value over ``resampling.draws``
    redraws of one seed's test set (NumPy generator seeded by ``seed``); 0 where no redraw moves it beyond
    rounding, ``None`` where fewer than two redraws give a value."""
    rng = np.random.default_rng([int(seed), 20261206])
    if resampling.prepare is not None:
        runs = resampling.prepare(list(runs))
    values: dict[str, list[float]] = {c.id: [] for c in claims}
    for _ in range(resampling.draws):
        summary = summarize(redraw_runs(runs, resampling, rng))
        for c in claims:
            v = _value(c, summary)
            if v is not None:
                values[c.id].append(v)
    return {k: _sd(v) for k, v in values.items()}


def _sd(values: list[float]) -> float | None:
    """Standard deviation (ddof 1); exactly 0 when the values differ only by rounding (the same sum in another
    order), ``None`` for fewer than two."""
    if len(values) < 2:
        return None
    v = np.asarray(values, dtype=np.float64)
    if np.ptp(v) <= 1e-12 * max(1.0, float(np.abs(v).max())):
        return 0.0
    return float(np.std(v, ddof=1))


def within_run_sds(spec, claims: Sequence, results: Sequence[Mapping[str, Any]],
                   seeds: Sequence[int]) -> dict[str, dict[str, float | None]] | None:  # fmt: skip
    """``{claim id: {seed: sd}}`` for a study's finished ``results`` (``None`` if the study declares no
    ``resampling``)."""
    resampling = getattr(spec, "resampling", None)
    if resampling is None:
        return None
    out: dict[str, dict[str, float | None]] = {c.id: {} for c in claims}
    for s in seeds:
        sds = within_run_sd(claims, spec.summarize, [r for r in results if r["seed"] == s], resampling, int(s))
        for k, v in sds.items():
            out[k][str(s)] = v
    return out

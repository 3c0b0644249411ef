"""How many seeds and test subjects a claim needs: interval half-widths projected from tuning seeds.

A claim is decided by a seed-level t-interval (:func:`common.study.stats.claim_interval`): with ``S`` seeds whose
values have standard deviation ``sd``, the 95% interval has half-width ``t(0.975, S-1) * sd / sqrt(S)``. The spread
``sd`` of a study's per-seed values holds both training noise and the sampling noise of each seed's test set, so it
is measured on **tuning seeds (100 and up)** only, never on the published seeds 0-2, and the smallest ``S`` whose
half-width is below the distance between the tuning mean and the margin is the number of seeds the claim needs to be
decided when the effect is as large as on the tuning seeds.

The test-set size enters through the split of that spread (:mod:`common.study.within`): with ``v`` the
within-run (test-set bootstrap) variance of one seed's value at the current test set and ``tau^2 = max(sd^2 - v, 0)``
the training part, a test set ``k`` times as large gives one seed's value the variance ``tau^2 + v / k``, and
:func:`projected_half_width` the interval half-width over ``S`` seeds. A claim whose seed spread is mostly training
noise gains nothing from more test subjects; one whose spread is mostly test-set sampling does.

For a group AUC the test-set size also enters directly: :func:`auc_standard_error` is the Hanley-McNeil (1982) standard
error of an AUC from ``n_pos`` and ``n_neg`` cases, so :func:`auc_half_width` says how wide the interval of one
run's AUC is at a given test-set size, before any seed noise.

``python -m common.study <bundle> --power`` runs (or reuses) the quick profile on seeds 100-102 and writes
``power.json`` and ``power.md`` beside the tuning record (:func:`power_table`, :func:`render_power`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

__all__ = ["TUNING_SEED_MIN", "auc_half_width", "auc_standard_error", "power_table", "projected_half_width",
           "render_power", "seed_half_width", "seeds_to_decide"]  # fmt: skip

TUNING_SEED_MIN = 100
SEED_COUNTS = (3, 5, 8, 10)
TEST_SCALES = (1, 2, 4, 8)  # test sets 1, 2, 4 and 8 times the profile's


def seed_half_width(sd: float, seeds: int, level: float = 0.95) -> float:
    """Half-width of the ``level`` t-interval of a mean over ``seeds`` values with standard deviation ``sd``."""
    from scipy import stats as st

    if seeds < 2:
        raise ValueError(f"an interval over seeds needs at least 2 seeds, got {seeds}")
    return float(st.t.ppf(0.5 + level / 2, seeds - 1) * sd / math.sqrt(seeds))


def seeds_to_decide(mean: float, sd: float, margin: float, level: float = 0.95, max_seeds: int = 50) -> int | None:
    """Smallest number of seeds (2 to ``max_seeds``) whose interval half-width is below ``|mean - margin|``;
    ``None`` if none is (the effect sits on its margin)."""
    distance = abs(mean - margin)
    for seeds in range(2, max_seeds + 1):
        if seed_half_width(sd, seeds, level) < distance:
            return seeds
    return None


def projected_half_width(sd_training: float, sd_within: float, seeds: int, test_scale: float = 1.0,
                         level: float = 0.95) -> float:  # fmt: skip
    """Half-width over ``seeds`` seeds when each seed's test set is ``test_scale`` times the measured one: one seed's
    value has variance ``sd_training^2 + sd_within^2 / test_scale``."""
    if test_scale <= 0:
        raise ValueError(f"test_scale must be positive, got {test_scale}")
    return seed_half_width(math.sqrt(sd_training**2 + sd_within**2 / test_scale), seeds, level)


def auc_standard_error(auc: float, n_pos: int, n_neg: int) -> float:
    """Hanley and McNeil (1982) standard error of an AUC estimated from ``n_pos`` positive and ``n_neg`` negative
    cases: ``sqrt((A(1-A) + (n_pos-1)(Q1-A^2) + (n_neg-1)(Q2-A^2)) / (n_pos n_neg))`` with ``Q1 = A/(2-A)``,
    ``Q2 = 2A^2/(1+A)``."""
    if not 0.0 <= auc <= 1.0:
        raise ValueError(f"auc must be in [0, 1], got {auc}")
    if n_pos < 1 or n_neg < 1:
        raise ValueError(f"need at least one case per class, got {n_pos} and {n_neg}")
    q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)
    var = (auc * (1 - auc) + (n_pos - 1) * (q1 - auc**2) + (n_neg - 1) * (q2 - auc**2)) / (n_pos * n_neg)
    return math.sqrt(max(var, 0.0))


def auc_half_width(auc: float, n_per_group: int, level: float = 0.95) -> float:
    """Normal-approximation half-width of one AUC's ``level`` interval with ``n_per_group`` cases in each group."""
    from scipy import stats as st

    return float(st.norm.ppf(0.5 + level / 2) * auc_standard_error(auc, n_per_group, n_per_group))


def power_table(claims: Sequence, per_seed: Mapping[str, Mapping], seed_counts: Sequence[int] = SEED_COUNTS,
                level: float = 0.95, within: Mapping[str, Mapping[str, float | None]] | None = None,
                test_scales: Sequence[float] = TEST_SCALES) -> list[dict]:  # fmt: skip
    """Per claim (:class:`common.study.engine.Claim`), from one summary per tuning seed: the values, their mean
    and sd, the interval half-width at each of ``seed_counts`` seeds and the seeds needed to decide it.

    ``within`` (``{claim id: {seed: sd}}``, :func:`common.study.within.within_run_sds` on the tuning runs) adds
    ``sd_within`` (root mean within-run variance), ``sd_training`` and ``projected[scale][seeds]``, the half-width
    with test sets ``scale`` times the profile's, plus ``seeds_to_decide_by_scale``. Without it the half-widths
    are those of the seed spread alone.

    Raises ``ValueError`` if a seed is below :data:`TUNING_SEED_MIN` (published seeds never size a study)."""
    low = [s for s in per_seed if int(s) < TUNING_SEED_MIN]
    if low:
        raise ValueError(f"power is estimated on tuning seeds ({TUNING_SEED_MIN} and up), got seeds {', '.join(low)}")
    rows = []
    for claim in claims:
        values = [claim.value(summary) for summary in per_seed.values()]
        values = [float(v) for v in values if v is not None and not math.isnan(v)]
        row = {"id": claim.id, "primary": claim.primary, "estimand": claim.estimand, "margin": claim.margin,
               "direction": claim.direction, "values": values}  # fmt: skip
        if len(values) >= 2:
            mean = sum(values) / len(values)
            sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
            sds = [v for v in ((within or {}).get(claim.id) or {}).values() if v is not None]
            sd_within = math.sqrt(sum(v**2 for v in sds) / len(sds)) if sds else None
            if sd_within is not None and sd_within <= 1e-12 * max(1.0, abs(mean)):
                sd_within = 0.0  # redraws that moved the value by rounding only
            per_seed_sd = sd if sd_within is None else max(sd, sd_within)
            row |= {
                "mean": mean,
                "sd": sd,
                "half_width": {str(s): seed_half_width(per_seed_sd, s, level) for s in seed_counts},
                "seeds_to_decide": seeds_to_decide(mean, per_seed_sd, claim.margin, level),
            }
            if sd_within is not None:
                sd_training = math.sqrt(max(sd**2 - sd_within**2, 0.0))
                row |= {
                    "sd_within": sd_within,
                    "sd_training": sd_training,
                    "projected": {f"{k:g}": {str(s): projected_half_width(sd_training, sd_within, s, k, level)
                                             for s in seed_counts} for k in test_scales},  # fmt: skip
                    "seeds_to_decide_by_scale": {
                        f"{k:g}": seeds_to_decide(mean, math.sqrt(sd_training**2 + sd_within**2 / k), claim.margin,
                                                  level) for k in test_scales},  # fmt: skip
                }
        rows.append(row)
    return rows


def _f(v) -> str:
    return "-" if v is None else f"{v:.3g}"


def _seeds(n) -> str:
    return str(n or "more than 50")


def render_power(rows: Sequence[Mapping], seeds: Sequence[int]) -> str:
    """Markdown: one row per claim with the tuning values, the half-widths and the seeds needed; with the
    within-run split, a second table of the half-width at 3 seeds and the seeds needed against test-set size."""
    counts = list(next((r["half_width"] for r in rows if "half_width" in r), {}))
    head = ["claim", "primary", "margin", "tuning values", "mean", "sd", *[f"half-width, {c} seeds" for c in counts],
            "seeds to decide"]  # fmt: skip
    lines = [f"Tuning seeds {', '.join(map(str, seeds))}.", "", "| " + " | ".join(head) + " |",
             "|" + "---|" * len(head)]  # fmt: skip
    for r in rows:
        cells = [r["id"], "yes" if r["primary"] else "no", _f(r["margin"]), " / ".join(_f(v) for v in r["values"]),
                 _f(r.get("mean")), _f(r.get("sd")), *[_f(r.get("half_width", {}).get(c)) for c in counts],
                 "-" if "mean" not in r else _seeds(r["seeds_to_decide"])]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    split = [r for r in rows if "projected" in r]
    if split:
        scales = list(split[0]["projected"])
        head = ["claim", "sd, test set", "sd, training", *[f"half-width, 3 seeds, test x{k}" for k in scales],
                *[f"seeds to decide, test x{k}" for k in scales]]  # fmt: skip
        lines += ["", "The seed spread split into its test-set part (bootstrap over each run's test units) and its "
                  "training part, and the interval against test-set size (x1: the profile's test set).", "",
                  "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]  # fmt: skip
        for r in split:
            cells = [r["id"], _f(r["sd_within"]), _f(r["sd_training"]),
                     *[_f(r["projected"][k].get("3")) for k in scales],
                     *[_seeds(r["seeds_to_decide_by_scale"][k]) for k in scales]]  # fmt: skip
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m common.study.power BUNDLE RECORD [--preset NAME]``: the power table of a committed tuning
    record (a study's ``results.json`` on tuning seeds, or a tuning file whose ``presets[NAME]`` holds
    ``per_seed`` summaries), with the Hanley-McNeil AUC half-widths at 8, 16 and 24 subjects per group."""
    import argparse
    import json
    from pathlib import Path

    from common.study.runner import bundle_names, load_spec

    parser = argparse.ArgumentParser(prog="python -m common.study.power", description=main.__doc__)
    parser.add_argument("bundle", choices=bundle_names())
    parser.add_argument("record", type=Path)
    parser.add_argument("--preset", help="the preset of a tuning file with several")
    args = parser.parse_args(argv)
    record = json.loads(args.record.read_text())
    if args.preset:
        record = record["presets"][args.preset]
    per_seed = (record.get("summary") or record)["per_seed"]
    spec = load_spec(args.bundle)
    rows = power_table(spec.claims_for(spec.profile("quick").grid), per_seed, within=record.get("within_run_sd"))
    print(render_power(rows, [int(s) for s in per_seed]))
    print("| AUC | half-width, 8 + 8 | 16 + 16 | 24 + 24 |\n|---|---|---|---|")
    for auc in (0.85, 0.9, 0.94, 0.97):
        print(f"| {auc:g} | " + " | ".join(f"{auc_half_width(auc, n):.3f}" for n in (8, 16, 24)) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

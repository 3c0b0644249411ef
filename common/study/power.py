"""How many seeds and test subjects a claim needs: interval half-widths projected from tuning seeds.

A claim is decided by a seed-level t-interval (:func:`common.study.stats.claim_interval`): with ``S`` seeds whose
values have standard deviation ``sd``, the 95% interval has half-width ``t(0.975, S-1) * sd / sqrt(S)``. The spread
``sd`` of a study's per-seed values holds both training noise and the sampling noise of each seed's test set, so it
is measured on **tuning seeds (100 and up)** only, never on the published seeds 0-2, and the smallest ``S`` whose
half-width is below the distance between the tuning mean and the margin is the number of seeds the claim needs to be
decided when the effect is as large as on the tuning seeds.

For a group AUC the test-set size enters directly: :func:`auc_standard_error` is the Hanley-McNeil (1982) standard
error of an AUC from ``n_pos`` and ``n_neg`` cases, so :func:`auc_half_width` says how wide the interval of one
run's AUC is at a given test-set size, before any seed noise.

``python -m common.study <bundle> --power`` runs (or reuses) the quick profile on seeds 100-102 and writes
``power.json`` and ``power.md`` beside the tuning record (:func:`power_table`, :func:`render_power`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

__all__ = ["TUNING_SEED_MIN", "auc_half_width", "auc_standard_error", "power_table", "render_power",
           "seed_half_width", "seeds_to_decide"]  # fmt: skip

TUNING_SEED_MIN = 100
SEED_COUNTS = (3, 5, 8, 10)


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
                level: float = 0.95) -> list[dict]:  # fmt: skip
    """Per claim (:class:`common.study.engine.Claim`), from one summary per tuning seed: the values, their mean
    and sd, the interval half-width at each of ``seed_counts`` seeds and the seeds needed to decide it.

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
            row |= {
                "mean": mean,
                "sd": sd,
                "half_width": {str(s): seed_half_width(sd, s, level) for s in seed_counts},
                "seeds_to_decide": seeds_to_decide(mean, sd, claim.margin, level),
            }
        rows.append(row)
    return rows


def _f(v) -> str:
    return "-" if v is None else f"{v:.3g}"


def render_power(rows: Sequence[Mapping], seeds: Sequence[int]) -> str:
    """Markdown: one row per claim with the tuning values, the half-widths and the seeds needed."""
    counts = list(next((r["half_width"] for r in rows if "half_width" in r), {}))
    head = ["claim", "primary", "margin", "tuning values", "mean", "sd", *[f"half-width, {c} seeds" for c in counts],
            "seeds to decide"]  # fmt: skip
    lines = [f"Tuning seeds {', '.join(map(str, seeds))}.", "", "| " + " | ".join(head) + " |",
             "|" + "---|" * len(head)]  # fmt: skip
    for r in rows:
        cells = [r["id"], "yes" if r["primary"] else "no", _f(r["margin"]), " / ".join(_f(v) for v in r["values"]),
                 _f(r.get("mean")), _f(r.get("sd")), *[_f(r.get("half_width", {}).get(c)) for c in counts],
                 "-" if "mean" not in r else str(r["seeds_to_decide"] or "more than 50")]  # fmt: skip
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
    rows = power_table(spec.claims_for(spec.profile("quick").grid), per_seed)
    print(render_power(rows, [int(s) for s in per_seed]))
    print("| AUC | half-width, 8 + 8 | 16 + 16 | 24 + 24 |\n|---|---|---|---|")
    for auc in (0.85, 0.9, 0.94, 0.97):
        print(f"| {auc:g} | " + " | ".join(f"{auc_half_width(auc, n):.3f}" for n in (8, 16, 24)) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

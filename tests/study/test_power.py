"""Power projections: seed half-widths, seeds to decide, Hanley-McNeil AUC errors, the tuning-seed guard."""

import math

import pytest

from common.study.engine import Claim
from common.study.power import (
    auc_half_width,
    auc_standard_error,
    power_table,
    projected_half_width,
    render_power,
    seed_half_width,
    seeds_to_decide,
)


def test_seed_half_width_is_t_times_sd_over_root_n():
    # t(0.975, 2) = 4.302653, t(0.975, 4) = 2.776445
    assert seed_half_width(1.0, 3) == pytest.approx(4.302653 / math.sqrt(3), rel=1e-6)
    assert seed_half_width(2.0, 5) == pytest.approx(2 * 2.776445 / math.sqrt(5), rel=1e-6)
    with pytest.raises(ValueError, match="at least 2 seeds"):
        seed_half_width(1.0, 1)


def test_seeds_to_decide_is_the_first_count_whose_interval_clears_the_margin():
    # distance 1, sd 1: 3 seeds give 2.48, 5 give 1.24, 6 give 1.049, 7 give 0.925
    assert seeds_to_decide(mean=1.5, sd=1.0, margin=0.5) == 7
    assert seeds_to_decide(mean=-0.5, sd=1.0, margin=0.5) == 7  # the distance, either side
    assert seeds_to_decide(mean=0.5, sd=1.0, margin=0.5) is None  # on the margin: never
    assert seeds_to_decide(mean=10.0, sd=0.1, margin=0.0) == 2


def test_hanley_mcneil_standard_error_by_hand():
    # A = 0.9, 10 + 10: Q1 = 0.9/1.1 = 0.818182, Q2 = 1.62/1.9 = 0.852632
    # var = (0.09 + 9 * (0.818182 - 0.81) + 9 * (0.852632 - 0.81)) / 100 = (0.09 + 0.073636 + 0.383684) / 100
    assert auc_standard_error(0.9, 10, 10) == pytest.approx(math.sqrt(0.0054732), rel=1e-4)
    # asymmetric group sizes: swapping n_pos and n_neg changes the error (Q1 and Q2 weigh different groups)
    assert auc_standard_error(0.9, 5, 20) != pytest.approx(auc_standard_error(0.9, 20, 5))
    assert auc_standard_error(1.0, 8, 8) == 0.0
    # more subjects, narrower: 8 + 8 against 16 + 16 at AUC 0.94
    assert auc_half_width(0.94, 16) < auc_half_width(0.94, 8)
    assert auc_half_width(0.94, 8) == pytest.approx(1.959964 * auc_standard_error(0.94, 8, 8), rel=1e-6)
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        auc_standard_error(1.2, 8, 8)


def _claims():
    return [
        Claim("gap", "a gap exceeds 1", lambda s: s["gap"], 1.0, ">", "gap (points)"),
        Claim("ratio", "a ratio exceeds 0", lambda s: s.get("ratio"), 0.0, ">", "log ratio", primary=False),
    ]


def test_power_table_from_tuning_summaries():
    per_seed = {"100": {"gap": 2.0, "ratio": None}, "101": {"gap": 3.0}, "102": {"gap": 4.0}}
    rows = power_table(_claims(), per_seed, seed_counts=(3, 5))
    gap, ratio = rows
    assert gap["values"] == [2.0, 3.0, 4.0] and gap["mean"] == pytest.approx(3.0) and gap["sd"] == pytest.approx(1.0)
    assert gap["half_width"]["3"] == pytest.approx(4.302653 / math.sqrt(3), rel=1e-6)
    assert gap["seeds_to_decide"] == seeds_to_decide(3.0, 1.0, 1.0) == 4  # 4 seeds: 3.182446 / 2 = 1.59 < 2
    assert ratio["values"] == [] and "mean" not in ratio  # no value on any seed: nothing projected
    text = render_power(rows, [100, 101, 102])
    assert "| gap | yes | 1 | 2 / 3 / 4 | 3 | 1 |" in text and "| ratio | no |" in text


def test_power_refuses_published_seeds():
    with pytest.raises(ValueError, match="tuning seeds"):
        power_table(_claims(), {"0": {"gap": 1.0}, "101": {"gap": 2.0}})


def test_power_cli_refuses_published_seeds(capsys):
    from common.study.__main__ import main

    with pytest.raises(SystemExit):
        main(["shortcut_label_flips", "--power", "--seeds", "0", "1"])
    assert "tuning seeds 100 and up" in capsys.readouterr().err


def test_projected_half_width_splits_training_and_test_set_variance():
    # training sd 1, test-set sd 2 at the profile's test set: one seed's variance 1 + 4 = 5; four times the test set
    # leaves 1 + 1 = 2; t(0.975, 2) = 4.302653
    assert projected_half_width(1.0, 2.0, 3, 1) == pytest.approx(4.302653 * math.sqrt(5 / 3), rel=1e-6)
    assert projected_half_width(1.0, 2.0, 3, 4) == pytest.approx(4.302653 * math.sqrt(2 / 3), rel=1e-6)
    # swapping the two parts changes the projection: only the test-set part shrinks with the test set
    assert projected_half_width(2.0, 1.0, 3, 4) == pytest.approx(4.302653 * math.sqrt(4.25 / 3), rel=1e-6)
    with pytest.raises(ValueError, match="positive"):
        projected_half_width(1.0, 1.0, 3, 0)


def test_power_table_splits_the_seed_spread_with_the_within_run_bootstrap():
    per_seed = {"100": {"gap": 2.0}, "101": {"gap": 3.0}, "102": {"gap": 4.0}}  # sd 1
    within = {"gap": {"100": 0.6, "101": 0.6, "102": 0.6}}  # test-set variance 0.36 of the seed variance 1
    gap = power_table(_claims()[:1], per_seed, seed_counts=(3,), within=within)[0]
    assert gap["sd_within"] == pytest.approx(0.6) and gap["sd_training"] == pytest.approx(0.8)
    assert gap["half_width"]["3"] == pytest.approx(4.302653 / math.sqrt(3), rel=1e-6)  # x1: the seed spread
    assert gap["projected"]["1"]["3"] == pytest.approx(gap["half_width"]["3"])
    assert gap["projected"]["4"]["3"] == pytest.approx(4.302653 * math.sqrt((0.64 + 0.09) / 3), rel=1e-6)
    # a within-run sd above the seed spread is a floor: the seeds agreeing by chance do not narrow the interval
    wide = power_table(_claims()[:1], per_seed, seed_counts=(3,), within={"gap": {"100": 2.0, "101": 2.0}})[0]
    assert wide["sd_training"] == 0.0
    assert wide["half_width"]["3"] == pytest.approx(4.302653 * 2 / math.sqrt(3), rel=1e-6)
    text = render_power([gap], [100, 101, 102])
    assert "| gap | 0.6 | 0.8 |" in text and "test x4" in text


def test_power_section_names_what_made_it():
    from common.study.render import render_power_section

    per_seed = {"100": {"gap": 2.0}, "101": {"gap": 3.0}, "102": {"gap": 4.0}}
    rows = power_table(_claims()[:1], per_seed, seed_counts=(3,), within={"gap": {"100": 0.6, "101": 0.6}})
    text = render_power_section({"seeds": [100, 101, 102], "profile": "quick", "git": {"commit": "abcdef0123456"},
                                 "code_fingerprint": "f00d", "test_set": {"num_test": 20},
                                 "command": "python -m common.study x --power", "claims": rows})  # fmt: skip
    assert "tuning seeds 100, 101, 102" in text and "`num_test=20`" in text and "`abcdef0123`" in text
    assert "    python -m common.study x --power" in text
    assert "| gap | yes | 1 | 2 / 3 / 4 | 3 | 1 |" in text and "| gap | 0.6 | 0.8 |" in text

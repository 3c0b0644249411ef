"""The time split of a run's log: training, validation inside training, and the test after it."""

import json

import pytest

from tests.benchmarks.bench_time_split import split_log, split_run, table

LOG = """\
x - ignite.engine.engine.SupervisedEvaluator - INFO - Engine run finished. Time taken: 00:00:02.500
x - ignite.engine.engine.SupervisedEvaluator - INFO - Engine run finished. Time taken: 00:00:02.000
x - ignite.engine.engine.SupervisedTrainer - INFO - Engine run finished. Time taken: 00:01:04.500
x - ignite.engine.engine.SupervisedEvaluator - INFO - Engine run finished. Time taken: 00:00:09.250
"""


def test_split_log_separates_validation_inside_training_from_the_test_after_it():
    parts = split_log(LOG)
    assert parts["validation"] == pytest.approx(4.5)  # the two evaluator runs before the trainer finished
    assert parts["training"] == pytest.approx(64.5 - 4.5)  # the trainer's time holds its validations
    assert parts["test"] == pytest.approx(9.25)


def test_split_run_and_table_from_a_study_folder(tmp_path):
    run = tmp_path / "runs" / "a" / "seed0"
    run.mkdir(parents=True)
    (run / "run.log").write_text(LOG)
    (run / "run_record.json").write_text(json.dumps({"seconds": 80.0}))
    split = split_run(run)
    assert split["startup_and_rest"] == pytest.approx(80.0 - 60.0 - 4.5 - 9.25) and split["total"] == 80.0
    assert split_run(tmp_path / "runs" / "missing") is None
    assert "| a | 1 | 6.2 (8%) | 60.0 (75%) | 4.5 (6%) | 9.2 (12%) | 80.0 |" in table(tmp_path)

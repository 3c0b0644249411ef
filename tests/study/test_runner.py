import ast
import sys

import pytest

from common.study.__main__ import main
from common.study.report import markdown_table
from common.study.runner import bundle_command, bundle_dir, environment_record


def test_markdown_table_formats_floats_and_missing():
    table = markdown_table(["a", "b"], [[1, 0.12345], ["x", None]])
    assert table.splitlines() == ["| a | b |", "|---|---|", "| 1 | 0.123 |", "| x | - |"]


def test_unknown_bundle_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown bundle 'nope'"):
        bundle_dir("nope")


def test_bundle_command_passes_overrides_as_literals(tmp_path, monkeypatch):
    (tmp_path / "demo" / "configs").mkdir(parents=True)
    monkeypatch.setattr("common.study.runner.BUNDLES_DIR", tmp_path)
    cmd = bundle_command("demo", ["train.yaml", "evaluate.yaml"], {"epochs": 3, "approach": "vinn", "pair": [2.0, 3.0]})
    assert cmd[:4] == [sys.executable, "-m", "monai.bundle", "run"]
    files = ast.literal_eval(cmd[cmd.index("--config_file") + 1])
    assert [f.split("/")[-1] for f in files] == ["train.yaml", "evaluate.yaml"]
    assert cmd[cmd.index("--epochs") + 1] == "3"
    assert cmd[cmd.index("--approach") + 1] == "vinn"
    assert ast.literal_eval(cmd[cmd.index("--pair") + 1]) == [2.0, 3.0]


def test_environment_record_has_versions():
    env = environment_record(seed=7)
    assert env["seed"] == 7 and env["torch"].startswith("2.") and env["monai"]


def test_cli_rejects_unknown_profile(capsys):
    with pytest.raises(SystemExit):
        main(["sr_degradation_bias", "--profile", "huge"])
    assert "invalid choice" in capsys.readouterr().err


def test_study_command_reproduces_the_output_folder():
    from common.study.runner import study_command

    cmd = study_command("sr_degradation_bias", "quick", "runs/x/sr_degradation_bias", [3, 0])
    assert cmd == "python -m common.study sr_degradation_bias --profile quick --output runs/x --seeds 3 0"

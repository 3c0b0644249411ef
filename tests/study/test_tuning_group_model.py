"""The group-model tuning experiment: it refuses the published seeds and summarises a study's results."""

import copy

import pytest

from common.study import engine
from common.study import segmentation_resolution_bias as seg
from tests.tuning import seg_group_model


def test_refuses_published_seeds():
    with pytest.raises(SystemExit):
        seg_group_model.main(["--seeds", "100", "1"])


def test_summary_keeps_claims_medians_and_every_seed():
    results = {
        "summary": {
            "volume_bias_L": {"h_only": 0.3},
            "dice_L": {"h_only": 0.5},
            "auc": {"h_only": 0.0},
            "resolution_part_L": {"vinn": 0.1},  # not part of the experiment's summary
            "per_seed": {"100": {"volume_bias_L": {"h_only": 0.2}, "dice_L": {}, "auc": {}, "extra": 1}},
        },
        "claims": [{"claim": "c", "holds_in": 2, "of": 3, "median": 1.5, "per_seed": {}}],
    }
    out = seg_group_model.summarize(results)
    assert out["claims"] == [{"claim": "c", "holds_in": 2, "of": 3, "median": 1.5}]
    assert out["median"] == {"volume_bias_L": {"h_only": 0.3}, "dice_L": {"h_only": 0.5}, "auc": {"h_only": 0.0}}
    assert out["per_seed"] == {"100": {"volume_bias_L": {"h_only": 0.2}, "dice_L": {}, "auc": {}}}


def test_run_preset_runs_a_modified_spec_and_leaves_the_study_alone(tmp_path, monkeypatch):
    before = copy.deepcopy(seg.PROFILES)
    quick = seg.SPEC.profiles["quick"]
    seen = {}

    def fake_run_study(spec, profile, output, seeds):
        seen.update(spec=spec, profile=profile, output=output, seeds=seeds)

    monkeypatch.setattr(engine, "run_study", fake_run_study)
    assert seg_group_model.run_preset("reduced", [100], tmp_path) == tmp_path / "reduced" / "results.json"
    spec = seen["spec"]
    assert (seen["profile"], seen["output"], seen["seeds"]) == ("quick", tmp_path / "reduced", [100])
    preset = spec.profiles["quick"]
    assert preset.axes["control"] is False and preset.settings["contrast_l"] == "reduced"
    assert {k: v for k, v in preset.settings.items() if k != "contrast_l"} == quick.settings
    assert spec.profiles["smoke"] is seg.SPEC.profiles["smoke"] and spec.claims == seg.SPEC.claims
    tables = {r.labels["table"] for r in spec.study("quick", (100,)).runs}
    assert tables == {"approaches"}  # the approach grid without its control arm
    # the study module itself is untouched: its quick profile still runs the control arm at the default contrast
    assert seg.PROFILES == before and seg.SPEC.profiles["quick"] is quick
    assert quick.axes["control"] is True and "contrast_l" not in quick.settings

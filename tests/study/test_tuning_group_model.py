"""The group-model tuning experiment: it refuses the published seeds and summarises a study's results."""

import pytest

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


def test_run_preset_restores_the_quick_profile(tmp_path, monkeypatch):
    before = {**seg.PROFILES["quick"], "settings": dict(seg.PROFILES["quick"]["settings"])}
    seen = {}

    def fake_run_study(profile, output, seeds):
        seen.update(control=seg.PROFILES["quick"]["control"], contrast=seg.PROFILES["quick"]["settings"]["contrast_l"])

    monkeypatch.setattr(seg, "run_study", fake_run_study)
    assert seg_group_model.run_preset("reduced", [100], tmp_path) == tmp_path / "reduced" / "results.json"
    assert seen == {"control": False, "contrast": "reduced"}
    assert seg.PROFILES["quick"] == before

"""``--shortcut``: OSCAR on a constructed 2-D cohort whose test model segments a group marker the baseline ignores."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from common.audit.__main__ import main
from tests.audit.cohort_files import save_nifti
from tests.audit.test_audit import INFERENCE_JSON

SIZE = 32  # 32 x 32 images: the 8 x 8 grid has 4 x 4 pixel cells, region = row * 8 + col
GROUPS = {"A": 4, "B": 8}  # B's images carry the marker
STRUCTURE = slice(13, 19)  # 6 x 6 square of intensity 1: 9 pixels in each of the cells (3, 3), (3, 4), (4, 3), (4, 4)
MARKER = slice(1, 3)  # 2 x 2 square of intensity 2 in cell (0, 0), region 0
STRUCTURE_REGIONS = [27, 28, 35, 36]


def _network(fg_weights: list[float]) -> dict:
    """``Conv2d(1, 3, 1) -> ReLU -> Conv2d(3, 2, 1)``: hidden ``relu(x - 0.5)``, ``relu(x - 1)``, ``relu(x - 1.5)``;
    background logit 0, foreground logit ``fg_weights . hidden - 1``."""
    return {
        "0.weight": torch.ones(3, 1, 1, 1),
        "0.bias": torch.tensor([-0.5, -1.0, -1.5]),
        "2.weight": torch.tensor([[0.0, 0.0, 0.0], fg_weights]).reshape(2, 3, 1, 1),
        "2.bias": torch.tensor([0.0, -1.0]),
    }


TS = _network([4.0, 0.0, 0.0])  # foreground above 0.5: the structure (logit 1) and the marker (logit 5)
BA = _network([4.0, -8.0, 4.0])  # a bump at 1: the structure only (logit 1), the marker is background (-1)


def _bundle(root: Path, name: str, weights: dict) -> Path:
    bundle = root / name
    (bundle / "configs").mkdir(parents=True)
    (bundle / "models").mkdir()
    config = copy.deepcopy(INFERENCE_JSON)
    config["network_def"] = "$torch.nn.Sequential(torch.nn.Conv2d(1, 3, 1), torch.nn.ReLU(), torch.nn.Conv2d(3, 2, 1))"
    (bundle / "configs" / "inference.json").write_text(json.dumps(config))
    torch.save(weights, bundle / "models" / "model.pt")
    return bundle


def _cohort(root: Path, shape=(SIZE, SIZE)) -> Path:
    entries = []
    for group, n in GROUPS.items():
        for k in range(n):
            image = np.zeros(shape, np.float32)
            image[STRUCTURE, STRUCTURE] = 1.0
            if group == "B":
                image[MARKER, MARKER] = 2.0
            entries.append(
                {
                    "image": save_nifti(root / f"{group}{k}_img.nii.gz", image, np.float32),
                    "label": save_nifti(root / f"{group}{k}_lab.nii.gz", image == 1.0),
                    "group": group,
                }
            )
    path = root / "cohort.json"
    path.write_text(json.dumps(entries))
    return path


def _argv(root: Path, datalist: Path, ts: Path, ba: Path) -> list[str]:
    out = root / "audit"
    return [str(datalist), "--output", str(out), "--by", "group", "--bundle", str(ts), "--baseline", str(ba)] + [
        "--no-progress",
        "--no-surface",
        "--n-resamples",
        "200",
        "--min-group-size",
        "4",
    ]


def test_marker_region_localised_with_the_proxy(tmp_path):
    ts, ba = _bundle(tmp_path, "ts", TS), _bundle(tmp_path, "ba", BA)
    assert main([*_argv(tmp_path, _cohort(tmp_path), ts, ba), "--shortcut", "group"]) == 0
    out = tmp_path / "audit"
    section = json.loads((out / "results.json").read_text())["shortcut"]
    # occlusion drops: TS on a B image loses the marker's 4 x 5 = 20 (rank 1) and 9 per structure cell (ranks 2-5,
    # tied 3.5), the other 59 regions tie at 35; on an A image the structure ties at 2.5, the rest at 34.5.
    # Medians over 8 B and 4 A images; BA never uses the marker; the proxy differs in region 0 only.
    expected_ts = np.full(64, 35.0)
    expected_ts[0], expected_ts[STRUCTURE_REGIONS] = 1.0, 3.5
    expected_ba = np.full(64, 34.5)
    expected_ba[STRUCTURE_REGIONS] = 2.5
    expected_sa = np.full(64, 33.0)
    expected_sa[0] = 1.0
    profiles = section["profiles"]
    assert profiles["ts"] == pytest.approx(expected_ts.tolist())
    assert profiles["ba"] == pytest.approx(expected_ba.tolist())
    assert profiles["sa"] == pytest.approx(expected_sa.tolist())
    assert "proxy" in section["sa"] and section["n_images"] == 12 and section["groups"] == ["A", "B"]
    for key, (x, y) in {
        "ts_sa": (expected_ts, expected_sa),
        "ts_ba": (expected_ts, expected_ba),
        "sa_ba": (expected_sa, expected_ba),
    }.items():
        assert section["correlations"][key]["r"] == pytest.approx(np.corrcoef(x, y)[0, 1])
    assert section["correlations"]["ts_sa"]["p"] < 0.05
    # after BA, TS and SA both single out region 0 by the same proportions: partial r = 1, every resample too
    partial = section["partial"]
    assert partial["r"] == pytest.approx(1.0)
    assert partial["ci_low"] == pytest.approx(1.0) and partial["ci_high"] == pytest.approx(1.0)
    assert partial["p"] < 0.05 and partial["n_undefined"] == 0
    top = section["top_regions"]
    assert len(top) == 5 and (top[0]["region"], top[0]["row"], top[0]["col"]) == (0, 0, 0)
    assert top[0]["score"] > 10 * abs(top[1]["score"])
    report = (out / "report.md").read_text()
    assert "### Shortcut localisation by group (OSCAR)" in report and "**SA is a proxy**" in report
    assert "| TS, SA given BA (partial) | 1.000 [1.000, 1.000] (95% bootstrap) |" in report
    assert "| 1 | 0 (0, 0) |" in report
    assert "![Shortcut regions by group](shortcut_regions.png)" in report
    assert (out / "shortcut_regions.png").stat().st_size > 1000
    assert (out / "report.html").read_text().count('src="data:image/png;base64,') >= 3


def _no_inference(monkeypatch):
    import common.audit.infer as infer

    def fail(*args, **kwargs):
        raise AssertionError("the check must come before the bundle's inference")

    monkeypatch.setattr(infer, "predict_missing", fail)


def test_cohort_problems_named_before_inference(tmp_path, monkeypatch, capsys):
    _no_inference(monkeypatch)
    ts, ba = _bundle(tmp_path, "ts", TS), _bundle(tmp_path, "ba", BA)
    datalist = _cohort(tmp_path)
    argv = _argv(tmp_path, datalist, ts, ba)
    assert main([*argv, "--shortcut", "scanner"]) == 1
    err = capsys.readouterr().err
    assert f"{datalist}: [0] has no 'scanner' attribute (--shortcut scanner)" in err and "12 problems" in err
    entries = json.loads(datalist.read_text())
    for e in entries:
        e["scanner"] = "X"
    datalist.write_text(json.dumps(entries))
    assert main([*argv, "--shortcut", "scanner"]) == 1
    assert "--shortcut scanner: every entry is in group 'X', an attribute needs two groups" in capsys.readouterr().err
    volume = np.zeros((SIZE, SIZE, 4), np.float32)
    save_nifti(Path(entries[0]["image"]), volume, np.float32)
    save_nifti(Path(entries[0]["label"]), volume)
    assert main([*argv, "--shortcut", "group"]) == 1
    err = capsys.readouterr().err
    assert f"{entries[0]['image']}: --shortcut is 2-D only, the image has shape (32, 32, 4)" in err


def test_bundle_without_preprocessing_named_before_inference(tmp_path, monkeypatch):
    _no_inference(monkeypatch)
    ts, ba = _bundle(tmp_path, "ts", TS), _bundle(tmp_path, "ba", BA)
    config = json.loads((ba / "configs" / "inference.json").read_text())
    del config["preprocessing"], config["dataset"], config["dataloader"], config["evaluator"], config["run"]
    (ba / "configs" / "inference.json").write_text(json.dumps(config))
    with pytest.raises(KeyError, match="no 'preprocessing'"):
        main([*_argv(tmp_path, _cohort(tmp_path), ts, ba), "--shortcut", "group"])


def test_attribute_model_must_be_a_classifier(tmp_path, monkeypatch):
    _no_inference(monkeypatch)
    ts, ba = _bundle(tmp_path, "ts", TS), _bundle(tmp_path, "ba", BA)
    argv = [*_argv(tmp_path, _cohort(tmp_path), ts, ba), "--shortcut", "group", "--attribute-model", str(ts)]
    with pytest.raises(ValueError, match=r"--attribute-model .*: the network gives \(1, 2, 32, 32\) .* not \(1, K"):
        main(argv)


def test_shortcut_options_checked(tmp_path, capsys):
    datalist = _cohort(tmp_path)
    with pytest.raises(SystemExit):
        main([str(datalist), "--output", str(tmp_path / "o"), "--by", "group", "--shortcut", "group"])
    assert "give both" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([str(datalist), "--output", str(tmp_path / "o"), "--by", "group", "--baseline", str(tmp_path)])
    assert "--baseline and --attribute-model are for --shortcut ATTR" in capsys.readouterr().err


def test_classifier_attribute_model(tmp_path):
    """SA = a classifier whose class-1 logit is the image's maximum minus 1.5: on B images the marker (2) decides,
    so SA's occlusion ranks region 0 first there; the partial correlation comes from the image bootstrap."""
    ts, ba = _bundle(tmp_path, "ts", TS), _bundle(tmp_path, "ba", BA)
    sa = tmp_path / "sa"
    (sa / "configs").mkdir(parents=True)
    (sa / "models").mkdir()
    config = copy.deepcopy(INFERENCE_JSON)
    config["network_def"] = (
        "$torch.nn.Sequential(torch.nn.AdaptiveMaxPool2d(1), torch.nn.Flatten(), torch.nn.Linear(1, 2))"
    )
    torch.save({"2.weight": torch.tensor([[0.0], [1.0]]), "2.bias": torch.tensor([0.0, -1.5])}, sa / "models" / "m.pt")
    config["handlers"][0]["load_path"] = "$@bundle_root + '/models/m.pt'"
    (sa / "configs" / "inference.json").write_text(json.dumps(config))
    argv = [*_argv(tmp_path, _cohort(tmp_path), ts, ba), "--shortcut", "group", "--attribute-model", str(sa)]
    assert main(argv) == 0
    section = json.loads((tmp_path / "audit" / "results.json").read_text())["shortcut"]
    assert section["sa"] == "classifier bundle"
    # B (8 of 12): occluding the marker drops the class-1 logit by 1, nothing else does (the rest ties at 33);
    # A: class 0 predicted, a constant logit, every region ties. The profile is the proxy's of the first test.
    expected_sa = np.full(64, 33.0)
    expected_sa[0] = 1.0
    assert section["profiles"]["sa"] == pytest.approx(expected_sa.tolist())
    assert section["top_regions"][0]["region"] == 0
    partial = section["partial"]
    assert partial["r"] == pytest.approx(1.0) and partial["ci_low"] == pytest.approx(1.0)
    assert partial["ci_high"] == pytest.approx(1.0) and partial["n_undefined"] == 0

"""``python -m common.audit BIDS_ROOT``: a small BIDS-like cohort generated here, and each bad input named."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from common.audit.__main__ import main

SHAPE = (10, 8, 4)
PRED = "model/{participant_id}_dseg.nii.gz"
LABEL = "manual/{participant_id}/anat/{participant_id}_dseg.nii.gz"
# participant, sex, age, site; sex M's predictions grow by half (box 4 -> 6 voxels wide)
PARTICIPANTS = [(f"sub-{k:02d}", "FM"[k % 2], 20 + 5 * k, "AB"[k // 5]) for k in range(10)]


def _save(path: Path, data: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data.astype(np.uint8), np.eye(4)), str(path))


def _bids(root: Path, rows=PARTICIPANTS, header="participant_id\tsex\tage\tsite") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    lines = [header] + ["\t".join(map(str, row)) for row in rows]
    (root / "participants.tsv").write_text("\n".join(lines) + "\n")
    (root / "dataset_description.json").write_text(json.dumps({"Name": "audit test", "BIDSVersion": "1.9.0"}))
    for pid, sex, _age, _site in PARTICIPANTS:
        label = np.zeros(SHAPE, np.uint8)
        label[1:5, 1:5, 1:3] = 1
        pred = np.zeros(SHAPE, np.uint8)
        pred[1 : 7 if sex == "M" else 5, 1:5, 1:3] = 1
        _save(root / "derivatives" / LABEL.format(participant_id=pid), label)
        _save(root / "derivatives" / PRED.format(participant_id=pid), pred)
    return root


def _run(root: Path, out: Path, *extra: str) -> int:
    argv = [str(root), "--output", str(out), "--prediction-pattern", PRED, "--label-pattern", LABEL]
    return main([*argv, "--no-progress", "--no-surface", "--n-resamples", "200", *extra])


def test_bids_cohort_from_participants_and_patterns(tmp_path):
    root = _bids(tmp_path / "bids")
    out = tmp_path / "out"
    assert _run(root, out, "--bins", "2") == 0
    results = json.loads((out / "results.json").read_text())
    assert results["datalist"] == str(root / "participants.tsv")
    # every column is an attribute; age reads as numbers
    assert results["attributes"]["sex"] == {"kind": "categorical", "groups": ["F", "M"]}
    assert results["attributes"]["age"]["kind"] == "continuous"
    assert results["attributes"]["site"]["groups"] == ["A", "B"]
    assert [c["id"] for c in results["cases"]] == [p[0] for p in PARTICIPANTS]
    assert results["cases"][3]["age"] == 35.0
    assert results["cases"][3]["label"] == str(root / "derivatives" / LABEL.format(participant_id="sub-03"))
    sex = results["disparity"]["sex"]["label_1"]
    assert sex["volume_bias"]["means"] == pytest.approx({"F": 0.0, "M": 0.5})
    assert results["trend"]["age"]["label_1"]["n"] == 10
    assert (out / "report.html").is_file()


def test_bids_subject_placeholder_and_wildcard(tmp_path):
    root = _bids(tmp_path / "bids")
    out = tmp_path / "out"
    pattern = "model/sub-{subject}_*.nii.gz"
    argv = [str(root), "--output", str(out), "--prediction-pattern", pattern, "--label-pattern", LABEL, "--by", "sex"]
    assert main([*argv, "--no-progress", "--no-surface", "--n-resamples", "50"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["cases"][0]["prediction"] == str(root / "derivatives" / "model" / "sub-00_dseg.nii.gz")
    assert list(results["attributes"]) == ["sex"]


def _errors(root: Path, tmp_path: Path, capsys, *extra: str) -> list[str]:
    out = tmp_path / "out"
    assert _run(root, out, *extra) == 1
    assert not (out / "results.json").exists()
    err = capsys.readouterr().err
    return [line.strip()[2:] for line in err.splitlines() if line.strip().startswith("- ")]


def test_bids_without_participant_id_column(tmp_path, capsys):
    root = _bids(tmp_path / "bids", header="subject\tsex\tage\tsite")
    assert _errors(root, tmp_path, capsys) == [
        f"{root / 'participants.tsv'}: no 'participant_id' column (columns: subject, sex, age, site)"
    ]


def test_bids_participant_without_files(tmp_path, capsys):
    root = _bids(tmp_path / "bids")
    missing = root / "derivatives" / PRED.format(participant_id="sub-03")
    missing.unlink()
    assert _errors(root, tmp_path, capsys) == [
        f"{root / 'participants.tsv'}: participant sub-03 has no prediction: no file matches {missing}"
    ]


def test_bids_prediction_on_another_grid(tmp_path, capsys):
    root = _bids(tmp_path / "bids")
    pred = root / "derivatives" / PRED.format(participant_id="sub-02")
    _save(pred, np.zeros((10, 8, 5), np.uint8))
    label = root / "derivatives" / LABEL.format(participant_id="sub-02")
    assert _errors(root, tmp_path, capsys) == [
        f"{pred}: prediction shape (10, 8, 5) does not match label {label} shape (10, 8, 4)"
    ]


def test_bids_attribute_with_one_group_and_missing_value(tmp_path, capsys):
    rows = [(pid, sex, "n/a" if pid == "sub-04" else age, "A") for pid, sex, age, _site in PARTICIPANTS]
    root = _bids(tmp_path / "bids", rows=rows)
    tsv = root / "participants.tsv"
    assert _errors(root, tmp_path, capsys) == [
        f"{tsv}: sub-04 has no 'age' attribute (--by age)",
        f"{tsv}: --by site: every entry is in group 'A', nothing to compare",
    ]


def test_bids_patterns_need_a_folder(tmp_path, capsys):
    (tmp_path / "dl.json").write_text("[]")
    with pytest.raises(SystemExit):
        main([str(tmp_path / "dl.json"), "--output", str(tmp_path / "o"), "--prediction-pattern", PRED])
    assert "need a BIDS root folder" in capsys.readouterr().err


def test_bids_without_participants_tsv_or_attributes(tmp_path, capsys):
    root = _bids(tmp_path / "bids")
    (root / "participants.tsv").unlink()
    assert _errors(root, tmp_path, capsys) == [
        f"{root / 'participants.tsv'}: file not found (a BIDS dataset lists its participants there)"
    ]
    (root / "participants.tsv").write_text("participant_id\n" + "\n".join(p[0] for p in PARTICIPANTS) + "\n")
    assert _errors(root, tmp_path, capsys) == [
        f"{root / 'participants.tsv'}: no attribute column besides participant_id to group by"
    ]

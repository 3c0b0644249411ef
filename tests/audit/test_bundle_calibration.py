"""``--keep-probabilities``: calibration by group from a bundle's own softmax, and the ECE gap's permutation test
among the corrected tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from common.audit.__main__ import main
from common.audit.disparity import gap_permutation_test
from tests.audit.cohort_files import save_nifti
from tests.audit.test_audit import _tiny_bundle

SHAPE = (8, 8, 8)  # 1 mm voxels, 512 per image
VOXELS = 512
AMBIGUOUS = (8, 16, 24, 32, 40)  # per case of a group: voxels where the network is unsure, 3/4 of them structure
CONFIDENCE = {"A": 0.75, "B": 0.95}  # A: calibrated (3/4 right at 0.75); B: over-confident (3/4 right at 0.95)


def _logit(p: float) -> float:
    return float(np.log(p / (1 - p)))


def _cohort(root: Path) -> Path:
    """Image intensity = the class-1 logit of the bundle's network (weights set in :func:`_bundle`): +20 on a
    2 x 2 x 2 core of the structure, logit(p) on ``m`` ambiguous voxels (the first 3m/4 labelled structure), -20
    elsewhere. Both groups get the same labels and argmax predictions; only the confidence differs."""
    entries = []
    for group, p in CONFIDENCE.items():
        for k, m in enumerate(AMBIGUOUS):
            image = np.full(SHAPE, -20.0, np.float32)
            label = np.zeros(SHAPE, np.uint8)
            image[1:3, 1:3, 1:3], label[1:3, 1:3, 1:3] = 20.0, 1
            slab_image, slab_label = image[:, :, 5:].reshape(-1), label[:, :, 5:].reshape(-1)
            slab_image[:m] = _logit(p)
            slab_label[: 3 * m // 4] = 1
            image[:, :, 5:], label[:, :, 5:] = slab_image.reshape(8, 8, 3), slab_label.reshape(8, 8, 3)
            entries.append(
                {
                    "image": save_nifti(root / f"{group}{k}_img.nii.gz", image, np.float32),
                    "label": save_nifti(root / f"{group}{k}_lab.nii.gz", label),
                    "group": group,
                }
            )
    path = root / "cohort.json"
    path.write_text(json.dumps(entries))
    return path


def _bundle(root: Path) -> Path:
    """The model-zoo-format tiny bundle of ``test_audit``, with logits class 0 = 0 and class 1 = the intensity."""
    bundle = _tiny_bundle(root)
    weights = {"weight": torch.tensor([0.0, 1.0]).reshape(2, 1, 1, 1, 1), "bias": torch.tensor([0.0, 0.0])}
    torch.save(weights, bundle / "models" / "model.pt")
    return bundle


def _holm(pvalues: list[float]) -> list[float]:
    order = sorted(range(len(pvalues)), key=lambda k: pvalues[k])
    out, running = [0.0] * len(pvalues), 0.0
    for rank, k in enumerate(order):
        running = max(running, min(1.0, (len(pvalues) - rank) * pvalues[k]))
        out[k] = running
    return out


def test_over_confident_group_has_larger_ece_and_a_corrected_gap_test(tmp_path, monkeypatch):
    datalist, bundle, out = _cohort(tmp_path), _bundle(tmp_path), tmp_path / "audit"
    argv = [str(datalist), "--output", str(out), "--by", "group", "--bundle", str(bundle), "--no-progress"]
    argv += ["--no-surface", "--n-resamples", "2000"]
    assert main(argv) == 0  # label maps only: no calibration, three tests (Dice, volume bias, AUC)
    plain = json.loads((out / "results.json").read_text())
    assert plain["by"]["group"]["B"]["cube"]["ece"] is None and "ece" not in plain["disparity"]["group"]["cube"]
    assert plain["probabilities"] == {"bundle_softmax": False, "n_cases": 0}

    assert main([*argv, "--keep-probabilities"]) == 0  # predictions reused; the softmax pass adds calibration
    results = json.loads((out / "results.json").read_text())
    a, b = results["by"]["group"]["A"]["cube"], results["by"]["group"]["B"]["cube"]
    assert a["dice"] == pytest.approx(b["dice"])  # same argmax in both groups
    assert a["ece"] == pytest.approx(0.0, abs=1e-6)  # 0.75 confident, 3/4 right
    # B: the ambiguous voxels share the top bin with the core: |sum p - sum truth| / N = (0.95 - 0.75) m / 512
    expected = [0.2 * m / VOXELS for m in AMBIGUOUS]
    assert b["ece"] == pytest.approx(np.mean(expected), rel=1e-5)
    assert b["reliability"]["count"][9] == 5 * 8 + sum(AMBIGUOUS)
    assert b["reliability"]["frequency"][9] == pytest.approx((5 * 8 + 0.75 * sum(AMBIGUOUS)) / (40 + sum(AMBIGUOUS)))
    assert a["reliability"]["mean_probability"][7] == pytest.approx(0.75) and a["reliability"]["frequency"][7] == 0.75
    assert results["probabilities"] == {"bundle_softmax": True, "n_cases": 10}
    d = results["disparity"]["group"]["cube"]["ece"]
    assert (d["worst"], d["best"]) == ("B", "A")
    assert d["gap"]["estimate"] == pytest.approx(np.mean(expected), rel=1e-5)
    # the groups separate perfectly: only 2 of the C(10, 5) = 252 relabellings reach the observed gap
    assert d["test"]["statistic"] == pytest.approx(d["gap"]["estimate"])
    assert d["test"]["p"] == pytest.approx(2 / 252, abs=0.006) and d["test"]["n_resamples"] == 2000
    # one ECE test per (attribute, structure): the count goes up by one, and the ECE gap is corrected with the rest
    assert results["tests"]["n"] == plain["tests"]["n"] + 1 == 4
    cube = results["disparity"]["group"]["cube"]
    family = [cube["dice"]["test"], cube["volume_bias"]["test"], d["test"], results["auc"]["group"]["cube"]["test"]]
    assert [t["p_corrected"] for t in family] == pytest.approx(_holm([t["p"] for t in family]))
    report = (out / "report.md").read_text()
    assert "4 between-group tests made (Dice, volume bias and expected calibration error differences" in report
    assert (
        f"- cube calibration by group: expected calibration error highest in group B ({b['ece']:.4f}), lowest in "
        f"group A ({a['ece']:.4f}); gap {d['gap']['estimate']:.4f} [" in report
    )
    assert "| group | cube | ECE | - | B (" in report
    assert (out / "reliability_by_group.png").stat().st_size > 1000
    saved = sorted(p.name for p in (out / "predictions").iterdir())
    assert len(saved) == 20 and sum(name.endswith(".calibration.json") for name in saved) == 10  # no maps

    import common.audit.calibration as calibration

    def no_softmax(*args, **kwargs):
        raise AssertionError("a rerun must reuse the cached calibration")

    monkeypatch.setattr(calibration, "_case", no_softmax)
    assert main([*argv, "--keep-probabilities"]) == 0
    assert json.loads((out / "results.json").read_text())["by"] == results["by"]


def test_keep_probabilities_needs_a_bundle(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main([str(_cohort(tmp_path)), "--output", str(tmp_path / "o"), "--by", "group", "--keep-probabilities"])
    assert "--keep-probabilities keeps a bundle network's softmax: give --bundle DIR" in capsys.readouterr().err


def test_softmax_off_the_label_grid_fails_before_inference(tmp_path, monkeypatch):
    import common.audit.infer as infer

    def no_inference(*args, **kwargs):
        raise AssertionError("the grid check must come before the bundle's inference")

    monkeypatch.setattr(infer, "predict_missing", no_inference)
    bundle = _bundle(tmp_path)
    config = json.loads((bundle / "configs" / "inference.json").read_text())
    config["network_def"] = "$torch.nn.Sequential(torch.nn.Conv3d(1, 2, 1), torch.nn.Upsample(scale_factor=2))"
    (bundle / "configs" / "inference.json").write_text(json.dumps(config))
    weights = torch.load(bundle / "models" / "model.pt", weights_only=True)
    torch.save({f"0.{k}": v for k, v in weights.items()}, bundle / "models" / "model.pt")
    argv = [str(_cohort(tmp_path)), "--output", str(tmp_path / "o"), "--by", "group", "--bundle", str(bundle)]
    with pytest.raises(RuntimeError, match=r"maps back to shape \(16, 16, 16\), not the label's \(8, 8, 8\)"):
        main([*argv, "--keep-probabilities", "--no-progress"])


def test_gap_permutation_test_within_strata():
    """A difference between sites, groups unevenly spread over them: the plain gap is large and significant,
    the site-adjusted one is zero (p = 1)."""
    groups = np.asarray(["a"] * 6 + ["b"] * 6, dtype=object)
    sites = np.asarray(["s", "s", "s", "s", "t", "t", "s", "s", "t", "t", "t", "t"], dtype=object)
    noise = np.tile([0.0, 0.01], 6)
    y = np.where(sites == "t", 0.1, 0.0) + noise
    plain = gap_permutation_test(y, groups, ["a", "b"], n_resamples=999, seed=0)
    assert plain["statistic"] == pytest.approx(0.1 * (4 - 2) / 6)
    adjusted = gap_permutation_test(y, groups, ["a", "b"], sites, n_resamples=999, seed=0)
    assert adjusted["statistic"] == pytest.approx(0.0, abs=1e-12) and adjusted["p"] == 1.0
    assert plain["p"] < adjusted["p"]
    assert gap_permutation_test(y, groups, ["a", "c"])["p"] is None  # one group has no values

"""The biomarker_precision bundle: ensemble network and loss, evaluation rows and summaries from hand-made
samples, smoke train+evaluate, inference with intervals, bad input."""

import json

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser
from monai.networks.nets import UNet

from common.data.datalist import DatalistError
from common.handlers.biomarker_precision import check_test_hearts, lv_biomarker_samples, summarize_rows
from common.metrics.precision import precision_summary
from common.networks.ensemble import DeepEnsemble, MemberLoss
from common.study.runner import REPO_ROOT
from common.uncertainty import biomarker_samples
from tests.bundles.cli import bundle_cli

CONFIGS = REPO_ROOT / "bundles" / "biomarker_precision" / "configs"
TINY = ["--epochs", "2", "--num_train", "8", "--num_val", "2", "--num_test", "3", "--val_interval", "2",
        "--num_members", "2", "--num_samples", "4", "--num_threads", "1"]  # fmt: skip


def _bundle(configs, *args, **options):
    return bundle_cli(CONFIGS, configs, *args, **options)


def _unet():
    return UNet(2, 1, 4, (8, 16), (2,), num_res_units=0, dropout=0.1)


def test_ensemble_members_differ_and_modes_shape():
    net = DeepEnsemble(_unet(), num_members=3, seed=4)
    w = [next(m.parameters()).detach() for m in net.members]
    assert not torch.equal(w[0], w[1]) and not torch.equal(w[1], w[2])
    again = DeepEnsemble(_unet(), num_members=3, seed=4)  # same seed: same members, whatever the global RNG
    assert all(torch.equal(a, next(m.parameters())) for a, m in zip(w, again.members))
    x = torch.rand(2, 1, 16, 16)
    assert net.train()(x).shape == (2, 12, 16, 16)
    out = net.eval()(x)
    assert out.shape == (2, 4, 16, 16)
    # log of the members' mean probability: softmax(out) is that mean
    mean = torch.stack([torch.softmax(m(x), 1) for m in net.members]).mean(0)
    torch.testing.assert_close(torch.softmax(out, 1), mean, atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="num_members"):
        DeepEnsemble(_unet(), num_members=0)


def test_member_loss_is_the_mean_of_member_losses():
    loss = MemberLoss(torch.nn.MSELoss(), num_members=2)
    target = torch.zeros(1, 2, 1, 1)
    pred = torch.tensor([1.0, 1.0, 3.0, 3.0]).view(1, 4, 1, 1)  # member 0: MSE 1, member 1: MSE 9
    assert loss(pred, target).item() == pytest.approx(5.0)
    with pytest.raises(ValueError, match="members"):
        loss(torch.zeros(1, 3, 1, 1), target)


def test_lv_biomarkers_of_the_largest_component():
    # sample 0: a 4 x 10 px LV (rows 2-5, cols 3-12) plus a stray 1 x 2 px blob far away; sample 1: the LV alone.
    probs = torch.zeros(2, 4, 20, 20)
    probs[:, 0] = 1.0
    probs[:, 0, 2:6, 3:13], probs[:, 1, 2:6, 3:13] = 0.0, 1.0
    probs[0, 0, 17, 17:19], probs[0, 1, 17, 17:19] = 0.0, 1.0
    spacing = (2.0, 2.0)
    clean = lv_biomarker_samples(probs, spacing)
    raw = lv_biomarker_samples(probs, spacing, largest_component=False)
    # 40 px of 4 mm^2; Feret diagonal hypot(3, 9) px * 2 mm; V = 8 A^2 / (3 pi L) / 1000
    length = 2.0 * np.hypot(3, 9)
    for row in clean:
        assert row["area_mm2"] == 160.0 and row["length_mm"] == pytest.approx(length)
        assert row["volume_ml"] == pytest.approx(8 * 160.0**2 / (3 * np.pi * length) / 1000)
    assert raw[0]["area_mm2"] == 168.0 and raw[0]["length_mm"] > length  # the blob stretches the Feret length
    lib = biomarker_samples(probs, spacing)
    assert [r["volume_ml"] for r in raw] == pytest.approx([r["volume_ml"] for r in lib])
    assert clean[1] == {k: lib[1][k] for k in ("area_mm2", "length_mm", "volume_ml")}


def _row(subject, estimator, group, scan, rescan, true=0.6):
    return {"id": f"{subject}/{estimator}", "subject": subject, "estimator": estimator, "group": group,
            **{f"{b}_true": true for b in ("edv", "esv", "ef")},
            **{f"{b}_scan_samples": scan for b in ("edv", "esv", "ef")},
            **{f"{b}_rescan_samples": rescan for b in ("edv", "esv", "ef")}}  # fmt: skip


def test_summarize_rows_by_estimator_and_group():
    rows = [
        _row("a", "ensemble", "normal", [0.5, 0.6, 0.7], [0.5, 0.6, 0.7]),  # identical: overlap 1
        _row("b", "ensemble", "normal", [0.5, 0.55, 0.6], [0.8, 0.85, 0.9]),  # disjoint: overlap 0
        _row("c", "ensemble", "low", [0.4, 0.6, 0.8], [0.5, 0.6, None]),
        _row("a", "tta", "normal", [0.6, 0.6, 0.6], [0.6, 0.6, 0.6]),
        _row("b", "tta", "normal", [0.6, 0.6, 0.6], [0.7, 0.7, 0.7]),
    ]
    out = summarize_rows(rows, ["ensemble", "tta"])
    ens = out["overall"]["ensemble"]["ef"]
    assert ens == precision_summary(rows[:3], "ef") and ens["n_subjects"] == 3
    # overlap a: 1; b: 0; c: rescan [0.5025, 0.5975] (the None sample dropped) inside scan [0.41, 0.79], 0.095 / 0.38
    assert ens["mean_overlap"] == pytest.approx((1 + 0 + 0.25) / 3)
    assert ens["share_overlap_above"] == pytest.approx(1 / 3)
    assert out["overall"]["tta"]["ef"]["bias"] == pytest.approx(-0.05)  # (0 + (0.6 - 0.7)) / 2
    # groups need two subjects: "low" (one heart) is left out
    assert set(out["by_group"]["ensemble"]) == {"normal"} and set(out["by_group"]["tta"]) == {"normal"}
    assert out["by_group"]["ensemble"]["normal"]["ef"]["share_overlap_above"] == 0.5


def test_check_test_hearts_names_every_problem():
    frames = [{"subject": "s1", "phase": p, "session": s, "label": "x", "image": "x"}
              for p in ("ED", "ES") for s in ("scan", "rescan")]  # fmt: skip
    assert set(check_test_hearts(frames)["s1"]) == {("ED", "scan"), ("ES", "scan"), ("ED", "rescan"), ("ES", "rescan")}
    bad = frames[:3] + [{"image": "y.nii.gz", "label": "y"}, {**frames[0], "phase": "MID"}]
    with pytest.raises(DatalistError) as err:
        check_test_hearts(bad, "list.json")
    text = str(err.value)
    assert "lacks subject, phase, session" in text and "not in ED|ES" in text and "lacks frame(s) ES/rescan" in text


def test_configs_parse_with_defaults():
    parser = ConfigParser()
    parser.read_config([str(CONFIGS / "train.yaml"), str(CONFIGS / "evaluate.yaml")])
    assert parser["estimators"] == ["ensemble", "tta", "mc_dropout"] and parser["dropout"] > 0
    assert parser["largest_component"] is True
    net = parser.get_parsed_content("network_def")
    assert len(net.members) == parser["num_members"]
    assert net.eval()(torch.rand(1, 1, 64, 64)).shape == (1, 4, 64, 64)


@pytest.mark.slow
def test_smoke_train_evaluate_and_inference(tmp_path):
    out, ckpt = tmp_path / "run", tmp_path / "run" / "model.pt"
    _bundle(["train.yaml", "evaluate.yaml"], "--output_dir", out, "--ckpt_path", ckpt, *TINY)
    record = json.loads((out / "metrics.json").read_text())
    assert set(record) == {"settings", "metrics", "per_sample", "extra"}
    rows = record["per_sample"]
    assert len(rows) == 3 * 3 and {r["estimator"] for r in rows} == {"ensemble", "tta", "mc_dropout"}
    for r in rows:  # ensemble: one sample per member (2); TTA and MC dropout: num_samples (4)
        n = 2 if r["estimator"] == "ensemble" else 4
        assert all(len(r[f"{b}_{s}_samples"]) == n for b in ("edv", "esv", "ef") for s in ("scan", "rescan"))
        assert r["ef_true"] == pytest.approx((r["edv_true"] - r["esv_true"]) / r["edv_true"])
    # the per-subject rows recompute the summary
    for est in ("ensemble", "tta", "mc_dropout"):
        mine = [r for r in rows if r["estimator"] == est]
        for b in ("edv", "ef"):
            expected = precision_summary(mine, b)
            for key in ("bias", "share_overlap_above", "share_distributions_differ", "coverage"):
                got, want = record["metrics"][f"{b}_{key}_{est}"], expected[key]
                assert (got is None and want != want) or got == pytest.approx(want)
        assert 0.0 <= record["metrics"][f"dice_mean_{est}"] <= 1.0
    assert record["extra"]["overall"]["ensemble"]["ef"]["n_subjects"] == 3

    # inference on the test datalist: per-image JSON with intervals, entropy maps, per-subject EF
    datalist = record["settings"]["datalist"]
    inf = tmp_path / "inf"
    _bundle(["inference.yaml"], "--datalist", datalist, "--output_dir", inf, "--ckpt_path", ckpt, "--num_members", 2,
            "--estimator", "mc_dropout", "--num_samples", 5)  # fmt: skip
    summary = json.loads((inf / "biomarkers.json").read_text())
    assert len(summary["images"]) == 12 and len(summary["subjects"]) == 3 * 2  # 3 hearts x (scan, rescan)
    image = summary["images"][0]
    assert image["estimator"] == "mc_dropout" and len(image["volume_ml"]["samples"]) == 5
    for s in summary["subjects"]:
        ef = s["ef"]
        assert ef["low"] is None or ef["low"] <= ef["estimate"] <= ef["high"]
    stem = image["image"].split("/")[-1].split(".")[0]
    ent = np.asarray(nib.load(inf / f"{stem}_uncertainty.nii.gz").dataobj)
    assert ent.shape == (64, 64) and ent.min() >= 0 and ent.max() <= np.log(4) + 1e-5
    seg = nib.load(inf / f"{stem}_seg.nii.gz")
    assert set(np.unique(np.asarray(seg.dataobj))) <= {0, 1, 2, 3}


@pytest.mark.slow
def test_two_process_training_saves_the_plain_ensemble(tmp_path):
    out = tmp_path / "ddp"
    _bundle(["train.yaml", "multi_gpu_train.yaml"], "--output_dir", out, "--ckpt_path", out / "model.pt", *TINY,
            torchrun=True)  # fmt: skip
    weights = torch.load(out / "model.pt", weights_only=True)["model"]
    # saved without the DDP wrapper: evaluate.yaml and inference.yaml load it into a plain DeepEnsemble
    parser = ConfigParser()
    parser.read_config(str(CONFIGS / "inference.yaml"))
    parser["num_members"] = 2
    parser.get_parsed_content("network_def").load_state_dict(weights, strict=True)


def test_bad_datalist_gives_one_clear_error(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"training": [{"image": "missing.nii.gz", "label": "missing_label.nii.gz"}]}))
    proc = _bundle(["train.yaml"], "--datalist", bad, "--output_dir", tmp_path / "out", "--epochs", 1, check=False)
    assert proc.returncode != 0
    err = proc.stderr.strip().splitlines()
    assert err[-1].startswith("  - ") or err[0].startswith("error: invalid datalist"), proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and "missing.nii.gz" in proc.stderr

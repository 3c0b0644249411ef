"""The shortcut_label_flips bundle: configs parse, smoke train+evaluate+inference, bad user datalist."""

import json

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser

from common.study.runner import REPO_ROOT
from tests.bundles.cli import bundle_cli

CONFIGS = REPO_ROOT / "bundles" / "shortcut_label_flips" / "configs"
TINY = ["--epochs", "2", "--num_train", "16", "--num_val", "4", "--num_test", "8", "--val_interval", "2",
        "--num_threads", "1", "--channels", "[4, 8]"]  # fmt: skip


def _bundle(configs, *args, **options):
    return bundle_cli(CONFIGS, configs, *args, **options)


def test_configs_parse_with_defaults():
    parser = ConfigParser()
    parser.read_config([str(CONFIGS / "train.yaml"), str(CONFIGS / "evaluate.yaml")])
    for key in ("correlation", "seed", "channels", "epochs", "num_threads", "num_train", "learning_rate",
                "flip_threshold", "datalist", "dataset_dir", "output_dir", "ckpt_path", "resume"):  # fmt: skip
        assert key in parser, key
    net = parser.get_parsed_content("network_def")
    assert net(torch.rand(1, 1, 64, 64)).shape == (1, 3, 64, 64)
    phantom = parser.get_parsed_content("phantom")
    assert phantom["correlation"] == parser["correlation"] and phantom["size"] == parser["image_size"]
    inference = ConfigParser()
    inference.read_config(str(CONFIGS / "inference.yaml"))
    assert inference["channels"] == parser["channels"] and inference["num_classes"] == parser["num_classes"]


@pytest.mark.slow
def test_smoke_train_evaluate_and_inference(tmp_path):
    out, ckpt = tmp_path / "run", tmp_path / "run" / "model.pt"
    _bundle(["train.yaml", "evaluate.yaml"], "--output_dir", out, "--ckpt_path", ckpt, "--correlation", 0.75, *TINY)
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == {"settings", "metrics", "per_sample", "extra"}
    assert metrics["settings"]["correlation"] == 0.75
    m = metrics["metrics"]
    for g in ("common", "rare"):
        assert metrics["extra"]["groups"][g]["num_images"] == 4
        total = m[f"flip_correct_{g}"] + m[f"flip_flip_{g}"] + m[f"flip_miss_{g}"]
        assert total == pytest.approx(1.0)
        assert 0.0 <= m[f"flip_risk_{g}"] <= 1.0
    assert m["flip_gap"] == pytest.approx(m["flip_flip_rare"] - m["flip_flip_common"])
    assert len(metrics["per_sample"]) == 8 and {p["group"] for p in metrics["per_sample"]} == {"common", "rare"}
    assert any(p.name.startswith("events.out.tfevents") for p in out.iterdir())
    assert "model" in torch.load(ckpt, weights_only=True)

    # inference on an image of another size and affine: label map on the input's grid, flip-risk JSON beside it
    src = json.loads(open(metrics["settings"]["datalist"]).read())["test"][0]["image"]
    arr = np.asarray(nib.load(src).dataobj)
    big = np.kron(arr, np.ones((2, 2)))[:100, :90].astype(np.float32)
    affine = np.diag([0.7, 0.9, 1.0, 1.0])
    image_path = tmp_path / "case.nii.gz"
    nib.save(nib.Nifti1Image(big, affine), image_path)
    pred = tmp_path / "pred"
    _bundle(["inference.yaml"], "--input_image", image_path, "--ckpt_path", ckpt, "--output_dir", pred,
            "--channels", "[4, 8]")  # fmt: skip
    seg = nib.load(pred / "case_seg.nii.gz")
    assert seg.shape[:2] == (100, 90) and set(np.unique(np.asarray(seg.dataobj))) <= {0, 1, 2}
    np.testing.assert_allclose(seg.affine, affine, atol=1e-5)
    risk = json.loads((pred / "case_flip_risk.json").read_text())
    assert risk["image"].endswith("case.nii.gz") and 0.0 <= risk["flip_risk"] <= 1.0
    rows = (pred / "flip_risk.csv").read_text().splitlines()
    assert float(rows[1].split(",")[1]) == pytest.approx(risk["flip_risk"], abs=1e-6)
    unc = np.asarray(nib.load(pred / "case_identity_uncertainty.nii.gz").dataobj)
    assert unc.shape[:2] == (100, 90) and unc.min() >= 0.0 and unc.max() <= 1.0 + 1e-6


def test_a_datalist_without_identity_fails_before_training(tmp_path):
    image = np.zeros((32, 32), np.float32)
    label = np.zeros((32, 32), np.uint8)
    label[10:20, 10:20] = 1
    nib.save(nib.Nifti1Image(image, np.eye(4)), tmp_path / "img.nii.gz")
    nib.save(nib.Nifti1Image(label, np.eye(4)), tmp_path / "lab.nii.gz")
    entry = {"image": "img.nii.gz", "label": "lab.nii.gz"}
    datalist = tmp_path / "mine.json"
    datalist.write_text(json.dumps({"training": [entry], "validation": [entry], "test": [entry]}))
    proc = _bundle(["train.yaml", "evaluate.yaml"], "--datalist", datalist, "--output_dir", tmp_path / "out",
                   "--ckpt_path", tmp_path / "out" / "model.pt", *TINY, check=False)  # fmt: skip
    assert proc.returncode != 0
    text = proc.stdout + proc.stderr
    assert "mine.json: training[0] has no 'identity' / 'scene' key" in text
    assert not (tmp_path / "out" / "model.pt").exists()


@pytest.mark.slow
def test_two_process_gloo_training(tmp_path):
    out = tmp_path / "ddp"
    _bundle(["train.yaml", "multi_gpu_train.yaml"], "--output_dir", out, "--ckpt_path", out / "model.pt", *TINY,
            torchrun=True)  # fmt: skip
    assert "model" in torch.load(out / "model.pt", weights_only=True)
    assert len([p for p in out.iterdir() if p.name.startswith("events.out.tfevents")]) == 1  # rank 0 only


OSCAR = ["train.yaml", "evaluate.yaml", "train_scene.yaml", "oscar.yaml"]


def test_oscar_configs_parse_and_name_existing_layers():
    parser = ConfigParser()
    parser.read_config([str(CONFIGS / c) for c in OSCAR])
    from common.attribution.handlers import check_attribution

    section = check_attribution(parser.get_parsed_content("attribution"))
    assert section["target"] == "identity" and section["num_images"] == parser["num_attribution"]
    net = parser.get_parsed_content("network_def")
    assert section["gradcam_layer"] in dict(net.named_modules())
    scene = check_attribution(parser.get_parsed_content("scene#attribution"))
    classifier = parser.get_parsed_content("scene#network_def")
    assert scene["target"] == "scene" and scene["gradcam_layer"] in dict(classifier.named_modules())
    assert classifier(torch.rand(2, 1, 64, 64)).shape == (2, 2)
    # the segmentation run keeps evaluate.yaml's steps and ranks its model after them
    plain = ConfigParser()
    plain.read_config([str(CONFIGS / c) for c in ("train.yaml", "evaluate.yaml")])
    norm = lambda steps: [s.replace("::", "#") for s in steps]  # noqa: E731
    assert norm(parser["run"][:-2]) == norm(plain["run"])
    assert "write_attribution_ranks" in parser["run"][-2] and "write_attenuation" in parser["run"][-1]
    # test-time attenuation: off unless the study passes BA's and SA's folders; the section is checked before training
    from common.attribution.handlers import check_attenuation

    assert parser["oscar_ba_dir"] is None and parser["oscar_sa_dir"] is None
    attenuation = check_attenuation(parser.get_parsed_content("attenuation"))
    assert attenuation["combination"] == "occlusion/grid8" and attenuation["mode"] == "mean"
    assert any("check_attenuation" in step for step in parser["initialize"])


def test_a_config_without_the_attribution_target_fails_before_training(tmp_path):
    parser = ConfigParser()
    parser.read_config(str(CONFIGS / "oscar.yaml"))
    section = {k: v for k, v in parser["attribution"].items() if k != "target"}
    override = tmp_path / "no_target.json"
    override.write_text(json.dumps({"attribution": section}))
    out = tmp_path / "out"
    proc = _bundle([*OSCAR, override], "--output_dir", out, "--ckpt_path", out / "model.pt", *TINY, check=False)
    assert proc.returncode != 0
    assert "'attribution#target' must be one of ('identity', 'scene'), got None" in proc.stdout + proc.stderr
    assert not (out / "model.pt").exists()


@pytest.mark.slow
def test_segmentation_and_scene_runs_write_the_same_images_ranks(tmp_path):
    common = [*TINY, "--num_attribution", 8, "--cache_dir", tmp_path / "cache"]
    seg, scene = tmp_path / "seg", tmp_path / "scene"
    _bundle(OSCAR, "--output_dir", seg, "--ckpt_path", seg / "model.pt", "--correlation", 0.9, *common)
    _bundle(OSCAR, "--run_id", "run_scene", "--output_dir", scene, "--ckpt_path", scene / "model.pt",
            "--correlation", 0.5, *common)  # fmt: skip
    from common.attribution.handlers import ATTRIBUTION_FILE, load_attribution_ranks

    a, b = (load_attribution_ranks(p / ATTRIBUTION_FILE) for p in (seg, scene))
    assert a["meta"]["target"] == "identity" and b["meta"]["target"] == "scene"
    assert a["ids"] == b["ids"] and len(a["ids"]) == 8 and set(a["ranks"]) == set(b["ranks"])
    np.testing.assert_array_equal(a["partition"]["slic"], b["partition"]["slic"])  # same images, same superpixels
    metrics = json.loads((scene / "metrics.json").read_text())
    assert metrics["settings"]["model"] == "scene" and 0.0 <= metrics["metrics"]["scene_accuracy"] <= 1.0
    assert len(metrics["per_sample"]) == 8 and "model" in torch.load(scene / "model.pt", weights_only=True)
    assert "flip_gap" in json.loads((seg / "metrics.json").read_text())["metrics"]
    # a test model given BA's (here the 0.9 run) and SA's folders attenuates its shortcut regions; the others do not
    from common.attribution.handlers import ATTENUATION_FILE

    ts = tmp_path / "ts"
    _bundle(OSCAR, "--output_dir", ts, "--ckpt_path", ts / "model.pt", "--correlation", 0.99, *common,
            "--oscar_ba_dir", seg, "--oscar_sa_dir", scene)  # fmt: skip
    assert not (seg / ATTENUATION_FILE).exists() and not (scene / ATTENUATION_FILE).exists()
    att = json.loads((ts / ATTENUATION_FILE).read_text())
    assert att["k"] == 7 and len(att["regions"]) == 7 and att["num_images"] == 8 and len(att["random"]["draws"]) == 5
    record = json.loads((ts / "metrics.json").read_text())
    assert record["extra"]["oscar_attenuation"] == att and "flip_gap" in record["metrics"]

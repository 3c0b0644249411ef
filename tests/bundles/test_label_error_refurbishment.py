"""The label_error_refurbishment bundle: configs parse, smoke train+evaluate, inference, 2-process gloo training."""

import json

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser

from common.study.runner import REPO_ROOT
from tests.bundles.cli import bundle_cli

CONFIGS = REPO_ROOT / "bundles" / "label_error_refurbishment" / "configs"
TINY = ["--epochs", "2", "--detect_epoch", "2", "--vog_checkpoints", "2", "--vog_first_epoch", "1", "--loss_window", "1",
        "--num_train", "8", "--num_val", "2", "--num_test", "3", "--val_interval", "2", "--num_threads", "1"]  # fmt: skip


def _bundle(configs, *args, **options):
    return bundle_cli(CONFIGS, configs, *args, **options)


def test_configs_parse_with_defaults():
    parser = ConfigParser()
    parser.read_config([str(CONFIGS / "train.yaml"), str(CONFIGS / "evaluate.yaml")])
    for key, value in {
        "error_type": "boundary_jitter",
        "error_level": 0.0,
        "detector": "loss",
        "refurbish": False,
    }.items():
        assert parser[key] == value
    for key in (
        "epochs",
        "seed",
        "vog_checkpoints",
        "detect_epoch",
        "datalist",
        "dataset_dir",
        "output_dir",
        "ckpt_path",
    ):
        assert key in parser
    net = parser.get_parsed_content("network_def")
    assert net(torch.rand(1, 1, 64, 64)).shape == (1, 4, 64, 64)
    assert parser.get_parsed_content("error_radius") == [1, 1]
    parser["error_type"] = "systematic"
    assert parser.get_parsed_content("error_radius") == [2, 6]
    # errors are injected on annotations twice as fine as the 64 px training grid
    assert parser.get_parsed_content("phantom")["size"] == 2 * parser.get_parsed_content("image_size") == 128


@pytest.mark.slow
def test_smoke_train_evaluate_and_inference(tmp_path):
    out, ckpt = tmp_path / "run", tmp_path / "run" / "model.pt"
    _bundle(["train.yaml", "evaluate.yaml"], "--output_dir", out, "--ckpt_path", ckpt, "--error_type", "systematic",
            "--error_level", 0.5, "--refurbish", True, *TINY)  # fmt: skip
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == {"settings", "metrics", "per_sample", "extra"}
    curve = json.loads((out / "validation_curve.json").read_text())  # one validation, at epoch 2 of 2
    assert curve["metric"] == "val_mean_dice" and [p["epoch"] for p in curve["points"]] == [2]
    assert 0.0 <= curve["points"][0]["metrics"]["val_mean_dice"] <= 1.0 and curve["points"][0]["cpu_seconds"] > 0
    test = metrics["extra"]["test"]
    assert test["num_images"] == 3 and set(test["dice"]) == {"lv_cavity", "myocardium", "left_atrium"}
    assert sum(test["flip"]["global"].values()) == pytest.approx(1.0)
    assert len(metrics["per_sample"]) == 3 and all(p["id"] for p in metrics["per_sample"])
    assert metrics["metrics"]["dice_myocardium"] == test["dice"]["myocardium"]
    assert metrics["metrics"]["flip_flip"] == test["flip"]["global"]["flip"]
    det = metrics["extra"]["detection"]
    assert metrics["metrics"]["detection_auroc_loss"] == det["metrics"]["loss"]["auroc"]
    assert sum(det["flags"].values()) == 4 and len(det["flagged"]) == 4
    assert {"loss", "vog", "vog_all_raw_image"} <= set(det["metrics"])
    assert det["label_quality"]["num_refurbished"] == 4
    assert metrics["settings"]["error_type"] == "systematic"
    assert any(p.name.startswith("events.out.tfevents") for p in out.iterdir())
    state = torch.load(ckpt, weights_only=True)
    assert "model" in state and "optimizer" in state

    # Inference on an image of another size and affine: the segmentation keeps the input's grid.
    src = json.loads(open(det["flags"] and metrics["settings"]["datalist"]).read())["test"][0]["image"]
    arr = np.asarray(nib.load(src).dataobj)
    big = np.kron(arr, np.ones((2, 2)))[:100, :90].astype(np.float32)
    affine = np.diag([0.7, 0.9, 1.0, 1.0])
    affine[:2, 3] = [5.0, -3.0]
    image_path = tmp_path / "echo.nii.gz"
    nib.save(nib.Nifti1Image(big, affine), image_path)
    pred_dir = tmp_path / "pred"
    _bundle(["inference.yaml"], "--input_image", image_path, "--ckpt_path", ckpt, "--output_dir", pred_dir)
    seg = nib.load(pred_dir / "echo_seg.nii.gz")
    assert seg.shape[:2] == (100, 90)
    np.testing.assert_allclose(seg.affine, affine, atol=1e-5)
    assert set(np.unique(np.asarray(seg.dataobj))) <= {0, 1, 2, 3}
    rows = (pred_dir / "flip_risk.csv").read_text().splitlines()
    assert rows[0] == "image,flip_risk" and len(rows) == 2 and 0.0 <= float(rows[1].split(",")[1]) <= 1.0


@pytest.mark.slow
def test_two_process_gloo_training(tmp_path):
    out = tmp_path / "ddp"
    _bundle(["train.yaml", "multi_gpu_train.yaml"], "--output_dir", out, "--ckpt_path", out / "model.pt",
            "--error_level", 0.5, "--refurbish", True, *TINY, torchrun=True)  # fmt: skip
    det = json.loads((out / "detection.json").read_text())
    assert len(det["scores"]["loss"]) == 8  # per-sample losses gathered from both ranks
    assert "model" in torch.load(out / "model.pt", weights_only=True)


def _parser(*configs, **overrides):
    parser = ConfigParser()
    parser.read_config([str(CONFIGS / c) for c in configs])
    for key, value in overrides.items():
        parser[key.replace("__", "#")] = value
    return parser


@pytest.mark.parametrize("configs", [("train.yaml",), ("train.yaml", "multi_gpu_train.yaml")])
def test_handlers_are_component_configs(configs):
    # MONAI's ConfigWorkflow.check_properties() and MONAI Label read h["_target_"] of every train handler.
    parser = _parser(*configs)
    for key in ("train#handlers", "validate#handlers"):
        assert all(isinstance(h, dict) and "_target_" in h for h in parser[key]), key
    targets = [h["_target_"] for h in parser["train#handlers"]]
    assert targets[:2] == ["common.handlers.EpochReseed", "common.handlers.RefurbishHandler"]
    assert "ValidationHandler" in targets and "common.handlers.ResumableCheckpoint" in targets
    refurbisher = parser["train#handlers"][1]
    assert refurbisher["detectors"] == {
        "loss": "@train#loss_detector",
        "vog": "@train#vog_detector",
        "dynamics": "@train#dynamics_detector",
    }
    assert parser["train#loss_detector#_target_"] == "common.handlers.SampleLossHandler"
    assert parser["train#vog_detector#_target_"] == "common.handlers.VOGHandler"
    assert parser["train#dynamics_detector#_target_"] == "common.handlers.TrainingDynamicsHandler"
    # the resume checkpoint holds the detectors' history and the (refurbished) training labels
    resume = next(h for h in parser["train#handlers"] if h["_target_"] == "common.handlers.ResumableCheckpoint")
    assert {
        "network",
        "optimizer",
        "lr_scheduler",
        "loss_detector",
        "vog_detector",
        "dynamics_detector",
        "train_labels",
    } == set(resume["save_dict"])
    # Nothing refers to a handler by its index (MONAI Label inserts a CheckpointLoader at index 0).
    assert not any("@train#handlers#" in (CONFIGS / c).read_text() for c in configs)


def test_checkpoints_use_the_key_model():
    saver = next(h for h in _parser("train.yaml")["train#handlers"] if h["_target_"].endswith("CheckpointSaver"))
    assert set(saver["save_dict"]) == {"model", "optimizer"}
    loaders = [h for h in _parser("train.yaml", "evaluate.yaml")["evaluate#handlers"] if isinstance(h, dict)]
    loaders += _parser("inference.yaml")["handlers"]
    loaders = [h for h in loaders if h["_target_"] == "CheckpointLoader"]
    assert len(loaders) == 2
    assert all(set(h["load_dict"]) == {"model"} and h["strict"] is True for h in loaders)


@pytest.fixture
def single_process_group(tmp_path):
    """A one-process gloo group (file rendezvous, no port), as the multi-process config's samplers need one."""
    import ignite.distributed as idist
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    yield
    idist.finalize()  # ignite caches the group it saw; reset it to serial for the tests that follow
    if dist.is_initialized():
        dist.destroy_process_group()


@pytest.mark.parametrize("is_main", [True, False])
def test_rank_zero_only_handlers(is_main, tmp_path, monkeypatch, single_process_group):
    cwd, out = tmp_path / "cwd", tmp_path / "out"
    cwd.mkdir()
    monkeypatch.chdir(cwd)  # a TensorBoard handler without a writer would create ./runs here
    parser = _parser("train.yaml", "multi_gpu_train.yaml", is_main=is_main, output_dir=str(out),
                     ckpt_path=str(tmp_path / "model.pt"), network="$@network_def", train__dataset__data=[],
                     validate__dataset__data=[])  # fmt: skip
    names = [type(h).__name__ for h in parser.get_parsed_content("train#handlers")]
    rank0 = ["StatsHandler", "TensorBoardStatsHandler", "ProgressBar", "AtomicCheckpointSaver"]
    every_rank = ["EpochReseed", "RefurbishHandler", "ResumableCheckpoint", "LrScheduleHandler", "ValidationHandler"]
    assert names == [*every_rank, *(["ValidationCurve", *rank0] if is_main else [])]
    val_names = [type(h).__name__ for h in parser.get_parsed_content("validate#handlers")]
    assert val_names == (["StatsHandler", "TensorBoardStatsHandler", "TensorBoardImageHandler"] if is_main else [])
    assert list(cwd.iterdir()) == [] and out.exists() == is_main  # only rank 0 opens a SummaryWriter


@pytest.mark.slow
def test_monai_label_style_training_without_ids(tmp_path):
    """Training as MONAI Label runs it: datastore items without ids, a CheckpointLoader inserted first, no init."""
    from monai.bundle import run

    from common.data import EchoPhantomConfig, generate_echo_phantom

    datalist = generate_echo_phantom(tmp_path / "data", EchoPhantomConfig(num_train=6, num_val=0, num_test=0))
    base = datalist.parent
    items = [{"image": str(base / e["image"]), "label": str(base / e["label"])}
             for e in json.loads(datalist.read_text())["training"]]  # fmt: skip
    ckpt = tmp_path / "models" / "model.pt"
    ckpt.parent.mkdir()
    torch.save({"model": _parser("train.yaml").get_parsed_content("network_def").state_dict()}, ckpt)
    handlers = _parser("train.yaml")["train#handlers"]
    handlers.insert(0, {"_target_": "CheckpointLoader", "load_path": str(ckpt), "load_dict": {"model": "$@network"},
                        "strict": False})  # fmt: skip
    out = tmp_path / "out"
    overrides = {"epochs": 2, "detect_epoch": 2, "vog_checkpoints": 2, "vog_first_epoch": 1, "loss_window": 1,
                 "val_interval": 2, "batch_size": 4, "output_dir": str(out), "ckpt_path": str(ckpt),
                 "train#trainer#max_epochs": 2, "train#dataset#data": items[:4], "validate#dataset#data": items[4:],
                 "train#handlers": handlers, "device": torch.device("cpu")}  # fmt: skip
    before = torch.load(ckpt, weights_only=True)["model"]
    run(run_id="run", init_id=None, final_id=None, config_file=str(CONFIGS / "train.yaml"), **overrides)
    det = json.loads((out / "detection.json").read_text())
    assert sorted(det["scores"]["loss"]) == sorted(i["image"] for i in items[:4])  # keyed by image file
    assert sorted(det["scores"]["vog"]) == sorted(det["scores"]["loss"])
    after = torch.load(ckpt, weights_only=True)["model"]
    assert any(not torch.equal(before[k], after[k]) for k in before)

"""Every bundle conforms to MONAI's bundle tooling (model-zoo layout, metadata, workflows, export)."""

import json
import subprocess

import pytest
import torch
from monai.bundle import ConfigParser, ConfigWorkflow, ckpt_export, verify_net_in_out

from common.study.runner import BUNDLE_NAMES, BUNDLES_DIR, REPO_ROOT

REQUIRED_METADATA = (
    "version",
    "changelog",
    "monai_version",
    "pytorch_version",
    "numpy_version",
    "required_packages_version",
    "task",
    "description",
    "authors",
    "copyright",
    "data_source",
    "data_type",
    "network_data_format",
)
CONFIG_FILES = (
    "metadata.json",
    "train.yaml",
    "evaluate.yaml",
    "inference.yaml",
    "multi_gpu_train.yaml",
    "logging.conf",
)

bundles = pytest.mark.parametrize("name", BUNDLE_NAMES)


def _spatial_size(entry, n=1, any_size=32):
    """A concrete size for a metadata ``spatial_shape`` entry: an int, ``"*"`` (any) or an expression in n ("16*n")."""
    if str(entry) == "*":
        return any_size
    return int(eval(str(entry).replace("n", str(n)), {"__builtins__": {}}))


def _configs(name):
    return BUNDLES_DIR / name / "configs"


@bundles
def test_layout(name):
    root = BUNDLES_DIR / name
    missing = [f for f in ("LICENSE", "docs/README.md", "docs/data_license.txt") if not (root / f).is_file()]
    missing += [f"configs/{f}" for f in CONFIG_FILES if not (_configs(name) / f).is_file()]
    assert not missing, f"{name} lacks {missing}"


@bundles
def test_metadata(name):
    path = _configs(name) / "metadata.json"
    text = path.read_text()
    meta = json.loads(text)
    assert [k for k in REQUIRED_METADATA if k not in meta] == []
    assert meta["version"] in meta["changelog"]
    assert text.strip() == json.dumps(meta, indent=4, ensure_ascii=False).strip(), "metadata.json is not 4-space JSON"
    fmt = meta["network_data_format"]
    assert "image" in fmt["inputs"] and "pred" in fmt["outputs"]
    assert fmt["outputs"]["pred"].get("channel_def"), "outputs.pred.channel_def names the output channels"


@bundles
@pytest.mark.parametrize("workflow_type, configs", [("train", ["train.yaml"]), ("infer", ["inference.yaml"])])
def test_workflow_properties(name, workflow_type, configs, tmp_path):
    files = [str(_configs(name) / c) for c in configs]
    workflow = ConfigWorkflow(
        config_file=files,
        meta_file=str(_configs(name) / "metadata.json"),
        logging_file=str(_configs(name) / "logging.conf"),
        workflow_type=workflow_type,
        output_dir=str(tmp_path),
    )
    workflow.initialize()
    assert workflow.check_properties() == []


# Ids that mean the same in every bundle (README.md, "Ids that mean the same in every bundle").
SHARED_IDS = ("prepared_datalist", "log_dir", "summary_writer", "is_main", "optimizer", "weight_decay",
              "train#optimizer", "train#lr_scheduler", "train#trainer", "validate#evaluator", "evaluate#evaluator")  # fmt: skip
# handlers that write files (TensorBoard events, image panels, checkpoints): rank 0 only under torchrun
WRITERS = ("TensorBoardStatsHandler", "TensorBoardImageHandler", "ImagePanels", "CheckpointSaver")


@bundles
def test_shared_ids_and_rank_zero_writers(name):
    from common.optim import OPTIMIZERS

    parser = ConfigParser()
    parser.read_config([str(_configs(name) / c) for c in ("train.yaml", "evaluate.yaml")])
    assert [i for i in SHARED_IDS if i not in parser] == []
    assert "test" not in parser  # the evaluation section is `evaluate` in every bundle
    # the optimiser is named and built by common.optim; Adam without weight decay is every bundle's default
    assert (parser["optimizer"], parser["weight_decay"]) == ("adam", 0.0) and parser["optimizer"] in OPTIMIZERS
    assert parser["train#optimizer"].startswith("$common.optim.make_optimizer(")
    assert parser["is_main"] is True and parser["log_dir"] == "@output_dir"
    writers = [h for key in ("train#handlers", "validate#handlers") for h in parser[key]
               if isinstance(h, dict) and h["_target_"].endswith(WRITERS)]  # fmt: skip
    assert len(writers) >= 3  # a TensorBoard handler in training and validation, the checkpoint saver
    assert all(h.get("_disabled_") == "$not @is_main" for h in writers), [h["_target_"] for h in writers]
    multi = ConfigParser()
    multi.read_config([str(_configs(name) / c) for c in ("train.yaml", "multi_gpu_train.yaml")])
    assert multi["is_main"] == "$common.runtime.is_main_process()"
    # the handler lists stay train.yaml's: nothing drops handlers by their position
    assert multi["train#trainer#train_handlers"] == parser["train#trainer#train_handlers"]
    assert multi["validate#evaluator#val_handlers"] == "@validate#handlers"


@bundles
def test_verify_net_in_out(name):
    meta_file, config_file = str(_configs(name) / "metadata.json"), str(_configs(name) / "inference.yaml")
    # MONAI's check raises where the network's output disagrees with metadata.json (channels, dtype, shape)
    verify_net_in_out(net_id="network_def", meta_file=meta_file, config_file=config_file, n=1, any=1, device="cpu")
    # ... and the same, stated here: the declared input gives the declared output, at n = 2 and "*" = 8
    parser = ConfigParser()
    parser.read_config(config_file)
    parser.read_meta(meta_file)
    fmt = parser["_meta_"]["network_data_format"]
    inp, out = fmt["inputs"]["image"], fmt["outputs"]["pred"]
    any_size = 8

    def size(entry):  # "16*n" -> 32; "*" -> 8; "2*" -> 16 (twice the matching "*" input)
        entry = str(entry)
        return 2 * any_size if entry == "2*" else _spatial_size(entry, n=2, any_size=any_size)

    net = parser.get_parsed_content("network_def", instantiate=True).eval()
    with torch.no_grad():
        pred = net(torch.rand(1, inp["num_channels"], *[size(s) for s in inp["spatial_shape"]]))
    assert tuple(pred.shape) == (1, out["num_channels"], *[size(s) for s in out["spatial_shape"]])
    assert len(out["channel_def"]) == out["num_channels"]


@bundles
def test_ckpt_export_matches_eager_network(name, tmp_path):
    config_file = str(_configs(name) / "inference.yaml")
    meta_file = str(_configs(name) / "metadata.json")
    parser = ConfigParser()
    parser.read_config(config_file)
    parser.read_meta(meta_file)
    torch.manual_seed(0)
    net = parser.get_parsed_content("network_def", instantiate=True).eval()
    ckpt = tmp_path / "model.pt"
    torch.save(net.state_dict(), ckpt)
    fmt = parser["_meta_"]["network_data_format"]["inputs"]["image"]
    shape = [_spatial_size(s) for s in fmt["spatial_shape"]]
    input_shape = [1, fmt["num_channels"], *shape]
    ts = tmp_path / "model.ts"
    ckpt_export(
        net_id="network_def",
        filepath=str(ts),
        ckpt_file=str(ckpt),
        meta_file=meta_file,
        config_file=config_file,
        key_in_ckpt="",
        use_trace=True,  # tracing records the forward pass at the declared input shape
        input_shape=input_shape,
    )
    x = torch.rand(*input_shape)
    scripted = torch.jit.load(str(ts))
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), net(x), rtol=1e-4, atol=1e-5)


def test_no_committed_file_over_1mb():
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    big = [
        f
        for f in files.stdout.split("\0")
        if f and (REPO_ROOT / f).is_file() and (REPO_ROOT / f).stat().st_size > 2**20
    ]
    assert big == []

"""OSCAR run steps (common.attribution.handlers): the rank file of a tiny segmentation network and a tiny scene
classifier on the phantom's test images, and the checks that fail before any training."""

import json

import numpy as np
import pytest
import torch
from monai.networks.nets import Classifier, UNet
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged, ScaleIntensityd

from common.attribution.handlers import (
    ATTRIBUTION_FILE,
    AttributionConfigError,
    attribution_entries,
    check_attribution,
    load_attribution_ranks,
    unet_bottleneck,
    write_attribution_ranks,
    write_scene_metrics,
)
from common.data.shortcut_phantom import prepare_shortcut_datalist

SECTION = {"target": "identity", "num_images": 8, "methods": ["gradcam", "occlusion"], "grid_sizes": [4, 8],
           "slic_segments": 12, "occlusion_partitions": ["grid4", "slic"], "gradcam_layer": "model.1.submodule",
           "batch_size": 16}  # fmt: skip
PREPROCESS = Compose([LoadImaged(["image", "label"], image_only=True), EnsureChannelFirstd(["image", "label"],
                      channel_dim="no_channel"), ScaleIntensityd("image")])  # fmt: skip


@pytest.fixture(scope="module")
def datalist(tmp_path_factory):
    phantom = {"num_train": 4, "num_val": 0, "num_test": 12, "size": 32}
    return prepare_shortcut_datalist("", "", tmp_path_factory.mktemp("phantom"), phantom=phantom, seed=3)


def test_attribution_images_are_the_first_of_each_cell(datalist):
    entries = attribution_entries(datalist, 8)
    cells = [(e["identity"], e["scene"]) for e in entries]
    assert cells == [(1, "linear")] * 2 + [(1, "sector")] * 2 + [(2, "linear")] * 2 + [(2, "sector")] * 2
    test = json.loads(datalist.read_text())["test"]
    first = [e["id"] for e in test if (e["identity"], e["scene"]) == (1, "linear")][:2]
    assert [e["id"] for e in entries[:2]] == first
    with pytest.raises(ValueError, match="needs 4 test images in each of the 4 identity x scene cells"):
        attribution_entries(datalist, 16)


def test_segmentation_ranks_file(datalist, tmp_path):
    torch.manual_seed(0)
    net = UNet(2, 1, 3, channels=(4, 8, 16), strides=(2, 2), num_res_units=1)
    assert unet_bottleneck((4, 8, 16)) == "model.1.submodule.1.submodule"
    path = write_attribution_ranks(tmp_path, net, datalist, PREPROCESS, SECTION, seed=3)
    assert path == tmp_path / ATTRIBUTION_FILE
    z = load_attribution_ranks(path)
    assert z["meta"]["target"] == "identity" and z["meta"]["num_images"] == 8
    assert z["ids"] == [e["id"] for e in attribution_entries(datalist, 8)]
    sizes = z["meta"]["partitions"]
    assert sizes["grid4"] == 16 and sizes["grid8"] == 64 and sizes["slic"] >= 2
    assert set(z["ranks"]) == {("gradcam", "grid4"), ("gradcam", "grid8"), ("gradcam", "slic"),
                               ("occlusion", "grid4"), ("occlusion", "slic")}  # fmt: skip
    for (_, part), ranks in z["ranks"].items():
        r = sizes[part]
        assert ranks.shape == (8, r) and z["partition"][part].shape == (32, 32)
        np.testing.assert_allclose(ranks.sum(1), r * (r + 1) / 2)  # within-image ranks, ties averaged
        assert ranks.min() >= 1 and ranks.max() <= r
    # the phantom's object sits in the middle: the centre cells are covered, the corners are not
    cover = z["object_coverage"]["grid4"].reshape(4, 4)
    assert cover[1:3, 1:3].min() > 0.05 and cover[[0, 0, 3, 3], [0, 3, 0, 3]].max() == 0
    assert 0 < z["meta"]["object_fraction"] < 0.3
    # the fields of view differ at the left and right edges (linear cuts 10% per side; the sector is narrower)
    fov = z["fov_difference"]["grid8"].reshape(8, 8)
    assert fov[4:7, 0].min() > 0.5 and fov[4:7, 7].min() > 0.5 and fov[3:6, 3:5].max() == 0
    # the same images give the same partitions and ranks (no hidden randomness)
    again = load_attribution_ranks(
        write_attribution_ranks(tmp_path / "again", net, datalist, PREPROCESS, SECTION, seed=3)
    )
    for key in z["ranks"]:
        np.testing.assert_array_equal(z["ranks"][key], again["ranks"][key])


def test_scene_classifier_ranks_and_metrics(datalist, tmp_path):
    torch.manual_seed(0)
    net = Classifier((1, 32, 32), 2, channels=(4, 8), strides=(2, 2))
    section = {**SECTION, "target": "scene", "gradcam_layer": "net.layer_1"}
    z = load_attribution_ranks(write_attribution_ranks(tmp_path, net, datalist, PREPROCESS, section))
    assert z["meta"]["target"] == "scene" and z["ranks"][("occlusion", "grid4")].shape == (8, 16)
    record = write_scene_metrics(tmp_path, net, datalist, PREPROCESS, {"seed": 3})
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert written["metrics"] == record["metrics"] and len(written["per_sample"]) == 12
    accuracy = np.mean([p["scene"] == p["pred_scene"] for p in written["per_sample"]])
    assert written["metrics"]["scene_accuracy"] == pytest.approx(accuracy)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"target": None}, "'attribution#target' must be one of"),
        ({"num_images": 6}, "'attribution#num_images' must be a positive multiple of 4"),
        ({"methods": ["saliency"]}, "'attribution#methods'"),
        ({"occlusion_partitions": ["grid16"]}, "'attribution#occlusion_partitions' must name partitions"),
        ({"gradcam_layer": None}, "'attribution#gradcam_layer' must name a layer"),
    ],
)
def test_a_wrong_attribution_section_is_named(change, message):
    with pytest.raises(AttributionConfigError, match=message):
        check_attribution({**SECTION, **change})


def test_a_missing_attribution_section_is_named():
    with pytest.raises(AttributionConfigError, match="bundle config id 'attribution' is missing"):
        check_attribution(None)
    section = {k: v for k, v in SECTION.items() if k != "target"}
    with pytest.raises(AttributionConfigError, match="'attribution#target' must be one of .*got None"):
        check_attribution(section)

"""OSCAR run steps (common.attribution.handlers): the rank file of a tiny segmentation network and a tiny scene
classifier on the phantom's test images, the checks that fail before any training, and test-time attenuation of
the top shortcut regions found from hand-built TS / BA / SA rank files."""

import json

import numpy as np
import pytest
import torch
from monai.networks.nets import Classifier, UNet
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged, ScaleIntensityd

from common.attribution.attenuation import attenuate_regions
from common.attribution.handlers import (
    ATTENUATION_FILE,
    ATTRIBUTION_FILE,
    AttenuationInputError,
    AttributionConfigError,
    attribution_entries,
    check_attenuation,
    check_attribution,
    load_attribution_ranks,
    unet_bottleneck,
    write_attenuation,
    write_attribution_ranks,
    write_scene_metrics,
)
from common.attribution.regions import grid_partition
from common.data.shortcut_phantom import prepare_shortcut_datalist
from common.handlers.segmentation_report import SegmentationReport
from common.metrics.record import write_metrics
from common.metrics.shortcut import write_shortcut_metrics

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


# Hand-built rank files on a 4 x 4 grid (R = 16): BA ranks region r at r + 1; TS and SA both swap regions (2, 5) and
# (9, 12), TS alone swaps (0, 1), SA alone (14, 15). The localisation scores are then about 3-4 on 2, 5, 9, 12 and at
# most 0.2 elsewhere, so the top ceil(0.2 * 16) = 4 regions are {2, 5, 9, 12} (rounding would give 3). Three of the
# five images carry each profile and two are shuffled, so the median profile is the hand-built one (not the mean).
ATTENUATION = {"top_fraction": 0.2, "mode": "mean", "combination": "occlusion/grid4", "num_random_controls": 3,
               "batch_size": 5}  # fmt: skip
SHORTCUT_REGIONS = {2, 5, 9, 12}
R4 = 16


def _swapped(*pairs):
    r = np.arange(1, R4 + 1, dtype=np.float32)
    for a, b in pairs:
        r[[a, b]] = r[[b, a]]
    return r


def _write_hand_ranks(folder, profile, ids, seed):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = np.stack([profile] * 3 + [rng.permutation(profile) for _ in range(2)])
    np.savez_compressed(
        folder / ATTRIBUTION_FILE,
        ids=np.array(ids),
        scene=np.array(["sector"] * len(ids)),
        identity=np.ones(len(ids), int),
        mean_image=np.zeros((32, 32), np.float32),
        ranks__occlusion__grid4=rows,
        partition__grid4=grid_partition((32, 32), 4).astype(np.int32),
        meta=np.array(json.dumps({"target": "identity", "methods": ["occlusion"], "num_images": len(ids),
                                  "partitions": {"grid4": R4}, "object_fraction": 0.2})),
    )  # fmt: skip


@pytest.fixture
def three_models(tmp_path):
    """Folders of TS (with a metrics.json), BA and SA holding hand-built rank files of the same five image ids."""
    ids = [f"img_{i}" for i in range(5)]
    dirs = {name: tmp_path / name for name in ("ts", "ba", "sa")}
    _write_hand_ranks(dirs["ts"], _swapped((2, 5), (9, 12), (0, 1)), ids, 1)
    _write_hand_ranks(dirs["ba"], _swapped(), ids, 2)
    _write_hand_ranks(dirs["sa"], _swapped((2, 5), (9, 12), (14, 15)), ids, 3)
    write_metrics(dirs["ts"] / "metrics.json", {"seed": 3}, {"dice_gap": 0.25}, [{"id": "img_0"}], {"kept": 1})
    return dirs


def _tiny_unet():
    torch.manual_seed(0)
    return UNet(2, 1, 3, channels=(4, 8), strides=(2,), num_res_units=0).eval()


def _bundle_evaluation(net, datalist, tmp_path, regions=()):
    """The bundle's own scoring of the whole test split (SegmentationReport then write_shortcut_metrics), with
    ``regions`` of the 4 x 4 grid mean-filled first."""
    from types import SimpleNamespace

    test = json.loads(datalist.read_text())["test"]
    items = [PREPROCESS(dict(e)) for e in test]
    images = torch.stack([torch.as_tensor(i["image"]).float() for i in items])
    images = attenuate_regions(images, grid_partition((32, 32), 4), list(regions), mode="mean")
    labels = torch.stack([torch.as_tensor(i["label"]).long() for i in items])
    report = SegmentationReport(3, class_names=["identity_1", "identity_2"])
    with torch.inference_mode():
        out = {"pred": net(images), "label": labels}
    report(SimpleNamespace(state=SimpleNamespace(output=out, batch={"id": [e["id"] for e in test]})))
    write_shortcut_metrics(tmp_path, report, datalist)
    return json.loads((tmp_path / "metrics.json").read_text())["metrics"]


def test_attenuation_of_the_top_shortcut_regions(datalist, three_models, tmp_path):
    net = _tiny_unet()
    dirs = three_models
    result = write_attenuation(dirs["ts"], net, datalist, PREPROCESS, ATTENUATION, dirs["ba"], dirs["sa"], seed=7)
    assert result["k"] == 4 and result["num_regions"] == R4 and set(result["regions"]) == SHORTCUT_REGIONS
    assert result["num_images"] == 12 and result["plain"]["common"]["num_images"] == 6
    assert max(result["localisation"][r] for r in range(R4) if r not in SHORTCUT_REGIONS) < 0.5
    # plain and attenuated scored exactly as the bundle's evaluation scores the test split
    for way, regions in (("plain", ()), ("attenuated", sorted(SHORTCUT_REGIONS))):
        expected = _bundle_evaluation(net, datalist, tmp_path / way, regions)
        for gap in ("dice_gap", "flip_gap"):
            assert result[way][gap] == pytest.approx(expected[gap])
        for g in ("common", "rare"):
            assert result[way][g]["dice_mean"] == pytest.approx(expected[f"dice_mean_{g}"])
            assert result[way][g]["flip"] == pytest.approx(expected[f"flip_flip_{g}"])
    assert result["narrowing"]["dice_gap"] == pytest.approx(
        result["plain"]["dice_gap"] - result["attenuated"]["dice_gap"]
    )
    assert result["beyond_random"]["flip_gap"] == pytest.approx(
        result["random"]["flip_gap"] - result["attenuated"]["flip_gap"]
    )
    # random control: 3 seeded draws of k distinct regions, averaged
    draws = result["random"]["draws"]
    assert len(draws) == 3 and all(len(set(d["regions"])) == 4 and max(d["regions"]) < R4 for d in draws)
    assert result["random"]["dice_gap"] == pytest.approx(np.mean([d["dice_gap"] for d in draws]))
    again = write_attenuation(dirs["ts"], net, datalist, PREPROCESS, ATTENUATION, dirs["ba"], dirs["sa"], seed=7)
    assert again["random"] == result["random"]
    other = write_attenuation(dirs["ts"], net, datalist, PREPROCESS, ATTENUATION, dirs["ba"], dirs["sa"], seed=8)
    assert [d["regions"] for d in other["random"]["draws"]] != [d["regions"] for d in draws]
    # written beside the run's metrics, which keep what the evaluation wrote
    assert json.loads((dirs["ts"] / ATTENUATION_FILE).read_text()) == other
    record = json.loads((dirs["ts"] / "metrics.json").read_text())
    assert record["extra"]["oscar_attenuation"] == other and record["extra"]["kept"] == 1
    assert record["metrics"] == {"dice_gap": 0.25} and record["settings"] == {"seed": 3}


def test_attenuation_refuses_rank_files_of_other_images(datalist, three_models):
    dirs = three_models
    _write_hand_ranks(dirs["sa"], _swapped(), [f"other_{i}" for i in range(5)], 3)
    with pytest.raises(AttenuationInputError, match="the SA rank file ranks other test images than this run's"):
        write_attenuation(dirs["ts"], _tiny_unet(), datalist, PREPROCESS, ATTENUATION, dirs["ba"], dirs["sa"])
    with pytest.raises(AttenuationInputError, match="the TS rank file has no ranks__occlusion__grid8"):
        write_attenuation(dirs["ts"], _tiny_unet(), datalist, PREPROCESS, {**ATTENUATION, "combination":
                          "occlusion/grid8"}, dirs["ba"], dirs["ba"])  # fmt: skip


def test_a_run_without_the_reference_models_writes_no_attenuation(datalist, three_models):
    dirs = three_models
    before = (dirs["ts"] / "metrics.json").read_text()
    for ba, sa in ((None, None), (dirs["ba"], None), (None, dirs["sa"])):
        assert write_attenuation(dirs["ts"], _tiny_unet(), datalist, PREPROCESS, ATTENUATION, ba, sa) is None
    assert not (dirs["ts"] / ATTENUATION_FILE).exists() and (dirs["ts"] / "metrics.json").read_text() == before


@pytest.mark.parametrize(
    "change, message",
    [
        ({"top_fraction": 0}, "'attenuation#top_fraction' must lie in"),
        ({"mode": "zero"}, "'attenuation#mode' must be one of"),
        ({"combination": "occlusion"}, "'attenuation#combination'"),
        ({"num_random_controls": 0}, "'attenuation#num_random_controls'"),
    ],
)
def test_a_wrong_attenuation_section_is_named(change, message):
    with pytest.raises(AttenuationInputError, match=message):
        check_attenuation({**ATTENUATION, **change})
    with pytest.raises(AttenuationInputError, match="'attenuation' is missing"):
        check_attenuation(None)

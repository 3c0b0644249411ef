"""Suspect-label ranking for MONAI Label, without a server: known losses, planted label errors, the datastore flow.

The MONAI Label wrappers (``SuspectLabelScoring``/``SuspectLabelStrategy``) are tested when ``monailabel`` is
importable; the ranking itself needs only MONAI.
"""

from __future__ import annotations

import math
import shutil

import nibabel as nib
import numpy as np
import pytest
import torch

from common.study.runner import REPO_ROOT
from tests.tooling.labelserver import ensure_checkpoint
from tools.monailabel_app.suspect_labels import (
    SCORE_KEY,
    BundleLossScorer,
    image_label_loss,
    most_suspect,
    rank_suspect,
    score_labelled_images,
    stored_scores,
)


class MemoryDatastore:
    """The part of MONAI Label's ``Datastore`` interface the scoring and strategy use, in memory."""

    def __init__(self, images: dict[str, str], labels: dict[str, str]) -> None:
        self.images, self.labels = images, labels  # image id -> file; image id -> final label file
        self.info: dict[str, dict] = {i: {} for i in images}

    def list_images(self):
        return sorted(self.images)

    def get_labeled_images(self, label_tag=None, labels=None):
        return sorted(self.labels)

    def get_label_by_image_id(self, image_id, tag):
        return f"{image_id}_label" if tag == "final" and image_id in self.labels else ""

    def get_image_uri(self, image_id):
        return self.images[image_id]

    def get_label_uri(self, label_id, label_tag):
        return self.labels[label_id.removesuffix("_label")]

    def get_image_info(self, image_id):
        return self.info[image_id]

    def update_image_info(self, image_id, info):
        self.info[image_id].update(info)


def test_rank_suspect_highest_first_ties_by_id_nan_last():
    scores = {"b": 0.5, "a": 0.5, "c": 2.0, "d": float("nan"), "e": -1.0}
    assert rank_suspect(scores) == ["c", "a", "b", "e", "d"]
    assert rank_suspect({}) == []


def test_image_label_loss_equals_hand_computed_dice_plus_cross_entropy():
    logits = torch.tensor([[[[2.0, 0.0], [0.0, 1.0]], [[0.0, 1.0], [3.0, 0.0]]]])  # (1, 2, 2, 2)
    label = torch.tensor([[[[0, 1], [1, 1]]]])  # pixel (1, 1) disagrees with the logits' argmax
    p = logits.softmax(1)[0].numpy()
    onehot = np.stack([label[0, 0].numpy() == c for c in (0, 1)]).astype(float)
    ce = -np.mean(np.log((p * onehot).sum(0)))
    smooth = 1e-5  # MONAI DiceLoss defaults smooth_nr = smooth_dr = 1e-5, mean over classes
    dice = np.mean(
        [1 - (2 * (p[c] * onehot[c]).sum() + smooth) / (p[c].sum() + onehot[c].sum() + smooth) for c in (0, 1)]
    )
    assert image_label_loss(logits, label) == pytest.approx(ce + dice, rel=1e-6)
    # the same logits against their own argmax score lower than against the disputed label
    assert image_label_loss(logits, logits.argmax(1, keepdim=True)) < image_label_loss(logits, label)


def test_image_label_loss_rejects_non_class_labels():
    with pytest.raises(ValueError, match="not class indices 0..1"):
        image_label_loss(torch.zeros(1, 2, 3, 3), torch.full((1, 1, 3, 3), 2))
    with pytest.raises(ValueError, match="expected logits"):
        image_label_loss(torch.zeros(1, 2, 3, 3), torch.zeros(1, 1, 3, 4))


def test_strategy_ranking_reads_stored_scores_only():
    ds = MemoryDatastore({"x": "x.nii", "y": "y.nii", "z": "z.nii"}, {"x": "lx", "y": "ly"})
    assert most_suspect(ds) is None  # nothing scored yet
    ds.update_image_info("x", {SCORE_KEY: {"score": 0.2, "model": "m", "label_tag": "final"}})
    ds.update_image_info("y", {SCORE_KEY: {"score": 0.9, "model": "m", "label_tag": "final"}})
    ds.update_image_info("z", {SCORE_KEY: {"score": 5.0, "model": "m", "label_tag": "final"}})  # not labelled
    assert stored_scores(ds) == {"x": 0.2, "y": 0.9}
    assert most_suspect(ds) == "y"
    assert most_suspect(ds, exclude=["y"]) == "x"
    assert most_suspect(ds, exclude=["x", "y"]) is None


@pytest.fixture(scope="module")
def echo_bundle(tmp_path_factory):
    """The label-error bundle's configs with an untrained checkpoint (seeded), in tmp."""
    dest = tmp_path_factory.mktemp("bundle") / "label_error_refurbishment"
    shutil.copytree(REPO_ROOT / "bundles" / "label_error_refurbishment" / "configs", dest / "configs")
    assert ensure_checkpoint(dest)
    return dest


def _save(path, array, affine):
    nib.save(nib.Nifti1Image(np.asarray(array), affine), path)
    return str(path)


def test_planted_label_errors_rank_first_and_labels_are_resampled(echo_bundle, tmp_path):
    scorer = BundleLossScorer(echo_bundle)
    rng = np.random.default_rng(0)
    images, labels, predicted = {}, {}, {}
    for i in range(5):
        images[f"img{i}"] = _save(tmp_path / f"img{i}.nii.gz", rng.random((64, 64)).astype(np.float32), np.eye(4))
        logits, _ = scorer.logits(images[f"img{i}"])
        predicted[f"img{i}"] = logits[0].argmax(0).numpy().astype(np.uint8)  # the model's own labels
    planted = {"img1": 24, "img3": 40}  # square of wrong classes of this size (pixels per side)
    for image_id, label in predicted.items():
        label = label.copy()
        if image_id in planted:
            n = planted[image_id]
            label[:n, :n] = (label[:n, :n] + 1) % 4
        labels[image_id] = _save(tmp_path / f"{image_id}_label.nii.gz", label, np.eye(4))
    # img2's label stored at twice the resolution: resampled (nearest) onto the 64 x 64 model grid it is unchanged
    fine = np.kron(predicted["img2"], np.ones((2, 2), dtype=np.uint8))
    labels["img2"] = _save(tmp_path / "img2_fine.nii.gz", fine, np.diag([0.5, 0.5, 1.0, 1.0]))
    unlabelled = {"img4"}
    ds = MemoryDatastore(images, {k: v for k, v in labels.items() if k not in unlabelled})

    scores = score_labelled_images(ds, scorer, model="label_error_refurbishment")
    assert set(scores) == {"img0", "img1", "img2", "img3"}
    native = scorer(images["img2"], _save(tmp_path / "img2_native.nii.gz", predicted["img2"], np.eye(4)))
    assert scores["img2"] == pytest.approx(native, rel=1e-6)
    assert all(not math.isnan(s) for s in scores.values())
    assert set(rank_suspect(scores)[:2]) == set(planted)
    assert min(scores[p] for p in planted) > max(scores[c] for c in ("img0", "img2"))
    assert ds.get_image_info("img1")[SCORE_KEY] == {
        "score": scores["img1"],
        "model": "label_error_refurbishment",
        "label_tag": "final",
    }
    first = most_suspect(ds)
    assert first in planted
    assert most_suspect(ds, exclude=[first]) in set(planted) - {first}


def test_scorer_names_missing_weights(tmp_path):
    shutil.copytree(REPO_ROOT / "bundles" / "label_error_refurbishment" / "configs", tmp_path / "b" / "configs")
    with pytest.raises(FileNotFoundError, match="no model weights"):
        BundleLossScorer(tmp_path / "b")


def test_monailabel_scoring_and_strategy_classes(echo_bundle, tmp_path):
    pytest.importorskip("monailabel", reason="monailabel is not installed (nox -s label installs it)")
    from tools.monailabel_app.activelearning import SuspectLabelScoring, SuspectLabelStrategy

    calls = []

    def make_scorer(bundle_dir, device):
        calls.append((bundle_dir, device))
        return lambda image, label: {"a.nii": 0.3, "b.nii": 1.7, "c.nii": 0.9}[image]

    ds = MemoryDatastore({"a": "a.nii", "b": "b.nii", "c": "c.nii"}, {"a": "la", "b": "lb", "c": "lc"})
    strategy = SuspectLabelStrategy()
    assert strategy({}, ds) is None
    result = SuspectLabelScoring(echo_bundle, make_scorer=make_scorer)({}, ds)
    assert calls == [(echo_bundle, "cpu")] and result["ranked"] == ["b", "c", "a"]
    assert strategy({}, ds) == {"id": "b"}
    assert strategy({"exclude": ["b"]}, ds) == {"id": "c"}

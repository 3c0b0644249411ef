"""Downstream grey-matter segmenter: k-means thresholds, area bias and Dice by hand, fitted on training images only."""

import json

import numpy as np
import pytest
import torch

from common.metrics.tissue_area import GreyMatterAreaMetric, fit_tissue_thresholds, segment_grey_matter


def _three_tissues(csf=0.2, gm=0.5, wm=0.8, rows=(10, 20, 30)):
    """A 40 x 40 image: background, then bands of CSF, grey and white matter (10 rows each)."""
    img = torch.zeros(1, 1, 40, 40, dtype=torch.float64)
    img[..., rows[0] : rows[1], :] = csf
    img[..., rows[1] : rows[2], :] = gm
    img[..., rows[2] :, :] = wm
    return img


def test_thresholds_are_midpoints_between_the_tissue_intensities():
    low, high = fit_tissue_thresholds([_three_tissues().numpy()])
    assert (low, high) == pytest.approx((0.35, 0.65))
    # noise around the three levels moves the centres little; background (0) is ignored
    noisy = _three_tissues() + 0.01 * torch.randn(1, 1, 40, 40, generator=torch.Generator().manual_seed(0))
    assert fit_tissue_thresholds([noisy.clamp_min(0).numpy()]) == pytest.approx((0.35, 0.65), abs=0.01)
    with pytest.raises(ValueError, match="foreground"):
        fit_tissue_thresholds([np.zeros((4, 4))])


def test_area_bias_and_dice_by_hand():
    thresholds = (0.35, 0.65)
    hr = _three_tissues()  # grey matter: rows 20-29, 400 pixels
    wider = _three_tissues(rows=(10, 18, 30))  # grey matter rows 18-29: 480 pixels, 400 shared
    assert int(segment_grey_matter(hr, thresholds).sum()) == 400
    metric = GreyMatterAreaMetric(thresholds)
    metric(torch.cat([wider, hr]), torch.cat([hr, hr]), groups=["gaussian", "gaussian"])
    metric(hr, wider, groups=["mean"])  # swapped: less grey matter than the target
    agg = metric.aggregate()
    # gaussian: biases 80 / 400 = 0.2 and 0, Dice 2 * 400 / 880 and 1 -> medians 0.1 and (1 + 0.909) / 2
    assert agg["gm_area_bias"]["gaussian"] == pytest.approx(0.1)
    assert agg["gm_dice"]["gaussian"] == pytest.approx((800 / 880 + 1) / 2)
    assert agg["gm_area_bias"]["mean"] == pytest.approx(-80 / 480)  # relative to the target's area
    with pytest.raises(ValueError, match="thresholds"):
        GreyMatterAreaMetric((0.7, 0.3))


def test_segmenter_is_fitted_on_the_training_images_only(tmp_path):
    import nibabel as nib

    from common.data.sr_pairs import fit_grey_matter_segmenter, sr_pair_datalist

    def write(name, img):
        path = tmp_path / name
        nib.save(nib.Nifti1Image(img[0, 0].numpy().astype(np.float32), np.eye(4)), path)
        return str(path)

    # training images have grey matter at 0.5 (white 0.8 = the max: scaled 0.625 and 1.0)
    train = [{"image": write(f"t{i}.nii.gz", _three_tissues())} for i in range(2)]
    # the validation / test images have a very different contrast; they must not move the thresholds
    other = {"image": write("v.nii.gz", _three_tissues(csf=0.6, gm=0.7, wm=0.75))}
    (tmp_path / "list.json").write_text(json.dumps({"training": train, "validation": [other], "test": [other]}))
    data = sr_pair_datalist(str(tmp_path / "list.json"), "", tmp_path / "cache", "gaussian", ["gaussian"])
    thresholds = fit_grey_matter_segmenter(data["training"], tmp_path / "cache")
    assert thresholds == pytest.approx(((0.25 + 0.625) / 2, (0.625 + 1.0) / 2))
    cached = list((tmp_path / "cache").glob("grey_matter_segmenter_*.json"))
    assert len(cached) == 1 and json.loads(cached[0].read_text())["images"] == [e["image"] for e in data["training"]]
    assert fit_grey_matter_segmenter(data["training"], tmp_path / "cache") == pytest.approx(thresholds)  # cache
    everything = fit_grey_matter_segmenter(data["training"] + data["test"])
    assert everything != pytest.approx(thresholds, abs=1e-3)  # the test images would have changed it

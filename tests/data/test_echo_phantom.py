"""Echo phantom: determinism, label range, every structure present, NIfTI and datalist layout."""

import json

import nibabel as nib
import numpy as np
import pytest

from common.data.echo_phantom import EchoPhantomConfig, echo_phantom_sample, generate_echo_phantom


def test_sample_labels_and_structures():
    for seed in range(10):
        image, label = echo_phantom_sample(np.random.default_rng(seed), 64)
        assert image.shape == label.shape == (64, 64)
        assert image.dtype == np.float32 and 0.0 <= image.min() and image.max() <= 1.0
        assert set(np.unique(label)) == {0, 1, 2, 3}
        # Blood pools are dark and the myocardium bright, as in B-mode echo.
        assert image[label == 1].mean() < image[label == 2].mean()
        assert image[label == 3].mean() < image[label == 2].mean()
        # The LV cavity is enclosed by myocardium at the apex: the LV's top row lies below myocardium.
        assert np.argwhere(label == 2)[:, 0].min() < np.argwhere(label == 1)[:, 0].min()


def test_samples_vary_with_the_generator():
    a = echo_phantom_sample(np.random.default_rng(1), 64)[1]
    b = echo_phantom_sample(np.random.default_rng(2), 64)[1]
    assert (a != b).mean() > 0.01


def test_generate_is_deterministic_and_cached(tmp_path):
    cfg = EchoPhantomConfig(num_train=3, num_val=1, num_test=2, size=48)
    p1 = generate_echo_phantom(tmp_path / "a", cfg, seed=5)
    p2 = generate_echo_phantom(tmp_path / "b", cfg, seed=5)
    p3 = generate_echo_phantom(tmp_path / "c", cfg, seed=6)
    d1 = json.loads(p1.read_text())
    assert [len(d1[k]) for k in ("training", "validation", "test")] == [3, 1, 2]
    for e in d1["training"]:
        for key in ("image", "label"):
            assert (p1.parent / e[key]).read_bytes() == (p2.parent / e[key]).read_bytes()
    e = d1["training"][0]
    assert (p1.parent / e["image"]).read_bytes() != (p3.parent / e["image"]).read_bytes()
    img = nib.load(p1.parent / e["image"])
    lab = nib.load(p1.parent / e["label"])
    assert img.shape == lab.shape == (48, 48)
    np.testing.assert_allclose(img.header.get_zooms(), (150 / 48, 150 / 48))
    np.testing.assert_array_equal(img.affine, lab.affine)
    assert set(np.unique(np.asarray(lab.dataobj))) <= {0, 1, 2, 3}
    # Cached: a second call returns the same folder without rewriting.
    mtime = p1.stat().st_mtime_ns
    assert generate_echo_phantom(tmp_path / "a", cfg, seed=5) == p1 and p1.stat().st_mtime_ns == mtime


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="size"):
        EchoPhantomConfig(size=8)
    with pytest.raises(ValueError, match="num_test"):
        EchoPhantomConfig(num_test=-1)

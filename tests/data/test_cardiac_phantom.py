"""Cardiac phantom: ED/ES contraction, analytic truth, scan-rescan, determinism, config checks."""

import json
import math

import nibabel as nib
import numpy as np
import pytest

from common.data.cardiac_phantom import (
    CardiacPhantomConfig,
    draw_heart,
    draw_session,
    generate_cardiac_phantom,
    lv_area_mm2,
    lv_length_mm,
    render_frame,
)
from common.metrics.precision import area_length_volume


def test_truncated_lv_area_by_hand():
    # t = 0.72: t sqrt(1 - t^2) + arcsin t + pi / 2 = 0.49966 + 0.80380 + 1.57080 = 2.87426
    assert lv_area_mm2(10.0, 5.0) == pytest.approx(50.0 * 2.87426, rel=1e-4)
    # a circle cut at 0.72 r: the farthest pair spans the full diameter; a long ellipse: a little over the
    # apex-to-chord-end distance hypot(a (1 + t), b sqrt(1 - t^2)) = hypot(17.2, 3.4705) = 17.547
    assert lv_length_mm(10.0, 10.0) == pytest.approx(20.0, rel=1e-5)
    assert 17.547 < lv_length_mm(10.0, 5.0) < 17.62
    # 8 * 3000^2 / (3 pi 80) mm^3 = 95.493 mL
    assert area_length_volume(3000.0, 80.0) == pytest.approx(95.4930, rel=1e-4)


def test_es_contracts_and_myocardium_is_conserved():
    cfg = CardiacPhantomConfig()
    for i in range(20):
        heart = draw_heart(np.random.default_rng(i), cfg)
        t = heart.truth()
        assert 0.55 - 1e-9 <= t["lv_area_es_mm2"] / t["lv_area_ed_mm2"] <= 0.8 + 1e-9
        assert t["esv_true"] < t["edv_true"] and 0.25 < t["ef_true"] < 0.75
        assert t["ef_true"] == pytest.approx((t["edv_true"] - t["esv_true"]) / t["edv_true"])
        assert heart.wall["ES"] > heart.wall["ED"]  # thickening
        session = draw_session(np.random.default_rng([i, 1]), cfg, heart)
        (_, ed, sp), (_, es, _) = (render_frame(heart, p, session, np.random.default_rng(0), 96) for p in ("ED", "ES"))
        assert (es == 1).sum() < (ed == 1).sum()
        # rasterised areas follow the analytic truth; myocardial area is roughly conserved
        assert (ed == 1).sum() * sp**2 == pytest.approx(t["lv_area_ed_mm2"], rel=0.08)
        assert (es == 2).sum() == pytest.approx((ed == 2).sum(), rel=0.15)


def test_generate_scan_rescan_truth_determinism_and_cache(tmp_path):
    cfg = CardiacPhantomConfig(num_train=3, num_val=1, num_test=2, size=48)
    p1 = generate_cardiac_phantom(tmp_path / "a", cfg, seed=5)
    p2 = generate_cardiac_phantom(tmp_path / "b", cfg, seed=5)
    p3 = generate_cardiac_phantom(tmp_path / "c", cfg, seed=6)
    d1 = json.loads(p1.read_text())
    assert [len(d1[k]) for k in ("training", "validation", "test")] == [3, 1, 8]
    for e in d1["training"] + d1["test"]:
        assert (p1.parent / e["image"]).read_bytes() == (p2.parent / e["image"]).read_bytes()
    first = d1["test"][0]
    assert (p1.parent / first["image"]).read_bytes() != (p3.parent / first["image"]).read_bytes()
    heart = [e for e in d1["test"] if e["subject"] == "test_0000"]
    assert sorted((e["phase"], e["session"]) for e in heart) == [
        ("ED", "rescan"), ("ED", "scan"), ("ES", "rescan"), ("ES", "scan")]  # fmt: skip
    scan, rescan = (next(e for e in heart if e["phase"] == "ED" and e["session"] == s) for s in ("scan", "rescan"))
    # the same heart: same truth and group, different images (probe, depth, speckle)
    for key in ("edv_true", "esv_true", "ef_true", "lv_area_ed_mm2", "group"):
        assert scan[key] == rescan[key]
    a = np.asarray(nib.load(p1.parent / scan["image"]).dataobj)
    b = np.asarray(nib.load(p1.parent / rescan["image"]).dataobj)
    assert np.abs(a - b).mean() > 0.02
    img = nib.load(p1.parent / scan["image"])
    np.testing.assert_allclose(img.header.get_zooms(), (scan["spacing_mm"],) * 2, rtol=1e-6)
    assert scan["group"] in ("normal", "low") and math.isclose(
        scan["ef_true"], (scan["edv_true"] - scan["esv_true"]) / scan["edv_true"])  # fmt: skip
    mtime = p1.stat().st_mtime_ns
    assert generate_cardiac_phantom(tmp_path / "a", cfg, seed=5) == p1 and p1.stat().st_mtime_ns == mtime


def test_low_quality_group_has_less_blood_tissue_contrast():
    cfg = CardiacPhantomConfig(low_quality_fraction=0.5)
    gaps = {"normal": [], "low": []}
    for i in range(16):
        heart = draw_heart(np.random.default_rng(i), cfg)
        session = draw_session(np.random.default_rng([i, 1]), cfg, heart)
        image, label, _ = render_frame(heart, "ED", session, np.random.default_rng(i), 64)
        gaps[heart.group].append(image[label == 2].mean() - image[label == 1].mean())
    assert gaps["normal"] and gaps["low"] and np.mean(gaps["low"]) < np.mean(gaps["normal"])


@pytest.mark.parametrize(
    "kwargs, field",
    [({"size": 8}, "size"), ({"num_test": -1}, "num_test"), ({"area_ratio": (0.9, 0.5)}, "area_ratio"),
     ({"depth_mm": (50.0, 60.0)}, "depth_mm"), ({"low_quality_fraction": 1.5}, "low_quality_fraction")],
)  # fmt: skip
def test_config_rejects_bad_values(kwargs, field):
    with pytest.raises(ValueError, match=f"CardiacPhantomConfig.{field} must be"):
        CardiacPhantomConfig(**kwargs)

"""Scan-rescan cardiac phantom: one virtual heart at end-diastole (ED) and end-systole (ES), imaged twice.

Each heart is an apical four-chamber-like view drawn with the echo phantom's geometry
(:mod:`common.data.echo_phantom`: truncated-ellipse LV cavity, myocardium, left atrium, unlabelled right
heart; CAMUS labels 0 background, 1 LV cavity, 2 myocardium, 3 LA), but defined in millimetres so that the
heart is the same object in every image:

- **phases**: at ES the LV cavity contracts (its area is ``area_ratio`` of ED, its long axis
  ``length_ratio`` of ED, the apex stays in place) and the myocardium thickens so that its area is conserved;
- **sessions** (``scan``, ``rescan``): every session draws a new probe position and tilt, imaging depth
  (hence pixel spacing), gain and attenuation; every frame draws its own speckle;
- **group** ``image_quality``: ``normal`` or ``low`` (low gain, lower blood-tissue contrast, stronger
  speckle and attenuation: a poor acoustic window).

The truth of each heart is analytic: the LV cavity is an ellipse (semi-axes ``a`` along the long axis, ``b``
across) cut at the mitral plane ``u = t a`` from its centre, so its area is ``a b (t sqrt(1 - t^2) +
arcsin t + pi/2)`` mm^2; its long-axis length is the maximum Feret diameter of that outline (as
:func:`common.metrics.precision.lv_long_axis_length_mm` measures a mask; a little longer than the apex-to-mitral
distance ``a (1 + t)``). Volumes follow the single-plane area-length method, ``V = 8 A^2 / (3 pi L)`` mL
(:func:`common.metrics.precision.area_length_volume`), and ``EF = (EDV - ESV) / EDV``.

:func:`generate_cardiac_phantom` writes NIfTI images and labels plus a decathlon-style ``datalist.json`` into
a cache folder keyed by the configuration and seed, and reuses it when called again. ``training`` and
``validation`` hold single frames (each from its own heart, phase and session drawn at random); ``test``
holds ``num_test`` hearts with all four frames (ED/ES x scan/rescan).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from common.data.config_checks import require
from common.data.echo_phantom import LABEL_NAMES, _ellipse, _save_nifti
from common.io import atomic_write_json
from common.metrics.precision import area_length_volume

__all__ = [
    "CardiacPhantomConfig",
    "Heart",
    "PHASES",
    "SESSIONS",
    "GROUPS",
    "draw_heart",
    "render_frame",
    "lv_area_mm2",
    "lv_length_mm",
    "generate_cardiac_phantom",
]

PHASES = ("ED", "ES")
SESSIONS = ("scan", "rescan")
GROUPS = ("normal", "low")
MITRAL_T = 0.72  # mitral plane at u = MITRAL_T * a from the LV centre (as in the echo phantom)


@dataclass(frozen=True)
class CardiacPhantomConfig:
    """Parameters of the heart population and its acquisitions.

    Args:
        num_train / num_val: single frames (one heart each) for training and validation.
        num_test: test hearts, four frames each (ED/ES x scan/rescan).
        size: image side in pixels.
        depth_mm: (min, max) imaging depth in mm covered by the ``size`` rows; drawn per session.
        area_ratio: (min, max) ES/ED LV cavity area, drawn per heart.
        length_ratio: (min, max) ES/ED LV long-axis length, drawn per heart.
        shape_jitter: relative standard deviation of the heart's ED dimensions.
        max_tilt_deg: probe tilt drawn per session in ``[-max_tilt_deg, max_tilt_deg]``.
        probe_shift_mm: lateral probe offset drawn per session in ``[-probe_shift_mm, probe_shift_mm]``.
        low_quality_fraction: share of hearts in the ``low`` image-quality group.
    """

    num_train: int = 48
    num_val: int = 8
    num_test: int = 16
    size: int = 64
    depth_mm: tuple[float, float] = (150.0, 175.0)
    area_ratio: tuple[float, float] = (0.55, 0.8)
    length_ratio: tuple[float, float] = (0.86, 0.95)
    shape_jitter: float = 0.1
    max_tilt_deg: float = 10.0
    probe_shift_mm: float = 4.0
    low_quality_fraction: float = 0.5

    def __post_init__(self):
        require(self, ("size",), lambda v: v >= 32, ">= 32 pixels")
        require(self, ("num_train", "num_val", "num_test"), lambda v: isinstance(v, int) and v >= 0, "an int >= 0")
        ordered = lambda lo, hi: lambda v: len(v) == 2 and lo < v[0] <= v[1] <= hi  # noqa: E731
        require(self, ("depth_mm",), ordered(100.0, 300.0), "(min, max) with 100 < min <= max <= 300 mm")
        require(self, ("area_ratio", "length_ratio"), ordered(0.0, 1.0), "(min, max) with 0 < min <= max <= 1")
        require(self, ("shape_jitter",), lambda v: 0.0 <= v <= 0.3, "in [0, 0.3]")
        require(self, ("max_tilt_deg",), lambda v: 0.0 <= v <= 30.0, "in [0, 30] degrees")
        require(self, ("probe_shift_mm",), lambda v: 0.0 <= v <= 15.0, "in [0, 15] mm")
        require(self, ("low_quality_fraction",), lambda v: 0.0 <= v <= 1.0, "in [0, 1]")


def _truncated_area(a: float, b: float, t: float) -> float:
    """Area (mm^2) of the ellipse with semi-axes ``a``, ``b`` on the side ``u <= t a`` of its centre."""
    t = min(max(t, -1.0), 1.0)
    return a * b * (t * math.sqrt(1.0 - t * t) + math.asin(t) + math.pi / 2.0)


def lv_area_mm2(a: float, b: float) -> float:
    """True LV cavity area (mm^2) of semi-axes ``a``, ``b`` (mm), cut at the mitral plane."""
    return _truncated_area(a, b, MITRAL_T)


def lv_length_mm(a: float, b: float, points: int = 1441) -> float:
    """True LV long-axis length (mm): the maximum Feret diameter of the cut ellipse's outline (arc sampled at
    ``points`` angles; the mitral chord's ends are on the arc)."""
    from scipy.spatial.distance import pdist

    theta0 = math.acos(MITRAL_T)
    theta = np.linspace(theta0, 2.0 * math.pi - theta0, points)
    return float(pdist(np.c_[a * np.cos(theta), b * np.sin(theta)]).max())


def _myo_area(a: float, b: float, wall: float) -> float:
    """Myocardial area (mm^2): outer ellipse (``a + wall``, ``b + wall``) cut at the same mitral plane, minus the LV."""
    return _truncated_area(a + wall, b + wall, MITRAL_T * a / (a + wall)) - lv_area_mm2(a, b)


@dataclass(frozen=True)
class Heart:
    """One virtual heart (lengths in mm): per phase the LV semi-axes and wall thickness, the LA semi-axes,
    the right-heart side, and the ``image_quality`` group with its tissue echogenicities."""

    a: dict
    b: dict
    wall: dict
    la: dict
    rv_side: float
    rv_size: tuple
    group: str
    myo_echo: float
    tissue_echo: float

    def truth(self) -> dict:
        """Analytic LV areas (mm^2), lengths (mm), area-length volumes (mL) per phase and EF (fraction)."""
        out = {}
        for p in PHASES:
            area, length = lv_area_mm2(self.a[p], self.b[p]), lv_length_mm(self.a[p], self.b[p])
            out[f"lv_area_{p.lower()}_mm2"] = area
            out[f"lv_length_{p.lower()}_mm"] = length
            out[f"{p.lower()}v_true"] = area_length_volume(area, length)
        out["ef_true"] = (out["edv_true"] - out["esv_true"]) / out["edv_true"]
        return out


def draw_heart(rng: np.random.Generator, config: CardiacPhantomConfig) -> Heart:
    """Draw one heart: ED size, ES contraction (area and length ratios) and the wall thickening that conserves
    the myocardial area (bisection on the ES wall thickness)."""
    jit = config.shape_jitter

    def vary(x: float) -> float:
        return x * float(np.clip(1.0 + jit * rng.standard_normal(), 0.7, 1.3))

    a_ed, b_ed, wall_ed = vary(46.0), vary(21.0), vary(8.5)
    r_area, r_len = rng.uniform(*config.area_ratio), rng.uniform(*config.length_ratio)
    a_es = a_ed * r_len
    b_es = b_ed * r_area / r_len  # truncated area is proportional to a * b
    target = _myo_area(a_ed, b_ed, wall_ed)
    lo, hi = 0.0, 4.0 * wall_ed
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if _myo_area(a_es, b_es, mid) < target else (lo, mid)
    la_ed = (vary(18.0), vary(17.0))
    la_es = (la_ed[0] * 1.15, la_ed[1] * 1.1)  # the atrium fills while the ventricle empties
    low = rng.random() < config.low_quality_fraction
    return Heart(
        a={"ED": a_ed, "ES": a_es},
        b={"ED": b_ed, "ES": b_es},
        wall={"ED": wall_ed, "ES": 0.5 * (lo + hi)},
        la={"ED": la_ed, "ES": la_es},
        rv_side=1.0 if rng.random() < 0.5 else -1.0,
        rv_size=(vary(36.0), vary(13.0), vary(12.0)),
        group="low" if low else "normal",
        myo_echo=float(rng.uniform(0.65, 0.85)),
        tissue_echo=float(rng.uniform(0.35, 0.5)),
    )


def draw_session(rng: np.random.Generator, config: CardiacPhantomConfig, heart: Heart) -> dict:
    """One acquisition session (shared by its ED and ES frames): depth, probe tilt and shift, gain, attenuation."""
    low = heart.group == "low"
    return {
        "depth_mm": float(rng.uniform(*config.depth_mm)),
        "tilt_rad": float(np.deg2rad(rng.uniform(-config.max_tilt_deg, config.max_tilt_deg))),
        "shift_mm": float(rng.uniform(-config.probe_shift_mm, config.probe_shift_mm)),
        "apex_mm": float(rng.uniform(14.0, 22.0)),
        "half_angle": float(np.deg2rad(rng.uniform(34.0, 40.0))),
        "gain": float(rng.uniform(0.45, 0.65) if low else rng.uniform(0.85, 1.0)),
        "blood": float(rng.uniform(0.15, 0.25) if low else rng.uniform(0.04, 0.12)),
        "speckle": 1.0,
        "alpha": float(rng.uniform(2.0, 3.0) if low else rng.uniform(1.0, 2.0)),
        "tgc": float(rng.uniform(0.4, 0.8)),
        "noise": 0.08 if low else 0.02,
    }


def render_frame(heart: Heart, phase: str, session: dict, rng: np.random.Generator, size: int):
    """Draw one frame of ``heart`` at ``phase`` under acquisition ``session``.

    Returns:
        ``(image, label, spacing_mm)``: float32 image in [0, 1] and uint8 label in {0..3}, both ``(size, size)``
        (axis 0 depth with the probe at row 0, axis 1 lateral), and the isotropic pixel spacing in mm.
    """
    n = size
    spacing = session["depth_mm"] / n
    rows, cols = np.mgrid[0:n, 0:n].astype(np.float64) * spacing  # mm
    centre_c = (n - 1) / 2.0 * spacing
    dr, dc = rows + 0.02 * session["depth_mm"], cols - centre_c
    depth = np.hypot(dr, dc)
    sector = (np.abs(np.arctan2(dc, dr)) <= session["half_angle"]) & (depth <= session["depth_mm"])
    # Heart coordinates (mm): u along the long axis from the apex region towards the base, v across.
    tilt = session["tilt_rad"]
    pr, pc = rows - session["apex_mm"], cols - (centre_c + session["shift_mm"])
    u = pr * np.cos(tilt) - pc * np.sin(tilt)
    v = pr * np.sin(tilt) + pc * np.cos(tilt)
    a, b, wall = heart.a[phase], heart.b[phase], heart.wall[phase]
    cu = heart.a["ED"] + 4.0 - (heart.a["ED"] - a)  # the endocardial apex stays 4 mm below the pivot
    base_u = cu + MITRAL_T * a
    lv = _ellipse(u, v, cu, 0.0, a, b) & (u <= base_u)
    myo = _ellipse(u, v, cu, 0.0, a + wall, b + wall) & (u <= base_u) & ~lv
    la_long, la_short = heart.la[phase]
    la = _ellipse(u, v, base_u + 0.9 * la_long, 0.0, la_long, la_short) & (u > base_u) & ~myo & ~lv
    rv_long, rv_short, rv_gap = heart.rv_size
    rv = _ellipse(u, v, cu + 0.2 * a, heart.rv_side * (b + wall + rv_gap), rv_long, rv_short) & ~lv & ~myo & ~la

    label = np.zeros((n, n), np.uint8)
    label[myo], label[lv], label[la] = 2, 1, 3
    label[~sector] = 0

    echo = np.full((n, n), heart.tissue_echo)
    smooth = ndimage.gaussian_filter(rng.standard_normal((n, n)), sigma=0.08 * n)
    echo *= 1.0 + 0.6 * smooth / (np.abs(smooth).max() + 1e-8)
    echo[myo] = heart.myo_echo
    echo[lv | la | rv] = session["blood"]
    echo = ndimage.gaussian_filter(echo, sigma=0.6)
    field = ndimage.gaussian_filter(rng.standard_normal((n, n)), 0.7) + 1j * ndimage.gaussian_filter(
        rng.standard_normal((n, n)), 0.7
    )
    speck = np.abs(field)
    echo = echo * speck / speck.mean()
    echo *= session["gain"] * np.exp(-session["alpha"] * (1.0 - session["tgc"]) * depth / session["depth_mm"])
    echo = ndimage.gaussian_filter(echo, sigma=(0.5, 0.9))
    echo += session["noise"] * rng.random((n, n))
    echo[~sector] = 0.0
    image = np.clip(echo / max(float(np.percentile(echo[sector], 99.5)), 1e-6), 0.0, 1.0)
    image = (image * session["gain"] + (1.0 - session["gain"]) * image.mean() * sector).astype(np.float32)
    return image, label, spacing


def _cache_key(config: CardiacPhantomConfig, seed: int) -> str:
    blob = json.dumps(
        {"generator": "cardiac_phantom/2", "config": dataclasses.asdict(config), "seed": seed}, sort_keys=True
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def generate_cardiac_phantom(output_dir: str | Path, config: CardiacPhantomConfig | None = None, seed: int = 0) -> Path:
    """Write the population and return the path of its ``datalist.json``.

    Files go to ``output_dir/cardiac_phantom_<key>/`` (``key`` hashes configuration and seed); an existing
    complete folder is reused. Heart ``(split, i)`` is drawn from a generator seeded by ``(seed, split, i)``,
    each session from ``(seed, split, i, session)`` and each frame's speckle from ``(..., session, phase)``, so
    the same seed gives the same bytes. Entries: ``{"image", "label", "id", "subject", "phase", "session",
    "group", "spacing_mm", "lv_area_ed_mm2", "lv_area_es_mm2", "lv_length_ed_mm", "lv_length_es_mm",
    "edv_true", "esv_true", "ef_true"}`` (paths relative to the datalist's folder).
    """
    config = config or CardiacPhantomConfig()
    root = Path(output_dir) / f"cardiac_phantom_{_cache_key(config, seed)}"
    datalist_path = root / "datalist.json"
    if datalist_path.exists():
        return datalist_path
    datalist: dict = {
        "name": "cardiac_phantom",
        "description": "Procedural 2D apical echo phantom: the same hearts at ED and ES, scanned and rescanned.",
        "labels": {str(k): v for k, v in LABEL_NAMES.items()},
        "seed": seed,
        "config": dataclasses.asdict(config),
    }
    splits = {"training": config.num_train, "validation": config.num_val, "test": config.num_test}
    for split_index, (split, count) in enumerate(splits.items()):
        entries = []
        for i in range(count):
            heart = draw_heart(np.random.default_rng([seed, split_index, i]), config)
            subject = f"{split}_{i:04d}"
            if split == "test":
                frames = [(p, s) for s in SESSIONS for p in PHASES]
            else:  # one frame of its own heart, phase and session drawn from the heart's generator
                pick = np.random.default_rng([seed, split_index, i, 99]).integers(0, 2, size=2)
                frames = [(PHASES[pick[0]], SESSIONS[pick[1]])]
            for phase, session_name in frames:
                s_index = SESSIONS.index(session_name)
                session = draw_session(np.random.default_rng([seed, split_index, i, 1 + s_index]), config, heart)
                frame_rng = np.random.default_rng([seed, split_index, i, 1 + s_index, 1 + PHASES.index(phase)])
                image, label, spacing = render_frame(heart, phase, session, frame_rng, config.size)
                fid = f"{subject}_{phase}_{session_name}"
                _save_nifti(image, spacing, root / "images" / f"{fid}.nii.gz")
                _save_nifti(label, spacing, root / "labels" / f"{fid}.nii.gz")
                entries.append({
                    "image": f"images/{fid}.nii.gz", "label": f"labels/{fid}.nii.gz", "id": fid,
                    "subject": subject, "phase": phase, "session": session_name, "group": heart.group,
                    "spacing_mm": spacing, **heart.truth(),
                })  # fmt: skip
        datalist[split] = entries
    atomic_write_json(datalist_path, datalist)
    return datalist_path

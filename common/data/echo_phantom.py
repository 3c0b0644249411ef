"""Procedural 2D echocardiography phantom with CAMUS-style labels.

Each image is an apical view: a fan-shaped ultrasound sector with its apex at
the top centre, Rayleigh-like speckle, depth-dependent attenuation with
time-gain compensation, a point-spread blur, and a heart made of a left
ventricle (LV) cavity, its myocardium and the left atrium (LA) below the
mitral plane, plus an unlabelled right-heart cavity beside them. Shapes,
sizes, wall thickness, orientation, contrast and noise vary per image.

Labels follow CAMUS: 0 background, 1 LV cavity, 2 myocardium, 3 LA.

:func:`generate_echo_phantom` writes 2D NIfTI images and labels plus a
decathlon-style ``datalist.json`` into a cache folder keyed by the
configuration and seed, and reuses it when called again.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from common.data.config_checks import require
from common.io import atomic_write, atomic_write_json

LABEL_NAMES = {0: "background", 1: "lv_cavity", 2: "myocardium", 3: "left_atrium"}


@dataclass(frozen=True)
class EchoPhantomConfig:
    """Parameters of the phantom population.

    Args:
        num_train / num_val / num_test: number of images per split.
        size: image side in pixels (images are ``size x size``).
        depth_mm: imaging depth covered by the ``size`` rows, in mm (sets the pixel spacing).
        shape_jitter: relative standard deviation of the structure sizes.
        max_tilt_deg: long-axis orientation drawn uniformly in ``[-max_tilt_deg, max_tilt_deg]``.
        speckle: strength of the multiplicative speckle (0 = none).
    """

    num_train: int = 48
    num_val: int = 8
    num_test: int = 24
    size: int = 64
    depth_mm: float = 150.0
    shape_jitter: float = 0.12
    max_tilt_deg: float = 15.0
    speckle: float = 1.0

    def __post_init__(self):
        require(self, ("size",), lambda v: v >= 32, ">= 32 pixels")
        require(self, ("num_train", "num_val", "num_test"), lambda v: v >= 0, ">= 0")


def _ellipse(u: np.ndarray, v: np.ndarray, cu: float, cv: float, au: float, av: float) -> np.ndarray:
    return ((u - cu) / au) ** 2 + ((v - cv) / av) ** 2 <= 1.0


def echo_phantom_sample(rng: np.random.Generator, size: int = 64, config: EchoPhantomConfig | None = None):
    """One phantom image and its label.

    Returns:
        ``(image, label)``: float32 image in [0, 1] and uint8 label in {0..3}, both ``(size, size)``
        with axis 0 the depth (rows, apex at row 0) and axis 1 lateral.
    """
    cfg = config or EchoPhantomConfig(size=size)
    n = size
    jit = cfg.shape_jitter

    def vary(x: float) -> float:
        return x * float(np.clip(1.0 + jit * rng.standard_normal(), 0.6, 1.4))

    rows, cols = np.mgrid[0:n, 0:n].astype(np.float64)
    # Sector geometry (apex at top centre).
    apex_r, apex_c = -0.02 * n, (n - 1) / 2.0
    dr, dc = rows - apex_r, cols - apex_c
    depth = np.hypot(dr, dc)
    angle = np.arctan2(dc, dr)
    half_angle = np.deg2rad(rng.uniform(34.0, 40.0))
    max_depth = n * rng.uniform(0.93, 1.0)
    sector = (np.abs(angle) <= half_angle) & (depth <= max_depth)

    # Heart coordinates: u along the long axis (down, towards the base), v across.
    tilt = np.deg2rad(rng.uniform(-cfg.max_tilt_deg, cfg.max_tilt_deg))
    pivot_r, pivot_c = 0.12 * n, apex_c + rng.uniform(-0.04, 0.04) * n
    pr, pc = rows - pivot_r, cols - pivot_c
    u = pr * np.cos(tilt) - pc * np.sin(tilt)
    v = pr * np.sin(tilt) + pc * np.cos(tilt)

    lv_long, lv_short = vary(0.25 * n), vary(0.12 * n)
    wall = vary(0.055 * n)
    lv_cu = 0.04 * n + lv_long  # LV centre along the axis (endocardial apex about 0.04 n below the pivot)
    base_u = lv_cu + 0.72 * lv_long  # mitral plane
    lv = _ellipse(u, v, lv_cu, 0.0, lv_long, lv_short) & (u <= base_u)
    myo = _ellipse(u, v, lv_cu, 0.0, lv_long + wall, lv_short + wall) & (u <= base_u) & ~lv
    la_long, la_short = vary(0.12 * n), vary(0.11 * n)
    la = _ellipse(u, v, base_u + 0.9 * la_long, rng.uniform(-0.02, 0.02) * n, la_long, la_short) & (u > base_u)
    la &= ~myo & ~lv
    # Unlabelled right-heart cavity on the lateral side (dark blood, label 0).
    side = 1.0 if rng.random() < 0.5 else -1.0
    rv_cv = side * (lv_short + wall + vary(0.1 * n) + 0.02 * n)
    rv = _ellipse(u, v, lv_cu + 0.2 * lv_long, rv_cv, vary(0.8 * lv_long), vary(0.09 * n))
    rv &= ~lv & ~myo & ~la

    label = np.zeros((n, n), np.uint8)
    label[myo] = 2
    label[lv] = 1
    label[la] = 3
    label[~sector] = 0

    # Echogenicity map: tissue, bright myocardium, dark blood pools.
    tissue = rng.uniform(0.35, 0.5)
    echo = np.full((n, n), tissue)
    smooth = ndimage.gaussian_filter(rng.standard_normal((n, n)), sigma=0.08 * n)
    echo *= 1.0 + 0.6 * smooth / (np.abs(smooth).max() + 1e-8)
    echo[myo] = rng.uniform(0.65, 0.85)
    blood = rng.uniform(0.04, 0.12)
    echo[lv | la | rv] = blood
    echo = ndimage.gaussian_filter(echo, sigma=0.6)  # soft tissue boundaries

    # Speckle: magnitude of a smoothed complex Gaussian field (Rayleigh), normalised to unit mean.
    if cfg.speckle > 0:
        field = ndimage.gaussian_filter(rng.standard_normal((n, n)), 0.7) + 1j * ndimage.gaussian_filter(
            rng.standard_normal((n, n)), 0.7
        )
        speck = np.abs(field)
        speck /= speck.mean()
        echo = echo * (1.0 - cfg.speckle + cfg.speckle * speck)
    # Attenuation with depth, partly compensated by time-gain compensation.
    alpha = rng.uniform(1.0, 2.0)
    tgc = rng.uniform(0.4, 0.8)
    echo *= np.exp(-alpha * (1.0 - tgc) * depth / n)
    # Lateral point-spread blur grows with depth (anisotropic PSF, approximated by one blur).
    echo = ndimage.gaussian_filter(echo, sigma=(0.5, 0.9))
    echo += 0.02 * rng.random((n, n))
    echo[~sector] = 0.0
    image = np.clip(echo / max(float(np.percentile(echo[sector], 99.5)), 1e-6), 0.0, 1.0).astype(np.float32)
    return image, label


def _cache_key(config: EchoPhantomConfig, seed: int) -> str:
    blob = json.dumps(
        {"generator": "echo_phantom/1", "config": dataclasses.asdict(config), "seed": seed}, sort_keys=True
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _save_nifti(array: np.ndarray, spacing_mm: float, path: Path) -> None:
    import nibabel as nib

    affine = np.diag([spacing_mm, spacing_mm, 1.0, 1.0])
    img = nib.Nifti1Image(array, affine)
    img.header.set_xyzt_units("mm")
    # gzip with a fixed mtime and no file name in the header, so the same data give the same bytes.
    data = gzip.compress(img.to_bytes(), compresslevel=6, mtime=0)
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def generate_echo_phantom(
    output_dir: str | Path, config: EchoPhantomConfig | None = None, seed: int = 0, progress: bool = False
) -> Path:
    """Write the phantom population and return the path of its ``datalist.json``.

    Files go to ``output_dir/echo_phantom_<key>/`` where ``key`` hashes the
    configuration and seed; an existing complete folder is reused. Each image is
    drawn from its own generator seeded by ``(seed, split, index)``, so the same
    seed gives the same bytes. Datalist entries are
    ``{"image", "label", "id"}`` with paths relative to the datalist's folder,
    under the keys ``training``, ``validation`` and ``test``.
    """
    config = config or EchoPhantomConfig()
    root = Path(output_dir) / f"echo_phantom_{_cache_key(config, seed)}"
    datalist_path = root / "datalist.json"
    if datalist_path.exists():
        return datalist_path
    spacing = config.depth_mm / config.size
    splits = {"training": config.num_train, "validation": config.num_val, "test": config.num_test}
    datalist: dict = {
        "name": "echo_phantom",
        "description": "Procedural 2D apical echocardiography phantom (CAMUS labels).",
        "labels": {str(k): v for k, v in LABEL_NAMES.items()},
        "seed": seed,
        "config": dataclasses.asdict(config),
    }
    for split_index, (split, count) in enumerate(splits.items()):
        entries = []
        for i in range(count):
            rng = np.random.default_rng([seed, split_index, i])
            image, label = echo_phantom_sample(rng, config.size, config)
            sid = f"{split}_{i:04d}"
            _save_nifti(image, spacing, root / "images" / f"{sid}.nii.gz")
            _save_nifti(label, spacing, root / "labels" / f"{sid}.nii.gz")
            entries.append({"image": f"images/{sid}.nii.gz", "label": f"labels/{sid}.nii.gz", "id": sid})
            if progress:
                print(f"echo phantom: {split} {i + 1}/{count}", end="\r")
        datalist[split] = entries
    atomic_write_json(datalist_path, datalist)
    return datalist_path

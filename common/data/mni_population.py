"""A reproducible two-group brain population built from the MNI152 2009 template that nilearn ships.

Template preparation (once per configuration): the 1 mm grey-matter (GM), white-matter (WM)
probability maps and the brain mask are cropped to the brain bounding box plus a margin and
brought to ``base_spacing`` with :class:`~common.transforms.SimulateLowResolution` (Gaussian
blur with FWHM = voxel size, trilinear), then zero-padded at the far end so that the grid
extent is a multiple of ``low_spacing`` where possible (then group L covers exactly the same
field of view).

Labels: 0 background (brain probability < 0.5); inside the brain ``1 + argmax(p_other, p_GM, p_WM)``
with ``p_other = max(p_brain - p_GM - p_WM, 0)`` (CSF and other tissue), i.e. 1 other/CSF,
2 GM, 3 WM. A tissue needs the largest of the three probabilities, which implies at least 1/3.

Group model (every number is a field of :class:`MNIPopulationConfig`):

- both groups: a smooth random deformation (displacements with standard deviation
  ``deformation_mm`` on control points every ``deformation_grid_mm``, trilinearly interpolated),
  a global scale ``exp(N(0, scale_std))`` about the grid centre, a tissue-mean contrast model
  ``I = mu_other p_other + mu_GM p_GM + mu_WM p_WM`` with subject jitter ``contrast_std`` on each
  mean, optionally ``texture_weight`` times the template T1 detail that this model does not
  explain (T1 minus its least-squares tissue-mean fit), a smooth multiplicative bias field
  (MONAI ``RandBiasField``, degree 3, coefficients up to ``bias_field_coeff``), a gamma change
  ``exp(N(0, gamma_std))`` (MONAI ``AdjustContrast``) and Rician noise of standard deviation
  ``noise_std`` (MONAI ``RandRicianNoise``);
- group H: ``contrast_h`` (adult T1-like: WM brighter than GM), images at ``base_spacing``;
- group L: ``contrast_l`` (infant-like inverted contrast, GM brighter than WM), an extra global
  scale ``group_l_scale``, and cortical thinning: the template's GM probability mass next to WM
  (weighted by the locally smoothed WM probability) is moved to WM until the GM label volume
  changes by ``group_l_gm_change`` (relative, e.g. -0.10), so the GM/WM boundary moves outward.
  Group L's training image and label are then simulated at ``low_spacing``
  (:class:`~common.transforms.SimulateLowResolution`; noise is added after the simulation), while
  its high-resolution image and label are kept as ``image_hr``/``label_hr`` for evaluation.

With ``scale_std = deformation_mm = 0`` every L subject's GM volume is exactly
``(1 + group_l_gm_change) * group_l_scale**3`` times every H subject's (up to voxel quantisation).
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import hashlib
import json
import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch

from common.data.config_checks import require
from common.io import atomic_write, atomic_write_json

__all__ = ["LABEL_NAMES", "MNIPopulationConfig", "generate_mni_population", "ground_truth_volumes"]

GENERATOR_VERSION = 1
LABEL_NAMES = {0: "background", 1: "other_csf", 2: "grey_matter", 3: "white_matter"}
SPLITS = {"training": "train", "validation": "val", "test": "test"}
GROUPS = ("H", "L")

GROUP_L_CONTRASTS = {
    "inverted": (0.30, 0.80, 0.55),  # infant-like: grey matter brighter than white matter
    "reduced": (0.30, 0.60, 0.72),  # child-like: the adult order, half the grey/white difference of group H
}
"""Named tissue means (other/CSF, GM, WM) of group L; group H has (0.30, 0.60, 0.85)."""


@dataclass(frozen=True)
class MNIPopulationConfig:
    """Parameters of the embedded population (spacings and lengths in mm, intensities in [0, 1])."""

    n_train: int = 10  # subjects per group
    n_val: int = 3
    n_test: int = 8
    base_spacing: float = 2.0  # high resolution: group H and all ground truth
    low_spacing: float = 3.0  # group L's acquisition
    crop_margin_mm: float = 4.0
    deformation_mm: float = 2.0
    deformation_grid_mm: float = 40.0
    scale_std: float = 0.02  # log-normal global scale of every subject (GM volume CV about 5%)
    group_l_scale: float = 1.0  # extra global scale of group L
    group_l_gm_change: float = -0.10  # relative GM volume change of group L by cortical thinning
    contrast_h: tuple[float, float, float] = (0.30, 0.60, 0.85)  # mean of other/CSF, GM, WM
    contrast_l: tuple[float, float, float] | str = (0.30, 0.80, 0.55)  # or a GROUP_L_CONTRASTS name
    contrast_std: float = 0.03
    bias_field_coeff: float = 0.1
    gamma_std: float = 0.1
    noise_std: float = 0.02
    texture_weight: float = 1.0  # adds this times the template T1 detail the tissue model misses
    simulate_low_resolution: bool = True  # False: group L stays at base_spacing (a control)

    def __post_init__(self):
        require(self, ("n_train", "n_val", "n_test"), lambda v: v >= 0, ">= 0")
        require(
            self, ("base_spacing", "low_spacing", "deformation_grid_mm", "group_l_scale"), lambda v: v > 0, "positive"
        )
        require(self, ("group_l_gm_change",), lambda v: -0.5 < v < 0.5, "in (-0.5, 0.5)")
        if isinstance(self.contrast_l, str):
            if self.contrast_l not in GROUP_L_CONTRASTS:
                raise ValueError(
                    f"MNIPopulationConfig.contrast_l {self.contrast_l!r} is not one of {', '.join(GROUP_L_CONTRASTS)}"
                )
            object.__setattr__(self, "contrast_l", GROUP_L_CONTRASTS[self.contrast_l])
        for name in ("contrast_h", "contrast_l"):
            if len(getattr(self, name)) != 3:
                raise ValueError(f"MNIPopulationConfig.{name} needs 3 means (other/CSF, GM, WM)")
            object.__setattr__(self, name, tuple(float(v) for v in getattr(self, name)))

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    def cache_key(self, seed: int) -> str:
        blob = json.dumps({"config": self.to_dict(), "seed": int(seed), "version": GENERATOR_VERSION}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------------------------- template


def tissue_labels(p_gm: np.ndarray, p_wm: np.ndarray, p_brain: np.ndarray) -> np.ndarray:
    """Labels 0..3 (uint8) from probability maps of the same shape (see the module docstring)."""
    p_other = np.clip(p_brain - p_gm - p_wm, 0.0, None)
    lab = (np.argmax(np.stack([p_other, p_gm, p_wm]), axis=0) + 1).astype(np.uint8)
    lab[p_brain < 0.5] = 0
    return lab


@functools.lru_cache(maxsize=4)
def _template(base_spacing: float, low_spacing: float, margin_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """(4, X, Y, Z) float32 maps (GM, WM, brain, T1 texture) at ``base_spacing`` and their 4x4 affine.

    The T1 texture is the template T1 minus its least-squares fit by the tissue-mean model
    (other/CSF, GM, WM), i.e. the anatomical detail the three probability maps do not explain.
    """
    from monai.data import MetaTensor
    from nilearn import datasets

    from common.transforms.acquisition import SimulateLowResolution

    gm_img = datasets.load_mni152_gm_template(resolution=1)
    maps = [
        gm_img.get_fdata(dtype=np.float32),
        datasets.load_mni152_wm_template(resolution=1).get_fdata(dtype=np.float32),
        datasets.load_mni152_brain_mask(resolution=1).get_fdata(dtype=np.float32),
        datasets.load_mni152_template(resolution=1).get_fdata(dtype=np.float32),
    ]
    affine = np.asarray(gm_img.affine, dtype=np.float64)
    spacing1 = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    nz = np.nonzero(maps[2] > 0)
    margin = np.ceil(margin_mm / spacing1).astype(int)
    lo = np.maximum(np.array([i.min() for i in nz]) - margin, 0)
    hi = np.minimum(np.array([i.max() for i in nz]) + margin + 1, maps[2].shape)
    crop = tuple(slice(a, b) for a, b in zip(lo, hi))
    cropped = np.stack([m[crop] for m in maps])
    crop_affine = affine.copy()
    crop_affine[:3, 3] = affine[:3, :3] @ lo + affine[:3, 3]
    if np.allclose(spacing1, base_spacing):
        hr, hr_affine = cropped, crop_affine
    else:
        out = SimulateLowResolution(base_spacing)(
            MetaTensor(torch.from_numpy(cropped), affine=torch.from_numpy(crop_affine))
        )
        hr, hr_affine = out.numpy(), out.affine.numpy()
    # pad so that n * base is a multiple of low (same field of view for group L) when the ratio is simple
    ratio = Fraction(low_spacing / base_spacing).limit_denominator(20)
    mult = ratio.numerator if math.isclose(float(ratio), low_spacing / base_spacing, rel_tol=1e-6) else 1
    pad = [(0, (-n) % mult) for n in hr.shape[1:]]
    hr = np.pad(hr, [(0, 0)] + pad)
    gm, wm, brain, t1 = hr
    design = np.stack([np.clip(brain - gm - wm, 0.0, None), gm, wm], axis=-1)
    inside = brain >= 0.5
    mu, *_ = np.linalg.lstsq(design[inside].astype(np.float64), t1[inside].astype(np.float64), rcond=None)
    hr[3] = np.where(brain > 0, t1 - design @ mu.astype(np.float32), 0.0)
    return np.ascontiguousarray(hr, dtype=np.float32), hr_affine


def _move_gm(maps: np.ndarray, amount: float, weight_wm: np.ndarray, weight_gm: np.ndarray) -> np.ndarray:
    """Move GM probability to WM (amount > 0, thinning) or WM to GM (amount < 0), weighted by proximity."""
    gm, wm, *rest = maps
    if amount >= 0:
        moved = np.minimum(gm, amount * weight_wm)
    else:
        moved = -np.minimum(wm, -amount * weight_gm)
    return np.stack([gm - moved, wm + moved, *rest])


@functools.lru_cache(maxsize=8)
def _group_template(base_spacing: float, low_spacing: float, margin_mm: float, gm_change: float) -> np.ndarray:
    """Template maps with the GM label volume changed by ``gm_change`` (relative), by bisection."""
    from scipy import ndimage

    maps, _ = _template(base_spacing, low_spacing, margin_mm)
    if gm_change == 0:
        return maps
    w_wm = ndimage.gaussian_filter(maps[1], 1.0)
    w_gm = ndimage.gaussian_filter(maps[0], 1.0)
    w_wm, w_gm = w_wm / w_wm.max(), w_gm / w_gm.max()
    target = (1.0 + gm_change) * np.count_nonzero(tissue_labels(*maps[:3]) == 2)
    sign = -1.0 if gm_change < 0 else 1.0  # thinning moves GM away: positive amount

    def gm_volume(a: float) -> int:
        return int(np.count_nonzero(tissue_labels(*_move_gm(maps, -sign * a, w_wm, w_gm)[:3]) == 2))

    lo, hi = 0.0, 1.0
    while (gm_volume(hi) - target) * sign < 0:
        hi *= 2
        if hi > 1e3:
            raise ValueError(f"group_l_gm_change={gm_change} cannot be reached by moving the GM/WM boundary")
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        if (gm_volume(mid) - target) * sign < 0:
            lo = mid
        else:
            hi = mid
    a = lo if abs(gm_volume(lo) - target) <= abs(gm_volume(hi) - target) else hi
    return _move_gm(maps, -sign * a, w_wm, w_gm).astype(np.float32)


# ----------------------------------------------------------------------------------------------- subjects


def _warp(maps: np.ndarray, affine: np.ndarray, scale: float, cfg: MNIPopulationConfig, rng: np.random.Generator):
    """Maps (C, X, Y, Z) resampled through a global scale about the centre plus a smooth random displacement."""
    shape = np.array(maps.shape[1:])
    spacing = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    extent = shape * spacing
    n_ctrl = np.maximum(2, np.ceil(extent / cfg.deformation_grid_mm).astype(int) + 1)
    ctrl = rng.normal(0.0, 1.0, size=(3, *n_ctrl)) * cfg.deformation_mm / spacing[:, None, None, None]  # voxels
    disp = torch.nn.functional.interpolate(
        torch.from_numpy(ctrl).float()[None], size=tuple(int(s) for s in shape), mode="trilinear", align_corners=True
    )[0]
    centre = (shape - 1) / 2.0
    axes = [torch.arange(int(n), dtype=torch.float32) for n in shape]
    grid = torch.stack(torch.meshgrid(*axes, indexing="ij"))  # (3, X, Y, Z) voxel indices
    src = (grid - torch.tensor(centre, dtype=torch.float32)[:, None, None, None]) / scale
    src = src + torch.tensor(centre, dtype=torch.float32)[:, None, None, None] + disp
    norm = 2.0 * src / torch.tensor(shape - 1, dtype=torch.float32)[:, None, None, None] - 1.0
    # grid_sample takes (x, y, z) = (last, middle, first) array axis
    sample_grid = norm.flip(0).permute(1, 2, 3, 0)[None]
    out = torch.nn.functional.grid_sample(
        torch.from_numpy(maps)[None], sample_grid, mode="bilinear", padding_mode="zeros", align_corners=True
    )[0]
    return out.numpy()


def _intensity(maps: np.ndarray, means: tuple[float, float, float], cfg: MNIPopulationConfig, rng) -> np.ndarray:
    """Noise-free image (1, X, Y, Z) float32 from warped maps: tissue means, bias field, gamma."""
    from monai.transforms import AdjustContrast, RandBiasField

    gm, wm, brain, texture = maps
    mu = np.asarray(means) * (1.0 + rng.normal(0.0, cfg.contrast_std, size=3))
    img = mu[0] * np.clip(brain - gm - wm, 0.0, None) + mu[1] * gm + mu[2] * wm + cfg.texture_weight * texture
    img = img[None].astype(np.float32)
    if cfg.bias_field_coeff > 0:
        bias = RandBiasField(degree=3, coeff_range=(0.0, cfg.bias_field_coeff), prob=1.0)
        bias.set_random_state(seed=int(rng.integers(2**31)))
        img = np.asarray(bias(img), dtype=np.float32)
    if cfg.gamma_std > 0:
        img = np.asarray(AdjustContrast(gamma=float(np.exp(rng.normal(0.0, cfg.gamma_std))))(img), dtype=np.float32)
    return np.clip(img, 0.0, None)


def _add_noise(img: np.ndarray, cfg: MNIPopulationConfig, rng) -> np.ndarray:
    if cfg.noise_std <= 0:
        return img.astype(np.float32)
    from monai.transforms import RandRicianNoise

    noise = RandRicianNoise(prob=1.0, std=cfg.noise_std, sample_std=False)
    noise.set_random_state(seed=int(rng.integers(2**31)))
    return np.asarray(noise(img), dtype=np.float32)


def _write_nifti(path: Path, array: np.ndarray, affine: np.ndarray) -> None:
    """Write (1, X, Y, Z) or (X, Y, Z) as gzipped NIfTI; fixed gzip mtime so equal data give equal bytes."""
    import nibabel as nib

    arr = np.asarray(array)
    if arr.ndim == 4 and arr.shape[0] == 1:
        arr = arr[0]
    img = nib.Nifti1Image(arr, np.asarray(affine, dtype=np.float64))
    img.header.set_xyzt_units("mm")
    img.set_qform(img.affine, code=1)
    img.set_sform(img.affine, code=1)
    data = gzip.compress(img.to_bytes(), compresslevel=1, mtime=0)
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def _subject_rng(seed: int, split: str, group: str, index: int) -> np.random.Generator:
    return np.random.default_rng(
        np.random.SeedSequence([int(seed), list(SPLITS).index(split), GROUPS.index(group), int(index)])
    )


def _complete(datalist_path: Path) -> bool:
    try:
        dl = json.loads(datalist_path.read_text())
        root = datalist_path.parent
        return all(
            (root / e[k]).is_file() for s in SPLITS for e in dl[s] for k in ("image", "label", "image_hr", "label_hr")
        )
    except (OSError, ValueError, KeyError, TypeError):
        return False


def generate_mni_population(output_dir: str | Path, config: MNIPopulationConfig | None = None, seed: int = 0) -> Path:
    """Generate (or reuse) the population under ``output_dir/<hash of config and seed>/``.

    Returns the path of ``datalist.json``: ``{"training", "validation", "test": [entry ...], "meta"}``
    with entries ``{"image", "label", "image_hr", "label_hr", "group", "spacing", "subject", "scale"}``;
    paths are relative to the datalist's folder. The datalist is written last (atomically), so a
    folder without a complete datalist is regenerated.
    """
    from tqdm import tqdm

    from common.transforms.acquisition import SimulateLowResolution

    cfg = config if config is not None else MNIPopulationConfig()
    if not isinstance(cfg, MNIPopulationConfig):
        raise TypeError(f"config must be an MNIPopulationConfig, got {type(cfg).__name__}")
    root = Path(output_dir) / cfg.cache_key(seed)
    datalist_path = root / "datalist.json"
    if _complete(datalist_path):
        return datalist_path
    (root / "subjects").mkdir(parents=True, exist_ok=True)

    base, hr_affine = _template(cfg.base_spacing, cfg.low_spacing, cfg.crop_margin_mm)
    group_maps = {
        "H": base,
        "L": _group_template(cfg.base_spacing, cfg.low_spacing, cfg.crop_margin_mm, float(cfg.group_l_gm_change)),
    }
    lowres = SimulateLowResolution(cfg.low_spacing)
    counts = {"training": cfg.n_train, "validation": cfg.n_val, "test": cfg.n_test}
    jobs = [(s, g, i) for s in SPLITS for g in GROUPS for i in range(counts[s])]
    datalist: dict[str, Any] = {s: [] for s in SPLITS}
    for split, group, i in tqdm(jobs, desc="MNI population", unit="subject", leave=False):
        rng = _subject_rng(seed, split, group, i)
        sid = f"{SPLITS[split]}_{group}{i:03d}"
        scale = float(np.exp(rng.normal(0.0, cfg.scale_std)) * (cfg.group_l_scale if group == "L" else 1.0))
        maps = _warp(group_maps[group], hr_affine, scale, cfg, rng)
        label = tissue_labels(*maps[:3])[None]
        clean = _intensity(maps, cfg.contrast_h if group == "H" else cfg.contrast_l, cfg, rng)
        files = {k: f"subjects/{sid}_{k}.nii.gz" for k in ("image", "label", "image_hr", "label_hr")}
        _write_nifti(root / files["image_hr"], _add_noise(clean, cfg, rng), hr_affine)
        _write_nifti(root / files["label_hr"], label, hr_affine)
        spacing = [cfg.base_spacing] * 3
        if group == "L" and cfg.simulate_low_resolution:
            from monai.data import MetaTensor

            aff = torch.as_tensor(hr_affine)
            lr_img = lowres(MetaTensor(torch.from_numpy(clean), affine=aff))
            lr_lab = lowres(MetaTensor(torch.from_numpy(label), affine=aff), is_label=True)
            _write_nifti(root / files["image"], _add_noise(lr_img.numpy(), cfg, rng), lr_img.affine.numpy())
            _write_nifti(root / files["label"], lr_lab.numpy(), lr_lab.affine.numpy())
            spacing = [cfg.low_spacing] * 3
        else:
            files["image"], files["label"] = files["image_hr"], files["label_hr"]
        datalist[split].append({**files, "group": group, "spacing": spacing, "subject": sid, "scale": scale})
    datalist["meta"] = {
        "generator": "common.data.generate_mni_population",
        "version": GENERATOR_VERSION,
        "seed": int(seed),
        "config": cfg.to_dict(),
        "labels": {str(k): v for k, v in LABEL_NAMES.items()},
        "source": "MNI ICBM152 2009 template (nilearn): T1, GM/WM probability maps and brain mask",
    }
    atomic_write_json(datalist_path, datalist)
    return datalist_path


def ground_truth_volumes(
    datalist: str | Path | dict, base_dir: str | Path | None = None, key: str = "label_hr"
) -> list[dict[str, Any]]:
    """Per-subject label volumes in mm^3 from the high-resolution ground truth.

    Returns one dict per entry of every split: ``{"split", "subject", "group", "volumes": {label: mm^3}}``
    for labels 1..3. ``base_dir`` resolves relative paths (default: the datalist's folder).
    """
    import nibabel as nib

    if isinstance(datalist, (str, Path)):
        path = Path(datalist)
        base_dir = path.parent if base_dir is None else base_dir
        datalist = json.loads(path.read_text())
    base = Path(base_dir) if base_dir is not None else Path(".")
    rows = []
    for split in SPLITS:
        for entry in datalist.get(split, []):
            f = base / entry[key]
            if not f.is_file():
                raise FileNotFoundError(f"{f}: label file of subject {entry.get('subject', '?')} is missing")
            img = nib.load(str(f))
            voxel = float(np.prod(img.header.get_zooms()[:3]))
            lab = np.asarray(img.dataobj)
            rows.append(
                {
                    "split": split,
                    "subject": entry.get("subject", Path(entry[key]).name),
                    "group": entry.get("group"),
                    "volumes": {k: float(np.count_nonzero(lab == k) * voxel) for k in (1, 2, 3)},
                }
            )
    return rows

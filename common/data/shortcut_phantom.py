"""Procedural 2D phantom with a spurious identity-scene correlation (shortcut learning, label flips).

Each image holds one lesion-like blob on soft-tissue background. The blob is one of two **identities**
(label 1 or 2) that share every shape and intensity statistic and differ only by a faint, fine internal
texture (the intrinsic cue): identity 1 carries stripes along the image rows, identity 2 along the columns,
with amplitude ``cue_strength`` under speckle noise. Each image is acquired in one of two **scenes**
(acquisition styles): ``sector`` (fan-shaped field of view, low gain, coarse speckle) or ``linear``
(rectangular field of view, high gain, fine speckle). The scene is obvious at a glance; the cue is not.

In the training and validation splits the scene agrees with the identity (identity 1 in ``sector``,
identity 2 in ``linear``) for exactly ``round(correlation * n)`` of the ``n`` images of each identity, so
``correlation`` 0.5 makes scene and identity independent and 1.0 makes the scene a perfect shortcut. The test
split is balanced: ``num_test`` images split equally over the four identity x scene cells; ``group`` is
``common`` where the scene agrees with the training correlation and ``rare`` (counterfactual) otherwise.

:func:`generate_shortcut_phantom` writes 2D NIfTI images and labels plus ``datalist.json`` (entries
``{"image", "label", "id", "identity", "scene", "group"}``) under a cache folder keyed by the configuration
and seed. :func:`prepare_shortcut_datalist` is what the bundle calls: the phantom, or a user datalist whose
entries carry ``identity`` and ``scene`` (validated, with ``group`` derived from the training split).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from common.data.config_checks import require
from common.io import atomic_write_json

LABEL_NAMES = {0: "background", 1: "identity_1", 2: "identity_2"}
IDENTITIES = (1, 2)
SCENES = ("sector", "linear")
ALIGNED_SCENE = {1: "sector", 2: "linear"}  # the scene each identity agrees with in training
STRIPE_PERIOD_PX = 3.0  # period of the identity cue's stripes at 64 px (scaled with size)

__all__ = [
    "ShortcutPhantomConfig",
    "shortcut_phantom_sample",
    "generate_shortcut_phantom",
    "prepare_shortcut_datalist",
    "assign_groups",
]


@dataclass(frozen=True)
class ShortcutPhantomConfig:
    """Parameters of the phantom population.

    Args:
        num_train / num_val: images per split; half of each identity (an odd count gives identity 1 one more).
        num_test: test images, split equally over the 4 identity x scene cells (must be a multiple of 4).
        size: image side in pixels.
        correlation: fraction in [0, 1] of each identity's training/validation images acquired in its aligned scene.
        cue_strength: amplitude of the identity texture, in units of the blob's contrast over background.
        noise: standard deviation of the additive speckle noise (image intensities are about 0..1).
    """

    num_train: int = 160
    num_val: int = 16
    num_test: int = 48
    size: int = 64
    correlation: float = 0.9
    cue_strength: float = 0.5
    noise: float = 0.08

    def __post_init__(self):
        require(self, ("size",), lambda v: v >= 32, ">= 32 pixels")
        require(self, ("correlation",), lambda v: 0.0 <= float(v) <= 1.0, "in [0, 1]")
        require(self, ("num_train", "num_val", "num_test"), lambda v: v >= 0, ">= 0")
        require(self, ("num_test",), lambda v: v % 4 == 0, "a multiple of 4 (cells)")


def shortcut_phantom_sample(
    rng: np.random.Generator, identity: int, scene: str, size: int = 64, cue_strength: float = 0.5, noise: float = 0.08
) -> tuple[np.ndarray, np.ndarray]:
    """One image ``(size, size)`` float32 in [0, 1] and its label ``(size, size)`` uint8 (0, ``identity``)."""
    if identity not in IDENTITIES or scene not in SCENES:
        raise ValueError(f"identity must be one of {IDENTITIES} and scene one of {SCENES}, got {identity}, {scene!r}")
    n = size
    y, x = np.mgrid[0:n, 0:n].astype(np.float64)
    # soft-tissue background: smooth random field
    tissue = ndimage.gaussian_filter(rng.standard_normal((n, n)), sigma=n / 10)
    tissue = 0.35 + 0.6 * tissue / max(float(np.abs(tissue).max()), 1e-6) * 0.15
    # the blob: rotated ellipse with a wobbly outline, same statistics for both identities
    cy, cx = rng.uniform(0.35, 0.65, 2) * n
    ay, ax = rng.uniform(0.12, 0.2, 2) * n
    theta = rng.uniform(0, np.pi)
    u = ((x - cx) * np.cos(theta) + (y - cy) * np.sin(theta)) / ax
    v = (-(x - cx) * np.sin(theta) + (y - cy) * np.cos(theta)) / ay
    angle = np.arctan2(v, u)
    wobble = (
        1.0
        + 0.08 * np.sin(3 * angle + rng.uniform(0, 2 * np.pi))
        + 0.05 * np.sin(5 * angle + rng.uniform(0, 2 * np.pi))
    )
    inside = (u**2 + v**2) <= wobble**2
    contrast = rng.uniform(0.22, 0.3)
    # intrinsic cue: fine stripes along rows (identity 1) or columns (identity 2), phase random
    period = STRIPE_PERIOD_PX * n / 64
    coord = y if identity == 1 else x
    stripes = np.cos(2 * np.pi * coord / period + rng.uniform(0, 2 * np.pi))
    image = tissue + inside * contrast * (1.0 + cue_strength * stripes)
    # scene (acquisition style): field of view, gain and speckle grain
    if scene == "sector":
        r = np.hypot(x - n / 2, y + 0.1 * n)
        fov = (np.abs(np.arctan2(x - n / 2, y + 0.1 * n)) < np.deg2rad(38)) & (r < 1.08 * n)
        gain, grain = 0.8, 1.2
    else:
        fov = (x > 0.1 * n) & (x < 0.9 * n)
        gain, grain = 1.15, 0.0
    speckle = rng.standard_normal((n, n))
    if grain:
        speckle = ndimage.gaussian_filter(speckle, grain) * 2.2
    image = gain * image + noise * speckle
    image = np.where(fov, image, 0.0)
    label = (inside & fov).astype(np.uint8) * np.uint8(identity)
    return np.clip(image, 0.0, 1.0).astype(np.float32), label


def _cache_key(config: ShortcutPhantomConfig, seed: int) -> str:
    blob = json.dumps(
        {"generator": "shortcut_phantom/1", "config": dataclasses.asdict(config), "seed": seed}, sort_keys=True
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _correlated_cells(count: int, correlation: float, rng: np.random.Generator) -> list[tuple[int, str]]:
    """``count`` (identity, scene) pairs, identities balanced, exactly ``round(correlation * n_id)`` aligned per
    identity, in shuffled order."""
    cells = []
    for k, identity in enumerate(IDENTITIES):
        n_id = count // 2 + (1 if k == 0 and count % 2 else 0)
        aligned = int(round(correlation * n_id))
        other = SCENES[1] if ALIGNED_SCENE[identity] == SCENES[0] else SCENES[0]
        cells += [(identity, ALIGNED_SCENE[identity])] * aligned + [(identity, other)] * (n_id - aligned)
    order = rng.permutation(len(cells))
    return [cells[i] for i in order]


def generate_shortcut_phantom(
    output_dir: str | Path, config: ShortcutPhantomConfig | None = None, seed: int = 0
) -> Path:
    """Write the phantom population and return the path of its ``datalist.json`` (reused when complete).

    Files go to ``output_dir/shortcut_phantom_<key>/`` (``key`` hashes the configuration and seed); image
    ``i`` of a split is drawn from a generator seeded by ``(seed, split, i)``, so a seed gives the same bytes.
    """
    from common.data.echo_phantom import _save_nifti

    config = config or ShortcutPhantomConfig()
    root = Path(output_dir) / f"shortcut_phantom_{_cache_key(config, seed)}"
    datalist_path = root / "datalist.json"
    if datalist_path.exists():
        return datalist_path
    per_cell = config.num_test // 4
    splits = {
        "training": _correlated_cells(config.num_train, config.correlation, np.random.default_rng([seed, 100])),
        "validation": _correlated_cells(config.num_val, config.correlation, np.random.default_rng([seed, 101])),
        "test": [(i, s) for i in IDENTITIES for s in SCENES for _ in range(per_cell)],
    }
    datalist: dict[str, Any] = {
        "name": "shortcut_phantom",
        "description": "Procedural 2D phantom: two blob identities with a faint texture cue, two acquisition scenes.",
        "labels": {str(k): v for k, v in LABEL_NAMES.items()},
        "aligned_scene": {str(k): v for k, v in ALIGNED_SCENE.items()},
        "seed": seed,
        "config": dataclasses.asdict(config),
    }
    for split_index, (split, cells) in enumerate(splits.items()):
        entries = []
        for i, (identity, scene) in enumerate(cells):
            rng = np.random.default_rng([seed, split_index, i])
            image, label = shortcut_phantom_sample(rng, identity, scene, config.size, config.cue_strength, config.noise)
            sid = f"{split}_{i:04d}"
            _save_nifti(image, 1.0, root / "images" / f"{sid}.nii.gz")
            _save_nifti(label, 1.0, root / "labels" / f"{sid}.nii.gz")
            group = "common" if ALIGNED_SCENE[identity] == scene else "rare"
            entries.append(
                {
                    "image": f"images/{sid}.nii.gz",
                    "label": f"labels/{sid}.nii.gz",
                    "id": sid,
                    "identity": identity,
                    "scene": scene,
                    "group": group,
                }
            )
        datalist[split] = entries
    atomic_write_json(datalist_path, datalist)
    return datalist_path


def _with_ids(datalist: dict, source: str) -> dict:
    """Every entry with an ``id`` (``<split>_<index>`` where it has none); a repeated id raises ``DatalistError``."""
    from common.data.datalist import DatalistError

    out, seen, problems = dict(datalist), {}, []
    for split in ("training", "validation", "test"):
        if split not in datalist:
            continue
        entries = [{**e, "id": str(e.get("id", f"{split}_{i:04d}"))} for i, e in enumerate(datalist[split])]
        for i, e in enumerate(entries):
            if e["id"] in seen:
                problems.append(f"{source}: {split}[{i}] repeats the id {e['id']!r} of {seen[e['id']]}")
            seen.setdefault(e["id"], f"{split}[{i}]")
        out[split] = entries
    if problems:
        raise DatalistError(problems, source)
    return out


def assign_groups(datalist: dict, source: str = "datalist") -> dict:
    """Add ``group`` (``common``/``rare``) to every entry of a datalist whose entries carry ``identity``/``scene``.

    The scene an identity is "common" in is the one it is most often paired with in ``training``.

    Raises:
        common.data.DatalistError: naming ``source`` and every entry without ``identity``/``scene``, or an
            identity seen in ``test``/``validation`` but never in ``training``.
    """
    from common.data.datalist import DatalistError

    problems = []
    for split in ("training", "validation", "test"):
        for i, entry in enumerate(datalist.get(split) or []):
            missing = [k for k in ("identity", "scene") if k not in entry]
            if missing:
                problems.append(
                    f"{source}: {split}[{i}] has no {' / '.join(repr(k) for k in missing)} key "
                    "(every entry needs the object identity and the scene)"
                )
    if problems:
        raise DatalistError(problems, source)
    pairs = Counter((str(e["identity"]), str(e["scene"])) for e in datalist.get("training") or [])
    majority: dict[str, str] = {}
    for (identity, scene), count in sorted(pairs.items()):
        if count > pairs.get((identity, majority.get(identity, "")), 0):
            majority[identity] = scene
    out = dict(datalist)
    for split in ("training", "validation", "test"):
        entries = []
        for i, entry in enumerate(datalist.get(split) or []):
            identity = str(entry["identity"])
            if identity not in majority:
                problems.append(f"{source}: {split}[{i}] has identity {identity!r}, which no training entry has")
                continue
            entries.append({**entry, "group": "common" if str(entry["scene"]) == majority[identity] else "rare"})
        if split in datalist:
            out[split] = entries
    if problems:
        raise DatalistError(problems, source)
    return out


def prepare_shortcut_datalist(
    datalist: str | Path | None,
    dataset_dir: str | Path | None,
    cache_dir: str | Path,
    phantom: dict | None = None,
    seed: int = 0,
    num_classes: int = 3,
) -> Path:
    """The datalist of one setting (absolute paths, every entry with ``group`` and ``id``): the phantom or a user
    datalist.

    With an empty ``datalist`` the phantom (``phantom``: :class:`ShortcutPhantomConfig` fields) is generated
    under ``cache_dir``. Otherwise the user datalist is validated first (the ``training``, ``validation`` and
    ``test`` splits, files, shapes, label values in ``0 .. num_classes - 1``, ``identity``/``scene`` keys, unique
    ids, both groups in the test split); a problem raises one error naming the file. An entry without ``id`` gets
    ``<split>_<index>`` (the per-group metrics match predictions to entries by id).
    """
    from common.data.datalist import DatalistError, load_datalist, validate_datalist

    if not datalist:
        path = generate_shortcut_phantom(cache_dir, ShortcutPhantomConfig(**dict(phantom or {})), seed=seed)
        grouped = load_datalist(path)
    else:
        path = Path(datalist)
        if not path.is_file():
            raise DatalistError([f"{path}: the datalist file does not exist"], path)
        base = Path(dataset_dir) if dataset_dir else path.parent
        loaded = load_datalist(path, base)
        problems = [f"{path}: no {k!r} split (the bundle trains, validates and tests on its own splits)"
                    if k not in loaded else f"{path}: split {k!r} is empty"
                    for k in ("training", "validation", "test") if not loaded.get(k)]  # fmt: skip
        if problems:
            raise DatalistError(problems, path)
        validate_datalist(
            path, base, num_classes=num_classes, spatial_dims=2, splits=("training", "validation", "test")
        )
        grouped = _with_ids(assign_groups(loaded, str(path)), str(path))
        if not any(e["group"] == "rare" for e in grouped["test"]) or not any(
            e["group"] == "common" for e in grouped["test"]
        ):
            raise DatalistError([f"{path}: the test split needs both groups: images whose identity appears in its usual "
                                 "training scene (common) and in another scene (rare)"], path)  # fmt: skip
    key = hashlib.sha256(json.dumps(grouped, sort_keys=True, default=str).encode()).hexdigest()[:12]
    out = Path(cache_dir) / f"shortcut_datalist_{key}.json"
    if not out.exists():
        atomic_write_json(out, grouped)
    return out

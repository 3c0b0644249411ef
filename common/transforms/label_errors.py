"""Simulated annotation errors on multi-class label maps (2D or 3D).

Error kinds (our definitions; Islam et al. 2026 name random and systematic errors
without defining them):

- ``boundary_jitter`` (old name ``random``, still accepted): each structure is dilated or eroded
  (direction drawn per sample and structure, radius drawn from ``radius``; default +-1 px): zero mean
  over samples, but a far smaller change than a systematic error;
- ``random_size_matched``: the same random-direction change with the systematic error's radius range
  (default 2-6 px), so that its label Dice against the clean label matches the systematic arm's (see the
  bundle docs for measured values); its mean |area change| is larger, because a dilated structure also takes
  pixels from its neighbours;
- ``systematic``: every corrupted sample gets the same direction
  (``direction``) for the chosen ``structures``, radius drawn from ``radius``;
- ``boundary_shift``: the whole foreground is translated by a random offset of
  ``radius`` pixels along a random direction;
- ``label_swap``: the identities of the two structures in ``swap`` are exchanged.

Pixels a structure loses by erosion take the label of the nearest pixel outside
the eroded structure (an LV cavity traced too small becomes myocardium, not
background); dilation overwrites whatever it covers.

:class:`RandCorruptLabel` (old name ``CorruptLabel``) is the array transform, :class:`RandCorruptLabeld` the
dictionary transform that corrupts with probability ``prob`` and records a flag.
:func:`corrupt_datalist` injects errors once into an exact fraction of a
datalist's training samples, reproducibly, writes the corrupted labels, and
keeps the clean label path and the corruption flag per sample.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, RandomizableTransform
from monai.utils import convert_to_dst_type
from scipy import ndimage

ERROR_KINDS = ("boundary_jitter", "random_size_matched", "systematic", "boundary_shift", "label_swap", "random")
# Kinds whose direction (dilate or erode) is drawn per structure; "random" is the old name of boundary_jitter.
RANDOM_DIRECTION_KINDS = ("boundary_jitter", "random_size_matched", "random")


def default_error_radius(error_type: str) -> list[int]:
    """``[min, max]`` radius in pixels of the 128 px annotation (1.17 mm per px) for ``error_type``:
    ``boundary_jitter`` (and its old name ``random``) is a +-1 px contour jitter, every other kind 2-6 px
    (2.3-7 mm), so ``random_size_matched`` and ``systematic`` draw the same radii."""
    if error_type not in ERROR_KINDS:
        raise ValueError(f"unknown error type {error_type!r}; expected one of {', '.join(ERROR_KINDS)}")
    return [1, 1] if error_type in ("boundary_jitter", "random") else [2, 6]


def _ball(radius: int, ndim: int) -> np.ndarray:
    grid = np.mgrid[tuple(slice(-radius, radius + 1) for _ in range(ndim))]
    return (grid**2).sum(0) <= radius**2


def dilate_structure(label: np.ndarray, value: int, radius: int) -> np.ndarray:
    """``label`` with structure ``value`` grown by a ball of ``radius`` pixels (overwrites what it covers)."""
    mask = label == value
    if radius <= 0 or not mask.any():
        return label.copy()
    out = label.copy()
    out[ndimage.binary_dilation(mask, _ball(radius, label.ndim))] = value
    return out


def erode_structure(label: np.ndarray, value: int, radius: int) -> np.ndarray:
    """``label`` with structure ``value`` shrunk by a ball of ``radius`` pixels; freed pixels take the nearest other label."""
    mask = label == value
    if radius <= 0 or not mask.any():
        return label.copy()
    kept = ndimage.binary_erosion(mask, _ball(radius, label.ndim), border_value=1)
    freed = mask & ~kept
    out = label.copy()
    # Nearest pixel that is not part of the original structure.
    _, idx = ndimage.distance_transform_edt(mask, return_indices=True)
    out[freed] = label[tuple(i[freed] for i in idx)]
    return out


def shift_labels(label: np.ndarray, offset: Sequence[int]) -> np.ndarray:
    """Translate the label map by an integer ``offset`` (pixels per axis); uncovered pixels become background."""
    return ndimage.shift(label, offset, order=0, mode="constant", cval=0).astype(label.dtype)


class RandCorruptLabel(RandomizableTransform):
    """Corrupt a label map of shape ``(C=1, *spatial)`` (or ``(*spatial)``) with one simulated annotation error.

    Args:
        kind: one of :data:`ERROR_KINDS` (``boundary_jitter``, ``random_size_matched``, ``systematic``,
            ``boundary_shift``, ``label_swap``; ``random`` is the old name of ``boundary_jitter``).
        structures: label values a morphological error acts on (the random-direction kinds, ``systematic``).
        radius: inclusive ``(min, max)`` radius in pixels drawn uniformly per change (for ``boundary_shift``
            the length of the translation).
        direction: ``dilate`` or ``erode`` for ``systematic`` errors.
        swap: the two label values exchanged by ``label_swap``.
        prob: probability of corrupting (1.0 = always; the dictionary transform uses this to flag samples).

    Randomness comes only from ``self.R``: call ``set_random_state(seed)`` for reproducible errors.
    """

    def __init__(
        self,
        kind: str = "random",
        structures: Sequence[int] = (1, 2, 3),
        radius: Sequence[int] = (1, 3),
        direction: str = "erode",
        swap: Sequence[int] = (1, 3),
        prob: float = 1.0,
    ) -> None:
        RandomizableTransform.__init__(self, prob)
        if kind not in ERROR_KINDS:
            raise ValueError(f"unknown label error kind {kind!r}; choose one of {', '.join(ERROR_KINDS)}")
        if direction not in ("dilate", "erode"):
            raise ValueError(f"direction must be 'dilate' or 'erode', got {direction!r}")
        radius = tuple(int(r) for r in (radius if isinstance(radius, Sequence) else (radius, radius)))
        if len(radius) != 2 or radius[0] < 0 or radius[1] < radius[0]:
            raise ValueError(f"radius must be (min, max) with 0 <= min <= max, got {radius}")
        if len(swap) != 2 or swap[0] == swap[1]:
            raise ValueError(f"swap must name two different label values, got {swap}")
        self.kind = kind
        self.structures = tuple(int(s) for s in structures)
        self.radius = radius
        self.direction = direction
        self.swap = (int(swap[0]), int(swap[1]))
        self._plan: list = []

    def randomize(self, data: Any = None) -> None:
        super().randomize(None)
        if not self._do_transform:
            self._plan = []
            return
        if self.kind in (*RANDOM_DIRECTION_KINDS, "systematic"):
            self._plan = []
            for s in self.structures:
                r = int(self.R.randint(self.radius[0], self.radius[1] + 1))
                if self.kind in RANDOM_DIRECTION_KINDS:
                    d = "dilate" if self.R.rand() < 0.5 else "erode"
                else:
                    d = self.direction
                self._plan.append((s, d, r))
            order = self.R.permutation(len(self._plan))
            self._plan = [self._plan[i] for i in order]
        elif self.kind == "boundary_shift":
            ndim = int(data) if data is not None else 2
            vec = self.R.standard_normal(ndim)
            vec /= np.linalg.norm(vec) + 1e-12
            length = self.R.randint(max(self.radius[0], 1), max(self.radius[1], 1) + 1)
            self._plan = [tuple(int(x) for x in np.round(vec * length))]
        else:
            self._plan = [self.swap]

    def apply(self, label: np.ndarray) -> np.ndarray:
        """Apply the last drawn error to an integer array of spatial shape (no channel)."""
        out = label.copy()
        if not self._plan:
            return out
        if self.kind in (*RANDOM_DIRECTION_KINDS, "systematic"):
            for s, d, r in self._plan:
                out = dilate_structure(out, s, r) if d == "dilate" else erode_structure(out, s, r)
        elif self.kind == "boundary_shift":
            out = shift_labels(out, self._plan[0])
        else:
            a, b = self._plan[0]
            out[label == a] = b
            out[label == b] = a
        return out

    def __call__(self, label, randomize: bool = True):
        arr = label.detach().cpu().numpy() if isinstance(label, torch.Tensor) else np.asarray(label)
        channel = arr.ndim >= 3 and arr.shape[0] == 1
        spatial = arr[0] if channel else arr
        if randomize:
            self.randomize(spatial.ndim)
        out = self.apply(np.rint(spatial).astype(np.int64)).astype(arr.dtype)
        out = out[None] if channel else out
        return convert_to_dst_type(out, label)[0] if isinstance(label, torch.Tensor) else out

    @property
    def corrupted(self) -> bool:
        """Whether the last call changed (or was drawn to change) the label."""
        return bool(self._plan)


CorruptLabel = RandCorruptLabel  # the name before the transform took MONAI's ``Rand`` prefix


class RandCorruptLabeld(RandomizableTransform, MapTransform):
    """Dictionary version of :class:`RandCorruptLabel`; with probability ``prob`` corrupts ``keys``.

    Writes ``flag_key`` (1 corrupted, 0 clean) into the dictionary and, if ``clean_key`` is given,
    a copy of the original label under it. Keeps ``MetaTensor`` metadata (the affine is unchanged).
    """

    def __init__(
        self,
        keys: KeysCollection,
        kind: str = "random",
        prob: float = 0.5,
        flag_key: str = "corrupted",
        clean_key: str | None = None,
        allow_missing_keys: bool = False,
        **kwargs: Any,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        self.corrupt = RandCorruptLabel(kind=kind, prob=1.0, **kwargs)
        self.flag_key = flag_key
        self.clean_key = clean_key

    def set_random_state(self, seed=None, state=None):
        super().set_random_state(seed, state)
        self.corrupt.set_random_state(state=self.R)
        return self

    def __call__(self, data: Mapping[Hashable, Any]) -> dict:
        d = dict(data)
        self.randomize(None)
        first = True
        for key in self.key_iterator(d):
            if self.clean_key is not None and first:
                d[self.clean_key] = d[key].clone() if isinstance(d[key], torch.Tensor) else np.array(d[key])
            if self._do_transform:
                d[key] = self.corrupt(d[key], randomize=first)
            first = False
        d[self.flag_key] = int(self._do_transform)
        return d


def _select_exact(n: int, fraction: float, rng: np.random.Generator) -> np.ndarray:
    count = int(round(fraction * n))
    flags = np.zeros(n, dtype=bool)
    flags[rng.permutation(n)[:count]] = True
    return flags


def corrupt_datalist(
    datalist: str | Path | Mapping,
    dataset_dir: str | Path | None,
    output_dir: str | Path,
    kind: str = "random",
    error_level: float = 0.5,
    seed: int = 0,
    split: str = "training",
    label_key: str = "label",
    **corrupt_kwargs: Any,
) -> Path:
    """Corrupt ``round(error_level * n)`` training labels once and return the new datalist's path.

    The corrupted samples are chosen by a generator seeded with ``seed``; each
    corrupted label gets its own error drawn from ``(seed, index)``. The new
    datalist (written with the corrupted labels under ``output_dir/label_errors_<key>/``,
    ``key`` hashing the inputs) holds absolute paths; every entry of ``split``
    gains ``label_clean`` (the original label), ``corrupted`` (0/1) and ``id``.
    Other splits are copied with absolute paths. An existing result is reused.
    """
    import nibabel as nib

    if not 0.0 <= float(error_level) <= 1.0:
        raise ValueError(f"error_level must be a fraction in [0, 1], got {error_level}")
    RandCorruptLabel(kind=kind, **corrupt_kwargs)  # validate arguments before any work
    if isinstance(datalist, (str, Path)):
        datalist_path = Path(datalist)
        if not datalist_path.is_file():
            raise FileNotFoundError(f"datalist {datalist_path} does not exist")
        data = json.loads(datalist_path.read_text())
        base = Path(dataset_dir) if dataset_dir else datalist_path.parent
    else:
        data = dict(datalist)
        base = Path(dataset_dir or ".")
    if split not in data or not data[split]:
        raise ValueError(f"datalist has no {split!r} samples to corrupt")

    def absolute(entry: dict) -> dict:
        out = dict(entry)
        for k in ("image", label_key):
            if k in out and isinstance(out[k], str) and not Path(out[k]).is_absolute():
                out[k] = str((base / out[k]).resolve())
        return out

    blob = json.dumps(
        {"v": 1, "data": {k: data[k] for k in data if isinstance(data[k], list)}, "base": str(base.resolve()),
         "kind": kind, "level": float(error_level), "seed": seed, "kw": {k: list(v) if isinstance(v, (tuple, list)) else v for k, v in corrupt_kwargs.items()}},
        sort_keys=True, default=str,
    )  # fmt: skip
    key = hashlib.sha256(blob.encode()).hexdigest()[:12]
    root = Path(output_dir) / f"label_errors_{key}"
    out_path = root / "datalist.json"
    if out_path.exists():
        return out_path

    from common.io import atomic_write, atomic_write_json

    entries = [absolute(e) for e in data[split]]
    flags = _select_exact(len(entries), float(error_level), np.random.default_rng([seed, 7919]))
    new_entries = []
    for i, (entry, flag) in enumerate(zip(entries, flags)):
        entry = dict(entry)
        entry.setdefault("id", Path(entry["image"]).name.split(".")[0])
        entry["label_clean"] = entry[label_key]
        entry["corrupted"] = int(flag)
        if flag:
            src = nib.load(entry[label_key])
            arr = np.asarray(src.dataobj)
            corrupt = RandCorruptLabel(kind=kind, **corrupt_kwargs)
            corrupt.set_random_state(seed=int(np.random.default_rng([seed, i]).integers(2**31)))
            bad = corrupt(np.rint(arr).astype(np.int16)).astype(arr.dtype)
            img = nib.Nifti1Image(bad, src.affine, src.header)
            dst = root / "labels" / f"{i:05d}_{entry['id']}.nii.gz"
            payload = img.to_bytes()
            import gzip

            atomic_write(dst, lambda tmp, b=payload: Path(tmp).write_bytes(gzip.compress(b, mtime=0)))
            entry[label_key] = str(dst.resolve())
        new_entries.append(entry)
    out = {k: v for k, v in data.items() if not isinstance(v, list)}
    for k, v in data.items():
        if isinstance(v, list):
            out[k] = [absolute(e) if isinstance(e, dict) else e for e in v]
    out[split] = new_entries
    out["label_errors"] = {"kind": kind, "error_level": float(error_level), "seed": seed, **corrupt_kwargs}
    atomic_write_json(out_path, out)
    return out_path

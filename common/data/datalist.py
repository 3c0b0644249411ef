"""Decathlon-style datalists: loading, path resolution and validation before training.

A datalist is a JSON file ``{"training": [...], "validation": [...], "test": [...]}`` whose entries are
``{"image": path, "label": path, "group": str (optional), "spacing": [mm, ...] (optional), ...}``. Relative
paths are taken relative to ``dataset_dir`` (default: the folder of the JSON file); other keys are kept as
they are. Entries given as a bare string (the decathlon ``test`` convention) become ``{"image": path}``.

:func:`validate_datalist` reads every referenced file once and raises a single :class:`DatalistError` that
lists every problem found, one line per problem, each line naming the file.
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

__all__ = ["DatalistError", "load_datalist", "load_split", "validate_datalist", "resolve_datalist"]

DEFAULT_SPLITS = ("training", "validation")
AFFINE_ATOL_MM = 1e-3  # largest allowed difference between image and label affine entries (mm)
SPACING_RTOL = 1e-3  # relative tolerance between a "spacing" key and the header's voxel size
LABEL_INTEGER_ATOL = 1e-3  # float label maps must hold integers up to this tolerance
PROGRESS_MIN_FILES = 50  # show a progress bar when validating at least this many files


class DatalistError(ValueError):
    """A datalist or one of its files is not usable; ``problems`` holds one line per problem."""

    def __init__(self, problems: Sequence[str], source: str | os.PathLike | None = None):
        self.problems = list(problems)
        self.source = None if source is None else str(source)
        head = f"invalid datalist {self.source}" if self.source else "invalid datalist"
        noun = "problem" if len(self.problems) == 1 else "problems"
        super().__init__(f"{head}: {len(self.problems)} {noun}\n" + "\n".join(f"  - {p}" for p in self.problems))


def _resolve(path: Any, base: Path) -> Any:
    if not isinstance(path, (str, os.PathLike)):
        return path
    p = Path(os.path.expanduser(os.fspath(path)))
    return str(p if p.is_absolute() else (base / p).resolve())


def _read_datalist(
    datalist: str | os.PathLike | Mapping, dataset_dir: str | os.PathLike | None, path_keys: Sequence[str]
) -> tuple[dict[str, Any], list[str], str | None]:
    """Parse and resolve a datalist; return ``(resolved, problems, source)`` without raising for content."""
    problems: list[str] = []
    if isinstance(datalist, Mapping):
        source = None
        raw: Any = datalist
        base = Path(dataset_dir if dataset_dir is not None else os.getcwd()).expanduser().resolve()
    else:
        json_path = Path(datalist).expanduser().resolve()
        source = str(json_path)
        base = Path(dataset_dir).expanduser().resolve() if dataset_dir is not None else json_path.parent
        if not json_path.is_file():
            return {}, [f"{json_path}: datalist file not found"], source
        try:
            raw = json.loads(json_path.read_text())
        except json.JSONDecodeError as e:
            return {}, [f"{json_path}: not valid JSON (line {e.lineno} column {e.colno}: {e.msg})"], source
        except (OSError, UnicodeDecodeError) as e:
            return {}, [f"{json_path}: cannot read the datalist ({e})"], source
    where = source or "datalist"
    if not isinstance(raw, Mapping):
        return {}, [f"{where}: top level must be a JSON object with split lists, got {type(raw).__name__}"], source
    if dataset_dir is not None and not base.is_dir():
        problems.append(f"{base}: dataset_dir is not a directory")
    resolved: dict[str, Any] = {}
    for split, entries in raw.items():
        if not isinstance(entries, list):
            resolved[split] = entries  # e.g. "name", "description" fields of decathlon dataset.json
            continue
        out = []
        for i, entry in enumerate(entries):
            if isinstance(entry, (str, os.PathLike)):
                entry = {path_keys[0]: entry}
            if not isinstance(entry, Mapping):
                problems.append(f"{where}: {split}[{i}] must be an object or a path, got {type(entry).__name__}")
                continue
            item = dict(entry)
            for key in path_keys:
                if key in item:
                    item[key] = _resolve(item[key], base)
            out.append(item)
        resolved[split] = out
    return resolved, problems, source


def load_datalist(
    datalist_path: str | os.PathLike | Mapping,
    dataset_dir: str | os.PathLike | None = None,
    *,
    path_keys: Sequence[str] = ("image", "label"),
) -> dict[str, Any]:
    """Load a decathlon-style datalist and make the paths under ``path_keys`` absolute.

    Args:
        datalist_path: the JSON file, or an already loaded mapping (relative paths then need ``dataset_dir``,
            default the current directory).
        dataset_dir: base folder of relative paths; default the folder of the JSON file.
        path_keys: entry keys holding file paths; the first is used for bare-string entries.

    Returns:
        ``{split: [entry, ...], ...}`` with every list-valued split; non-list fields are kept as they are.

    Raises:
        DatalistError: missing file, invalid JSON or entries that are neither objects nor paths.
    """
    resolved, problems, source = _read_datalist(datalist_path, dataset_dir, tuple(path_keys))
    if problems:
        raise DatalistError(problems, source)
    return resolved


class _FileInfo:
    """What one read of a NIfTI file tells: spatial shape, affine, voxel size, value range, problems."""

    __slots__ = ("path", "shape", "affine", "zooms", "problems", "vmin", "vmax", "non_integer")

    def __init__(self, path: str):
        self.path = path
        self.shape: tuple[int, ...] = ()
        self.affine: np.ndarray | None = None
        self.zooms: tuple[float, ...] = ()
        self.problems: list[str] = []
        self.vmin = self.vmax = 0.0
        self.non_integer: np.ndarray | None = None


def _load_image(path: str):
    """Load a NIfTI file from one read of its bytes; a ``.gz`` stream is checked to its end (CRC and length).

    Other formats nibabel reads (Analyze, MGH, ...) go through ``nibabel.load``.
    """
    import nibabel as nib

    if not path.endswith((".nii", ".nii.gz")):
        return nib.load(path)
    raw = Path(path).read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)  # raises on a stream cut anywhere, even in the trailer
    sizeof_hdr = {int.from_bytes(raw[:4], "little"), int.from_bytes(raw[:4], "big")}
    if 540 in sizeof_hdr:
        return nib.Nifti2Image.from_bytes(raw)
    if 348 in sizeof_hdr:
        return nib.Nifti1Image.from_bytes(raw)
    raise nib.filebasedimages.ImageFileError(f"not a NIfTI header (sizeof_hdr {sorted(sizeof_hdr)})")


def _read_nifti(path: str, spatial_dims: int | None, as_label: bool) -> _FileInfo:
    """Read a NIfTI file once (header and all voxels) and record its problems."""

    info = _FileInfo(path)
    if not os.path.isfile(path):
        info.problems.append(f"{path}: file not found")
        return info
    if os.path.getsize(path) == 0:
        info.problems.append(f"{path}: empty file (0 bytes)")
        return info
    try:
        img = _load_image(path)
        data = np.asanyarray(img.dataobj)  # reads every voxel, so a truncated file fails here
    except Exception as e:  # ImageFileError, EOFError, BadGzipFile, zlib.error, OSError, ValueError ...
        info.problems.append(f"{path}: unreadable or truncated image file ({type(e).__name__}: {e})")
        return info
    shape = tuple(int(s) for s in data.shape)
    if data.size == 0:
        info.problems.append(f"{path}: empty image (shape {shape})")
        return info
    # A trailing singleton dimension (NIfTI channel/time axis of length 1) is accepted and dropped; with
    # spatial_dims unknown, trailing singletons are dropped down to 2D so (H, W, 1) and (H, W) compare equal.
    if spatial_dims is None:
        while len(shape) > 2 and shape[-1] == 1:
            shape = shape[:-1]
    else:
        if len(shape) == spatial_dims + 1 and shape[-1] == 1:
            shape = shape[:-1]
        if len(shape) != spatial_dims:
            info.problems.append(
                f"{path}: expected a {spatial_dims}D image, got {len(data.shape)}D of shape {tuple(data.shape)}"
            )
            return info
    info.shape = shape
    info.affine = np.asarray(img.affine, dtype=np.float64)
    info.zooms = tuple(float(z) for z in img.header.get_zooms())
    if np.issubdtype(data.dtype, np.floating) or np.issubdtype(data.dtype, np.complexfloating):
        bad = int(data.size - np.count_nonzero(np.isfinite(data)))
        if bad:
            info.problems.append(f"{path}: {bad} NaN/Inf voxel(s) out of {data.size}")
            return info
    if as_label:
        info.vmin, info.vmax = float(data.min()), float(data.max())
        if np.issubdtype(data.dtype, np.floating):
            off = np.abs(data - np.rint(data)) > LABEL_INTEGER_ATOL
            if off.any():
                info.non_integer = np.unique(data[off])[:5]
    return info


def validate_datalist(
    datalist_path: str | os.PathLike | Mapping,
    dataset_dir: str | os.PathLike | None = None,
    *,
    image_key: str = "image",
    label_key: str | None = "label",
    num_classes: int | None = None,
    spatial_dims: int | None = None,
    splits: Sequence[str] = DEFAULT_SPLITS,
    group_key: str | None = None,
    required_groups: Sequence[str] | None = None,
    extra_image_keys: Sequence[str] = (),
    extra_label_keys: Sequence[str] = (),
    num_workers: int = 1,
) -> dict[str, Any]:
    """Check every entry of the chosen splits before training; raise one error listing all problems.

    Checks: the JSON parses and holds each split in ``splits`` as a non-empty list; every entry has
    ``image_key`` and (except in a ``"test"`` split, where it is optional) ``label_key``, and ``group_key`` if
    given; every file exists and is a NIfTI file whose voxels all read (a truncated ``.nii.gz`` is caught)
    and are finite; each image has ``spatial_dims`` spatial dims (a trailing singleton dim, e.g. ``(H, W, 1)``
    for a 2D slice, is accepted); image and label have the same spatial shape and affine (within
    ``AFFINE_ATOL_MM``); label values are integers (float label maps allowed if integral within
    ``LABEL_INTEGER_ATOL``) in ``0 .. num_classes - 1``; an entry's ``spacing`` equals the header's voxel size
    (relative ``SPACING_RTOL``); each of ``required_groups`` has an entry in every split.
    ``extra_image_keys`` name further image files per entry (e.g. a low-resolution copy): they are checked
    for readability, finiteness and dimensionality, not for shape; ``extra_label_keys`` likewise, plus the
    label-value checks. Each file is read once.

    Args:
        datalist_path: the JSON file (or a loaded mapping, see :func:`load_datalist`).
        dataset_dir: base folder of relative paths; default the folder of the JSON file.
        label_key: ``None`` for image-only datalists (e.g. super-resolution).
        num_workers: threads reading files in parallel (1: read in the calling thread).

    Returns:
        The datalist with absolute paths (all splits, not only the checked ones).

    Raises:
        DatalistError: with one line per problem, each naming the file.
    """
    path_keys = tuple(k for k in (image_key, label_key, *extra_image_keys, *extra_label_keys) if k is not None)
    label_keys = {k for k in (label_key, *extra_label_keys) if k is not None}
    resolved, problems, source = _read_datalist(datalist_path, dataset_dir, path_keys)
    where = source or "datalist"
    if problems and not resolved:
        raise DatalistError(problems, source)
    # Read every distinct file once (in threads if asked: decompression releases the GIL), then check.
    files: dict[tuple[str, bool], None] = {}
    for split in splits:
        entries = resolved.get(split)
        for entry in entries if isinstance(entries, list) else ():
            for key in (*extra_image_keys, *extra_label_keys, image_key, label_key):
                if key is not None and isinstance(entry.get(key), str):
                    files[(entry[key], key in label_keys)] = None
    progress = {"total": len(files), "desc": "validating datalist files", "disable": len(files) < PROGRESS_MIN_FILES}
    if num_workers > 1 and len(files) > 1:
        with ThreadPoolExecutor(max_workers=num_workers) as pool:
            read_all = pool.map(lambda f: _read_nifti(f[0], spatial_dims, f[1]), files)
            infos = dict(zip(files, tqdm(read_all, **progress)))
    else:
        infos = {f: _read_nifti(f[0], spatial_dims, f[1]) for f in tqdm(files, **progress)}
    reported: set[tuple[str, bool]] = set()

    def read(path: str, as_label: bool) -> _FileInfo:
        key = (path, as_label)
        if key not in reported:  # report a file's problems once, where it first appears
            reported.add(key)
            problems.extend(infos[key].problems)
        return infos[key]

    for split in splits:
        entries = resolved.get(split)
        if entries is None:
            problems.append(f"{where}: missing required split '{split}'")
            continue
        if not isinstance(entries, list):
            problems.append(f"{where}: split '{split}' must be a list, got {type(entries).__name__}")
            continue
        if not entries:
            problems.append(f"{where}: split '{split}' is empty")
            continue
        for i, entry in enumerate(entries):
            tag = f"{split}[{i}]"
            label_required = label_key is not None and split != "test"
            for key in (image_key, *extra_image_keys, *extra_label_keys, *([label_key] if label_required else [])):
                if key not in entry:
                    problems.append(f"{where}: {tag} has no '{key}' key")
                elif not isinstance(entry[key], str):
                    problems.append(f"{where}: {tag} '{key}' must be a file path, got {entry[key]!r}")
            if group_key is not None and group_key not in entry:
                problems.append(f"{where}: {tag} has no '{group_key}' key")
            for key in extra_image_keys:
                if isinstance(entry.get(key), str):
                    read(entry[key], as_label=False)
            for key in extra_label_keys:
                if isinstance(entry.get(key), str) and read(entry[key], as_label=True).affine is not None:
                    _check_label_values(infos[(entry[key], True)], num_classes, problems)
            image = read(entry[image_key], as_label=False) if isinstance(entry.get(image_key), str) else None
            if image is not None and image.affine is not None and "spacing" in entry:
                _check_spacing(image, entry["spacing"], tag, problems)
            has_label = label_key is not None and isinstance(entry.get(label_key), str)
            label = read(entry[label_key], as_label=True) if has_label else None
            if label is None or label.affine is None:
                continue
            _check_label_values(label, num_classes, problems)
            if image is None or image.affine is None:
                continue
            if image.shape != label.shape:
                problems.append(
                    f"{image.path}: image shape {image.shape} does not match label {label.path} shape {label.shape}"
                )
            elif not np.allclose(image.affine, label.affine, rtol=0.0, atol=AFFINE_ATOL_MM):
                diff = float(np.max(np.abs(image.affine - label.affine)))
                problems.append(
                    f"{image.path}: image affine differs from label {label.path} affine by up to {diff:.4g} mm"
                )
        if required_groups and group_key is not None:
            present = {str(e.get(group_key)) for e in entries}
            for group in required_groups:
                if str(group) not in present:
                    problems.append(f"{where}: split '{split}' has no entry of {group_key} '{group}' (empty group)")
    if problems:
        raise DatalistError(list(dict.fromkeys(problems)), source)  # a file shared by entries: report once
    return resolved


def _check_spacing(image: _FileInfo, spacing: Any, tag: str, problems: list[str]) -> None:
    try:
        declared = np.asarray(spacing, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        problems.append(f"{image.path}: {tag} 'spacing' {spacing!r} is not a list of numbers")
        return
    header = np.asarray(image.zooms[: len(declared)], dtype=np.float64)
    if len(declared) != len(image.shape) or not np.allclose(declared, header, rtol=SPACING_RTOL, atol=0.0):
        problems.append(
            f"{image.path}: {tag} 'spacing' {declared.tolist()} disagrees with the header voxel size "
            f"{list(image.zooms[: len(image.shape)])} mm"
        )


def _check_label_values(label: _FileInfo, num_classes: int | None, problems: list[str]) -> None:
    if label.non_integer is not None:
        shown = ", ".join(f"{v:g}" for v in label.non_integer)
        problems.append(f"{label.path}: label map holds non-integer values (e.g. {shown})")
        return
    if num_classes is not None and (label.vmin < 0 or label.vmax > num_classes - 1):
        problems.append(
            f"{label.path}: label values span {label.vmin:g}..{label.vmax:g}, outside 0..{num_classes - 1} "
            f"(num_classes={num_classes})"
        )


def resolve_datalist(
    datalist: str | os.PathLike | Mapping | None,
    dataset_dir: str | os.PathLike | None = None,
    default_factory: Callable[[], str | os.PathLike | Mapping] | None = None,
    *,
    validate: bool = True,
    **validate_kwargs: Any,
) -> dict[str, Any]:
    """Datalist for a bundle config: the user's ``datalist``, or the embedded default when it is empty.

    Args:
        datalist: path to a datalist JSON (or a mapping); ``None`` or ``""`` means "use the default".
        dataset_dir: base of relative paths of the user's datalist (``""`` counts as not given); ignored for
            the default, whose paths are relative to the generated JSON's folder.
        default_factory: called with no arguments when ``datalist`` is empty; returns the path of the
            generated datalist JSON (e.g. ``functools.partial(generate_sr_slices, cache_dir)``).
        validate: run :func:`validate_datalist` (with ``validate_kwargs``) instead of only loading.

    Returns:
        The resolved datalist with absolute paths.
    """
    base = dataset_dir if dataset_dir not in (None, "") else None
    if datalist in (None, "") or (isinstance(datalist, Mapping) and not datalist):
        if default_factory is None:
            raise ValueError("datalist is empty and no default_factory was given to generate the embedded default")
        datalist, base = default_factory(), None
    if validate:
        return validate_datalist(datalist, base, **validate_kwargs)
    keys = tuple(
        k
        for k in (
            validate_kwargs.get("image_key", "image"),
            validate_kwargs.get("label_key", "label"),
            *validate_kwargs.get("extra_image_keys", ()),
            *validate_kwargs.get("extra_label_keys", ()),
        )
        if k is not None
    )
    return load_datalist(datalist, base, path_keys=keys)


def inference_items(
    input_image: str = "", datalist: str = "", dataset_dir: str = "", split: str = "test"
) -> list[dict]:
    """Items for an inference config: one ``input_image``, else the ``split`` entries of ``datalist``, else none.

    No input at all gives an empty list, so an inference config parses and checks without data
    (MONAI Label supplies its own items).
    """
    if input_image:
        return [{"image": os.path.abspath(input_image)}]
    if datalist:
        return load_datalist(datalist, dataset_dir or None, path_keys=["image"])[split]
    return []


def load_split(datalist_path: str | Path, split: str) -> list[dict]:
    """Entries of ``split`` in a datalist JSON (paths as written there); a clear error if the split is missing."""
    data = json.loads(Path(datalist_path).read_text())
    if not data.get(split):
        raise ValueError(f"datalist {datalist_path} has no {split!r} entries")
    return data[split]

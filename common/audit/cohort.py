"""The audited cohort: read a datalist, type its attributes, form the groups, validate everything up front.

A datalist is decathlon-style JSON: either a list of entries or an object whose list-valued keys are splits
(``training``, ``validation``, ``test`` ...). Each entry is ``{"image": path, "label": path (optional),
"prediction": path (optional), <attribute>: value, ...}``; relative paths are taken relative to the JSON's folder
(or ``dataset_dir``). A prediction is a label map or a probability map: floating point with a trailing class
axis ``(X, Y, Z, C)`` whose classes sum to 1 (its argmax is the label map). :func:`load_cohort` reads every label and prediction once and raises one
:class:`common.data.DatalistError` listing all problems (one line each, naming the file or entry) before any
inference or measurement starts.

A BIDS dataset (:class:`common.audit.bids.BidsInput`) is read into the same entries, one per participant.

Attributes: a string (or bool) attribute is categorical, its values are the groups. A numeric one is continuous:
the audit fits volume bias against it; with ``bins`` it is also cut into that many quantile groups. A list of
numbers (e.g. ``spacing: [1, 1, 3]``) counts as its largest element, the coarsest voxel side. With ``intersect``
the grouped attributes are also crossed into one ``A x B`` attribute whose groups are the combinations
(``F & Q1 [20, 41]``). A ``control`` attribute (e.g. the site) is categorical and stratifies every comparison.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from common.data.datalist import DatalistError, _check_label_values, _read_nifti, _resolve

__all__ = ["Attribute", "Cohort", "load_cohort", "parse_labels", "structure_names_from_bundle"]

PATH_KEYS = ("image", "label", "prediction")
CONFIG_NAMES = ("inference.json", "inference.yaml", "inference.yml")
VOXEL_RTOL = 1e-3  # largest relative difference between the voxel sizes of a label and its prediction


@dataclass
class Attribute:
    """One ``--by`` attribute: ``kind`` is ``"categorical"``, ``"continuous"`` or ``"intersection"``.

    ``values`` holds the raw value per case (float for continuous ones), ``groups`` the group name per case
    (``None`` for a continuous attribute without bins), ``order`` the group names in display order.
    """

    name: str
    kind: str
    values: list[Any]
    groups: list[str] | None
    order: list[str] = field(default_factory=list)


@dataclass
class Cohort:
    """Validated cases (absolute paths), their ids, the attributes to group by, the named structures and the
    attribute every comparison is stratified by (``control``, categorical, or None)."""

    source: str
    entries: list[dict[str, Any]]
    ids: list[str]
    attributes: dict[str, Attribute]
    structures: dict[int, str]
    control: Attribute | None = None


def parse_labels(text: str | None) -> dict[int, str]:
    """``"1=lv_cavity,2=myocardium"`` -> ``{1: "lv_cavity", 2: "myocardium"}`` (empty for ``None``/``""``)."""
    out: dict[int, str] = {}
    for part in (text or "").split(","):
        part = part.strip()
        if not part:
            continue
        value, sep, name = part.partition("=")
        try:
            key = int(value)
        except ValueError:
            key = -1
        if not sep or key < 1 or not name.strip():
            raise ValueError(f"--labels: {part!r} is not VALUE=NAME with an integer VALUE >= 1 (0 is background)")
        out[key] = name.strip()
    return out


PROBABILITY_ATOL = 1e-3  # a probability map's classes may sum to 1 within this


def is_probability_map(path: str, label_ndim: int | None) -> bool:
    """Whether a prediction file holds class probabilities: a floating-point image with a trailing class axis
    (``(X, Y, Z, C)``, or ``(X, Y, C)`` next to a 2D label), read from the header only."""
    import nibabel as nib

    try:
        img = nib.load(path)
        shape, dtype = img.shape, img.get_data_dtype()
    except Exception:  # unreadable: reported by the full read
        return False
    if not np.issubdtype(dtype, np.floating) or len(shape) < 3 or shape[-1] < 2:
        return False
    return len(shape) == label_ndim + 1 if label_ndim is not None else len(shape) == 4


def _check_probabilities(path: str, problems: list[str]) -> None:
    """Values in [0, 1] and classes summing to 1 at every voxel."""
    import nibabel as nib

    data = np.asanyarray(nib.load(path).dataobj, dtype=np.float64)
    if data.min() < -PROBABILITY_ATOL or data.max() > 1 + PROBABILITY_ATOL:
        problems.append(f"{path}: probability map holds values outside [0, 1] ({data.min():g} .. {data.max():g})")
        return
    total = data.sum(axis=-1)
    off = np.abs(total - 1.0) > PROBABILITY_ATOL
    if off.any():
        problems.append(
            f"{path}: probability map's {data.shape[-1]} classes do not sum to 1 at {int(off.sum())} voxel(s) "
            f"(e.g. {total[off].flat[0]:g})"
        )


def bundle_config(bundle_dir: str | os.PathLike) -> Path | None:
    """The bundle's inference config (``configs/inference.json``, ``.yaml`` or ``.yml``), or None."""
    for name in CONFIG_NAMES:
        path = Path(bundle_dir) / "configs" / name
        if path.is_file():
            return path
    return None


def structure_names_from_bundle(bundle_dir: str | os.PathLike) -> dict[int, str]:
    """Foreground structure names from ``configs/metadata.json`` ``network_data_format.outputs.pred.channel_def``."""
    meta = Path(bundle_dir) / "configs" / "metadata.json"
    if not meta.is_file():
        return {}
    try:
        outputs = json.loads(meta.read_text()).get("network_data_format", {}).get("outputs", {})
    except (OSError, json.JSONDecodeError, AttributeError):
        return {}
    channel_def = next((o.get("channel_def") for o in outputs.values() if isinstance(o, Mapping)), None) or {}
    names = {}
    for key, name in channel_def.items():
        try:
            value = int(key)
        except ValueError:
            continue
        if value > 0:
            names[value] = str(name)
    return dict(sorted(names.items()))


def _read_entries(datalist, dataset_dir, split: str | None) -> tuple[list[dict], list[str], list[str], str]:
    """Entries with absolute paths, their ids (``split[i]`` or ``[i]``), problems and the source name."""
    problems: list[str] = []
    if isinstance(datalist, Mapping | list):
        raw, source = datalist, "datalist"
        base = Path(dataset_dir or os.getcwd()).expanduser().resolve()
    else:
        path = Path(datalist).expanduser().resolve()
        source = str(path)
        base = Path(dataset_dir).expanduser().resolve() if dataset_dir else path.parent
        if not path.is_file():
            return [], [], [f"{path}: datalist file not found"], source
        try:
            raw = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            return [], [], [f"{path}: not valid JSON (line {e.lineno} column {e.colno}: {e.msg})"], source
        except (OSError, UnicodeDecodeError) as e:
            return [], [], [f"{path}: cannot read the datalist ({e})"], source
    if isinstance(raw, list):
        lists = {"": raw}
    elif isinstance(raw, Mapping):
        lists = {k: v for k, v in raw.items() if isinstance(v, list)}
    else:
        return [], [], [f"{source}: top level must be a list of entries or an object of splits"], source
    if split is not None:
        if split not in lists:
            return [], [], [f"{source}: no split '{split}' (splits: {', '.join(sorted(lists)) or 'none'})"], source
        lists = {split: lists[split]}
    entries, ids = [], []
    for name, items in lists.items():
        for i, item in enumerate(items):
            tag = f"{name}[{i}]"
            if isinstance(item, str | os.PathLike):
                item = {"image": item}
            if not isinstance(item, Mapping):
                problems.append(f"{source}: {tag} must be an object or a path, got {type(item).__name__}")
                continue
            entry = dict(item)
            for key in PATH_KEYS:
                if key in entry:
                    entry[key] = _resolve(entry[key], base)
            entries.append(entry)
            ids.append(tag)
    if not entries and not problems:
        problems.append(f"{source}: no entries" + (f" in split '{split}'" if split else ""))
    return entries, ids, problems, source


def _as_number(value: Any) -> float | None:
    """A finite number for a numeric value or a non-empty list of numbers (its largest), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, list | tuple) and value and all(_as_number(v) is not None for v in value):
        return float(max(value))
    return None


def _quantile_groups(x: np.ndarray, bins: int) -> tuple[list[str], list[str]]:
    """Cut ``x`` into ``bins`` quantile groups; returns (group per case, group names in order incl. empty ones)."""
    edges = np.quantile(x, np.linspace(0.0, 1.0, bins + 1))
    index = np.clip(np.searchsorted(edges[1:-1], x, side="right"), 0, bins - 1)
    names = [f"Q{k + 1} [{edges[k]:.4g}, {edges[k + 1]:.4g}]" for k in range(bins)]
    return [names[k] for k in index], names


def _attributes(
    entries, ids, by: Sequence[str], bins: int | None, categorical: Sequence[str], source: str, problems: list[str]
) -> dict[str, Attribute]:
    attributes: dict[str, Attribute] = {}
    for name in by:
        missing = [tag for tag, e in zip(ids, entries) if e.get(name) is None]
        for tag in missing:
            problems.append(f"{source}: {tag} has no '{name}' attribute (--by {name})")
        if missing:
            continue
        raw = [e[name] for e in entries]
        numbers = [_as_number(v) for v in raw]
        if name not in categorical and all(n is not None for n in numbers):
            x = np.asarray(numbers, dtype=np.float64)
            if len(np.unique(x)) < 2:
                problems.append(f"{source}: --by {name}: every entry has {name} = {x[0]:g}, nothing to compare")
                continue
            groups = order = None
            if bins:
                groups, order = _quantile_groups(x, bins)
                for group in order:
                    if group not in groups:
                        problems.append(
                            f"{source}: --by {name} --bins {bins}: quantile group {group} is empty (empty group; "
                            f"{len(np.unique(x))} distinct values, use fewer bins)"
                        )
            attributes[name] = Attribute(name, "continuous", numbers, groups, order or [])
            continue
        groups = [str(v) for v in raw]
        order = sorted(set(groups))
        if len(order) < 2:
            problems.append(f"{source}: --by {name}: every entry is in group '{order[0]}', nothing to compare")
            continue
        attributes[name] = Attribute(name, "categorical", raw, groups, order)
    return attributes


INTERSECT = " x "  # joins attribute names of an intersection: "sex x age"
AND = " & "  # joins group names of an intersection: "F & Q1 [20, 41]"


def _intersection(attributes: Mapping[str, Attribute], source: str, problems: list[str]) -> Attribute | None:
    """The cross of every grouped attribute: one group per combination present (empty combinations are absent)."""
    grouped = [a for a in attributes.values() if a.groups is not None]
    if len(grouped) < 2:
        problems.append(
            f"{source}: --intersect needs at least two grouped --by attributes, got "
            f"{[a.name for a in grouped]} (numeric attributes need --bins to be grouped)"
        )
        return None
    groups = [AND.join(parts) for parts in zip(*(a.groups for a in grouped))]
    ranks = [{g: k for k, g in enumerate(a.order)} for a in grouped]
    order = sorted(set(groups), key=lambda g: tuple(r[p] for r, p in zip(ranks, g.split(AND))))
    name = INTERSECT.join(a.name for a in grouped)
    return Attribute(name, "intersection", [tuple(v) for v in zip(*(a.groups for a in grouped))], groups, order)


def _control(entries, ids, name: str, source: str, problems: list[str]) -> Attribute | None:
    missing = [tag for tag, e in zip(ids, entries) if e.get(name) is None]
    for tag in missing:
        problems.append(f"{source}: {tag} has no '{name}' attribute (--control {name})")
    if missing:
        return None
    raw = [e[name] for e in entries]
    groups = [str(v) for v in raw]
    order = sorted(set(groups))
    if len(order) < 2:
        problems.append(f"{source}: --control {name}: every entry has {name} '{order[0]}', nothing to control for")
        return None
    return Attribute(name, "categorical", raw, groups, order)


def load_cohort(
    datalist,
    by: Sequence[str],
    *,
    dataset_dir: str | os.PathLike | None = None,
    split: str | None = None,
    bins: int | None = None,
    categorical: Sequence[str] = (),
    structures: Mapping[int, str] | None = None,
    can_predict: bool = False,
    intersect: bool = False,
    control: str | None = None,
) -> Cohort:
    """Read and validate the datalist (or BIDS dataset); raise one :class:`DatalistError` listing every problem.

    Checks: the JSON parses and holds entries (of ``split`` if given); every entry has an ``image`` and either a
    ``prediction`` or, with ``can_predict`` (a bundle was given), an image file to predict from; every file exists
    and reads completely (NIfTI, finite voxels); labels and predictions hold integers; label and prediction (or,
    where the prediction is still to be made, label and image) have the same shape and voxel size; every entry has each ``by``
    attribute; every group (a categorical value or a quantile bin) is non-empty and an attribute has at least two
    values; every entry has the ``control`` attribute, which has at least two values.

    Args:
        datalist: path of the JSON file, its loaded content (relative paths then need ``dataset_dir``), or a
            :class:`common.audit.bids.BidsInput`.
        by: attributes to group by.
        bins: cut numeric attributes into this many quantile groups.
        categorical: attributes to treat as categorical even when numeric.
        structures: label value -> name; default ``label_<value>`` for every foreground value found.
        can_predict: entries without ``prediction`` are allowed (their images are read and checked).
        intersect: also form the cross of the grouped attributes.
        control: the attribute (e.g. ``site``) every comparison is stratified by.
    """
    from common.audit.bids import BidsInput, read_bids

    if bins is not None and bins < 2:
        raise ValueError(f"--bins must be at least 2, got {bins}")
    if isinstance(datalist, BidsInput):
        entries, ids, problems, source = read_bids(datalist, can_predict)
    else:
        entries, ids, problems, source = _read_entries(datalist, dataset_dir, split)
    if not entries:
        raise DatalistError(problems, source)
    infos: dict[tuple[str, bool], Any] = {}
    reported: set[tuple[str, bool]] = set()

    def read(path: str, as_label: bool):
        key = (path, as_label)
        if key not in infos:
            infos[key] = _read_nifti(path, None, as_label)
        if key not in reported:
            reported.add(key)
            problems.extend(infos[key].problems)
        return infos[key]

    max_value = 0
    for tag, entry in zip(ids, entries):
        for key in PATH_KEYS:
            if key in entry and not isinstance(entry[key], str):
                problems.append(f"{source}: {tag} '{key}' must be a file path, got {entry[key]!r}")
                entry.pop(key)
        missing_files = entry.pop("_reported", [])
        has_pred = "prediction" in entry
        if "image" not in entry and not has_pred and "prediction" not in missing_files:
            problems.append(f"{source}: {tag} has no 'image' key")
        if not has_pred and not can_predict and "prediction" not in missing_files:
            problems.append(f"{source}: {tag} has no 'prediction' and no --bundle was given to make one")
        label = read(entry["label"], True) if "label" in entry else None
        pred = None
        if has_pred:
            label_ndim = len(label.shape) if label is not None and label.affine is not None else None
            if is_probability_map(entry["prediction"], label_ndim):
                pred = copy.copy(read(entry["prediction"], False))  # the copy describes the argmax label map
                if pred.affine is not None:
                    _check_probabilities(pred.path, problems)
                    pred.shape, pred.vmin, pred.vmax = pred.shape[:-1], 0.0, float(pred.shape[-1] - 1)
            else:
                pred = read(entry["prediction"], True)
        image = None
        if not has_pred and can_predict and "image" in entry:
            image = read(entry["image"], False)
        elif "image" in entry and not os.path.isfile(entry["image"]):
            problems.append(f"{entry['image']}: file not found")
        for info in (label, pred):
            if info is not None and info.affine is not None:
                _check_label_values(info, None, problems)
                if info.vmin < 0:
                    problems.append(f"{info.path}: label map holds negative values (min {info.vmin:g})")
                max_value = max(max_value, int(info.vmax))
        other = pred if pred is not None else image
        if label is not None and other is not None and label.affine is not None and other.affine is not None:
            kind = "prediction" if pred is not None else "image"
            dims = len(label.shape)
            if label.shape != other.shape:
                problems.append(
                    f"{other.path}: {kind} shape {other.shape} does not match label {label.path} shape {label.shape}"
                )
            elif not np.allclose(other.zooms[:dims], label.zooms[:dims], rtol=VOXEL_RTOL, atol=0.0):
                problems.append(
                    f"{other.path}: {kind} voxel size {list(other.zooms[:dims])} mm does not match label "
                    f"{label.path} voxel size {list(label.zooms[:dims])} mm"
                )
    attributes = _attributes(entries, ids, by, bins, categorical, source, problems)
    if intersect and len(attributes) == len(by):
        cross = _intersection(attributes, source, problems)
        if cross is not None:
            attributes[cross.name] = cross
    stratum = _control(entries, ids, control, source, problems) if control else None
    if problems:
        raise DatalistError(list(dict.fromkeys(problems)), source)
    if not structures:
        structures = {v: f"label_{v}" for v in range(1, max_value + 1)}
    return Cohort(source, entries, ids, attributes, dict(sorted(structures.items())), stratum)

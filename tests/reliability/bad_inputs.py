"""Small datalists with one defect each, for the bad-input tests of every bundle.

:func:`make_datalist` writes a valid decathlon-style datalist (``training``, ``validation``, ``test``) of tiny
NIfTI files in the shape a bundle expects, then applies one defect from :data:`CASES`; it returns the JSON path
and a regex that a clear error message must match (the problem) plus the name of the file it must name.
A :class:`DataKind` with ``fields`` also writes the entry keys a bundle reads besides the files (``scan_rescan``:
``subject``/``phase``/``session``, the test split whole hearts of four frames; ``identity_scene``:
``identity``/``scene``, each identity in its own scene in training and in both scenes in test), and has cases of
its own on those keys (:data:`FIELD_CASES`).
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np


@dataclass(frozen=True)
class DataKind:
    """What a bundle reads: spatial dims, image shape, labels (``num_classes`` or none), groups, entry fields."""

    spatial_dims: int
    shape: tuple[int, ...]
    num_classes: int | None
    groups: tuple[str, ...] = ()
    spacing: float = 1.0
    fields: str = ""  # "" | "scan_rescan" | "identity_scene": see the module docstring
    test_optional: bool = False  # the bundle evaluates on the validation split when the datalist has no test split


FRAMES = (("ED", "scan"), ("ES", "scan"), ("ED", "rescan"), ("ES", "rescan"))  # one heart's four test frames
ALIGNED_SCENE = {1: "sector", 2: "linear"}  # identity -> the scene it is seen in during training


# case -> (problem regex, which file the message must name: "image", "label" or "datalist")
CASES: dict[str, tuple[str, str]] = {
    "missing_datalist": (r"not found|does not exist", "datalist"),
    "invalid_json": (r"not valid JSON", "datalist"),
    "missing_key": (r"has no 'image' key", "datalist"),
    "empty_split": (r"split 'validation' is empty|no 'validation' entries", "datalist"),
    "missing_test_split": (r"missing required split 'test'|no 'test' (split|entries)", "datalist"),
    "empty_group": (r"empty group", "datalist"),
    "missing_file": (r"file not found", "image"),
    "empty_nifti": (r"empty file \(0 bytes\)", "image"),
    "truncated_nifti": (r"unreadable or truncated", "image"),
    "nan_voxels": (r"NaN/Inf voxel", "image"),
    "inf_voxels": (r"NaN/Inf voxel", "image"),
    "extra_dimension": (r"expected a [23]D image, got [34]D", "image"),
    "spacing_mismatch": (r"'spacing' .* disagrees with the header voxel size", "image"),
    "shape_mismatch": (r"image shape .* does not match label", "image"),
    "affine_mismatch": (r"image affine differs from label", "image"),
    "label_out_of_range": (r"label values span .* outside 0\.\.", "label"),
    # scan_rescan: a test frame without its phase, a phase spelt otherwise, a heart without one of its four frames
    "missing_phase": (r"test entry 0 \(.*\) lacks phase", "datalist"),
    "unknown_phase": (r"phase/session ed/scan not in ED\|ES x scan\|rescan", "datalist"),
    "missing_frame": (r"test subject \S+ lacks frame\(s\) ES/rescan", "datalist"),
    # identity_scene: an entry without its identity, a test identity that training never shows
    "missing_identity": (r"training\[0\] has no 'identity' key", "datalist"),
    "unseen_identity": (r"test\[0\] has identity '3', which no training entry has", "datalist"),
    "no_rare_test": (r"\brare\b", "datalist"),  # every test image in its identity's training scene
}
LABEL_CASES = {"shape_mismatch", "affine_mismatch", "label_out_of_range"}
GROUP_CASES = {"empty_group"}
FIELD_CASES = {
    "scan_rescan": {"missing_phase", "unknown_phase", "missing_frame"},
    "identity_scene": {"missing_identity", "unseen_identity", "no_rare_test"},
}


def applicable(case: str, kind: DataKind) -> bool:
    if case in LABEL_CASES and kind.num_classes is None:
        return False
    if case == "missing_test_split" and kind.test_optional:
        return False
    for fields, cases in FIELD_CASES.items():
        if case in cases and kind.fields != fields:
            return False
    return not (case in GROUP_CASES and len(kind.groups) < 2)


def _fields(kind: DataKind, split: str, count: int) -> list[dict]:
    """The non-file keys of a split's entries for one group (``count`` entries unless the kind fixes them)."""
    if kind.fields == "scan_rescan":
        if split == "test":  # one whole heart
            return [{"subject": "test_0000", "phase": p, "session": s} for p, s in FRAMES]
        return [{"subject": f"{split}_{i:04d}", "phase": p, "session": s} for i, (p, s) in enumerate(FRAMES[:count])]
    if kind.fields == "identity_scene":
        if split == "test":  # every identity x scene cell: common and rare
            return [{"identity": i, "scene": s} for i in ALIGNED_SCENE for s in ("sector", "linear")]
        return [{"identity": i, "scene": s} for i, s in ALIGNED_SCENE.items()]
    if kind.fields:
        raise ValueError(f"unknown fields {kind.fields!r}")
    return [{}] * count


def _save(path: Path, array: np.ndarray, spacing: float) -> str:
    affine = np.diag([spacing] * 3 + [1.0])
    nib.save(nib.Nifti1Image(array, affine), str(path))
    return path.name


def make_datalist(root: Path, kind: DataKind, case: str | None, seed: int = 0) -> tuple[Path, str, str]:
    """Write the datalist with ``case`` applied (``None``: valid); return ``(json_path, problem_regex, file)``."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    groups = kind.groups or (None,)
    data: dict[str, list[dict]] = {}
    n = 0
    for split, per_group in (("training", 2), ("validation", 1), ("test", 1)):
        entries = []
        for group in groups:
            for fields in _fields(kind, split, per_group):
                n += 1
                image = rng.uniform(0, 1, kind.shape).astype(np.float32)
                entry: dict = {"image": _save(root / f"img{n:02d}.nii.gz", image, kind.spacing)}
                if kind.num_classes is not None:
                    label = rng.integers(0, kind.num_classes, kind.shape).astype(np.uint8)
                    entry["label"] = _save(root / f"lab{n:02d}.nii.gz", label, kind.spacing)
                if group is not None:
                    entry["group"] = group
                entry.update(fields)
                entries.append(entry)
        data[split] = entries
    json_path = root / "datalist.json"
    if case is None:
        json_path.write_text(json.dumps(data, indent=1))
        return json_path, "", ""
    problem, which = CASES[case]
    target = data["training"][0]
    image_path = root / target["image"]
    named = {"datalist": json_path.name, "image": target["image"], "label": target.get("label", "")}[which]
    if case == "missing_datalist":
        return root / "no_such_datalist.json", problem, "no_such_datalist.json"
    if case == "invalid_json":
        json_path.write_text(json.dumps(data)[:-7])
        return json_path, problem, named
    if case == "missing_key":
        del target["image"]
    elif case == "empty_split":
        data["validation"] = []
    elif case == "missing_test_split":
        del data["test"]
    elif case == "empty_group":
        data["training"] = [e for e in data["training"] if e.get("group") != kind.groups[-1]]
    elif case == "missing_file":
        image_path.unlink()
    elif case == "empty_nifti":
        image_path.write_bytes(b"")
    elif case == "truncated_nifti":
        raw = image_path.read_bytes()
        assert raw[:2] == b"\x1f\x8b" and len(gzip.decompress(raw)) > 400
        image_path.write_bytes(raw[: len(raw) // 2])
    elif case in ("nan_voxels", "inf_voxels"):
        array = np.asarray(nib.load(image_path).dataobj).copy()
        array.flat[3] = np.nan if case == "nan_voxels" else np.inf
        _save(image_path, array, kind.spacing)
    elif case == "extra_dimension":
        _save(image_path, rng.uniform(0, 1, (*kind.shape, 3)).astype(np.float32), kind.spacing)
    elif case == "spacing_mismatch":
        target["spacing"] = [kind.spacing * 1.5] * kind.spatial_dims
    elif case == "shape_mismatch":
        _save(image_path, rng.uniform(0, 1, tuple(s + 2 for s in kind.shape)).astype(np.float32), kind.spacing)
    elif case == "affine_mismatch":
        img = nib.load(image_path)
        affine = img.affine.copy()
        affine[:3, 3] += 5.0
        nib.save(nib.Nifti1Image(np.asarray(img.dataobj), affine), str(image_path))
    elif case == "label_out_of_range":
        label_path = root / target["label"]
        label = np.asarray(nib.load(label_path).dataobj).copy()
        label.flat[0] = kind.num_classes + 3
        _save(label_path, label, kind.spacing)
    elif case == "missing_phase":
        del data["test"][0]["phase"]
    elif case == "unknown_phase":
        data["test"][0]["phase"] = "ed"
    elif case == "missing_frame":
        data["test"] = [e for e in data["test"] if (e["phase"], e["session"]) != ("ES", "rescan")]
    elif case == "missing_identity":
        del target["identity"]
    elif case == "unseen_identity":
        data["test"][0]["identity"] = 3
    elif case == "no_rare_test":
        data["test"] = [e for e in data["test"] if ALIGNED_SCENE[e["identity"]] == e["scene"]]
    else:
        raise ValueError(f"unknown case {case!r}")
    json_path.write_text(json.dumps(data, indent=1))
    return json_path, problem, named

"""How far one label map is from another: the size of an annotation error.

:func:`label_dice` is the mean Dice (MONAI ``compute_dice``) over the structures present in either map;
:func:`relative_area_change` the mean over the reference's structures of ``|area(label) - area(ref)| / area(ref)``.
Both take integer label maps of the same spatial shape (no channel, or a leading channel of 1).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def _index_map(x) -> np.ndarray:
    arr = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if arr.ndim >= 3 and arr.shape[0] == 1:
        arr = arr[0]
    return np.rint(arr).astype(np.int64)


def label_dice(label, reference, classes: Sequence[int]) -> float:
    """Mean Dice between ``label`` and ``reference`` over the ``classes`` present in either (1.0 if none is).

    A structure present in only one of the maps counts as Dice 0.
    """
    from monai.metrics import compute_dice

    a, b = _index_map(label), _index_map(reference)
    if a.shape != b.shape:
        raise ValueError(f"label {a.shape} and reference {b.shape} differ in shape")
    classes = [int(c) for c in classes]
    present = [c for c in classes if (a == c).any() or (b == c).any()]
    if not present:
        return 1.0
    onehot = lambda x: torch.stack([torch.from_numpy(x == c) for c in present])[None].float()  # noqa: E731
    dice = compute_dice(onehot(a), onehot(b), include_background=True, ignore_empty=False)[0]
    return float(dice.mean())


def relative_area_change(label, reference, classes: Sequence[int]) -> float:
    """Mean over the ``classes`` present in ``reference`` of ``|area(label) - area(reference)| / area(reference)``
    (areas in pixels; 0.0 if the reference holds none of them)."""
    a, b = _index_map(label), _index_map(reference)
    if a.shape != b.shape:
        raise ValueError(f"label {a.shape} and reference {b.shape} differ in shape")
    changes = [abs(int((a == c).sum()) - int((b == c).sum())) / int((b == c).sum()) for c in classes if (b == c).any()]
    return float(np.mean(changes)) if changes else 0.0

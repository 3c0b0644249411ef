"""The training datalist of one label-error setting (the ``label_error_refurbishment`` bundle's data source).

Lives in ``common.data`` because it generates the embedded echo phantom and validates user datalists before
it injects errors with :func:`common.transforms.label_errors.corrupt_datalist` (``common.data`` may import
``common.transforms``, never the reverse).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from common.data.datalist import load_datalist, validate_datalist
from common.data.echo_phantom import EchoPhantomConfig, generate_echo_phantom
from common.transforms.label_errors import corrupt_datalist


def prepare_label_error_datalist(
    datalist: str | Path | None,
    dataset_dir: str | Path | None,
    cache_dir: str | Path,
    error_type: str = "random",
    error_level: float = 0.0,
    seed: int = 0,
    phantom: Mapping | None = None,
    num_classes: int = 4,
    **corrupt_kwargs: Any,
) -> Path:
    """The training datalist of one label-error setting: data source, validation, then error injection.

    With an empty ``datalist`` the embedded echo phantom (``phantom``: :class:`EchoPhantomConfig` fields) is
    generated under ``cache_dir``; otherwise the user datalist is validated (``common.data.validate_datalist``)
    before anything else. Returns the path of the corrupted datalist (see :func:`corrupt_datalist`).
    """
    if not datalist:
        path = generate_echo_phantom(cache_dir, EchoPhantomConfig(**dict(phantom or {})), seed=seed)
        base = path.parent
    else:
        path = Path(datalist)
        if not path.is_file():
            raise FileNotFoundError(f"datalist {path} does not exist")
        base = Path(dataset_dir) if dataset_dir else path.parent
        # load_datalist reports invalid JSON naming the file; validation then checks every entry.
        splits = tuple(k for k in ("training", "validation", "test") if k in load_datalist(path, base))
        validate_datalist(path, base, num_classes=num_classes, spatial_dims=2, splits=splits)
    return corrupt_datalist(
        path, base, cache_dir, kind=error_type, error_level=error_level, seed=seed, **corrupt_kwargs
    )

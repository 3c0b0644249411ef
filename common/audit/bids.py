"""A BIDS dataset as the audited cohort: ``participants.tsv`` gives the participants and their attributes, file
patterns give each participant's prediction, manual label and image.

``participants.tsv`` (tab-separated, ``n/a`` for a missing value) must have a ``participant_id`` column
(``sub-01`` ...); every other column is an attribute. A column whose values all read as numbers (``age``) is
numeric, any other is categorical. A pattern is a path with ``{participant_id}`` (``sub-01``) and ``{subject}``
(``01``) placeholders and optional ``*`` wildcards, relative to the derivatives folder (prediction, label) or to
the BIDS root (image); it must match exactly one file per participant.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["BidsInput", "participant_columns", "read_bids"]

PARTICIPANTS = "participants.tsv"
ID_COLUMN = "participant_id"
PLACEHOLDERS = ("{participant_id}", "{subject}")


@dataclass(frozen=True)
class BidsInput:
    """Where a BIDS cohort's files are: ``derivatives`` defaults to ``<root>/derivatives``."""

    root: Path
    prediction_pattern: str | None = None
    label_pattern: str | None = None
    image_pattern: str | None = None
    derivatives: Path | None = None

    @property
    def participants(self) -> Path:
        return Path(self.root).expanduser().resolve() / PARTICIPANTS

    @property
    def derivatives_dir(self) -> Path:
        root = Path(self.root).expanduser().resolve()
        return Path(self.derivatives).expanduser().resolve() if self.derivatives else root / "derivatives"


def _read_table(path: Path):
    import pandas as pd

    return pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)


def participant_columns(bids: BidsInput) -> list[str]:
    """The attribute columns of ``participants.tsv`` (every column but ``participant_id``); [] when unreadable."""
    try:
        return [c for c in _read_table(bids.participants).columns if c != ID_COLUMN]
    except Exception:  # reported with its reason by read_bids
        return []


def _typed(column: list[str]) -> list[Any]:
    """``n/a`` and empty cells as None; numbers as float when every present value reads as one."""
    values = [None if v.strip() in ("", "n/a") else v.strip() for v in column]
    try:
        return [None if v is None else float(v) for v in values]
    except ValueError:
        return values


def _match(pattern: str, base: Path, participant: str) -> tuple[str, list[str]]:
    subject = participant.removeprefix("sub-")
    expanded = pattern.replace("{participant_id}", participant).replace("{subject}", subject)
    path = Path(expanded) if os.path.isabs(expanded) else base / expanded
    return str(path), sorted(p for p in glob.glob(str(path)) if os.path.isfile(p))


def read_bids(bids: BidsInput, can_predict: bool = False) -> tuple[list[dict[str, Any]], list[str], list[str], str]:
    """Entries (absolute paths and attributes), their ids (``participant_id``), problems and the source name.

    Problems, one line each: no ``participants.tsv`` or no ``participant_id`` column in it, a repeated
    participant, a participant without a prediction (unless ``can_predict``: a bundle makes it), label or image
    whose pattern is given, or with several. An entry's ``"_reported"`` lists the keys already reported missing.
    """
    table_path = bids.participants
    source = str(table_path)
    root = Path(bids.root).expanduser().resolve()
    if not root.is_dir():
        return [], [], [f"{root}: BIDS root folder not found"], source
    if not bids.prediction_pattern and not can_predict:
        return [], [], [f"{root}: a BIDS cohort needs --prediction-pattern (or --bundle to predict)"], source
    if not table_path.is_file():
        return [], [], [f"{table_path}: file not found (a BIDS dataset lists its participants there)"], source
    try:
        table = _read_table(table_path)
    except Exception as e:  # ParserError, UnicodeDecodeError, EmptyDataError ...
        return [], [], [f"{table_path}: cannot read as a tab-separated table ({type(e).__name__}: {e})"], source
    if ID_COLUMN not in table.columns:
        columns = ", ".join(map(str, table.columns)) or "none"
        return [], [], [f"{table_path}: no '{ID_COLUMN}' column (columns: {columns})"], source
    problems: list[str] = []
    ids = [str(v).strip() for v in table[ID_COLUMN]]
    if not ids:
        return [], [], [f"{table_path}: no participants"], source
    for pid in sorted({p for p in ids if ids.count(p) > 1}):
        problems.append(f"{table_path}: participant {pid} is listed {ids.count(pid)} times")
    columns = {c: _typed(list(table[c])) for c in table.columns if c != ID_COLUMN}
    patterns = [
        ("prediction", bids.prediction_pattern, bids.derivatives_dir),
        ("label", bids.label_pattern, bids.derivatives_dir),
        ("image", bids.image_pattern, root),
    ]
    entries = []
    for k, pid in enumerate(ids):
        entry: dict[str, Any] = {name: values[k] for name, values in columns.items() if values[k] is not None}
        for key, pattern, base in patterns:
            if not pattern:
                continue
            wanted, found = _match(pattern, base, pid)
            if not found and key == "prediction" and can_predict:
                continue
            if not found:
                entry.setdefault("_reported", []).append(key)
                problems.append(f"{table_path}: participant {pid} has no {key}: no file matches {wanted}")
            elif len(found) > 1:
                problems.append(
                    f"{table_path}: participant {pid} has {len(found)} {key} files matching {wanted}: "
                    f"{', '.join(found)}"
                )
            else:
                entry[key] = found[0]
        entries.append(entry)
    return entries, ids, problems, source

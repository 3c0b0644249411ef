"""Read TensorBoard event files with TensorBoard's own reader (for tests)."""

from __future__ import annotations

from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def read_events(logdir: str | Path) -> tuple[set[str], int]:
    """(scalar tags, number of images) of all event files directly inside ``logdir``."""
    acc = EventAccumulator(str(logdir), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    tags = acc.Tags()
    return set(tags["scalars"]), sum(len(acc.Images(t)) for t in tags["images"])

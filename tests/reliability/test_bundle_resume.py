"""A bundle run that dies after an epoch and is started again with the same arguments ends with the same metrics.

In-process (``monai.bundle.run`` train + evaluate, tiny settings, CPU): one uninterrupted run; one run that
crashes right after the resume checkpoint of a given epoch is written (an exception raised from the checkpoint
handler, so nothing after that point runs), then the same call again. The label-error bundle is interrupted
before its detection epoch (the resumed run needs the detectors' history) and after it (it must train on the
refurbished labels). The SIGKILL case is
covered on a toy trainer in ``test_resume.py``; here the bundles' own wiring (``ResumableCheckpoint``,
``EpochReseed``) is what is tested.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from common.handlers.resume import ResumableCheckpoint, resume_path
from common.study.runner import REPO_ROOT
from tests.reliability.test_determinism import run_train_evaluate

EPOCHS = 2
SAVE_EVERY_EPOCH = {"resume_min_interval_s": 0}  # tiny epochs: by default only one save per 30 s would happen
SETTINGS = {
    "sr_degradation_bias": {"epochs": EPOCHS, "val_interval": EPOCHS, **SAVE_EVERY_EPOCH},
    "segmentation_resolution_bias": {"epochs": EPOCHS, "val_interval": EPOCHS, **SAVE_EVERY_EPOCH},
    # detection and refurbishment after epoch 2; VOG gradients at epochs 1 and 2
    "label_error_refurbishment": {"epochs": 3, "val_interval": 3, "detect_epoch": 2, **SAVE_EVERY_EPOCH},
    "shortcut_label_flips": {"epochs": 3, "val_interval": 3, **SAVE_EVERY_EPOCH},
}
CASES = [
    ("sr_degradation_bias", 1),
    ("segmentation_resolution_bias", 1),
    ("label_error_refurbishment", 1),
    ("label_error_refurbishment", 2),
    ("shortcut_label_flips", 1),
]


class Crash(Exception):
    """Stands for the process dying."""


def _run(bundle: str, out: Path, cache: Path) -> dict:
    return run_train_evaluate(bundle, out, cache, **SETTINGS[bundle])


@pytest.mark.slow
@pytest.mark.parametrize("bundle, crash_epoch", CASES)
def test_crash_after_an_epoch_then_rerun_matches_uninterrupted(bundle, crash_epoch, tmp_path, monkeypatch):
    if "ResumableCheckpoint" not in (REPO_ROOT / "bundles" / bundle / "configs" / "train.yaml").read_text():
        pytest.skip(f"{bundle}/configs/train.yaml has no ResumableCheckpoint")
    cache = tmp_path / "cache"
    reference = _run(bundle, tmp_path / "full", cache)

    out = tmp_path / "interrupted"
    save = ResumableCheckpoint.save

    def save_then_die(self, engine=None):
        save(self, engine)
        if engine is not None and engine.state.epoch == crash_epoch:
            raise Crash(f"killed after epoch {engine.state.epoch}")

    monkeypatch.setattr(ResumableCheckpoint, "save", save_then_die)
    with pytest.raises(Exception) as info:
        _run(bundle, out, cache)
    chain, exc = [], info.value
    while exc is not None:
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__
    assert any(isinstance(e, Crash) and f"killed after epoch {crash_epoch}" in str(e) for e in chain), chain
    monkeypatch.undo()
    assert Path(resume_path(out / "model.pt")).is_file() and not (out / "metrics.json").exists()
    if bundle == "label_error_refurbishment":
        # weights left by the dead run (e.g. a final saver that writes on exceptions): evaluate.yaml trains on
        # anyway, because the resume file marks the run unfinished
        shutil.copy(tmp_path / "full" / "model.pt", out / "model.pt")

    resumed = _run(bundle, out, cache)
    assert not Path(resume_path(out / "model.pt")).exists()
    different = {k: (reference[k], resumed.get(k)) for k in reference if reference[k] != resumed.get(k)}
    assert different == {}, f"resumed run differs: {dict(list(different.items())[:10])}"

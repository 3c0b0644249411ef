"""The real MONAI Label server serves the segmentation bundles (``nox -s label -- --test``).

One server per bundle (MONAI Label trains on every labelled image of its datastore, so each bundle
gets a datastore of its own kind of image), on a free 127.0.0.1 port, started by
``tests.tooling.labelserver`` with MONAI Label's own ``monaibundle`` app and stopped by its PID.
Skipped when ``monailabel`` is not importable (the ordinary test environment does not install it).
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("monailabel", reason="monailabel is not installed; `nox -s label -- --test` installs and runs it")
httpx = pytest.importorskip("httpx", reason="httpx (a MONAI Label server dependency) is not installed")

import nibabel as nib  # noqa: E402
import torch  # noqa: E402

from tests.tooling.labelserver import (  # noqa: E402
    REPO_ROOT,
    SEGMENTATION_BUNDLES,
    LabelApp,
    copy_sample_app,
    free_port,
    install_bundles,
    install_collection_app,
    start_server,
    stop_server,
    wait_until_ready,
    write_studies,
)

pytestmark = pytest.mark.slow

SERVER_START_TIMEOUT_S = 300.0
INFER_TIMEOUT_S = 300.0
TRAIN_TIMEOUT_S = 900.0
TRAIN_REQUEST = {"max_epochs": 1, "val_split": 0.5, "device": "cpu", "multi_gpu": False, "pretrained": True}

available = [b for b in SEGMENTATION_BUNDLES if (REPO_ROOT / "bundles" / b / "configs" / "inference.yaml").is_file()]


@dataclasses.dataclass
class Served:
    url: str
    app: LabelApp
    bundle: str
    image_ids: list[str]
    log: Path


def _log_tail(log: Path, lines: int = 60) -> str:
    time.sleep(1.0)  # the server logs a request's traceback after it has answered
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.exists() else "(no log)"


def _expected_labels(bundle: str) -> dict[str, int]:
    """Labels MONAI Label should list: metadata's ``outputs.pred.channel_def`` without background."""
    meta = json.loads((REPO_ROOT / "bundles" / bundle / "configs" / "metadata.json").read_text())
    channel_def = meta["network_data_format"]["outputs"]["pred"]["channel_def"]
    return {name.lower(): int(k) for k, name in channel_def.items() if name.lower() != "background"}


@pytest.fixture(scope="module")
def label_app(tmp_path_factory) -> LabelApp:
    """One app folder: MONAI Label's monaibundle app extended by tools/monailabel_app, both bundles in ``model/``."""
    workdir = tmp_path_factory.mktemp("monailabel")
    app_dir = install_collection_app(copy_sample_app(workdir / "app"))
    install_bundles(app_dir, tuple(available))
    return LabelApp(app_dir, workdir / "studies", tuple(available))


@pytest.fixture(scope="module", params=available)
def served(request, label_app):
    """A running server for one bundle, with a datastore of two labelled images of that bundle's kind."""
    bundle = request.param
    workdir = label_app.app_dir.parent
    studies = workdir / f"studies_{bundle}"
    image_ids = write_studies(studies, (bundle,), workdir / "data_cache")
    app = dataclasses.replace(label_app, studies_dir=studies, bundles=(bundle,))
    port = free_port()
    log = workdir / f"server_{bundle}.log"
    start = time.monotonic()
    process = start_server(app, port, log_file=log)
    try:
        try:
            wait_until_ready(f"http://127.0.0.1:{port}", process, SERVER_START_TIMEOUT_S)
        except (RuntimeError, TimeoutError) as err:
            pytest.fail(f"{err}\n{_log_tail(log)}")
        print(f"\n{bundle}: server ready after {time.monotonic() - start:.1f} s (pid {process.pid}, port {port})")
        yield Served(f"http://127.0.0.1:{port}", app, bundle, image_ids, log)
    finally:
        stop_server(process)
        assert process.poll() is not None, f"server pid {process.pid} still running"
        with pytest.raises(ProcessLookupError):  # nothing left in the server's process group (its children)
            os.killpg(process.pid, 0)


def test_info_lists_bundle_with_labels(served):
    response = httpx.get(f"{served.url}/info/", timeout=30)
    assert response.status_code == 200
    info = response.json()
    assert served.bundle in info["models"], f"/info/ models: {sorted(info['models'])}\n{_log_tail(served.log)}"
    model = info["models"][served.bundle]
    assert model["labels"] == _expected_labels(served.bundle)
    assert sorted(model["labels"].values()) == [1, 2, 3]  # three structures on 1..3 in both bundles
    assert model["type"] == "segmentation"
    assert served.bundle in info["trainers"], f"/info/ trainers: {sorted(info['trainers'])}\n{_log_tail(served.log)}"


def test_infer_returns_label_map_on_input_grid(served):
    num_classes = 1 + len(_expected_labels(served.bundle))
    for image_id in served.image_ids:
        start = time.monotonic()
        response = httpx.post(
            f"{served.url}/infer/{served.bundle}",
            params={"image": image_id, "output": "image"},
            data={"params": json.dumps({"device": "cpu"})},
            timeout=INFER_TIMEOUT_S,
        )
        assert response.status_code == 200, (
            f"{image_id}: {response.status_code} {response.text[:300]}\n{_log_tail(served.log)}"
        )
        print(f"{served.bundle}: infer {image_id} took {time.monotonic() - start:.1f} s")
        raw = response.content
        assert raw[:2] == b"\x1f\x8b", "expected a gzip-compressed NIfTI"
        pred = nib.Nifti1Image.from_bytes(gzip.decompress(raw))
        ref = nib.load(served.app.studies_dir / f"{image_id}.nii.gz")
        values = np.unique(np.asarray(pred.dataobj))
        assert set(values.tolist()) <= set(range(num_classes)), f"label values {values}"
        assert pred.shape == ref.shape  # 2D too: the collection app drops the channel MONAI Label 0.8.5 keeps
        np.testing.assert_allclose(pred.affine, ref.affine, atol=1e-4)


def test_suspect_label_strategy_returns_a_planted_label_error_first(served):
    """Labels = the served model's own prediction, two of them corrupted: scoring then the strategy finds those."""
    from tools.monailabel_app.suspect_labels import BundleLossScorer

    if served.bundle != "label_error_refurbishment":
        pytest.skip("one 2D bundle is enough for the scoring round trip")
    scorer = BundleLossScorer(served.app.bundle_dir(served.bundle))
    labels_dir = served.app.studies_dir / "labels" / "final"
    planted = set(served.image_ids[:1])
    for image_id in served.image_ids:
        logits, grid = scorer.logits(served.app.studies_dir / f"{image_id}.nii.gz")
        label = logits[0].argmax(0).numpy().astype(np.uint8)  # on the model's grid; the scorer resamples to it
        if image_id in planted:
            label[:40, :40] = (label[:40, :40] + 1) % 4
        nib.save(nib.Nifti1Image(label, np.asarray(grid.affine)), labels_dir / f"{image_id}.nii.gz")
    response = httpx.post(f"{served.url}/scoring/suspect_label", params={"run_sync": True}, timeout=INFER_TIMEOUT_S)
    assert response.status_code == 200, f"{response.text[:300]}\n{_log_tail(served.log)}"
    ranked = response.json()["ranked"]
    assert sorted(ranked) == sorted(served.image_ids) and ranked[0] in planted
    response = httpx.post(f"{served.url}/activelearning/suspect_label", json={}, timeout=60)
    assert response.status_code == 200, f"{response.text[:300]}\n{_log_tail(served.log)}"
    assert response.json()["id"] in planted
    response = httpx.post(f"{served.url}/activelearning/suspect_label", json={"exclude": sorted(planted)}, timeout=60)
    assert response.json()["id"] not in planted


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_train_one_epoch_updates_checkpoint(served):
    ckpt = served.app.bundle_dir(served.bundle) / "models" / "model.pt"
    before = _sha256(ckpt)
    start = time.monotonic()
    response = httpx.post(f"{served.url}/train/{served.bundle}", json=TRAIN_REQUEST, timeout=60)
    assert response.status_code == 200, response.text
    task_id = response.json()["id"]
    task: dict = {}
    while time.monotonic() - start < TRAIN_TIMEOUT_S:
        task = httpx.get(f"{served.url}/train/", timeout=30).json()
        if task.get("id") == task_id and task.get("status") in ("DONE", "ERROR", "STOPPED"):
            break
        time.sleep(2.0)
    else:
        httpx.delete(f"{served.url}/train/", timeout=30)
        pytest.fail(f"training did not finish within {TRAIN_TIMEOUT_S:.0f} s")
    print(f"{served.bundle}: 1-epoch training via MONAI Label took {time.monotonic() - start:.1f} s")
    details = "\n".join(task.get("details", []))
    assert task["status"] == "DONE", f"training {task['status']}:\n{details}"
    assert _sha256(ckpt) != before, "models/model.pt unchanged after training"
    checkpoint = torch.load(ckpt, map_location="cpu", weights_only=True)
    # MONAI Label's infer task and its CheckpointLoader read the network weights under "model".
    assert "model" in checkpoint, f"checkpoint keys {sorted(checkpoint)}: MONAI Label loads the key 'model'"

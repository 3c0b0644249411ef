"""ExamplePanels keeps the first matching item per distinct value and writes image, label and argmax prediction."""

import json
from types import SimpleNamespace

import numpy as np
import torch

from common.handlers import ExamplePanels


def _item(value: float, identity: int, group: str):
    image = torch.full((1, 4, 5), value)
    label = torch.full((1, 4, 5), identity, dtype=torch.long)
    logits = torch.zeros(3, 4, 5)
    logits[identity % 3, :, 2:] = 1.0  # predicted class: identity % 3 in the right part, 0 in the left
    return {"image": image, "label": label, "pred": logits}, {"group": group, "identity": identity}


def test_first_rare_item_per_identity_is_written_with_argmax_prediction(tmp_path):
    handler = ExamplePanels(tmp_path, where={"group": "rare"}, distinct="identity")
    batches = [
        [_item(0.1, 1, "common"), _item(0.2, 2, "rare")],
        [_item(0.3, 2, "rare"), _item(0.4, 1, "rare")],  # identity 2 is already kept: its first one stays
    ]
    for batch in batches:
        outputs, items = zip(*batch)
        handler.collect(SimpleNamespace(state=SimpleNamespace(output=list(outputs), batch=list(items))))
    handler.write(None)
    with np.load(tmp_path / "example_panels.npz") as panels:
        meta = json.loads(str(panels["meta"]))
        assert meta == [{"group": "rare", "identity": 1}, {"group": "rare", "identity": 2}]  # sorted by identity
        assert panels["image"].shape == (2, 4, 5)
        np.testing.assert_allclose(panels["image"][:, 0, 0], [0.4, 0.2])  # not the common 0.1, not the later 0.3
        assert panels["label"][0].max() == 1 and panels["label"][1].min() == 2
        np.testing.assert_array_equal(panels["pred"][1], np.where(np.arange(5) >= 2, 2, 0)[None].repeat(4, 0))


def test_nothing_matching_writes_no_file_and_disabled_attaches_nothing(tmp_path):
    handler = ExamplePanels(tmp_path, where={"group": "rare"})
    outputs, items = zip(_item(0.1, 1, "common"))
    handler.collect(SimpleNamespace(state=SimpleNamespace(output=list(outputs), batch=list(items))))
    handler.write(None)
    assert not (tmp_path / "example_panels.npz").exists()

    class Engine:
        def add_event_handler(self, *args):
            raise AssertionError("a disabled handler attaches nothing")

    ExamplePanels(tmp_path, enabled=False).attach(Engine())

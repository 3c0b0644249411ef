"""The MONAI Label tooling without a server: the torchvision stand-in, the command line, env and checkpoint."""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket

import numpy as np
import pytest
import torch

from tests.tooling import labelserver
from tests.tooling.labelserver import STANDIN_DIR, LabelApp, ensure_checkpoint, free_port, server_command, server_env


def _standin_utils():
    """Load the stand-in's ``utils.py`` under a private name, so a real torchvision is never shadowed here."""
    spec = importlib.util.spec_from_file_location("torchvision_standin_utils", STANDIN_DIR / "torchvision" / "utils.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_make_grid_layout_hand_computed():
    utils = _standin_utils()
    batch = torch.stack([torch.full((1, 2, 3), float(v)) for v in (1, 2, 3)])  # 3 images, 1 channel, 2x3
    grid = utils.make_grid(batch, nrow=2, padding=1, pad_value=9.0)
    # 2 columns, 2 rows: width 1 + 2 * (3 + 1) = 9, height 1 + 2 * (2 + 1) = 7; gray repeated to RGB
    assert grid.shape == (3, 7, 9)
    assert torch.all(grid[:, 1:3, 1:4] == 1) and torch.all(grid[:, 1:3, 5:8] == 2) and torch.all(grid[:, 4:6, 1:4] == 3)
    assert torch.all(grid[:, 4:6, 5:8] == 9)  # empty fourth cell keeps pad_value
    assert torch.all(grid[:, 0, :] == 9) and torch.all(grid[:, :, 4] == 9)


def test_make_grid_single_image_and_normalize():
    utils = _standin_utils()
    img = torch.tensor([[[0.0, 5.0], [10.0, 20.0]]])  # (1, 2, 2)
    out = utils.make_grid(img, normalize=True)
    assert out.shape == (3, 2, 2)  # one image: no padding, gray -> RGB
    np.testing.assert_allclose(out[0].numpy(), [[0.0, 0.25], [0.5, 1.0]])
    clipped = utils.make_grid(img[None], normalize=True, value_range=(0.0, 10.0))
    np.testing.assert_allclose(clipped[1].numpy(), [[0.0, 0.5], [1.0, 1.0]])
    with pytest.raises(ValueError, match="make_grid expects"):
        utils.make_grid(torch.zeros(1, 1, 1, 2, 2))


def test_save_image_round_trip(tmp_path):
    from PIL import Image

    utils = _standin_utils()
    img = torch.linspace(0, 1, 12).reshape(1, 1, 3, 4).repeat(1, 3, 1, 1)
    utils.save_image(img, tmp_path / "x.png")
    back = np.asarray(Image.open(tmp_path / "x.png"))
    assert back.shape == (3, 4, 3)
    np.testing.assert_array_equal(back[..., 0], np.floor(img[0, 0].numpy() * 255 + 0.5).astype(np.uint8))


def test_server_command_binds_loopback_and_local_zoo(tmp_path):
    app = LabelApp(tmp_path / "app", tmp_path / "studies", ("a_bundle", "b_bundle"))
    cmd = server_command(app, 8123)
    assert cmd[1:4] == ["-m", "monailabel.main", "start_server"]
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1" and cmd[cmd.index("--port") + 1] == "8123"
    conf = {cmd[i + 1]: cmd[i + 2] for i, c in enumerate(cmd) if c == "--conf"}
    assert conf["models"] == "a_bundle,b_bundle" and conf["zoo_source"] == "github"


def test_standin_only_when_torchvision_fails(monkeypatch):
    monkeypatch.setattr(labelserver, "torchvision_importable", lambda python=None: False)
    env = server_env({"PYTHONPATH": "/x"})
    assert env["PYTHONPATH"].split(os.pathsep) == [str(STANDIN_DIR), "/x"]
    monkeypatch.setattr(labelserver, "torchvision_importable", lambda python=None: True)
    assert server_env({"PYTHONPATH": "/x"})["PYTHONPATH"] == "/x"


def test_free_port_is_bindable_on_loopback():
    port = free_port()
    assert isinstance(port, int) and 1024 <= port <= 65535  # an ephemeral port, never 0 or a privileged one
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", port))  # raises OSError if the port were taken
        assert s.getsockname() == ("127.0.0.1", port)
        s.listen(1)
        # while it is held, the next free port is another one
        assert free_port() != port


@pytest.mark.skipif(
    not (labelserver.REPO_ROOT / "bundles" / "label_error_refurbishment" / "configs" / "inference.yaml").is_file(),
    reason="bundle label_error_refurbishment not present",
)
def test_ensure_checkpoint_matches_network(tmp_path):
    from monai.bundle import ConfigParser

    bundle = tmp_path / "label_error_refurbishment"
    shutil.copytree(labelserver.REPO_ROOT / "bundles" / "label_error_refurbishment" / "configs", bundle / "configs")
    assert ensure_checkpoint(bundle) is True
    assert ensure_checkpoint(bundle) is False  # an existing checkpoint is kept
    ckpt = torch.load(bundle / "models" / "model.pt", map_location="cpu", weights_only=True)
    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "inference.yaml"))
    network = parser.get_parsed_content("network_def", instantiate=True)
    network.load_state_dict(ckpt["model"])  # strict: same keys and shapes


def test_install_collection_app_extends_the_sample_app(tmp_path):
    app = tmp_path / "app"
    app.mkdir()
    (app / "main.py").write_text("class MyApp: ...\n")
    assert labelserver.install_collection_app(app) == app
    assert (app / "monaibundle_main.py").read_text() == "class MyApp: ...\n"  # the sample app, kept whole
    for name in labelserver.COLLECTION_APP_FILES:
        assert (app / name).read_bytes() == (labelserver.COLLECTION_APP_DIR / name).read_bytes()
    assert "from monaibundle_main import MyApp" in (app / "main.py").read_text()
    with pytest.raises(FileExistsError, match="not a fresh copy"):
        labelserver.install_collection_app(app)  # a second install would rename the collection's own main.py


def test_server_env_scores_only_on_request():
    assert server_env({})["MONAI_LABEL_AUTO_UPDATE_SCORING"] == "false"
    assert server_env({"MONAI_LABEL_AUTO_UPDATE_SCORING": "true"})["MONAI_LABEL_AUTO_UPDATE_SCORING"] == "true"

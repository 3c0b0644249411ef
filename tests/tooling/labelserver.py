"""Serve the collection's segmentation bundles through MONAI Label, offline on 127.0.0.1.

Installs nothing: run it where ``monailabel`` is installed (``nox -s label`` does that).
It prepares a working folder and starts MONAI Label's own ``monaibundle`` sample app, extended by the
collection's ``tools/monailabel_app`` (scoring method and strategy ``suspect_label``)::

    WORKDIR/app/                 copy of the monaibundle app shipped in the monailabel wheel (main.py renamed
                                 monaibundle_main.py) plus tools/monailabel_app/*.py
    WORKDIR/app/model/<bundle>/  self-contained export of each bundle (``common.export``)
    WORKDIR/studies/             NIfTI images (and labels/final/ label maps) for the datastore

then runs ``monailabel start_server --app WORKDIR/app --studies WORKDIR/studies --conf models "<b1>,<b2>"
--conf zoo_source github --host 127.0.0.1 --port P`` (``zoo_source github`` keeps MONAI Label from
looking local bundles up online). A bundle without trained weights gets an untrained checkpoint
``models/model.pt`` (``{"model": state_dict}``, MONAI Label's key) so that its infer task is listed.

When ``import torchvision`` fails (no CPU build installs against the pinned CPU torch), the pure-torch
stand-in ``tests/tooling/torchvision_standin`` (``torchvision.utils.make_grid``/``save_image`` only)
is put on the server's ``PYTHONPATH``; a working torchvision is never shadowed.

    python -m tests.tooling.labelserver --port 8000                       # both bundles, demo studies
    python -m tests.tooling.labelserver --bundles label_error_refurbishment --studies my_echo_niftis

One datastore serves all models of a server and MONAI Label trains on every labelled image in it,
so train a bundle from a server whose studies hold only that bundle's kind of image.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
STANDIN_DIR = Path(__file__).resolve().parent / "torchvision_standin"
COLLECTION_APP_DIR = REPO_ROOT / "tools" / "monailabel_app"
COLLECTION_APP_FILES = ("main.py", "activelearning.py", "suspect_labels.py")
SAMPLE_MAIN = "monaibundle_main.py"  # the sample app's main.py, renamed; the collection's main.py extends it
SEGMENTATION_BUNDLES = ("segmentation_resolution_bias", "label_error_refurbishment")
SAMPLE_APP = "monaibundle"
LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class LabelApp:
    """A prepared MONAI Label app folder and its datastore."""

    app_dir: Path
    studies_dir: Path
    bundles: tuple[str, ...]

    def bundle_dir(self, name: str) -> Path:
        return self.app_dir / "model" / name


def monailabel_available() -> bool:
    """Whether ``monailabel`` is importable by this interpreter."""
    import importlib.util

    return importlib.util.find_spec("monailabel") is not None


def torchvision_importable(python: str = sys.executable) -> bool:
    """Whether ``import torchvision.utils`` works in a fresh ``python`` (a broken install counts as missing)."""
    result = subprocess.run([python, "-c", "import torchvision.utils"], capture_output=True, cwd=REPO_ROOT)
    return result.returncode == 0


def server_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for the server: the torchvision stand-in on ``PYTHONPATH`` only if torchvision fails to import."""
    env = dict(os.environ if base is None else base)
    if not torchvision_importable():
        parts = [str(STANDIN_DIR), env.get("PYTHONPATH", "")]
        env["PYTHONPATH"] = os.pathsep.join(p for p in parts if p)
    env.setdefault("MONAI_LABEL_DATASTORE_AUTO_RELOAD", "false")
    # scoring (suspect_label: one inference per labelled image) runs when asked, not at start-up and on every save
    env.setdefault("MONAI_LABEL_AUTO_UPDATE_SCORING", "false")
    return env


def copy_sample_app(dest: Path) -> Path:
    """Copy MONAI Label's ``monaibundle`` sample app to ``dest`` with its own CLI (``monailabel apps --download``)."""
    dest = Path(dest)
    if dest.exists():
        raise FileExistsError(f"app folder {dest} already exists")
    dest.parent.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "monailabel.main",
        "apps",
        "--download",
        "--name",
        SAMPLE_APP,
        "--output",
        str(dest.parent),
    ]
    result = subprocess.run(cmd, capture_output=True, text=True)
    copied = dest.parent / SAMPLE_APP
    if result.returncode != 0 or not (copied / "main.py").is_file():
        raise RuntimeError(f"could not copy the {SAMPLE_APP} sample app:\n{result.stdout}{result.stderr}")
    if copied != dest:
        copied.rename(dest)
    return dest


def install_collection_app(app_dir: Path) -> Path:
    """Turn a copied ``monaibundle`` app into the collection's app (``tools/monailabel_app``), in place.

    The sample's ``main.py`` becomes ``monaibundle_main.py``; the collection's ``main.py`` (a subclass of the
    sample's app adding the ``suspect_label`` scoring method and strategy) and its modules are copied beside it.
    """
    app_dir = Path(app_dir)
    sample_main = app_dir / "main.py"
    if (app_dir / SAMPLE_MAIN).exists() or not sample_main.is_file():
        raise FileExistsError(f"{app_dir} is not a fresh copy of the {SAMPLE_APP} app (main.py, no {SAMPLE_MAIN})")
    sample_main.rename(app_dir / SAMPLE_MAIN)
    for name in COLLECTION_APP_FILES:
        shutil.copyfile(COLLECTION_APP_DIR / name, app_dir / name)
    return app_dir


def ensure_checkpoint(bundle_path: Path) -> bool:
    """Write an untrained ``models/model.pt`` from ``inference.yaml``'s ``network_def`` if none exists.

    Returns whether a checkpoint was written. MONAI Label lists a bundle's infer task only when the
    bundle has ``models/model.pt`` (or ``model.ts``); it loads the state dict under the key ``"model"``.
    """
    import torch
    from monai.bundle import ConfigParser

    from common.io import atomic_torch_save

    ckpt = bundle_path / "models" / "model.pt"
    if ckpt.exists():
        return False
    parser = ConfigParser()
    parser.read_config(str(bundle_path / "configs" / "inference.yaml"))
    parser["bundle_root"] = str(bundle_path)
    parser["device"] = "$torch.device('cpu')"
    sys.path.insert(0, str(bundle_path))  # the export's own copy of ``common``
    try:
        torch.manual_seed(0)
        network = parser.get_parsed_content("network_def", instantiate=True)
    finally:
        sys.path.remove(str(bundle_path))
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    atomic_torch_save({"model": network.state_dict()}, ckpt)
    return True


def install_bundles(app_dir: Path, bundles: tuple[str, ...]) -> None:
    """Export each bundle into ``app_dir/model/<name>`` (self-contained) and give it a checkpoint."""
    from common.export import export_bundle

    for name in bundles:
        dest = Path(app_dir) / "model" / name
        export_bundle(name, dest)
        if ensure_checkpoint(dest):
            print(f"{name}: no trained weights; wrote an untrained models/model.pt")


def _copy_pair(datalist_path: Path, entry: dict, studies_dir: Path, image_id: str) -> None:
    base = datalist_path.parent
    shutil.copyfile(base / entry["image"], studies_dir / f"{image_id}.nii.gz")
    shutil.copyfile(base / entry["label"], studies_dir / "labels" / "final" / f"{image_id}.nii.gz")


def write_studies(studies_dir: Path, bundles: tuple[str, ...], cache_dir: Path, seed: int = 0) -> list[str]:
    """Write a small demo datastore for ``bundles``: images plus ``labels/final`` label maps; return image ids.

    ``segmentation_resolution_bias``: one group-H (2 mm) and one group-L (3 mm) T1 volume of the embedded
    MNI population; ``label_error_refurbishment``: two 64x64 echo phantom images.
    """
    from common.data import EchoPhantomConfig, MNIPopulationConfig, generate_echo_phantom, generate_mni_population

    studies_dir = Path(studies_dir)
    (studies_dir / "labels" / "final").mkdir(parents=True, exist_ok=True)
    ids: list[str] = []
    if "segmentation_resolution_bias" in bundles:
        datalist_path = generate_mni_population(cache_dir, MNIPopulationConfig(n_train=1, n_val=0, n_test=0), seed)
        for entry in json.loads(datalist_path.read_text())["training"]:
            image_id = f"brain_{entry['group']}_{entry['subject']}"
            _copy_pair(datalist_path, entry, studies_dir, image_id)
            ids.append(image_id)
    if "label_error_refurbishment" in bundles:
        config = EchoPhantomConfig(num_train=2, num_val=0, num_test=0, size=64)
        datalist_path = generate_echo_phantom(cache_dir, config, seed)
        for entry in json.loads(datalist_path.read_text())["training"]:
            image_id = f"echo_{entry['id']}"
            _copy_pair(datalist_path, entry, studies_dir, image_id)
            ids.append(image_id)
    return ids


def prepare_app(workdir: Path, bundles: tuple[str, ...], studies: Path | None = None, seed: int = 0) -> LabelApp:
    """Create ``workdir/app`` (sample app + exported bundles) and the datastore; ``workdir`` must not hold an app."""
    workdir = Path(workdir).resolve()
    unknown = [b for b in bundles if not (REPO_ROOT / "bundles" / b / "configs").is_dir()]
    if unknown:
        raise ValueError(f"no bundle folder bundles/<name>/configs for: {', '.join(unknown)}")
    app_dir = install_collection_app(copy_sample_app(workdir / "app"))
    install_bundles(app_dir, bundles)
    if studies is None:
        studies_dir = workdir / "studies"
        write_studies(studies_dir, bundles, workdir / "data_cache", seed)
    else:
        studies_dir = Path(studies).resolve()
        if not studies_dir.is_dir():
            raise FileNotFoundError(f"studies folder {studies_dir} does not exist")
    return LabelApp(app_dir, studies_dir, tuple(bundles))


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def server_command(app: LabelApp, port: int, host: str = LOOPBACK, conf: dict[str, str] | None = None) -> list[str]:
    """The ``monailabel start_server`` command line (as ``python -m monailabel.main``) for ``app``."""
    settings = {"models": ",".join(app.bundles), "zoo_source": "github", "preload": "false", **(conf or {})}
    cmd = [sys.executable, "-m", "monailabel.main", "start_server", "--app", str(app.app_dir)]
    cmd += ["--studies", str(app.studies_dir), "--host", host, "--port", str(port)]
    for key, value in settings.items():
        cmd += ["--conf", key, value]
    return cmd


def start_server(app: LabelApp, port: int, host: str = LOOPBACK, log_file: Path | None = None, conf=None):
    """Start the server in its own process group; returns the ``Popen`` (stop it with :func:`stop_server`)."""
    out = open(log_file, "ab") if log_file else None  # noqa: SIM115 - kept open for the server's lifetime
    try:
        return subprocess.Popen(
            server_command(app, port, host, conf),
            cwd=app.app_dir.parent,
            env=server_env(),
            stdout=out,
            stderr=subprocess.STDOUT if out else None,
            start_new_session=True,
        )
    finally:
        if out:
            out.close()


def wait_until_ready(base_url: str, process: subprocess.Popen, timeout_s: float = 300.0) -> dict:
    """Poll ``GET /info/`` until it answers (at most ``timeout_s``); return its JSON."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"MONAI Label server exited with code {process.returncode} before it was ready")
        try:
            with urllib.request.urlopen(f"{base_url}/info/", timeout=10) as response:
                return json.loads(response.read())
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(1.0)
    raise TimeoutError(f"MONAI Label server at {base_url} not ready after {timeout_s:.0f} s")


def stop_server(process: subprocess.Popen, timeout_s: float = 30.0) -> None:
    """Stop the server by its PID: SIGTERM to its process group (server and children), then SIGKILL."""
    if process.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(process.pid, sig)  # start_new_session: the group id is the server's PID
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.tooling.labelserver", description=__doc__.splitlines()[0])
    parser.add_argument("--bundles", default=",".join(SEGMENTATION_BUNDLES), help="comma-separated bundle names")
    parser.add_argument("--workdir", type=Path, default=REPO_ROOT / "runs" / "label", help="app, studies and logs")
    parser.add_argument("--studies", type=Path, default=None, help="NIfTI studies folder (default: demo images)")
    parser.add_argument("--host", default=LOOPBACK, help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--fresh", action="store_true", help="rebuild WORKDIR/app (drops weights trained there)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    if not monailabel_available():
        print("error: monailabel is not installed; run `nox -s label`", file=sys.stderr)
        return 1
    bundles = tuple(b.strip() for b in args.bundles.split(",") if b.strip())
    workdir = args.workdir.resolve()
    if args.fresh and workdir.exists():
        shutil.rmtree(workdir / "app", ignore_errors=True)
    if (workdir / "app" / "main.py").is_file():
        studies = args.studies or workdir / "studies"
        app = LabelApp(workdir / "app", studies.resolve(), bundles)
        missing = [b for b in bundles if not app.bundle_dir(b).is_dir()]
        if missing:
            install_bundles(app.app_dir, tuple(missing))
        print(f"reusing {app.app_dir} (--fresh rebuilds it)")
    else:
        try:
            app = prepare_app(workdir, bundles, args.studies, args.seed)
        except (ValueError, FileNotFoundError, FileExistsError, RuntimeError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
    if len(bundles) > 1:
        print("note: MONAI Label trains on every labelled study; to train, serve one bundle with its own studies")

    def _interrupt(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, _interrupt)  # also when started in the background, where SIGINT is ignored
    signal.signal(signal.SIGTERM, _interrupt)
    log_file = workdir / "server.log"
    process = start_server(app, args.port, args.host, log_file=log_file)
    print(f"server pid {process.pid}, log {log_file}")
    try:
        info = wait_until_ready(f"http://{args.host}:{args.port}", process)
        url = f"http://{args.host}:{args.port}"
        print(f"MONAI Label serving {', '.join(info.get('models', {}))} at {url} (Ctrl-C stops)", flush=True)
        process.wait()
    except KeyboardInterrupt:
        pass
    except (RuntimeError, TimeoutError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    finally:
        stop_server(process)
    return 0


if __name__ == "__main__":
    sys.exit(main())

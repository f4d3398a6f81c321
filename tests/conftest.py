"""Shared fixtures: where the real data lives (skip cleanly when it is absent), synthetic images, a headless napari
viewer."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """The shared data folder: $CELLPOINT_SHARED_DATA, else ../shared/data beside the repo."""
    return Path(os.environ.get("CELLPOINT_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture
def shared_data() -> Path:
    root = shared_data_dir()
    if not root.is_dir():
        pytest.skip(f"shared data not found at {root} (set CELLPOINT_SHARED_DATA)")
    return root


def synthetic_nuclei(shape=(96, 128), n=6, radius=9, seed=0):
    """A fluorescence-like test image: n bright discs on a dark noisy background.

    Returns (image float32 (H,W), labels uint32 (H,W), centres (n,2) row/col)."""
    import cv2
    import numpy as np
    rng = np.random.default_rng(seed)
    image = np.zeros(shape, np.float32)
    labels = np.zeros(shape, np.uint32)
    centres = []
    while len(centres) < n:
        c = rng.integers(radius + 2, np.array(shape) - radius - 2)
        if all(np.hypot(*(c - p)) > 2 * radius + 3 for p in centres):
            centres.append(c)
            cv2.circle(image, (int(c[1]), int(c[0])), radius, 1.0, -1)
            cv2.circle(labels.view(np.int32), (int(c[1]), int(c[0])), radius, len(centres), -1)
    image = image * 200 + 20 + rng.normal(0, 5, shape).astype(np.float32)
    return image.astype(np.float32), labels, np.array(centres)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """A checkpoint of a small network trained for a few steps on synthetic nuclei (fast, not accurate)."""
    pytest.importorskip("torch")
    from cellpoint.training.checkpoint import save_checkpoint
    from cellpoint.training.methods.objectness.config import TrainConfig
    from cellpoint.training.methods.objectness.train import prepare_example, train
    cfg = TrainConfig(steps=3, batch=2, crop=64, widths=(4, 8), diameter=18.0)
    image, _, centres = synthetic_nuclei()
    checkpoint = train([prepare_example(image, centres, None, cfg)], cfg, log=lambda *_: None)
    checkpoint["training_data"] = [{"folder": "synthetic"}]
    return save_checkpoint(checkpoint, tmp_path_factory.mktemp("ckpt") / "tiny.pt")


@pytest.fixture(scope="session")
def tiny_package(tiny_checkpoint, tmp_path_factory):
    """A model package exported from tiny_checkpoint, with one synthetic sample image."""
    import tifffile
    from click.testing import CliRunner
    from cellpoint.export.cli import export
    root = tmp_path_factory.mktemp("pkg")
    sample = root / "sample.tif"
    tifffile.imwrite(sample, synthetic_nuclei(seed=1)[0])
    out = root / "tiny-nuclei"
    result = CliRunner().invoke(export, [str(tiny_checkpoint), "--out", str(out), "--description", "tiny test model",
                                         "--sample", str(sample), "--sample-licence", "synthetic"])
    assert result.exit_code == 0, result.output
    return out


# ------------------------------------------------------------------------------- napari viewers (headless)

_PROBE = """
import napari, numpy
viewer = napari.Viewer(show=False)
viewer.add_image(numpy.zeros((8, 8), numpy.float32))
viewer.close()
"""


@pytest.fixture(scope="module")
def qt_display():
    """An environment where a napari viewer can start headless: Qt's offscreen platform, with an X server
    for OpenGL (Xvfb started here when there is no $DISPLAY; it exits by itself 30 s after its last client
    leaves). Skips, saying why, when napari or pytest-qt is missing or a viewer cannot start."""
    pytest.importorskip("napari", reason="napari is not installed (pip install 'cellpoint[napari]')")
    pytest.importorskip("pytestqt", reason="pytest-qt is not installed (napari's make_napari_viewer needs it)")
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    if not os.environ.get("DISPLAY") and shutil.which("Xvfb"):
        read, write = os.pipe()
        subprocess.Popen(["Xvfb", "-displayfd", str(write), "-screen", "0", "1024x768x24", "-nolisten", "tcp",
                          "-terminate", "30"], pass_fds=(write,), stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True)
        os.close(write)
        with os.fdopen(read) as f:
            number = f.readline().strip()
        if number:
            os.environ["DISPLAY"] = f":{number}"
    probe = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=120)
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["no message"])[-1]
        pytest.skip(f"a napari viewer cannot start here (QT_QPA_PLATFORM={os.environ['QT_QPA_PLATFORM']}, "
                    f"DISPLAY={os.environ.get('DISPLAY', 'unset')}; napari needs OpenGL: run under an X server such "
                    f"as Xvfb): {last}")


@pytest.fixture
def viewer(qt_display, request):
    """A napari viewer from napari's own test fixture (cleaned up by it)."""
    return request.getfixturevalue("make_napari_viewer")()




def add_plugin_widget(viewer, display_name: str):
    """The cellpoint dock widget `display_name` (as napari.yaml names it) added to `viewer` the way napari
    adds it from the manifest (registered here when the package was installed without the entry point)."""
    import npe2
    manager = npe2.PluginManager.instance()
    try:
        manager.get_manifest("cellpoint")
    except KeyError:
        manager.register(npe2.PluginManifest.from_file(REPO / "napari_plugin" / "napari.yaml"))
    _, widget = viewer.window.add_plugin_dock_widget("cellpoint", display_name)
    return widget

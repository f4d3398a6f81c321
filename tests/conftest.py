"""Shared fixtures: where the real data lives (skip cleanly when it is absent)."""
from __future__ import annotations

import os
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

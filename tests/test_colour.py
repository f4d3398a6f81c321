"""to_model_channels: alpha, colour → luminance, polarity (inverting bright-background images)."""
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from cellpoint.runtime.colour import (background_position, invert, is_bright_background, luminance,
                                      to_model_channels)
from cellpoint.runtime.image_io import read_image

REPO = Path(__file__).resolve().parents[1]


def _fluorescence(seed=0):
    """uint16 (96,128): bright discs on a dark noisy background."""
    rng = np.random.default_rng(seed)
    image = np.zeros((96, 128), np.float32)
    for y, x in ((20, 20), (30, 70), (60, 40), (70, 100), (50, 110)):
        cv2.circle(image, (x, y), 9, 3000.0, -1)
    return (image + 500 + rng.normal(0, 30, image.shape)).astype(np.uint16)


def _he(seed=0):
    """uint8 (96,128,3) H&E-like: dark purple nuclei on a bright pink background; and the nuclei mask."""
    rng = np.random.default_rng(seed)
    mask = np.zeros((96, 128), np.uint8)
    for y, x in ((20, 20), (30, 70), (60, 40), (70, 100)):
        cv2.circle(mask, (x, y), 9, 1, -1)
    image = np.empty((96, 128, 3), np.float32)
    image[:] = (235, 190, 215)
    image[mask > 0] = (90, 40, 130)
    image += rng.normal(0, 6, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8), mask > 0


def test_luminance_is_bt601_float32():
    rgb = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [10, 10, 10]]], np.uint8)
    out = luminance(rgb)
    assert out.dtype == np.float32 and out.shape == (1, 4)
    assert np.allclose(out, [[0.299 * 255, 0.587 * 255, 0.114 * 255, 10]], atol=1e-3)


def test_rgba_drops_alpha_and_rgb_becomes_luminance_for_one_channel_models():
    rgb, _ = _he()
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    out, note = to_model_channels(rgba, 3)
    assert note == "alpha dropped" and np.array_equal(out, rgb)
    out, note = to_model_channels(rgba, 1)
    assert note == "rgba→luminance" and out.dtype == np.float32 and np.allclose(out, luminance(rgb))
    out, note = to_model_channels(rgb, 1)
    assert note == "rgb→luminance" and out.shape == rgb.shape[:2]


def test_multichannel_images_for_multichannel_models_are_untouched():
    rgb, _ = _he()
    for image, n in ((rgb, 3), (np.dstack([rgb, rgb[..., :1]]), 4), (rgb[..., :2], 2)):
        out, note = to_model_channels(image, n, "bright")
        assert out is image and note == ""
    five = np.zeros((8, 9, 5), np.uint16)  # does not fit: left for to_channels_first to refuse
    assert to_model_channels(five, 1, "bright")[0] is five


def test_background_position_separates_fluorescence_phase_and_brightfield():
    fluo = _fluorescence()
    he, _ = _he()
    assert background_position(fluo) < 0.2 and not is_bright_background(fluo)
    assert background_position(luminance(he)) > 0.8 and is_bright_background(luminance(he))
    # phase contrast: mid-grey background with bright halos and dark cells, median near the middle
    rng = np.random.default_rng(0)
    phase = rng.normal(1000, 40, (96, 128))
    phase[10:30, 10:40] = 700
    phase[40:60, 50:80] = 1500
    assert 0.3 < background_position(phase) < 0.5 and not is_bright_background(phase)
    assert background_position(np.full((5, 5), 9)) == 0.0 and not is_bright_background(np.full((5, 5), 9))


def test_bright_polarity_inverts_brightfield_so_nuclei_are_bright():
    he, nuclei = _he()
    out, note = to_model_channels(he, 1, "bright")
    assert note == "rgb→luminance, inverted" and out.dtype == np.float32
    assert out[nuclei].mean() > out[~nuclei].mean() + 50
    gray = luminance(he).astype(np.uint8)
    out, note = to_model_channels(gray, 1, "bright")
    assert note == "inverted" and out.dtype == np.float32 and np.array_equal(out, gray.max() - gray.astype(np.float32))
    fluo = _fluorescence()
    out, note = to_model_channels(fluo, 1, "bright")  # already bright on dark: untouched
    assert out is fluo and note == ""


def test_dark_polarity_is_the_mirror_and_any_never_inverts():
    fluo = _fluorescence()
    out, note = to_model_channels(fluo, 1, "dark")
    assert note == "inverted" and np.array_equal(out, invert(fluo))
    he, _ = _he()
    assert to_model_channels(he, 1, "dark")[1] == "rgb→luminance"
    for image in (fluo, luminance(he)):
        assert to_model_channels(image, 1, "any")[1] == ""
    assert to_model_channels(fluo, 3, "dark")[1] == "inverted"  # gray for a 3-channel model: still one image
    with pytest.raises(ValueError, match="polarity"):
        to_model_channels(fluo, 1, "light")


def test_bundled_samples_keep_their_polarity():
    # real images: fluorescence nuclei (median position ~0.02) and phase contrast (~0.36) are not inverted
    samples = sorted(REPO.glob("model_cards/*/sample*_input.*"))
    assert samples
    for path in samples:
        image = read_image(path)
        gray = luminance(image) if image.ndim == 3 else image
        assert not is_bright_background(gray), path


def test_dsb2018_brightfield_is_bright_and_fluorescence_is_not(shared_data):
    folder = shared_data / "dsb2018_bbbc038"
    if not (folder / "annotations_coco.json").is_file():
        pytest.skip(f"{folder} not found")
    images = json.loads((folder / "annotations_coco.json").read_text())["images"]
    for record in images:
        image = read_image(folder / record["file_name"])
        gray = to_model_channels(image, 1)[0]
        assert is_bright_background(gray) == (record["dsb_kind"] != "gray_dark"), record["file_name"]

"""Image readers on corrupted files (Hypothesis): `read_image` returns an array or raises ImageReadError
naming the file — no other exception, no hang — whatever bytes a TIFF or PNG holds."""
from __future__ import annotations

import tempfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cellpoint.runtime.image_io import ImageReadError, read_image


def _valid_files() -> dict[str, bytes]:
    """Small valid files: plain and zlib-compressed 16-bit TIFF, RGB TIFF, gray and RGBA PNG."""
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 4000, (24, 20)).astype(np.uint16)
    out = {}
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        tifffile.imwrite(folder / "plain.tif", gray)
        tifffile.imwrite(folder / "zlib.tif", gray, compression="zlib")
        tifffile.imwrite(folder / "rgb.tif", rng.integers(0, 255, (16, 12, 3)).astype(np.uint8))
        cv2.imwrite(str(folder / "gray.png"), (gray // 16).astype(np.uint8))
        cv2.imwrite(str(folder / "rgba.png"), rng.integers(0, 255, (10, 14, 4)).astype(np.uint8))
        for path in folder.iterdir():
            out[path.name] = path.read_bytes()
    return out


VALID = _valid_files()


@st.composite
def corrupted(draw):
    """(file name, bytes): a valid file with some bytes changed, then maybe cut short or lengthened."""
    name = draw(st.sampled_from(sorted(VALID)))
    data = bytearray(VALID[name])
    for _ in range(draw(st.integers(1, 8))):
        # header and directory bytes (the first and last ~200) matter most; hit them more often
        where = draw(st.one_of(st.integers(0, min(199, len(data) - 1)),
                               st.integers(max(0, len(data) - 200), len(data) - 1),
                               st.integers(0, len(data) - 1)))
        data[where] = draw(st.integers(0, 255))
    cut = draw(st.sampled_from(["none", "truncate", "append"]))
    if cut == "truncate":
        data = data[:draw(st.integers(0, len(data)))]
    elif cut == "append":
        data += draw(st.binary(max_size=64))
    return name, bytes(data)


@pytest.mark.timeout(120)
@settings(max_examples=300, deadline=2000, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(corrupted())
def test_corrupted_images_give_an_array_or_a_read_error(case):
    name, data = case
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        path.write_bytes(data)
        try:
            image = read_image(path)
        except ImageReadError as error:
            assert str(path) in str(error)
        else:
            assert isinstance(image, np.ndarray) and image.ndim in (2, 3) and min(image.shape[:2]) >= 2

"""read_image / atomic writers on small synthetic files."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import tifffile

from cellpoint.runtime.image_io import (ImageReadError, atomic_write, read_image, write_labels_tif,
                                        write_png)


def _ramp(h=12, w=17, dtype=np.uint8):
    return (np.arange(h * w).reshape(h, w) % 200).astype(dtype)


def test_gray_png_and_16bit_png(tmp_path):
    gray = _ramp()
    cv2.imwrite(str(tmp_path / "g.png"), gray)
    out = read_image(tmp_path / "g.png")
    assert out.dtype == np.uint8 and np.array_equal(out, gray)
    deep = _ramp(dtype=np.uint16) * 300
    cv2.imwrite(str(tmp_path / "d.png"), deep)
    out = read_image(tmp_path / "d.png")
    assert out.dtype == np.uint16 and np.array_equal(out, deep)


def test_colour_png_is_rgb_order(tmp_path):
    rgb = np.zeros((8, 9, 3), np.uint8)
    rgb[..., 0] = 10
    rgb[..., 1] = 20
    rgb[..., 2] = 30
    write_png(tmp_path / "c.png", rgb)
    out = read_image(tmp_path / "c.png")
    assert out.shape == (8, 9, 3) and np.array_equal(out, rgb)
    assert tuple(cv2.imread(str(tmp_path / "c.png"))[0, 0]) == (30, 20, 10)  # on disk: BGR


def test_gray_stored_as_rgba_collapses_to_one_channel(tmp_path):
    gray = _ramp()
    rgba = np.dstack([gray, gray, gray, np.full_like(gray, 255)])
    write_png(tmp_path / "f.png", rgba)
    out = read_image(tmp_path / "f.png")
    assert out.shape == gray.shape and np.array_equal(out, gray)
    # a varying alpha means the file is really RGBA: keep all four channels
    rgba[0, 0, 3] = 7
    write_png(tmp_path / "a.png", rgba)
    assert read_image(tmp_path / "a.png").shape == gray.shape + (4,)


def test_channels_selects_and_reorders(tmp_path):
    rgb = np.stack([_ramp(), _ramp() + 1, _ramp() + 2], axis=-1)
    write_png(tmp_path / "c.png", rgb)
    out = read_image(tmp_path / "c.png", channels=[2, 0])
    assert out.shape == (12, 17, 2)
    assert np.array_equal(out[..., 0], rgb[..., 2]) and np.array_equal(out[..., 1], rgb[..., 0])
    assert np.array_equal(read_image(tmp_path / "c.png", channels=[1]), rgb[..., 1])
    with pytest.raises(ImageReadError, match=r"c\.png.*out of range"):
        read_image(tmp_path / "c.png", channels=[3])


def test_tiff_dtypes_and_channel_first(tmp_path):
    for dtype in (np.uint8, np.uint16, np.float32):
        image = _ramp().astype(dtype)
        tifffile.imwrite(tmp_path / "x.tif", image)
        out = read_image(tmp_path / "x.tif")
        assert out.dtype == dtype and np.array_equal(out, image)
    planar = np.stack([_ramp(dtype=np.uint16), _ramp(dtype=np.uint16) * 2])  # (2,H,W)
    tifffile.imwrite(tmp_path / "p.tif", planar)
    out = read_image(tmp_path / "p.tif")
    assert out.shape == (12, 17, 2) and np.array_equal(out[..., 1], planar[1])


def test_tiff_multipage_channels_and_singleton_axes(tmp_path):
    pages = np.stack([_ramp(), _ramp() + 5, _ramp() + 9]).astype(np.uint8)  # 3 pages, not RGB
    with tifffile.TiffWriter(tmp_path / "m.tif") as tif:
        for page in pages:
            tif.write(page, contiguous=False)
    out = read_image(tmp_path / "m.tif")
    assert out.shape == (12, 17, 3) and np.array_equal(out[..., 2], pages[2])
    tifffile.imwrite(tmp_path / "plain.tif", pages, photometric="minisblack", metadata=None)  # pages without shape metadata
    assert np.array_equal(read_image(tmp_path / "plain.tif"), np.moveaxis(pages, 0, -1))
    tifffile.imwrite(tmp_path / "s.tif", _ramp()[None, :, :, None])
    assert read_image(tmp_path / "s.tif").shape == (12, 17)


def test_tiff_stack_rejected(tmp_path):
    tifffile.imwrite(tmp_path / "z.tif", np.zeros((20, 32, 32), np.uint8))
    with pytest.raises(ImageReadError, match=r"z\.tif.*z-stack"):
        read_image(tmp_path / "z.tif")


def test_errors_name_file_and_reason(tmp_path):
    with pytest.raises(ImageReadError, match=r"nope\.png: file not found"):
        read_image(tmp_path / "nope.png")
    (tmp_path / "x.gif").write_bytes(b"GIF89a")
    with pytest.raises(ImageReadError, match=r"x\.gif: unsupported extension"):
        read_image(tmp_path / "x.gif")
    (tmp_path / "bad.png").write_bytes(b"not a png at all")
    with pytest.raises(ImageReadError, match=r"bad\.png: cannot decode"):
        read_image(tmp_path / "bad.png")
    (tmp_path / "bad.tif").write_bytes(b"II*\x00garbage")
    with pytest.raises(ImageReadError, match=r"bad\.tif: cannot read TIFF"):
        read_image(tmp_path / "bad.tif")
    image = np.ones((5, 6), np.float32)
    image[2, 3] = np.nan
    tifffile.imwrite(tmp_path / "nan.tif", image)
    with pytest.raises(ImageReadError, match=r"nan\.tif: float image contains 1 NaN"):
        read_image(tmp_path / "nan.tif")
    tifffile.imwrite(tmp_path / "line.tif", np.zeros((1, 9), np.uint8))
    with pytest.raises(ImageReadError, match=r"line\.tif.*2-D"):
        read_image(tmp_path / "line.tif")
    assert issubclass(ImageReadError, ValueError)


def test_write_labels_tif_dtype_and_roundtrip(tmp_path):
    small = np.zeros((6, 7), np.int64)
    small[1:3, 2:5] = 3
    write_labels_tif(tmp_path / "a.tif", small)
    back = tifffile.imread(tmp_path / "a.tif")
    assert back.dtype == np.uint16 and np.array_equal(back, small)
    with tifffile.TiffFile(tmp_path / "a.tif") as tif:
        assert tif.pages[0].compression == tifffile.COMPRESSION.ADOBE_DEFLATE
    big = small.copy()
    big[0, 0] = 70000
    write_labels_tif(tmp_path / "b.tif", big)
    assert tifffile.imread(tmp_path / "b.tif").dtype == np.uint32
    with pytest.raises(ValueError, match="integers"):
        write_labels_tif(tmp_path / "c.tif", small.astype(np.float32))
    assert not (tmp_path / "c.tif").exists()


def test_atomic_write_replaces_on_success_and_cleans_up_on_failure(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with atomic_write(target) as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".txt" and tmp != target
        tmp.write_text("new")
        assert target.read_text() == "old"
    assert target.read_text() == "new"
    with pytest.raises(RuntimeError):
        with atomic_write(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("writer crashed")
    assert target.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_write_png_rejects_float(tmp_path):
    with pytest.raises(ValueError, match=r"f\.png.*uint8"):
        write_png(tmp_path / "f.png", np.zeros((4, 4), np.float32))

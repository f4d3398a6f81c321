"""read_image / read_planes / atomic writers on small synthetic files."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import tifffile

from cellpoint.runtime.image_io import (ImageReadError, atomic_write, read_image, read_planes,
                                        write_labels_tif, write_png)


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
    # (2,H,W) as true planar samples (one page, 'S' axis) is channels. (Written without planarconfig, tifffile
    # stores it as 2 pages, axes 'QYX': that used to read as channels too, and is now a stack, see below.)
    planar = np.stack([_ramp(dtype=np.uint16), _ramp(dtype=np.uint16) * 2])  # (2,H,W)
    tifffile.imwrite(tmp_path / "p.tif", planar, photometric="minisblack", planarconfig="separate")
    out = read_image(tmp_path / "p.tif")
    assert out.shape == (12, 17, 2) and np.array_equal(out[..., 1], planar[1])


def test_tiff_multipage_stacks_and_singleton_axes(tmp_path):
    # Was test_tiff_multipage_channels_and_singleton_axes: equal grayscale pages of unknown meaning used to be
    # read as channels. New rule: they are a stack (planes), refused by read_image unless `channels` says
    # they are channels, and split by read_planes. Dropping singleton axes is unchanged.
    pages = np.stack([_ramp(), _ramp() + 5, _ramp() + 9]).astype(np.uint8)  # 3 pages, not RGB
    with tifffile.TiffWriter(tmp_path / "m.tif") as tif:
        for page in pages:
            tif.write(page, contiguous=False)  # pages written one by one: 3 series, axes 'QYX'
    tifffile.imwrite(tmp_path / "plain.tif", pages, photometric="minisblack", metadata=None)  # axes 'IYX'
    for name in ("m.tif", "plain.tif"):
        with pytest.raises(ImageReadError, match=rf"{name}: z-stack or time series of 3 planes .*--planes.*--channels"):
            read_image(tmp_path / name)
        out = read_image(tmp_path / name, channels=[0, 1, 2])  # the user says they are channels: as before
        assert out.shape == (12, 17, 3) and np.array_equal(out, np.moveaxis(pages, 0, -1))
        planes = read_planes(tmp_path / name)
        assert [label for label, _ in planes] == ["p0", "p1", "p2"]
        assert all(np.array_equal(plane, page) for (_, plane), page in zip(planes, pages))
    tifffile.imwrite(tmp_path / "s.tif", _ramp()[None, :, :, None])
    assert read_image(tmp_path / "s.tif").shape == (12, 17)
    assert [(label, a.shape) for label, a in read_planes(tmp_path / "s.tif")] == [("", (12, 17))]


def test_tiff_stack_rejected(tmp_path):
    # Still refused; the message now says what to do (--planes), and not to try --channels on 20 planes.
    tifffile.imwrite(tmp_path / "z.tif", np.zeros((20, 32, 32), np.uint8))
    with pytest.raises(ImageReadError, match=r"z\.tif: z-stack or time series of 20 planes.*--planes$"):
        read_image(tmp_path / "z.tif")
    assert len(read_planes(tmp_path / "z.tif")) == 20


def _planes(n=3, dtype=np.uint16):
    return np.stack([_ramp(dtype=dtype) + 10 * k for k in range(n)])


def test_imagej_z_stack_is_a_stack_not_channels(tmp_path):
    stack = _planes(3)
    tifffile.imwrite(tmp_path / "z.tif", stack, imagej=True, metadata={"axes": "ZYX"})
    with pytest.raises(ImageReadError) as error:
        read_image(tmp_path / "z.tif")
    assert str(error.value) == (f"{tmp_path / 'z.tif'}: z-stack of 3 planes (axes 'ZYX'); segment its planes one "
                                "by one with --planes, or pick channels with --channels if they are channels")
    planes = read_planes(tmp_path / "z.tif")
    assert [label for label, _ in planes] == ["z0", "z1", "z2"]
    assert all(a.shape == (12, 17) and a.dtype == np.uint16 and np.array_equal(a, s)
               for (_, a), s in zip(planes, stack))
    out = read_image(tmp_path / "z.tif", channels=[2, 0])  # --channels on a stack: planes taken as channels
    assert np.array_equal(out, np.stack([stack[2], stack[0]], axis=-1))


def test_time_series_and_time_lapse_z_stack(tmp_path):
    tifffile.imwrite(tmp_path / "t.tif", _planes(2), imagej=True, metadata={"axes": "TYX"})
    with pytest.raises(ImageReadError, match=r"t\.tif: time series of 2 planes \(axes 'TYX'\)"):
        read_image(tmp_path / "t.tif")
    assert [label for label, _ in read_planes(tmp_path / "t.tif")] == ["t0", "t1"]
    tz = _planes(6).reshape(2, 3, 12, 17)
    tifffile.imwrite(tmp_path / "tz.tif", tz, imagej=True, metadata={"axes": "TZYX"})
    planes = read_planes(tmp_path / "tz.tif")
    assert [label for label, _ in planes] == ["t0z0", "t0z1", "t0z2", "t1z0", "t1z1", "t1z2"]
    assert np.array_equal(dict(planes)["t1z0"], tz[1, 0])
    with pytest.raises(ImageReadError, match=r"6 planes .*cannot be read as channels"):
        read_image(tmp_path / "tz.tif", channels=[0])  # two stack axes are never channels


def test_stack_of_multichannel_planes(tmp_path):
    zc = _planes(6).reshape(3, 2, 12, 17)
    tifffile.imwrite(tmp_path / "zc.tif", zc, imagej=True, metadata={"axes": "ZCYX"})
    with pytest.raises(ImageReadError, match=r"z-stack of 3 planes of 2 channels \(axes 'ZCYX'\)"):
        read_image(tmp_path / "zc.tif")
    planes = read_planes(tmp_path / "zc.tif")
    assert [(label, a.shape) for label, a in planes] == [(f"z{k}", (12, 17, 2)) for k in range(3)]
    assert np.array_equal(planes[1][1][..., 1], zc[1, 1])
    assert np.array_equal(read_planes(tmp_path / "zc.tif", channels=[1])[2][1], zc[2, 1])


def test_true_channel_axes_still_read_as_channels(tmp_path):
    cyx = _planes(3)
    tifffile.imwrite(tmp_path / "ij.tif", cyx, imagej=True, metadata={"axes": "CYX"})
    tifffile.imwrite(tmp_path / "ome.ome.tif", cyx, metadata={"axes": "CYX"})
    for name in ("ij.tif", "ome.ome.tif"):
        out = read_image(tmp_path / name)
        assert out.shape == (12, 17, 3) and np.array_equal(out, np.moveaxis(cyx, 0, -1)), name
        assert [label for label, _ in read_planes(tmp_path / name)] == [""]
    rgb = np.stack([_ramp(), _ramp() + 1, _ramp() + 2], axis=-1)
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    out = read_image(tmp_path / "rgb.tif")
    assert out.shape == (12, 17, 3) and np.array_equal(out, rgb)
    rgba = np.dstack([rgb, np.full_like(rgb[..., 0], 200)])
    rgba[0, 0, 3] = 0
    tifffile.imwrite(tmp_path / "rgba.tif", rgba, photometric="rgb", extrasamples=["unassalpha"])
    assert np.array_equal(read_image(tmp_path / "rgba.tif"), rgba)


def test_read_planes_of_ordinary_images(tmp_path):
    rgb = np.stack([_ramp(), _ramp() + 1, _ramp() + 2], axis=-1)
    write_png(tmp_path / "c.png", rgb)
    [(label, out)] = read_planes(tmp_path / "c.png")
    assert label == "" and np.array_equal(out, rgb)
    tifffile.imwrite(tmp_path / "g.tif", _ramp())
    assert [(label, a.shape) for label, a in read_planes(tmp_path / "g.tif", channels=[0])] == [("", (12, 17))]
    with pytest.raises(ImageReadError, match=r"nope\.tif: file not found"):
        read_planes(tmp_path / "nope.tif")


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
    with pytest.raises(ImageReadError, match=r"line\.tif.*too small to segment"):
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


def test_a_numpy_z_stack_saved_as_it_is_is_a_stack_not_colour(tmp_path):
    """tifffile.imwrite of a (3,H,W) array stores planar RGB; with no metadata saying so it is not taken as
    colour (the planes would silently become luminance), but as planes: refused without --planes or
    --channels, split by read_planes."""
    planes = np.stack([_ramp(), _ramp() + 5, _ramp() + 9]).astype(np.uint8)
    tifffile.imwrite(tmp_path / "z.tif", planes)
    with pytest.raises(ImageReadError, match=r"z\.tif: .*3 planes.*--planes"):
        read_image(tmp_path / "z.tif")
    assert [label for label, _ in read_planes(tmp_path / "z.tif")] == ["p0", "p1", "p2"]
    assert read_image(tmp_path / "z.tif", channels=[0, 1, 2]).shape == planes.shape[1:] + (3,)
    rgb = np.moveaxis(planes, 0, -1)  # interleaved RGB stays colour
    tifffile.imwrite(tmp_path / "rgb.tif", rgb)
    assert read_image(tmp_path / "rgb.tif").shape == rgb.shape

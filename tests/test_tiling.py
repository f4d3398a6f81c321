"""predict_tiled: stitched tiles equal whole-image inference for a local filter."""
from __future__ import annotations

import numpy as np
import pytest

from cellpoint.runtime.tiling import predict_tiled, tile_spans


def _box_blur(x: np.ndarray, radius: int = 2) -> np.ndarray:
    """(..., h, w) → same shape: mean over a (2·radius+1)² window, reflect padding."""
    pad = [(0, 0)] * (x.ndim - 2) + [(radius, radius), (radius, radius)]
    p = np.pad(x, pad, mode="reflect")
    h, w = x.shape[-2:]
    out = np.zeros_like(x)
    for dy in range(2 * radius + 1):
        for dx in range(2 * radius + 1):
            out += p[..., dy:dy + h, dx:dx + w]
    return out / (2 * radius + 1) ** 2


class _Recorder:
    """A `run` that applies a 5×5 box blur and records the shapes it is called with."""

    def __init__(self):
        self.shapes = []

    def __call__(self, batch):
        assert batch.dtype == np.float32 and batch.ndim == 4 and batch.shape[0] == 1
        self.shapes.append(batch.shape)
        blurred = _box_blur(batch)
        return {"blur": blurred, "mean": blurred.mean(axis=1, keepdims=True)}


@pytest.mark.parametrize("channels", [1, 3])
def test_tiled_equals_whole_image_for_a_local_filter(channels):
    rng = np.random.default_rng(channels)
    image = rng.random((channels, 300, 500)).astype(np.float32)
    run = _Recorder()
    out = predict_tiled(run, image, tile=128, overlap=32, multiple=16)
    whole = _box_blur(image)
    assert set(out) == {"blur", "mean"}
    assert out["blur"].shape == (channels, 300, 500) and out["blur"].dtype == np.float32
    assert out["mean"].shape == (1, 300, 500)
    np.testing.assert_allclose(out["blur"], whole, rtol=0, atol=1e-6)
    np.testing.assert_allclose(out["mean"][0], whole.mean(axis=0), rtol=0, atol=1e-6)
    assert len(run.shapes) > 1
    for shape in run.shapes:
        assert shape[1] == channels and shape[2] <= 128 and shape[3] <= 128
        assert shape[2] % 16 == 0 and shape[3] % 16 == 0


def test_small_image_runs_once_padded_to_the_multiple():
    image = np.random.default_rng(0).random((2, 37, 50)).astype(np.float32)
    run = _Recorder()
    out = predict_tiled(run, image, tile=128, overlap=32, multiple=16)
    assert run.shapes == [(1, 2, 48, 64)]
    np.testing.assert_allclose(out["blur"], _box_blur(image), rtol=0, atol=1e-6)


def test_one_long_axis_tiles_only_that_axis():
    image = np.random.default_rng(1).random((1, 40, 300)).astype(np.float32)
    run = _Recorder()
    out = predict_tiled(run, image, tile=96, overlap=32, multiple=16)
    assert {s[2] for s in run.shapes} == {48} and {s[3] for s in run.shapes} == {96}
    np.testing.assert_allclose(out["blur"], _box_blur(image), rtol=0, atol=1e-6)


def test_every_pixel_comes_from_at_least_half_the_overlap_inside_its_tile():
    """A `run` that reports each pixel's distance to its tile's nearest edge: after stitching, pixels
    away from the image border are all >= overlap/2 from a tile edge."""
    def distance_to_edge(batch):
        h, w = batch.shape[2:]
        yy, xx = np.indices((h, w))
        d = np.minimum.reduce([yy, xx, h - 1 - yy, w - 1 - xx]).astype(np.float32)
        return {"d": d[None, None]}

    overlap = 24
    out = predict_tiled(distance_to_edge, np.zeros((1, 333, 250), np.float32), tile=112, overlap=overlap)
    half = overlap // 2
    assert out["d"][0, half:-half, half:-half].min() >= half


def test_tile_spans_cover_the_axis_once():
    for length, tile, overlap in [(304, 128, 32), (512, 128, 32), (1024, 1024, 64), (2064, 1024, 64)]:
        spans = tile_spans(length, tile, overlap, 16)
        owned = np.zeros(length, int)
        for start, stop, keep0, keep1 in spans:
            assert stop - start == min(tile, length) and start % 16 == 0
            assert start <= keep0 < keep1 <= stop
            owned[keep0:keep1] += 1
        assert np.all(owned == 1)


def test_bad_output_shape_is_reported():
    with pytest.raises(ValueError, match="expected"):
        predict_tiled(lambda b: {"x": b[:, :, ::2, :]}, np.zeros((1, 64, 64), np.float32), tile=32,
                      overlap=8)


def _pool(x: np.ndarray, s: int) -> np.ndarray:
    """(1,C,h,w) → (1,C,h/s,w/s): the mean of each s×s cell (a stride-s grid output)."""
    n, c, h, w = x.shape
    return x.reshape(n, c, h // s, s, w // s, s).mean(axis=(3, 5))


def test_grid_outputs_are_stitched_on_their_own_grid():
    image = np.random.default_rng(3).random((1, 200, 300)).astype(np.float32)
    out = predict_tiled(lambda b: {"grid": _pool(b, 16), "dense": b}, image, tile=96, overlap=32, multiple=16)
    padded = np.pad(image, ((0, 0), (0, 8), (0, 4)), mode="reflect")
    assert out["grid"].shape == (1, 13, 19) and out["dense"].shape == (1, 200, 300)
    np.testing.assert_allclose(out["grid"], _pool(padded[None], 16)[0], rtol=0, atol=1e-6)

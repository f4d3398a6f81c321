"""LACSS decoding in the runtime (cellpoint.runtime.decoders.location_masks) on small synthetic outputs."""
from __future__ import annotations

import numpy as np

from cellpoint.runtime.decoders.location_masks import (LocationMasksParams, decode_location_masks, decode_locations,
                                                      gather_windows)


def _proposals(shape, stride, locations, value=0.9):
    """Score grid and offsets that encode `locations` (row, col network px) exactly."""
    h, w = shape[0] // stride, shape[1] // stride
    score = np.full((h, w), 0.05, np.float32)
    offsets = np.zeros((2, h, w), np.float32)
    for y, x in locations:
        i, j = int(y // stride), int(x // stride)
        score[i, j] = value
        offsets[:, i, j] = (y - (i * stride + (stride - 1) / 2), x - (j * stride + (stride - 1) / 2))
    return score, offsets


def test_locations_are_peaks_of_the_score_plus_their_offsets_and_close_ones_are_suppressed():
    score, offsets = _proposals((64, 64), 4, [(10.3, 20.7), (40.0, 41.5)])
    score[2, 6] = 0.8            # a weaker neighbour of the first cell's grid cell: not a 3×3 maximum
    yx, s = decode_locations(score, offsets, 4, 0.5, 4.0)
    np.testing.assert_allclose(yx, [[10.3, 20.7], [40.0, 41.5]], atol=1e-5)
    assert s.tolist() == [np.float32(0.9)] * 2
    score[10, 11] = 0.95         # a stronger proposal in the next grid cell: the 3×3 maximum wins
    offsets[:, 10, 11] = (0.5, 0.5)
    yx, s = decode_locations(score, offsets, 4, 0.5, 4.0)
    assert len(yx) == 2 and np.allclose(yx[0], [42.0, 46.0])
    score[10, 13] = 0.7          # two grid cells away but pointing 3.5 px from it: suppressed by distance
    offsets[:, 10, 13] = (0.5, 46.0 + 3.5 - 53.5)
    assert len(decode_locations(score, offsets, 4, 0.5, 4.0)[0]) == 2
    assert len(decode_locations(score, offsets, 4, 0.5, 3.0)[0]) == 3


def test_gathered_windows_match_a_hand_made_crop_with_zero_padding_and_the_encoding():
    features = np.arange(2 * 10 * 12, dtype=np.float32).reshape(2, 10, 12) + 1
    windows, encoding, origins = gather_windows(features, np.array([[1.4, 10.6]]), 6)
    assert origins.tolist() == [[-2, 8]]                         # round(1.4) − 3, round(10.6) − 3
    expected = np.zeros((2, 6, 6), np.float32)
    expected[:, 2:6, 0:4] = features[:, 0:4, 8:12]              # rows −2, −1 and columns 12, 13 lie outside
    np.testing.assert_array_equal(windows[0], expected)
    np.testing.assert_allclose(encoding[0, 0, :, 0], (np.arange(-2, 4) - 1.4) / 6, atol=1e-6)
    np.testing.assert_allclose(encoding[0, 1, 0, :], (np.arange(8, 14) - 10.6) / 6, atol=1e-6)


def test_two_touching_cells_from_their_locations():
    shape, stride, size, radius = (64, 80), 4, 32, 10
    cells = [(30.0, 28.0), (30.0, 47.0)]                        # 19 px apart: discs of radius 10 overlap
    score, offsets = _proposals(shape, stride, cells)
    calls = []

    def disc_instances(windows, encoding):
        """Stand-in instance graph: a disc of `radius` px around the location each window encodes."""
        calls.append(len(windows))
        r = np.hypot(encoding[:, 0], encoding[:, 1]) * size
        return (r <= radius).astype(np.float32)[:, None] * 0.9 + 0.05

    maps = {"score": score[None], "offsets": offsets, "features": np.zeros((3,) + shape, np.float32)}
    labels, winning, columns = decode_location_masks(maps, LocationMasksParams(window=size, stride=stride, batch=1),
                                                     disc_instances)
    assert calls == [1, 1] and labels.dtype == np.uint32 and labels.max() == 2
    assert labels[30, 28] != labels[30, 47] and labels[30, 28] > 0 and labels[30, 47] > 0
    yy, xx = np.indices(shape)
    for (y, x), lab in zip(cells, (labels[30, 28], labels[30, 47])):
        area = (labels == lab).sum()
        assert 0.8 * np.pi * radius ** 2 < area <= np.pi * radius ** 2 + 4 * radius
    np.testing.assert_allclose(sorted(columns["location_x"]), [28.0, 47.0])
    assert winning.max() <= 0.95 and columns["location_score"].shape == (2,)
    empty = decode_location_masks({**maps, "score": np.zeros_like(score)}, LocationMasksParams(stride=stride), disc_instances)
    assert empty[0].max() == 0 and len(empty[2]["location_score"]) == 0

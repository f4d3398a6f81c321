"""WSISPDR post-processing (cellpoint.runtime.decoders.detection_response) on small synthetic maps."""
from __future__ import annotations

import subprocess
import sys

import cv2
import numpy as np
import pytest

from cellpoint.runtime.decoders.detection_response import (DetectionResponseParams, decode_detection_response,
                                                           detect_cells, graphcut_cells, max_projection,
                                                           paste_windows, region_seeds)

# the detection settings these tests were written for (the package defaults are those training writes)
DETECT = {"detection_threshold": 0.5, "detection_min_area": 1}

SHAPE = (64, 96)
CENTRES = ((32, 37), (32, 59))  # 22 px apart: two radius-12 discs overlap by 2 px, bisector at column 48
RADIUS = 12


def _disc(shape, centre, radius):
    yy, xx = np.indices(shape)
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius ** 2


def _gaussian(shape, centre, sigma, amplitude=1.0):
    yy, xx = np.indices(shape, dtype=np.float32)
    return (amplitude * np.exp(-((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2) / (2 * sigma ** 2))).astype(np.float32)


def _two_discs(seed=0, shape=SHAPE, centres=CENTRES):
    """Bright discs (0.8) on a dark background (0.1) plus noise, quantised to k/256 so that 1 - (1 - x)
    is exact. Returns (image float32 (H,W), discs bool (2,H,W))."""
    discs = np.stack([_disc(shape, c, RADIUS) for c in centres])
    image = np.where(discs.any(axis=0), 0.8, 0.1) + np.random.default_rng(seed).normal(0, 0.05, shape)
    return (np.round(np.clip(image, 0, 1) * 256) / 256).astype(np.float32), discs


def _likelihood(shape=SHAPE, centres=CENTRES, amplitudes=None):
    amplitudes = amplitudes or [1.0] * len(centres)
    return np.max([_gaussian(shape, c, 3.0, a) for c, a in zip(centres, amplitudes)], axis=0)


def _contributions(kind, discs, centres=CENTRES):
    if kind == "gaussian":
        return np.stack([_gaussian(discs.shape[1:], c, 8.0) for c in centres])
    return np.stack([cv2.GaussianBlur(d.astype(np.float32), (0, 0), 3.0) for d in discs])


def _check_split(labels, discs, centres=CENTRES):
    assert labels.dtype == np.uint32 and labels.shape == discs.shape[1:]
    assert set(np.unique(labels)) == {0, 1, 2}
    yy, xx = np.indices(labels.shape)
    dist = np.stack([np.hypot(yy - c[0], xx - c[1]) for c in centres])
    nearer = np.argmin(dist, axis=0) + 1
    (y0, x0), (y1, x1) = centres
    # signed distance to the perpendicular bisector of the two centres
    to_bisector = np.abs((dist[0] ** 2 - dist[1] ** 2) / (2 * np.hypot(y1 - y0, x1 - x0)))
    check = (labels > 0) & (to_bisector > 2)
    assert np.array_equal(labels[check], nearer[check])
    for i, disc in enumerate(discs):
        assert np.mean(labels[disc] == i + 1) >= 0.85


# ----------------------------------------------------------------------------------------- graph cut

@pytest.mark.parametrize("kind", ["gaussian", "blurred_disc"])
def test_graphcut_splits_two_touching_discs_along_the_bisector(kind):
    image, discs = _two_discs()
    regions = detect_cells(_likelihood(), 0.5)
    labels = graphcut_cells(image, _contributions(kind, discs), regions, DetectionResponseParams())
    _check_split(labels, discs)
    assert np.count_nonzero((labels > 0) & ~discs.any(axis=0)) < 0.02 * discs.any(axis=0).sum()


def test_graphcut_on_a_diagonal_pair_and_without_regions():
    centres = ((20, 30), (36, 46))  # 22.6 px apart along the diagonal
    image, discs = _two_discs(seed=1, centres=centres)
    labels = graphcut_cells(image, _contributions("gaussian", discs, centres), None,
                            DetectionResponseParams(smoothness=4.0))
    _check_split(labels, discs, centres)


def test_graphcut_with_no_cells_and_min_area():
    image, discs = _two_discs()
    empty = graphcut_cells(image, np.zeros((0,) + SHAPE, np.float32), None, DetectionResponseParams())
    assert empty.dtype == np.uint32 and not empty.any()
    labels = graphcut_cells(image, _contributions("gaussian", discs), None, DetectionResponseParams(min_area=10_000))
    assert not labels.any()


def test_invert_segments_dark_cells_like_their_bright_version():
    bright, discs = _two_discs(seed=2)
    dark = (np.float32(1.0) - bright).astype(np.float32)
    contributions = _contributions("gaussian", discs)
    regions = detect_cells(_likelihood(), 0.5)
    expected = graphcut_cells(bright, contributions, regions, DetectionResponseParams(invert=False))
    _check_split(expected, discs)
    assert np.array_equal(graphcut_cells(dark, contributions, regions, DetectionResponseParams(invert=True)), expected)
    assert not np.array_equal(graphcut_cells(dark, contributions, regions, DetectionResponseParams(invert=False)),
                              expected)


# ------------------------------------------------------------------------------------ detection, seeds

def test_detect_cells_counts_components_and_drops_small_ones():
    lik = np.zeros((30, 40), np.float32)
    lik[2:6, 30:35] = 0.9        # 20 px, first in raster order
    lik[10:14, 5:9] = 0.8        # 16 px
    lik[20, 20] = lik[21, 21] = 0.7  # 2 px, diagonal: one 8-connected component
    lik[25:28, 2:5] = 0.5        # exactly at the threshold: not detected
    regions = detect_cells(lik, 0.5)
    assert regions.dtype == np.int32
    assert regions.max() == 3
    assert regions[3, 31] == 1 and regions[11, 6] == 2 and regions[20, 20] == regions[21, 21] == 3
    assert np.array_equal(regions > 0, lik > 0.5)
    big = detect_cells(lik, 0.5, min_area=3)
    assert big.max() == 2 and not big[20, 20] and big[11, 6] == 2
    assert not detect_cells(lik, 0.95).any()


def test_region_seeds_hold_the_likelihood_on_each_region():
    lik = np.random.default_rng(0).random((20, 30)).astype(np.float32)
    regions = np.zeros((20, 30), np.int32)
    regions[2:5, 3:6] = 1
    regions[10:12, 20:25] = 2
    seeds = region_seeds(regions, lik)
    assert seeds.shape == (2, 20, 30) and seeds.dtype == np.float32
    for u in (1, 2):
        assert np.array_equal(seeds[u - 1], np.where(regions == u, lik, 0))
    assert np.array_equal(region_seeds(regions, lik, binary=True), np.stack([regions == 1, regions == 2]).astype(np.float32))
    assert region_seeds(np.zeros((4, 5), np.int32), np.zeros((4, 5))).shape == (0, 4, 5)


# -------------------------------------------------------------------------------- maximum projection

def test_max_projection_picks_the_largest_map_and_breaks_ties_to_the_lowest_index():
    rng = np.random.default_rng(0)
    maps = rng.random((3, 8, 9)).astype(np.float32)
    owner, peak = max_projection(maps)
    assert owner.dtype == np.int32 and peak.dtype == np.float32
    assert np.array_equal(owner, np.argmax(maps, axis=0)) and np.array_equal(peak, maps.max(axis=0))
    maps[:, 0, 0] = 0.5                 # three-way tie
    maps[0, 1, 1], maps[1:, 1, 1] = 0.1, 0.7  # tie between 1 and 2
    maps[:, 2, 2] = -1.0                 # no contribution anywhere
    owner, peak = max_projection(maps)
    assert owner[0, 0] == 0 and owner[1, 1] == 1
    assert owner[2, 2] == 0 and peak[2, 2] == 0
    owner0, peak0 = max_projection(np.zeros((0, 4, 5), np.float32))
    assert owner0.shape == peak0.shape == (4, 5) and not owner0.any() and not peak0.any()


def test_max_projection_raw_by_default_normalised_on_request():
    maps = np.zeros((2, 1, 3), np.float32)
    maps[0] = [[1.0, 0.6, 0.0]]   # strong cell
    maps[1] = [[0.0, 0.4, 0.5]]   # weak cell: its own maximum is 0.5
    assert max_projection(maps)[0].tolist() == [[0, 0, 1]]
    owner, peak = max_projection(maps, normalize=True)
    assert owner.tolist() == [[0, 1, 1]] and np.allclose(peak, [[1.0, 0.8, 1.0]])


def test_windows_give_the_same_projection_and_cut_as_the_same_maps_dense():
    image, discs = _two_discs(seed=1)
    regions = detect_cells(_likelihood(), 0.5)
    dense = _contributions("gaussian", discs)
    # 56-px windows around each cell, the right one reaching past the image's top and right edges
    origins = np.array([[4, 9], [-6, 44]])
    windows = np.stack([np.pad(dense[u], 56)[y + 56:y + 112, x + 56:x + 112] for u, (y, x) in enumerate(origins)])
    same = paste_windows(windows, origins, SHAPE)  # the dense maps, zero outside their windows
    assert same.shape == (2,) + SHAPE and np.array_equal(same[0, 4:60, 9:65], windows[0])
    for a, b in zip(max_projection((windows, origins), shape=SHAPE), max_projection(same)):
        assert np.array_equal(a, b)
    labels = graphcut_cells(image, (windows, origins), regions, DetectionResponseParams())
    assert np.array_equal(labels, graphcut_cells(image, same, regions, DetectionResponseParams()))
    _check_split(labels, discs)


# ------------------------------------------------------------------------------------------ decoder

def _fake_backprop(calls, image):
    """A stand-in for the guided-backprop graph: each seed channel blurred wide (σ = 8 px) and weighted
    by the image, as guided backprop highlights the bright structures near the seed."""
    def contributions_fn(regions, seed_values):
        seeds = region_seeds(regions, seed_values)
        calls.append(seeds.copy())
        return np.stack([cv2.GaussianBlur(s, (0, 0), 8.0) * image for s in seeds])[:, None]
    return contributions_fn


def test_decode_detection_response_end_to_end():
    image, discs = _two_discs(seed=3)
    dot = (10, 85)
    image[dot] = 0.9   # a bright speck with its own (weaker) detection, far too small to keep
    lik = np.maximum(_likelihood(amplitudes=[0.9, 0.8]), _gaussian(SHAPE, dot, 1.0, 0.7))
    calls = []
    labels, score, columns = decode_detection_response({"likelihood": lik},
                                                       DetectionResponseParams(**DETECT, min_area=20),
                                                       _fake_backprop(calls, image), image)
    assert len(calls) == 1 and calls[0].shape == (3,) + SHAPE  # the speck comes first in raster order
    regions = detect_cells(lik, 0.5)
    for u in range(3):
        assert np.array_equal(calls[0][u], np.where(regions == u + 1, lik, 0))
    assert np.array_equal(score, lik) and score.dtype == np.float32
    _check_split(labels, discs)
    assert list(columns) == ["detection_score"]
    assert np.allclose(columns["detection_score"], [0.9, 0.8], atol=1e-6)  # speck dropped, order kept


def test_decode_detection_response_without_detections():
    def never(regions, seed_values):
        raise AssertionError("contributions_fn must not run without detections")
    image, _ = _two_discs()
    labels, score, columns = decode_detection_response({"likelihood": np.full(SHAPE, 0.2, np.float32)},
                                                       DetectionResponseParams(**DETECT),
                                                       never, image)
    assert labels.dtype == np.uint32 and labels.shape == SHAPE and not labels.any()
    assert np.all(score == np.float32(0.2)) and columns["detection_score"].shape == (0,)


def test_module_imports_without_torch():
    code = ("import sys\nsys.modules['torch'] = None\n"
            "import cellpoint.runtime.decoders.detection_response\n"
            "leaked = [m for m, v in sys.modules.items() if v is not None and m.startswith(('torch', 'cellpoint.training'))]\n"
            "assert not leaked, leaked\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr

"""Runtime primitives on small synthetic maps: peaks, the seeded watershed and graph-cut splitters, label
tools and the overlay."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from skimage.segmentation import watershed as sk_watershed

from cellpoint.runtime.graphcut import seeded_graphcut
from cellpoint.runtime.labels import instance_table, relabel_sequential, remove_small_instances
from cellpoint.runtime.overlay import render_overlay
from cellpoint.runtime.peaks import find_peaks
from cellpoint.runtime.watershed import seeded_watershed

DECODERS = [seeded_watershed, seeded_graphcut]


def _disc(shape, centre, radius):
    yy, xx = np.indices(shape)
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius ** 2


def _gaussians(shape, centres, amplitudes, sigma=2.0):
    yy, xx = np.indices(shape, dtype=np.float32)
    heat = np.zeros(shape, np.float32)
    for (cy, cx), a in zip(centres, amplitudes):
        heat += a * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma ** 2))
    return heat


def _owner(labels, region):
    """The label holding most of `region` and the fraction it holds."""
    values, counts = np.unique(labels[region], return_counts=True)
    return values[np.argmax(counts)], counts.max() / region.sum()


# ------------------------------------------------------------------------------------------ decoders

@pytest.mark.parametrize("decode", DECODERS)
def test_two_touching_equal_discs_split_at_the_bisector(decode):
    shape = (64, 100)
    a, b = _disc(shape, (32, 36), 14), _disc(shape, (32, 62), 14)  # overlap: a neck at column 49
    fg = (a | b).astype(np.float32)
    labels = decode(fg, [(32, 36), (32, 62)])
    assert labels.dtype == np.uint32 and labels.shape == shape
    assert set(np.unique(labels)) == {0, 1, 2}
    assert np.array_equal(labels > 0, fg > 0.5)
    owner_a, frac_a = _owner(labels, a & ~b)
    owner_b, frac_b = _owner(labels, b & ~a)
    assert (owner_a, owner_b) == (1, 2) and frac_a > 0.9 and frac_b > 0.9
    cols = np.indices(shape)[1]
    left_of_bisector = cols[labels == 1].max()
    right_of_bisector = cols[labels == 2].min()
    assert abs(left_of_bisector - 48.5) <= 2 and abs(right_of_bisector - 49.5) <= 2


@pytest.mark.parametrize("decode", DECODERS)
def test_unequal_discs_split_at_the_neck_not_the_bisector(decode):
    shape = (64, 90)
    small, big = _disc(shape, (32, 22), 9), _disc(shape, (32, 48), 18)  # neck near column 30
    fg = (small | big).astype(np.float32)
    labels = decode(fg, [(32, 22), (32, 48)])
    owner_small, frac_small = _owner(labels, small & ~big)
    owner_big, frac_big = _owner(labels, big & ~small)
    assert (owner_small, owner_big) == (1, 2)
    assert frac_small > 0.95 and frac_big > 0.97  # the bisector (column 35) would give frac_big ≈ 0.9


@pytest.mark.parametrize("decode", DECODERS)
def test_seed_and_component_bookkeeping(decode):
    shape = (40, 80)
    fg = np.zeros(shape, np.float32)
    fg[_disc(shape, (10, 10), 6)] = 0.9    # one seed → whole component
    fg[_disc(shape, (30, 40), 6)] = 0.8    # no seed → dropped, or kept on request
    fg[_disc(shape, (12, 60), 7)] = 0.7    # seed given twice
    seeds = [(12, 60), (5, 40), (10, 10), (12, 60), (-3, 4), (10, 200)]  # off-mask, duplicate, outside
    labels = decode(fg, seeds)
    assert set(np.unique(labels)) == {0, 1, 2}
    assert labels[12, 60] == 1 and labels[10, 10] == 2  # ids follow the order of the kept seeds
    assert np.array_equal(labels == 2, _disc(shape, (10, 10), 6))
    assert np.all(labels[_disc(shape, (30, 40), 6)] == 0)
    kept = decode(fg, seeds, keep_unseeded=True)
    assert set(np.unique(kept)) == {0, 1, 2, 3}
    assert np.all(kept[_disc(shape, (30, 40), 6)] == 3)
    assert np.array_equal(decode(fg, np.zeros((0, 2), int)), np.zeros(shape, np.uint32))


def test_watershed_follows_a_given_elevation():
    fg = np.ones((20, 40), np.float32)
    elevation = np.zeros((20, 40), np.float32)
    elevation[:, 12] = 5.0  # a ridge far from the bisector (column 20)
    labels = seeded_watershed(fg, [(10, 3), (10, 37)], elevation=elevation)
    assert np.all(labels[:, :12] == 1) and np.all(labels[:, 13:] == 2)


def test_watershed_matches_skimage_on_many_discs():
    rng = np.random.default_rng(3)
    shape = (160, 200)
    centres = []
    while len(centres) < 30:  # touching and overlapping cells, but no two seeds in one cell
        c = rng.integers(12, [148, 188])
        if all(np.hypot(*(c - d)) >= 13 for d in centres):
            centres.append(c)
    centres = np.array(centres)
    fg = np.zeros(shape, np.float32)
    for c in centres:
        fg[_disc(shape, c, rng.uniform(6, 10))] = 1.0
    ours = seeded_watershed(fg, centres)
    mask = fg > 0.5
    markers = np.zeros(shape, np.int32)
    markers[centres[:, 0], centres[:, 1]] = np.arange(1, len(centres) + 1)
    reference = sk_watershed(-ndimage.distance_transform_edt(mask), markers, mask=mask)
    assert ours.max() == len(np.unique(markers[markers > 0]))
    assert np.array_equal(ours > 0, reference > 0)
    agree = 0
    for i in np.unique(reference[reference > 0]):
        _, frac = _owner(ours, reference == i)
        agree += frac * (reference == i).sum()
    assert agree / mask.sum() > 0.97


def test_graphcut_smoothness_zero_and_large_still_give_one_instance_per_seed():
    shape = (48, 80)
    fg = (_disc(shape, (24, 28), 13) | _disc(shape, (24, 52), 13)).astype(np.float32)
    for smoothness in (0.0, 20.0):
        labels = seeded_graphcut(fg, [(24, 28), (24, 52)], smoothness=smoothness)
        assert set(np.unique(labels)) == {0, 1, 2}
        assert labels[24, 28] == 1 and labels[24, 52] == 2


# ---------------------------------------------------------------------------------------------- peaks

def test_find_peaks_recovers_gaussian_centres_sorted_by_score():
    centres = [(10, 12), (30, 50), (45, 20), (50, 58)]
    amplitudes = [0.6, 1.0, 0.8, 0.2]
    heat = _gaussians((64, 72), centres, amplitudes)
    rc, scores = find_peaks(heat, threshold=0.3, min_distance=3)
    assert rc.dtype == np.int64 and rc.shape == (3, 2) and scores.dtype == np.float32
    assert [tuple(p) for p in rc] == [(30, 50), (45, 20), (10, 12)]  # the 0.2 peak is under threshold
    assert np.all(np.diff(scores) <= 0)
    assert np.allclose(scores, heat[rc[:, 0], rc[:, 1]])


def test_find_peaks_min_distance_and_mask():
    heat = _gaussians((40, 60), [(20, 20), (20, 27)], [1.0, 0.9], sigma=1.0)
    near, _ = find_peaks(heat, 0.1, min_distance=2)
    far, _ = find_peaks(heat, 0.1, min_distance=8)
    assert len(near) == 2 and [tuple(p) for p in far] == [(20, 20)]
    mask = np.zeros(heat.shape, bool)
    mask[:, 24:] = True
    masked, _ = find_peaks(heat, 0.1, min_distance=2, mask=mask)
    assert [tuple(p) for p in masked] == [(20, 27)]


def test_find_peaks_reduces_each_plateau_to_one_pixel():
    heat = _gaussians((50, 50), [(10, 40)], [0.7])
    heat[20:23, 10:15] = 1.0       # 3×5 plateau, centroid (21, 12)
    heat[40, 30:32] = 0.9          # 2-pixel plateau: the first of the two nearest its centroid
    heat[5, 5] = heat[5, 7] = 0.8  # equal maxima, not touching: both are peaks
    rc, scores = find_peaks(heat, 0.5, min_distance=1)
    assert [tuple(p) for p in rc] == [(21, 12), (40, 30), (5, 5), (5, 7), (10, 40)]
    assert np.allclose(scores, [1.0, 0.9, 0.8, 0.8, 0.7])
    rc3, _ = find_peaks(heat, 0.5, min_distance=3)
    assert (21, 12) in [tuple(p) for p in rc3] and len(rc3) == len({tuple(p) for p in rc3})


def test_find_peaks_on_empty_map():
    rc, scores = find_peaks(np.zeros((8, 9), np.float32), 0.5, 2)
    assert rc.shape == (0, 2) and scores.shape == (0,)


# ---------------------------------------------------------------------------------------- label tools

def _random_labels(rng, shape=(70, 90), n=25, gap_ids=True):
    labels = np.zeros(shape, np.uint32)
    for i in range(1, n + 1):
        y, x = rng.integers(0, shape[0]), rng.integers(0, shape[1])
        h, w = rng.integers(1, 15, size=2)
        labels[y:y + h, x:x + w] = i * (3 if gap_ids else 1)
    return labels


def _brute_force_table(labels, score_map):
    rows = []
    for i in np.unique(labels[labels > 0]):
        ys, xs = np.nonzero(labels == i)
        rows.append((i, ys.size, ys.mean(), xs.mean(), ys.min(), xs.min(), ys.max() + 1, xs.max() + 1,
                     score_map[ys, xs].mean()))
    return np.array(rows, dtype=np.float64).reshape(-1, 9)


@pytest.mark.parametrize("offset", [0, 4_000_000_000])  # dense ids, then ids far sparser than pixels
def test_instance_table_matches_brute_force(offset):
    rng = np.random.default_rng(0)
    labels = _random_labels(rng)
    labels[labels > 0] += np.uint32(offset)
    score_map = rng.random(labels.shape).astype(np.float32)
    table = instance_table(labels, score_map)
    expected = _brute_force_table(labels, score_map)
    keys = ["id", "area", "centroid_y", "centroid_x", "bbox_y0", "bbox_x0", "bbox_y1", "bbox_x1", "score"]
    assert list(table) == keys
    for j, key in enumerate(keys):
        if key != "id":
            np.testing.assert_allclose(table[key], expected[:, j], rtol=1e-6, err_msg=key)
    assert np.array_equal(table["id"], np.unique(labels[labels > 0]))
    assert table["id"].dtype == np.uint32 and table["area"].dtype == np.int64
    assert table["bbox_y0"].dtype == np.int64 and table["score"].dtype == np.float32
    assert np.all(instance_table(labels)["score"] == 1.0)


def test_instance_table_of_empty_labels():
    table = instance_table(np.zeros((5, 6), np.uint32))
    assert all(len(v) == 0 for v in table.values())


def test_remove_small_and_relabel():
    labels = np.zeros((10, 10), np.uint32)
    labels[0:2, 0:2] = 7     # area 4
    labels[5:10, 5:10] = 3   # area 25
    labels[0, 9] = 12        # area 1
    cleaned = remove_small_instances(labels, 4)
    assert cleaned.dtype == np.uint32 and set(np.unique(cleaned)) == {0, 3, 7}
    assert np.array_equal(cleaned[cleaned > 0], labels[cleaned > 0])
    seq = relabel_sequential(cleaned)
    assert seq.dtype == np.uint32 and set(np.unique(seq)) == {0, 1, 2}
    assert np.all(seq[5:10, 5:10] == 1) and np.all(seq[0:2, 0:2] == 2)  # order of ids kept
    assert np.array_equal(relabel_sequential(np.zeros((3, 3), np.int32)), np.zeros((3, 3), np.uint32))


# -------------------------------------------------------------------------------------------- overlay

def test_render_overlay_colours_fill_and_outline():
    rng = np.random.default_rng(1)
    image = (rng.random((40, 50)) * 4000).astype(np.uint16)
    labels = np.zeros((40, 50), np.uint32)
    labels[5:20, 5:20] = 1
    labels[25:35, 10:40] = 9
    out = render_overlay(image, labels)
    assert out.dtype == np.uint8 and out.shape == (40, 50, 3)
    background = out[labels == 0]
    assert np.all(background[:, 0] == background[:, 1]) and np.all(background[:, 1] == background[:, 2])
    assert background.max() == 255 and background.min() == 0  # percentile stretch
    edge_1, edge_9, inner_1 = out[5, 10], out[34, 20], out[12, 12]
    assert not np.array_equal(edge_1, edge_9)
    assert np.array_equal(out[19, 19], edge_1)                 # the outline is one colour per id
    assert not (inner_1[0] == inner_1[1] == inner_1[2])        # the fill is tinted
    again = render_overlay(image.astype(np.float32)[..., None].repeat(3, axis=2), labels)
    assert np.array_equal(again[5, 10], edge_1)                # colours are fixed per id; RGB input works
    plain = render_overlay(image, np.zeros_like(labels))
    assert np.array_equal(plain[..., 0], plain[..., 2]) and np.array_equal(plain[labels == 0], background)

"""Weak label generators on small synthetic label images."""
from __future__ import annotations

import numpy as np
import pytest

from cellpoint.training.weak_labels import (annotation_hours, box_points_from_labels, foreground_and_count,
                                            foreground_and_locations, points_from_labels)


def _labels():
    """40x50 image: a 5x7 rectangle (id 2), a C-shape whose centroid is off the mask (id 7), a pixel (id 9)."""
    labels = np.zeros((40, 50), np.uint16)
    labels[2:7, 3:10] = 2          # rows 2..6, cols 3..9 -> centroid (x=6, y=4)
    labels[15:30, 20:35] = 7       # C-shape: square minus its centre and right opening
    labels[18:27, 23:35] = 0
    labels[35, 45] = 9
    return labels


def _pixel_id(labels, xy):
    col, row = np.floor(np.asarray(xy) + 0.5).astype(int)
    return labels[row, col]


def test_centroid_points_in_id_order_and_snapped_into_mask():
    labels = _labels()
    xy = points_from_labels(labels, "centroid")
    assert xy.shape == (3, 2) and xy.dtype == np.float64
    assert np.allclose(xy[0], [6.0, 4.0])           # x = column, y = row
    assert np.allclose(xy[2], [45.0, 35.0])
    rows, cols = np.nonzero(labels == 7)
    centroid = np.array([cols.mean(), rows.mean()])
    assert _pixel_id(labels, centroid) != 7         # the raw centroid falls in the hole
    assert _pixel_id(labels, xy[1]) == 7            # snapped onto the mask ...
    nearest = np.min(np.hypot(cols - centroid[0], rows - centroid[1]))
    assert np.isclose(np.hypot(*(xy[1] - centroid)), nearest)  # ... at the nearest mask pixel


def test_uniform_points_are_mask_pixels_and_seeded():
    labels = _labels()
    a = points_from_labels(labels, "uniform", rng=np.random.default_rng(3))
    b = points_from_labels(labels, "uniform", rng=np.random.default_rng(3))
    assert np.array_equal(a, b)
    assert np.array_equal(a, np.round(a))
    assert [_pixel_id(labels, p) for p in a] == [2, 7, 9]
    draws = np.array([points_from_labels(labels, "uniform", rng=np.random.default_rng(s))[1]
                      for s in range(40)])
    assert len({tuple(p) for p in draws}) > 20      # spread over the mask, not one fixed pixel


def test_jitter_moves_points_but_keeps_them_inside():
    labels = _labels()
    base = points_from_labels(labels, "centroid")
    moved = points_from_labels(labels, "centroid", jitter=2.0, rng=np.random.default_rng(0))
    assert not np.allclose(moved[:2], base[:2])
    assert [_pixel_id(labels, p) for p in moved] == [2, 7, 9]
    with pytest.raises(ValueError, match="placement"):
        points_from_labels(labels, "corner")


def test_box_points_boxes_labels_and_edges():
    labels = _labels()
    cells = box_points_from_labels(labels, 500, rng=np.random.default_rng(1))
    assert [c["id"] for c in cells] == [2, 7, 9]
    assert cells[0]["box"] == [2.5, 1.5, 9.5, 6.5]  # pixel extents of cols 3..9, rows 2..6
    for cell in cells:
        x0, y0, x1, y1 = cell["box"]
        pts, lab = cell["points"], cell["point_labels"]
        assert pts.shape == (500, 2) and lab.shape == (500,) and lab.dtype == np.int64
        assert (pts[:, 0] >= x0).all() and (pts[:, 0] <= x1).all()
        assert (pts[:, 1] >= y0).all() and (pts[:, 1] <= y1).all()
        for p, k in zip(pts[:50], lab[:50]):
            assert k == int(_pixel_id(labels, np.clip(p, [x0 + .5, y0 + .5], [x1 - .5, y1 - .5])) == cell["id"])
    assert cells[0]["point_labels"].all()           # a full rectangle: every box point is on the cell
    assert 0 < cells[1]["point_labels"].mean() < 1  # the C-shape's box holds background too
    # sampling covers the whole box, edge pixels included: points reach within 0.1 px of every edge
    pts = cells[1]["points"]
    x0, y0, x1, y1 = cells[1]["box"]
    assert pts[:, 0].min() < x0 + 0.1 and pts[:, 0].max() > x1 - 0.1
    assert pts[:, 1].min() < y0 + 0.1 and pts[:, 1].max() > y1 - 0.1


def test_foreground_locations_and_count():
    labels = _labels()
    foreground, xy = foreground_and_locations(labels)
    assert foreground.dtype == bool and np.array_equal(foreground, labels > 0)
    rows, cols = np.nonzero(labels == 7)
    assert np.allclose(xy[1], [cols.mean(), rows.mean()])  # centre of mass, not snapped
    foreground, count = foreground_and_count(labels)
    assert count == 3 and foreground.sum() == (labels > 0).sum()
    empty = np.zeros((5, 5), np.uint8)
    assert points_from_labels(empty).shape == (0, 2)
    assert foreground_and_count(empty)[1] == 0 and box_points_from_labels(empty, 2) == []


def test_annotation_hours_point2mask_model():
    assert annotation_hours("mask", 3600) == pytest.approx(46.0)
    assert annotation_hours("points", 3600) == pytest.approx(1.0)
    assert annotation_hours("box-points", 3600, n_points=6) == pytest.approx(12.4)  # Point2Mask Table 1
    assert annotation_hours("box-points", 1, n_points=1) * 3600 == pytest.approx(7.9)
    assert annotation_hours("foreground-locations", 1000) == 0.0
    with pytest.raises(ValueError, match="unknown annotation kind"):
        annotation_hours("scribbles", 10)


def test_rejects_non_integer_labels():
    with pytest.raises(ValueError, match="integers"):
        points_from_labels(np.zeros((4, 4), np.float32))


def test_seconds_per_cell_is_the_paper_table_1():
    from cellpoint.training.weak_labels import seconds_per_cell
    table = {1: 7.9, 2: 8.8, 4: 10.6, 6: 12.4, 8: 14.2, 10: 16.0}        # Point2Mask, Table 1
    for n, seconds in table.items():
        assert seconds_per_cell("box-points", n) == pytest.approx(seconds)
    assert seconds_per_cell("full") == seconds_per_cell("mask") == 46.0
    assert 46.0 / seconds_per_cell("box-points", 6) == pytest.approx(3.71, abs=0.01)   # "3.71x faster"
    assert annotation_hours("full", 7200) == pytest.approx(92.0)
    with pytest.raises(ValueError):
        seconds_per_cell("box-points", -1)

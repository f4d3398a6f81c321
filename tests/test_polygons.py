"""Cell outlines traced along pixel edges: filled by the pixel-centre rule, they give back the cell."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from cellpoint.runtime.labels import instance_table
from cellpoint.runtime.polygons import instance_polygons, mask_outline

draw = pytest.importorskip("skimage.draw", reason="scikit-image (the test extra) rasterises the polygons")


def _fill(polygon: np.ndarray, shape) -> np.ndarray:
    """A (K,2) corner-coordinate polygon filled where pixel centres fall inside (skimage puts centres at
    integers, so shift by half a pixel)."""
    return draw.polygon2mask(shape, polygon[:, ::-1] - 0.5)


def test_single_pixel_is_a_unit_square():
    outline = mask_outline(np.ones((1, 1), bool))
    assert sorted(map(tuple, outline)) == [(0, 0), (0, 1), (1, 0), (1, 1)]


@pytest.mark.parametrize("shape_name", ["disc", "ellipse", "l_shape", "c_shape", "one_px_line"])
def test_outline_fills_back_to_the_mask(shape_name):
    mask = np.zeros((40, 50), np.uint8)
    if shape_name == "disc":
        cv2.circle(mask, (20, 18), 9, 1, -1)
    elif shape_name == "ellipse":
        cv2.ellipse(mask, (25, 20), (15, 6), 30, 0, 360, 1, -1)
    elif shape_name == "l_shape":
        mask[5:30, 5:10] = 1
        mask[25:30, 5:35] = 1
    elif shape_name == "c_shape":
        mask[5:35, 5:12] = 1
        mask[5:12, 5:40] = 1
        mask[28:35, 5:40] = 1
    else:
        mask[10, 3:45] = 1
    outline = mask_outline(mask.astype(bool))
    np.testing.assert_array_equal(_fill(outline, mask.shape), mask.astype(bool))
    # corners only: every vertex turns
    assert len(outline) >= 4 and len(np.unique(outline, axis=0)) == len(outline)


def test_every_instance_of_a_touching_label_image_comes_back():
    rng = np.random.default_rng(3)
    labels = np.zeros((120, 160), np.int32)
    for i in range(1, 25):  # overlapping discs: later ones overwrite, so cells touch and are non-convex
        cv2.circle(labels, (int(rng.integers(10, 150)), int(rng.integers(10, 110))), int(rng.integers(4, 14)), i, -1)
    table = instance_table(labels)
    polygons = instance_polygons(labels, table)
    assert sorted(polygons) == sorted(table["id"].tolist())
    for i, polygon in polygons.items():
        mask = labels == i
        # the largest 4-connected part with its holes filled is what the outer outline encloses
        _, parts = cv2.connectedComponents(mask.astype(np.uint8), connectivity=4)
        largest = parts == 1 + np.argmax(np.bincount(parts.ravel())[1:])
        np.testing.assert_array_equal(_fill(polygon, labels.shape), largest | _holes(largest))


def test_a_hole_is_left_out_and_corner_touching_parts_keep_the_largest():
    ring = np.zeros((30, 30), bool)
    ring[5:25, 5:25] = True
    ring[10:20, 10:20] = False
    assert _fill(mask_outline(ring), ring.shape).sum() == 400  # the outer square, hole included
    pair = np.zeros((10, 10), bool)
    pair[1:3, 1:3] = True      # 4 px
    pair[3:6, 3:6] = True      # 9 px, touching the first only at a corner
    np.testing.assert_array_equal(_fill(mask_outline(pair), pair.shape), pair & (np.arange(10)[:, None] >= 3))


def _holes(mask: np.ndarray) -> np.ndarray:
    """Background pixels of `mask` not 4-connected to its border."""
    padded = np.pad(~mask, 1, constant_values=True).astype(np.uint8)
    _, parts = cv2.connectedComponents(padded, connectivity=4)
    return (parts[1:-1, 1:-1] != parts[0, 0]) & ~mask


def test_outlines_with_holes_and_parts_fill_back_to_the_mask_by_the_even_odd_rule():
    from cellpoint.runtime.polygons import instance_outlines
    labels = np.zeros((40, 60), np.int32)
    labels[5:25, 5:25] = 1
    labels[10:20, 10:20] = 0            # a hole
    labels[12:15, 12:15] = 2            # a cell inside the hole
    labels[5:30, 35:55] = 3
    labels[8:12, 40:44] = 0             # two holes in one cell
    labels[20:25, 45:50] = 0
    labels[32:36, 5:9] = 4              # a cell in three parts: apart, touching another at a corner
    labels[32:34, 20:22] = 4
    labels[34:36, 22:24] = 4
    outlines = instance_outlines(labels)
    assert [len(outlines[i]) for i in (1, 2, 3, 4)] == [2, 1, 3, 3]
    for i, rings in outlines.items():
        filled = np.zeros(labels.shape, bool)
        for ring in rings:
            filled ^= _fill(ring, labels.shape)  # even-odd: a hole ring takes its pixels out again
        np.testing.assert_array_equal(filled, labels == i)
        areas = [_area(r) for r in rings]
        assert areas == sorted(areas, reverse=True) and areas[0] > 0  # parts (largest first), then holes
    assert sum(_area(r) > 0 for r in outlines[4]) == 3 and sum(_area(r) < 0 for r in outlines[3]) == 2


def _area(ring: np.ndarray) -> float:
    x, y = ring[:, 0], ring[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y))

"""Per-cell measurements (`runtime.measure`) against scikit-image's regionprops, the reference: the same
numbers for area, equivalent diameter, eccentricity and intensities; perimeter the same for discs, ellipses
and rectangles and within 15% for odd fragments (both estimate the outline's length from pixels, with
different weights); solidity by its documented definition (pixel centres in the hull of pixel centres),
never below regionprops' and within 0.1 of it
(cells of radius 5 px or more)."""
import cv2
import numpy as np
import pytest

from cellpoint.runtime.measure import lattice_points_in_hull, measure_instances
from conftest import synthetic_nuclei

skimage_measure = pytest.importorskip("skimage.measure")


def shapes_image() -> np.ndarray:
    """Touching cells, a non-convex cell, a ring with a hole, cells on the image border, rotated ellipses."""
    labels = np.zeros((90, 120), np.int32)
    labels[5:25, 5:20] = 1                      # two rectangles that touch along a side
    labels[5:25, 20:32] = 2
    labels[30:60, 5:35] = 3                     # a C: non-convex
    labels[37:53, 15:35] = 0
    labels[62:88, 5:31] = 4                     # a ring with a hole
    labels[69:81, 12:24] = 0
    labels[0:12, 100:120] = 5                   # on two image borders
    for k, (centre, axes, angle) in enumerate((((60, 60), (14, 6), 30), ((80, 95), (12, 8), -50),
                                               ((40, 95), (10, 10), 0)), start=6):
        cv2.ellipse(labels, centre, axes, angle, 0, 360, k, -1)
    cv2.ellipse(labels, (72, 60), (10, 7), 10, 0, 360, 9, -1)  # overlaps ellipse 6: two cells touching
    return labels


def reference(labels, image=None):
    return skimage_measure.regionprops(labels.astype(np.int64), intensity_image=image)


@pytest.mark.parametrize("case", ["nuclei", "shapes"])
def test_measurements_match_regionprops(case):
    if case == "nuclei":
        image, labels, _ = synthetic_nuclei(shape=(96, 128), n=6, seed=2)
        labels = labels.astype(np.int32)
    else:
        labels = shapes_image()
        image = np.random.default_rng(1).normal(100, 20, labels.shape).astype(np.float32)
    two_channels = np.dstack([image, (image * 3 + 7).astype(np.uint16)])
    table = measure_instances(labels, two_channels, pixel_size=0.5)
    props = reference(labels, two_channels.astype(np.float64))
    assert table["id"].tolist() == [p.label for p in props]
    for k, p in enumerate(props):
        assert table["area_px"][k] == p.area
        assert table["area_um2"][k] == pytest.approx(p.area * 0.25)
        assert table["equivalent_diameter_px"][k] == pytest.approx(p.equivalent_diameter_area, rel=1e-12)
        assert table["equivalent_diameter_um"][k] == pytest.approx(p.equivalent_diameter_area * 0.5, rel=1e-12)
        assert table["eccentricity"][k] == pytest.approx(p.eccentricity, abs=1e-9)
        # the outline through boundary pixel centres: regionprops' number for whole discs, ellipses and
        # rectangles; cell 6 is an ellipse cut by another, a shape where regionprops' weights differ
        exact = case == "nuclei" or p.label != 6
        assert table["perimeter_px"][k] == pytest.approx(p.perimeter, rel=1e-12 if exact else 0.05), p.label
        assert table["perimeter_um"][k] == pytest.approx(table["perimeter_px"][k] * 0.5, rel=1e-12)
        assert p.solidity - 1e-12 <= table["solidity"][k] <= p.solidity + 0.1, p.label
        for c in range(2):
            assert table[f"mean_intensity_c{c}"][k] == pytest.approx(p.intensity_mean[c], rel=1e-9)
            assert table[f"max_intensity_c{c}"][k] == pytest.approx(p.intensity_max[c], rel=1e-9)
            assert table[f"integrated_intensity_c{c}"][k] == pytest.approx(p.intensity_mean[c] * p.area, rel=1e-9)


def test_perimeter_agrees_with_regionprops_on_random_fragments():
    """Overlapping random ellipses: whole ones and fragments. For cells with no part one pixel wide the
    perimeters are equal for most cells and within 15% for all."""
    rng = np.random.default_rng(0)
    differences = []
    for _ in range(8):
        labels = np.zeros((200, 200), np.int32)
        for k in range(1, 25):
            centre, axes = rng.integers(10, 190, 2).tolist(), rng.integers(3, 20, 2).tolist()
            cv2.ellipse(labels, centre, axes, float(rng.uniform(0, 180)), 0, 360, k, -1)
        table = measure_instances(labels)
        for k, p in enumerate(reference(labels)):
            if not has_thin_part(p.image):
                differences.append(abs(table["perimeter_px"][k] - p.perimeter) / p.perimeter)
    differences = np.array(differences)
    assert len(differences) > 100 and np.mean(differences < 1e-12) > 0.95 and differences.max() < 0.15


def has_thin_part(mask: np.ndarray) -> bool:
    """Whether a boolean mask has a pixel in no 2×2 block of the mask (a part one pixel wide)."""
    m = np.pad(mask, 1)
    block = m[:-1, :-1] & m[1:, :-1] & m[:-1, 1:] & m[1:, 1:]
    covered = np.zeros_like(m)
    for dy in (0, 1):
        for dx in (0, 1):
            covered[dy:dy + block.shape[0], dx:dx + block.shape[1]] |= block
    return bool((m & ~covered).any())


def test_solidity_of_convex_and_straight_sided_shapes():
    labels = shapes_image()
    table = dict(zip(measure_instances(labels)["id"].tolist(), measure_instances(labels)["solidity"]))
    props = {p.label: p for p in reference(labels)}
    for cell in (1, 2, 5, 7, 8):        # rectangles and ellipses are digitally convex
        assert table[cell] == pytest.approx(1.0)
    assert props[6].solidity <= table[6] <= props[6].solidity + 0.1 and table[6] < 0.9 < table[9]  # 6 is cut by 9
    for cell in (3, 4):                 # axis-aligned sides: the same hull as regionprops'
        assert table[cell] == pytest.approx(props[cell].solidity)
    assert table[3] == pytest.approx(1 - 16 * 20 / (30 * 30))


def test_without_image_or_pixel_size_there_are_no_intensity_or_micrometre_columns():
    labels = shapes_image()
    table = measure_instances(labels)
    assert list(table) == ["id", "area_px", "perimeter_px", "equivalent_diameter_px", "eccentricity", "solidity"]
    assert all(len(v) == 9 for v in table.values())
    named = measure_instances(labels, np.zeros(labels.shape + (2,)), channel_names=[2, 0])
    assert "mean_intensity_c2" in named and "max_intensity_c0" in named


def test_documented_differences_thin_parts_single_pixels_and_empty_images():
    labels = np.zeros((20, 30), np.int32)
    labels[5, 3:13] = 1      # a line one pixel wide: walked there and back
    labels[15, 20] = 2       # a single pixel
    table = measure_instances(labels)
    assert table["perimeter_px"].tolist() == [18.0, 0.0]
    assert [p.perimeter for p in reference(labels)] == [8.0, 0.0]
    assert table["solidity"].tolist() == [1.0, 1.0] and table["eccentricity"].tolist() == [1.0, 0.0]
    empty = measure_instances(np.zeros((8, 8), np.uint16), np.ones((8, 8)), pixel_size=1.0)
    assert all(len(v) == 0 for v in empty.values()) and "mean_intensity_c0" in empty


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError):
        measure_instances(np.zeros((4, 4), np.float32))
    with pytest.raises(ValueError):
        measure_instances(np.zeros((4, 4), np.int32), np.zeros((4, 5)))
    with pytest.raises(ValueError):
        measure_instances(np.zeros((4, 4), np.int32), pixel_size=0.0)


def test_lattice_points_in_hull_counts_like_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(50):
        points = rng.integers(0, rng.integers(1, 12), size=(rng.integers(1, 8), 2))
        hull = cv2.convexHull(points.astype(np.int32))
        grid = [(x, y) for x in range(-1, 14) for y in range(-1, 14)]
        if len(hull) >= 3:
            brute = sum(cv2.pointPolygonTest(hull, (float(x), float(y)), False) >= 0 for x, y in grid)
        else:  # a point or a segment
            a, b = hull[0, 0], hull[-1, 0]
            on_line = [(b[0] - a[0]) * (y - a[1]) == (b[1] - a[1]) * (x - a[0]) for x, y in grid]
            brute = sum(on and min(a[0], b[0]) <= x <= max(a[0], b[0]) and min(a[1], b[1]) <= y <= max(a[1], b[1])
                        for on, (x, y) in zip(on_line, grid))
        assert lattice_points_in_hull(points) == brute, points

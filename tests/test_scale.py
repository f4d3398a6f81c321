"""Automatic scale (cellpoint.runtime.scale): the iterative estimate converges on synthetic images of cells
from 8 to 120 px, with a stand-in scale graph that measures the cells it is shown."""
import cv2
import numpy as np
import pytest

from cellpoint.runtime.scale import ScaleParams, estimate_diameter, read_tiles, tile_origins

PARAMS = ScaleParams(canonical_px=24.0, stride=16, tile=128, max_tiles=4)


def discs(diameter: float, shape=(600, 700), seed=0) -> np.ndarray:
    """A normalised image of bright discs of `diameter` px on a dark background (float32 (H,W))."""
    rng = np.random.default_rng(seed)
    image = np.zeros(shape, np.float32)
    r = diameter / 2
    step = int(diameter * 1.6) + 2
    for y in range(step // 2, shape[0] - step // 2, step):
        for x in range(step // 2, shape[1] - step // 2, step):
            cv2.circle(image, (x + int(rng.integers(-2, 3)), y), int(round(r)), 1.0, -1)
    return image


def measuring_graph(tiles: np.ndarray):
    """A stand-in scale graph: in each tile, the median equivalent diameter of the bright components that
    the tile shows whole, as log2 ratio to canonical (clipped to ±2.5), presence where a grid cell holds
    foreground (and the tile shows a whole cell)."""
    b, _, t, _ = tiles.shape
    g = t // PARAMS.stride
    ratio = np.zeros((b, g, g), np.float32)
    presence = np.full((b, g, g), -5.0, np.float32)
    for k, tile in enumerate(tiles[:, 0]):
        mask = (tile > 0.5).astype(np.uint8)
        n, _, stats, _ = cv2.connectedComponentsWithStats(mask)
        x, y, w, h, areas = stats[1:].T
        whole = (x > 0) & (y > 0) & (x + w < t) & (y + h < t)       # cells cut by the tile are not measured
        areas = areas[whole & (areas >= 2)]
        if areas.size:  # a tile showing no whole cell says nothing
            ratio[k] = np.clip(np.log2(2 * np.sqrt(np.median(areas) / np.pi) / PARAMS.canonical_px), -2.5, 2.5)
            cells = mask.reshape(g, PARAMS.stride, g, PARAMS.stride).max(axis=(1, 3))
            presence[k][cells > 0] = 5.0
    return ratio, presence


@pytest.mark.parametrize("diameter", [8, 14, 24, 40, 70, 120])
def test_estimate_converges_on_cells_of_any_size(diameter):
    estimate = estimate_diameter(discs(diameter), measuring_graph, PARAMS)
    assert estimate == pytest.approx(diameter, rel=0.12)


def test_no_cells_gives_no_estimate():
    assert estimate_diameter(np.zeros((300, 300), np.float32), measuring_graph, PARAMS) is None


def test_tiles_are_spread_over_the_image_and_bounded_in_number():
    origins = tile_origins((1000, 3000), 256, 4)
    assert len(origins) <= 4 and origins[0] == (0, 0)
    assert max(x for _, x in origins) == 3000 - 256
    assert tile_origins((100, 100), 256, 4) == [(0, 0)]
    tiles = read_tiles(np.ones((50, 60), np.float32), 2.0, PARAMS)       # zoomed 100 × 120, padded to 128
    assert tiles.shape == (1, 1, 128, 128) and tiles[0, 0, :100, :120].min() == 1 and tiles[0, 0, 110:].max() == 0

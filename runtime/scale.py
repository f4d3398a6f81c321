"""Automatic scale: estimate the typical cell diameter of an image with a package's scale graph.

The scale graph (trained by `cellpoint train-scale`) looks at normalised image tiles (B,1,t,t) and returns
(B,2,t/stride,t/stride): on a grid of stride `stride` px, the log2 ratio between the diameter of the cells
there and its canonical diameter, and a presence logit (are there cells here). It is trained on cells from about 1/6 to 6 times
its canonical size and is most accurate near it, so the estimate is iterative: look at the image at some
zoom, estimate, zoom so that the cells would have the canonical size, look again, until the cells seen are
within `tolerance` octaves of canonical. Each look reads at most `max_tiles` tiles of `tile` px, spread
over the image, so the cost does not grow with the image."""
from __future__ import annotations

from collections.abc import Callable

import cv2
import msgspec
import numpy as np

RunScale = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
"""tiles float32 (B,1,t,t) → (log2 ratio (B,t/s,t/s), presence logit (B,t/s,t/s))."""


class ScaleParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """How the runtime estimates an image's cell diameter with the package's scale graph.

    graph: the role of the scale graph in the card's `graphs`. canonical_px: the cell diameter (px) at
    which the graph's log2 ratio is 0. stride: px between the graph's output cells. tile: tile side (px,
    a multiple of `stride`) read per look; max_tiles: tiles per look. passes: looks at most. tolerance:
    stop when the cells seen are within this many octaves of canonical. min_presence: output cells whose
    presence probability is below this do not vote. min_zoom, max_zoom: the zoom range tried."""
    graph: str = "scale"
    canonical_px: float = 24.0
    stride: int = 16
    tile: int = 256
    max_tiles: int = 4
    passes: int = 4
    tolerance: float = 0.35
    min_presence: float = 0.5
    min_zoom: float = 1 / 16
    max_zoom: float = 4.0


def tile_origins(shape: tuple[int, int], tile: int, count: int) -> list[tuple[int, int]]:
    """Top-left corners of up to `count` tile×tile windows spread evenly over an image of (H,W) `shape`
    (one window at (0, 0) when the image is no larger than a tile)."""
    h, w = shape
    rows = max(1, min(int(np.ceil(np.sqrt(count * h / max(w, 1)))), count))
    cols = max(1, count // rows)
    ys = np.linspace(0, max(h - tile, 0), rows).round().astype(int) if h > tile else [0]
    xs = np.linspace(0, max(w - tile, 0), cols).round().astype(int) if w > tile else [0]
    return [(int(y), int(x)) for y in dict.fromkeys(ys) for x in dict.fromkeys(xs)][:count]


def read_tiles(image: np.ndarray, zoom: float, params: ScaleParams) -> np.ndarray:
    """Tiles of `image` (float32 (H,W), normalised) seen at `zoom` (output px per image px): float32
    (B,1,tile,tile), zero-padded where the zoomed image is smaller than a tile. Only the parts of the
    image the tiles cover are resized."""
    h, w = image.shape
    zh, zw = max(1, round(h * zoom)), max(1, round(w * zoom))
    t = params.tile
    tiles = []
    for y0, x0 in tile_origins((zh, zw), t, params.max_tiles):
        # the image region under this zoomed tile, with a margin of one source px
        sy0, sx0 = int(np.floor(y0 / zoom)), int(np.floor(x0 / zoom))
        sy1, sx1 = min(h, int(np.ceil((y0 + t) / zoom)) + 1), min(w, int(np.ceil((x0 + t) / zoom)) + 1)
        part = np.ascontiguousarray(image[sy0:sy1, sx0:sx1], np.float32)
        size = (max(1, round((sx1 - sx0) * zoom)), max(1, round((sy1 - sy0) * zoom)))
        part = cv2.resize(part, size, interpolation=cv2.INTER_AREA if zoom < 1 else cv2.INTER_LINEAR)
        out = np.zeros((t, t), np.float32)
        ph, pw = min(t, part.shape[0]), min(t, part.shape[1])
        out[:ph, :pw] = part[:ph, :pw]
        tiles.append(out)
    return np.stack(tiles)[:, None]


def look(image: np.ndarray, zoom: float, run: RunScale, params: ScaleParams) -> tuple[float, float]:
    """One look at `zoom`: (presence-weighted mean log2 ratio of the cells seen, total presence weight).
    The weight is 0 when no output cell reaches `min_presence`."""
    tiles = read_tiles(image, zoom, params)
    ratio, presence = run(tiles)
    prob = 1.0 / (1.0 + np.exp(-np.asarray(presence, np.float64)))
    weight = np.where(prob >= params.min_presence, prob, 0.0)
    total = float(weight.sum())
    if total <= 0:
        return 0.0, 0.0
    return float((np.asarray(ratio, np.float64) * weight).sum() / total), total


def estimate_diameter(image: np.ndarray, run: RunScale, params: ScaleParams = ScaleParams(),
                      start_zoom: float = 1.0) -> float | None:
    """The typical cell diameter (image px) of `image`, float32 (H,W) normalised as the package's network
    sees it, or None when the scale graph sees no cells at any zoom. run: the scale graph (see
    `RunScale`). start_zoom: the first look's zoom. A look that sees no cells is followed by looks zoomed
    out 4× and 16× (cells too large to recognise in a tile) and in 4× (cells too small)."""
    def clip(zoom):
        return float(np.clip(zoom, params.min_zoom, params.max_zoom))
    zoom = clip(start_zoom)
    probes = [clip(zoom / 4), clip(zoom / 16), clip(zoom * 4)]
    estimate, passes = None, 0
    while passes < params.passes:
        ratio, weight = look(image, zoom, run, params)
        if weight <= 0:
            if estimate is not None or not probes:
                return estimate
            zoom = probes.pop(0)
            continue
        passes += 1
        estimate = params.canonical_px * 2.0 ** ratio / zoom
        if abs(ratio) <= params.tolerance:
            break
        new_zoom = clip(params.canonical_px / estimate)
        if np.isclose(new_zoom, zoom):
            break
        zoom = new_zoom
    return estimate

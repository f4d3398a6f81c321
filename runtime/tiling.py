"""Run a fully convolutional network over an image of any size in bounded memory, tile by tile."""
from __future__ import annotations

from typing import Callable

import numpy as np

RunFn = Callable[[np.ndarray], dict[str, np.ndarray]]


def tile_spans(length: int, tile: int, overlap: int, multiple: int) -> list[tuple[int, int, int, int]]:
    """Tiles along one axis of a `length`-pixel axis (`length` and `tile` multiples of `multiple`).

    Returns (start, stop, keep_start, keep_stop) per tile: the tile covers [start, stop) and owns the
    output [keep_start, keep_stop). Starts are multiples of `multiple` spaced by at least
    tile - overlap rounded down to a multiple; the last tile is shifted inwards to end at `length`. Two
    neighbouring tiles hand over in the middle of their shared pixels, so each keeps at least overlap/2
    pixels away from any side that touches another tile; sides on the image border are kept whole."""
    if length <= tile:
        return [(0, length, 0, length)]
    stride = (tile - overlap) // multiple * multiple
    if stride <= 0:
        raise ValueError(f"overlap {overlap} leaves no stride for tile {tile} at multiple {multiple}")
    starts = list(range(0, length - tile, stride)) + [length - tile]
    cuts = [0] + [(a + tile + b) // 2 for a, b in zip(starts[:-1], starts[1:])] + [length]
    return [(s, s + tile, cuts[i], cuts[i + 1]) for i, s in enumerate(starts)]


def predict_tiled(run: RunFn, image: np.ndarray, tile: int = 1024, overlap: int = 64,
                  multiple: int = 16, on_tile: Callable[[int, int], None] | None = None) -> dict[str, np.ndarray]:
    """Apply `run` to a (C,H,W) float32 image, whole or in overlapping tiles, and stitch its outputs.

    run: float32 (1,C,h,w) → {name: float32 (1,k,h,w)}, h and w multiples of `multiple`, at most `tile`
    (rounded down to a multiple). The image is first reflect-padded at the bottom/right to multiples of
    `multiple`; if it then fits in one tile it runs in one call. Otherwise tiles overlap by at least
    `overlap` px and each output pixel comes from the tile where it lies farthest from a seam, so the
    result equals whole-image inference wherever the network's receptive field radius is < overlap/2.
    An output may be coarser than its input by an integer stride dividing `multiple` (a detector's
    grid): it is stitched on its own grid, handing over at the grid cell holding each seam, and returned
    as (k, ceil(H/stride), ceil(W/stride)).
    on_tile(done, total), if given, is called after each tile run.
    Returns {name: float32 (k,H,W)} (or the coarser grid)."""
    x = np.asarray(image, dtype=np.float32)
    if x.ndim != 3:
        raise ValueError(f"image must be (C,H,W), got shape {x.shape}")
    if multiple < 1 or overlap < 0:
        raise ValueError("multiple must be >= 1 and overlap >= 0")
    tile = tile // multiple * multiple
    if tile < multiple:
        raise ValueError(f"tile must be at least multiple={multiple}")
    _, h, w = x.shape
    ph, pw = -(-h // multiple) * multiple, -(-w // multiple) * multiple
    if (ph, pw) != (h, w):
        x = np.pad(x, ((0, 0), (0, ph - h), (0, pw - w)), mode="reflect")

    out: dict[str, np.ndarray] = {}
    tiles = [(ys, xs) for ys in tile_spans(ph, tile, overlap, multiple) for xs in tile_spans(pw, tile, overlap, multiple)
             if ys[2] < min(ys[3], h) and xs[2] < min(xs[3], w)]  # not tiles that would own only padding
    for done, ((y0, y1, ky0, ky1), (x0, x1, kx0, kx1)) in enumerate(tiles, 1):
        ky1, kx1 = min(ky1, h), min(kx1, w)
        result = run(np.ascontiguousarray(x[None, :, y0:y1, x0:x1]))
        for name, arr in result.items():
            arr = np.asarray(arr)
            s = (y1 - y0) // arr.shape[2] if arr.ndim == 4 and arr.shape[2] else 0
            if (arr.ndim != 4 or arr.shape[0] != 1 or s < 1 or multiple % s
                    or arr.shape[2:] != ((y1 - y0) // s, (x1 - x0) // s)):
                raise ValueError(f"output {name!r} has shape {arr.shape}, expected (1,k,{y1 - y0},{x1 - x0}) "
                                 f"or that divided by a stride dividing {multiple}")
            if name not in out:
                out[name] = np.empty((arr.shape[1], -(-h // s), -(-w // s)), np.float32)
            gy0, gx0 = ky0 // s, kx0 // s
            gy1 = -(-ky1 // s) if ky1 == h else ky1 // s
            gx1 = -(-kx1 // s) if kx1 == w else kx1 // s
            out[name][:, gy0:gy1, gx0:gx1] = arr[0, :, gy0 - y0 // s:gy1 - y0 // s, gx0 - x0 // s:gx1 - x0 // s]
        if on_tile is not None:
            on_tile(done, len(tiles))
    return out

"""Segment an image larger than memory block by block, with no cell cut or doubled at a block border.

The image is any 2-D (H,W) or (H,W,C) array that can be sliced — a numpy array, a memory map, a zarr array
over a tiled TIFF or OME-Zarr (`open_lazily`). Once for the whole image, from a thumbnail and a few sample
blocks: the channel fit and polarity, the normalisation levels, and the diameter (given, from the pixel
size, or estimated and refined as `Segmenter.segment` does it). Then each core block is read with a halo
of context around it and segmented; a cell is kept by the block whose core holds its centroid, and written
into the label image only where no earlier block wrote (a cell mostly written already is the same cell
found twice and is dropped). The diameter is moved (by under 1.6 %) so that block corners fall on whole
network pixels (`aligned_diameter`): every block is then resampled on the whole image's own grid. The
halo — three diameters plus the network's own tile overlap — is wider than any cell that can be anchored
in a core, so a kept cell is never cut by the halo's edge.

Memory: one block with its halo (a few hundred MB at most), the thumbnail, and the caller's label store
(write it to zarr for bounded memory; `cellpoint segment` does so for large files)."""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial

import numpy as np

from cellpoint.runtime.colour import invert_with, to_model_channels
from cellpoint.runtime.labels import median_diameter

BLOCK = 2048
"""Core block side in network px (the image's own px times the zoom to the network's diameter)."""
HALO_DIAMETERS = 3.0
"""Context around a core block, in cell diameters (plus the network's tile overlap)."""
THUMBNAIL_SIDE = 2048
"""The longer side (px) of the thumbnail the normalisation levels and polarity are taken from."""
SAMPLE_SIDE = 1024
"""Side (image px) of the sample blocks the diameter is estimated and refined on; up to 3×3 of them."""
LARGE_PIXELS = 4096 * 4096
"""Images with more pixels than this (at the network's scale) are segmented block by block."""


BlockTask = tuple[np.ndarray, float, np.ndarray, tuple[int, int]]
"""One block's work: its window of the image fitted to the model's channels, the diameter (image px), the
whole image's normalisation levels, and the window's corner in network px (`Segmenter.segment_prepared`)."""
RunBlocks = Callable[[Iterable[BlockTask]], Iterable[tuple[np.ndarray, dict[str, np.ndarray]]]]
"""Runs block tasks, yielding each block's (labels, table) in the order of the tasks."""


@dataclass(frozen=True)
class BlockwiseResult:
    """What a blockwise run found: cells, the diameter used (image px) and where it came from, the image's
    conversion note, blocks run."""
    cells: int
    diameter: float
    diameter_source: str
    conversion: str
    blocks: int


def core_blocks(height: int, width: int, side: int) -> list[tuple[int, int, int, int]]:
    """(y0, y1, x0, x1) of the core blocks tiling a height×width image with squares of `side` px (the last
    row and column shorter), in raster order."""
    return [(y, min(y + side, height), x, min(x + side, width))
            for y in range(0, height, side) for x in range(0, width, side)]


def thumbnail(image, side: int = THUMBNAIL_SIDE) -> np.ndarray:
    """Every k-th row and column of a sliceable (H,W[,C]) image so that the longer side is at most `side`,
    read band by band (bounded memory)."""
    h, w = image.shape[:2]
    k = max(1, math.ceil(max(h, w) / side))
    band = max(k, (4096 // k) * k)  # rows per read, a multiple of k
    return np.concatenate([np.asarray(image[y:min(y + band, h):k, ::k]) for y in range(0, h, band)])


def segment_blockwise(segmenter, image, labels_out, *, diameter: float | None = None,
                      pixel_size: float | None = None, channels=None, refine_diameter: bool | None = None,
                      block: int = BLOCK,
                      on_block: Callable[[int, int], None] | None = None,
                      on_rows: Callable[[dict[str, np.ndarray]], None] | None = None,
                      run_blocks: RunBlocks | None = None) -> BlockwiseResult:
    """Segment `image` into `labels_out` (a writable (H,W) integer array or zarr array of zeros; uint32 for
    images that may hold more than 65,535 cells) block by block; see the module.

    diameter / pixel_size / channels / refine_diameter: as `Segmenter.segment`. block: core block side in
    network px.
    on_block(done, total) after each block. on_rows(table) with each block's new cells: id, area,
    centroid_y, centroid_x, bbox_y0, bbox_x0, bbox_y1, bbox_x1 (image px), score and the decoder's columns.
    run_blocks: where the blocks' network and decoder run (`RunBlocks`; default: here, one after another,
    with `segmenter`); e.g. `dask_batch.dask_block_runner` runs them as tasks of a Dask cluster. The
    merge always runs here, in raster order, so the result does not depend on where blocks ran.
    Returns a BlockwiseResult."""
    h, w = image.shape[:2]
    spec = segmenter.package.card.inputs[0]
    thumb = thumbnail(image)
    if channels is not None and thumb.ndim == 3:
        thumb = thumb[..., list(channels)]
    fitted, note = to_model_channels(thumb, spec.channels, spec.polarity)
    flip = float(np.max(fitted)) if "inverted" in note else None
    thumb_fit = _prepare(segmenter, thumb, spec, flip)
    levels = segmenter.levels(thumb_fit)

    def read(y0, y1, x0, x1) -> np.ndarray:
        crop = np.asarray(image[y0:y1, x0:x1])
        if channels is not None and crop.ndim == 3:
            crop = crop[..., list(channels)]
        return _prepare(segmenter, crop, spec, flip)

    refine = segmenter.refines_diameter if refine_diameter is None else refine_diameter
    used, source = _choose_diameter(segmenter, image, read, levels, diameter, pixel_size, channels, refine)
    strides = [o.stride for o in segmenter.package.card.outputs] or [1]
    used, grid = aligned_diameter(segmenter.diameter, used, max(strides))
    zoom = segmenter.diameter / used
    needed = math.ceil(HALO_DIAMETERS * used + segmenter.package.card.tiling.overlap / zoom)
    halo = -(-needed // grid) * grid  # so that windows start on the grid
    # the core gives back what the halo's rounding took, so a block with its halo is no larger than before
    side = max(grid, math.floor((block / zoom - 2 * (halo - needed)) / grid) * grid)
    blocks = core_blocks(h, w, side)
    windows = [(max(0, y0 - halo), min(h, y1 + halo), max(0, x0 - halo), min(w, x1 + halo)) for y0, y1, x0, x1 in blocks]
    # whole network px of each window's corner (whole because the grid is aligned)
    tasks = ((read(*window), used, levels, (round(window[0] * zoom), round(window[2] * zoom))) for window in windows)
    if run_blocks is None:
        run_blocks = partial(_run_here, segmenter)
    next_id = 1
    for done, ((y0, y1, x0, x1), (cy0, cy1, cx0, cx1), (labels, table)) in enumerate(
            zip(blocks, windows, run_blocks(tasks)), 1):
        keep = _anchored(table, (y0 - cy0, y1 - cy0, x0 - cx0, x1 - cx0))
        region = np.asarray(labels_out[cy0:cy1, cx0:cx1])
        rows, next_id = _merge(labels, table, keep, region, next_id, (cy0, cx0))
        labels_out[cy0:cy1, cx0:cx1] = region
        if on_rows is not None and len(rows["id"]):
            on_rows(rows)
        if on_block is not None:
            on_block(done, len(blocks))
    return BlockwiseResult(next_id - 1, used, source, note, len(blocks))


def _run_here(segmenter, tasks: Iterable[BlockTask]) -> Iterator[tuple[np.ndarray, dict]]:
    """Each block's labels and table, computed in this process, in order."""
    for crop, diameter, levels, origin in tasks:
        yield segmenter.segment_prepared(crop, diameter, levels, network_origin=origin)


def aligned_diameter(model_diameter: float, diameter: float, stride: int = 1) -> tuple[float, int]:
    """The diameter (image px) nearest `diameter` whose zoom to the model's is k / grid with k a multiple
    of `stride`, and that grid (a power of two, px): (diameter, grid).

    Blocks that start on multiples of `grid` then start on whole network pixels, and on whole cells of the
    network's coarsest output grid (`stride`, the card's largest output stride): each block is resampled
    on the very grid the whole image is, and its network tiles are laid on the whole image's tile grid
    (`Segmenter._predict`), so cells come out as in one pass. The grid is the smallest power of two (at
    least 16) with k ≥ 32 strides: the diameter moves by under 1.6 %."""
    zoom = model_diameter / diameter
    grid = 16
    while grid * zoom < 32 * stride and grid < 1 << 20:
        grid *= 2
    steps = max(1, round(zoom * grid / stride)) * stride
    return model_diameter * grid / steps, grid


def _prepare(segmenter, crop: np.ndarray, spec, flip: float | None) -> np.ndarray:
    """A crop fitted to the model's channels (colour, alpha) and, when the whole image is inverted, inverted
    with the whole image's maximum `flip` (the same transform in every block)."""
    fitted, _ = to_model_channels(crop, spec.channels, "any")
    return invert_with(fitted, flip) if flip is not None else fitted


def _sample_blocks(h: int, w: int, side: int = SAMPLE_SIDE) -> list[tuple[int, int, int, int]]:
    """Up to 3×3 squares of `side` px spread over an h×w image (fewer for small images)."""
    side_y, side_x = min(side, h), min(side, w)
    ys = sorted({round(f * (h - side_y)) for f in (0.2, 0.5, 0.8)})
    xs = sorted({round(f * (w - side_x)) for f in (0.2, 0.5, 0.8)})
    return [(y, y + side_y, x, x + side_x) for y in ys for x in xs]


def _choose_diameter(segmenter, image, read, levels, diameter, pixel_size, channels, refine) -> tuple[float, str]:
    """The diameter for the whole image and its source, as `Segmenter.segment` would choose it, with the
    estimate and the refinement taken over sample blocks."""
    from cellpoint.runtime.limits import check_diameter, check_pixel_size
    if diameter is not None:
        return check_diameter(diameter, segmenter.diameter), "given"
    um = segmenter.package.card.object_diameter_um
    if pixel_size is not None and um:
        derived = float(um) / check_pixel_size(pixel_size)
        return check_diameter(derived, segmenter.diameter, "diameter from the pixel size"), "pixel size"
    h, w = image.shape[:2]
    samples = _sample_blocks(h, w)
    used, source = segmenter.diameter, "model"
    if segmenter.estimates_diameter:
        estimates = []
        for y0, y1, x0, x1 in samples:
            crop = np.asarray(image[y0:y1, x0:x1])
            estimate = segmenter.estimate_diameter(crop, channels)
            if estimate is not None:
                estimates.append(estimate)
        if estimates:
            used, source = float(np.median(estimates)), "estimated"
    if refine:
        from cellpoint.runtime.segmenter import MAX_REFINE_ZOOM
        tables = [segmenter.segment_prepared(read(*s), used, levels)[1] for s in samples]
        pooled = {"area": np.concatenate([t["area"] for t in tables])} if tables else {"area": np.zeros(0)}
        measured = median_diameter(pooled)
        if (measured is not None and measured >= segmenter.diameter / MAX_REFINE_ZOOM
                and abs(np.log(measured / used)) > np.log(1.1)):
            used, source = float(measured), source + ", refined"
    return used, source


def _anchored(table: dict, core: tuple[int, int, int, int]) -> np.ndarray:
    """Boolean (n,) over a block's cells (ids 1..n): whose centroid lies in the core (y0, y1, x0, x1),
    in the block's px, half-open."""
    y0, y1, x0, x1 = core
    cy, cx = np.asarray(table["centroid_y"], float), np.asarray(table["centroid_x"], float)
    return (cy >= y0) & (cy < y1) & (cx >= x0) & (cx < x1)


def _merge(labels: np.ndarray, table: dict, keep: np.ndarray, region: np.ndarray, next_id: int,
           origin: tuple[int, int]) -> tuple[dict[str, np.ndarray], int]:
    """Write a block's kept cells (`keep`: boolean over the table's rows) into `region` (the label store's
    pixels under the block, modified in place) where it is still 0, dropping a cell of which less than half
    is free there (found by an earlier block). Returns (the new cells' table rows in image px, the next
    free id)."""
    ids = np.asarray(table["id"], np.int64)
    top = int(labels.max()) if labels.size else 0
    kept = np.zeros(top + 1, bool)
    kept[ids[keep]] = True
    candidates = np.where(kept[labels], labels, 0)
    free = region == 0
    total = np.bincount(candidates.ravel(), minlength=top + 1)
    available = np.bincount(candidates[free], minlength=top + 1)
    accepted = kept & (available * 2 >= total) & (total > 0)
    accepted[0] = False
    count = int(accepted.sum())
    new_ids = np.zeros(top + 1, np.int64)
    new_ids[accepted] = np.arange(next_id, next_id + count)
    target = new_ids[candidates]
    write = free & (target > 0)
    region[write] = target[write]
    rows = _rows(write, target[write], table, ids, np.flatnonzero(accepted), origin)
    return rows, next_id + count


def _rows(write: np.ndarray, new: np.ndarray, table: dict, ids: np.ndarray, old: np.ndarray,
          origin: tuple[int, int]) -> dict[str, np.ndarray]:
    """Table rows (image px) of the cells just written: `write` (h,w) the pixels written, `new` their new
    ids (in `write`'s order), `old` the block ids of the accepted cells, ascending (as their new ids are)."""
    ys, xs = np.nonzero(write)
    order = np.argsort(new, kind="stable")
    new, ys, xs = new[order], ys[order], xs[order]
    unique, starts, counts = np.unique(new, return_index=True, return_counts=True)
    oy, ox = origin
    rows = {"id": unique.astype(np.uint32), "area": counts.astype(np.int64)}
    if len(new):
        rows.update(centroid_y=np.add.reduceat(ys, starts) / counts + oy,
                    centroid_x=np.add.reduceat(xs, starts) / counts + ox,
                    bbox_y0=np.minimum.reduceat(ys, starts) + oy, bbox_x0=np.minimum.reduceat(xs, starts) + ox,
                    bbox_y1=np.maximum.reduceat(ys, starts) + oy + 1, bbox_x1=np.maximum.reduceat(xs, starts) + ox + 1)
    else:
        rows.update({k: np.zeros(0) for k in ("centroid_y", "centroid_x", "bbox_y0", "bbox_x0", "bbox_y1",
                                              "bbox_x1")})
    position = np.searchsorted(ids, old)
    for column, values in table.items():
        if column not in rows:
            rows[column] = np.asarray(values)[position]
    return rows

"""Seeded watershed: split a foreground probability map into one instance per seed.

Output contract shared by every splitter: a uint32 (H,W) label image, 0 = background, ids 1..N consecutive.
`seeded_components` and `flood_components` are the steps the graph-cut splitter (graphcut.py) builds on."""
from __future__ import annotations

import cv2
import numpy as np

_NEIGHBOURS_8 = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))
_CROSS = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
_PENDING = np.uint32(0xFFFFFFFF)


def _kept_seeds(mask: np.ndarray, seeds_rc) -> np.ndarray:
    """Seeds (K,2) that are inside the image and on the mask, duplicates removed, order kept. int64."""
    seeds = np.asarray(seeds_rc, dtype=np.int64).reshape(-1, 2)
    h, w = mask.shape
    inside = (seeds[:, 0] >= 0) & (seeds[:, 0] < h) & (seeds[:, 1] >= 0) & (seeds[:, 1] < w)
    seeds = seeds[inside]
    seeds = seeds[mask[seeds[:, 0], seeds[:, 1]]]
    _, first = np.unique(seeds[:, 0] * w + seeds[:, 1], return_index=True)
    return seeds[np.sort(first)]


class _Components:
    """8-connected foreground components and how many seeds each holds.

    comp int32 (H,W) component ids (0 = background); stats as cv2 (x, y, w, h, area);
    seed_comp (K,) component of each seed; n_seeds (n_comp,) seeds per component."""

    def __init__(self, mask: np.ndarray, seeds: np.ndarray):
        n, self.comp, self.stats, _ = cv2.connectedComponentsWithStats(mask.view(np.uint8), connectivity=8,
                                                                       ltype=cv2.CV_32S)
        self.seed_comp = self.comp[seeds[:, 0], seeds[:, 1]]
        self.n_seeds = np.bincount(self.seed_comp, minlength=n)
        self.n_seeds[0] = 0

    def base_labels(self, keep_unseeded: bool, n_seeds_total: int):
        """Labels that need no flooding, and where flooding is needed.

        Returns (labels uint32 (H,W), box): components with exactly one seed get that seed's id
        (index + 1), unseeded ones get ids after the seeds' (if kept) or 0. box is None if no component
        holds >= 2 seeds, else (flood bool (h,w): those components inside their joint bounding box, the
        indices of their seeds (n,), (rows, cols) slices of the box)."""
        multi = self.n_seeds >= 2
        lut = np.zeros(self.n_seeds.size, np.uint32)
        single = self.n_seeds[self.seed_comp] == 1
        lut[self.seed_comp[single]] = np.flatnonzero(single).astype(np.uint32) + 1
        if keep_unseeded:
            unseeded = np.flatnonzero(self.n_seeds[1:] == 0) + 1
            lut[unseeded] = n_seeds_total + 1 + np.arange(unseeded.size, dtype=np.uint32)
        if not multi.any():
            return lut[self.comp], None
        lut[multi] = _PENDING  # marks the pixels to flood; they are all overwritten
        labels = lut[self.comp]
        x, y, w, h = (self.stats[multi, i] for i in range(4))
        rs = slice(int(y.min()), int((y + h).max()))
        cs = slice(int(x.min()), int((x + w).max()))
        return labels, (labels[rs, cs] == _PENDING, np.flatnonzero(multi[self.seed_comp]), (rs, cs))


def seeded_components(foreground: np.ndarray, seeds_rc, threshold: float):
    """The splitters' common start: float32 foreground (H,W), the seeds (K,2) int64 on the mask
    `foreground > threshold` (duplicates dropped, order kept) and the mask's components with their seeds."""
    fg = np.asarray(foreground, dtype=np.float32)
    if fg.ndim != 2:
        raise ValueError(f"foreground must be (H,W), got shape {fg.shape}")
    mask = fg > threshold
    seeds = _kept_seeds(mask, seeds_rc)
    return fg, seeds, _Components(mask, seeds)


def seeded_watershed(foreground: np.ndarray, seeds_rc, threshold: float = 0.5,
                     elevation: np.ndarray | None = None, keep_unseeded: bool = False) -> np.ndarray:
    """Split the foreground mask into one instance per seed by marker-controlled watershed.

    foreground: float32 (H,W) probability; the mask is `foreground > threshold`.
    seeds_rc: (K,2) int (row, col); seeds off the mask are dropped; the kept seeds get ids 1, 2, ... in
    input order (so seeds sorted by score give ids by score).
    elevation: optional float (H,W), lower floods first; it is quantised to 255 levels over the flooded
    pixels. Default: -(distance to the mask edge in px × foreground): touching round cells meet at the
    neck, where the distance transform has a saddle, and a dip of the foreground between cells deepens
    it (the network output is smooth already, so it is not blurred again).
    Components holding one seed become that instance without flooding; components with none are
    dropped, or with `keep_unseeded` become instances numbered after the seeded ones.
    Returns uint32 (H,W), 0 background, ids 1..N consecutive."""
    fg, seeds, comps = seeded_components(foreground, seeds_rc, threshold)
    return flood_components(fg, seeds, comps, elevation, keep_unseeded)


def flood_components(fg, seeds, comps, elevation, keep_unseeded) -> np.ndarray:
    """The watershed split of `seeded_components`' output (see `seeded_watershed`): uint32 (H,W)."""
    labels, box = comps.base_labels(keep_unseeded, len(seeds))
    if box is None:
        return labels
    flood, seed_ids, (rs, cs) = box
    local_seeds = seeds[seed_ids] - [rs.start, cs.start]
    if elevation is not None and np.shape(elevation) != fg.shape:
        raise ValueError(f"elevation {np.shape(elevation)} and foreground {fg.shape} differ in size")
    elev = None if elevation is None else np.asarray(elevation, dtype=np.float32)[rs, cs]
    flooded = _flood(flood, fg[rs, cs], local_seeds, seed_ids + 1, elev, len(seeds))
    np.copyto(labels[rs, cs], flooded, casting="unsafe", where=flood)
    return labels


def _elevation_levels(flood: np.ndarray, fg: np.ndarray, elevation: np.ndarray | None) -> np.ndarray:
    """uint8 (h,w) flooding order: 0..254 on the flood set (low first), 255 elsewhere."""
    flood8 = flood.view(np.uint8)
    if elevation is None:
        height = cv2.distanceTransform(flood8, cv2.DIST_L2, 5)
        elev = np.negative(height * fg, out=height)
    else:
        elev = np.ascontiguousarray(elevation, dtype=np.float32)
    lo, hi, _, _ = cv2.minMaxLoc(elev, flood8)
    scale = 254.0 / (hi - lo) if hi > lo else 0.0
    levels = cv2.convertScaleAbs(elev, alpha=scale, beta=-lo * scale)  # rounds; >= 0 on the flood set
    levels[~flood] = 255
    return levels


def _flood(flood: np.ndarray, fg: np.ndarray, seeds: np.ndarray, ids: np.ndarray,
           elevation: np.ndarray | None, max_id: int) -> np.ndarray:
    """Watershed of the bool (h,w) flood set from seeds (n,2) with ids (n,) using cv2.watershed.

    cv2.watershed orders pixels by the colour difference between neighbours, not by a height. With the
    heights written on a checkerboard (even pixels in channel 0, odd ones in channel 1, zeros between)
    every 4-neighbour pair differs by height_p in one channel and height_q in the other, so the priority is
    max(height_p, height_q): the classic flooding order. Everything outside the flood set is a
    pre-labelled wall except a one-pixel ring of height 255 around it, so no mask pixel is claimed by the
    wall. Returns int32 (h,w), valid only on the flood set."""
    h, w = flood.shape
    pad = np.zeros((h + 2, w + 2), bool)  # cv2.watershed marks the image border as boundary: pad it
    pad[1:-1, 1:-1] = flood
    levels = np.full(pad.shape, 255, np.uint8)
    levels[1:-1, 1:-1] = _elevation_levels(flood, fg, elevation)
    image = np.zeros((h + 2, w + 2, 3), np.uint8)
    image[0::2, 0::2, 0] = levels[0::2, 0::2]
    image[1::2, 1::2, 0] = levels[1::2, 1::2]
    image[0::2, 1::2, 1] = levels[0::2, 1::2]
    image[1::2, 0::2, 1] = levels[1::2, 0::2]
    open_ = cv2.dilate(pad.view(np.uint8), _CROSS)  # flood set and its ring
    markers = np.full(pad.shape, max_id + 1, np.int32)
    markers[open_.view(bool)] = 0
    markers[seeds[:, 0] + 1, seeds[:, 1] + 1] = ids
    cv2.watershed(image, markers)
    # boundary pixels (-1) between instances and any pixel reached only through the ring take a neighbour's id
    bad = (markers < 1) | (markers > max_id)
    bad &= pad
    _fill_from_neighbours(markers.ravel(), np.flatnonzero(bad), w + 2, max_id)
    return markers[1:-1, 1:-1]


def _fill_from_neighbours(labels_flat: np.ndarray, todo: np.ndarray, width: int, max_id: int) -> None:
    """In place: give each flat index in `todo` the largest valid id (1..max_id) among its 8 neighbours,
    repeating until nothing changes. Indices must not touch the array border."""
    offsets = np.array([dr * width + dc for dr, dc in _NEIGHBOURS_8])
    while todo.size:
        nb = labels_flat[todo[:, None] + offsets]
        nb[(nb < 1) | (nb > max_id)] = 0
        best = nb.max(axis=1)
        done = best > 0
        if not done.any():
            labels_flat[todo] = 0
            return
        labels_flat[todo[done]] = best[done]
        todo = todo[~done]

"""Dense network maps → instance label images, and per-instance statistics.

Every decoder here has the same shape: float32 (H,W) maps plus seed points in, a uint32 (H,W) label image
out (0 = background, instance ids 1..N consecutive). Candidate-based decoders (per-instance score, box,
mask patch → merge) are meant to sit beside `seeded_watershed` and `seeded_graphcut` with that same
output contract, so `remove_small_instances`, `instance_table` and `render_overlay` serve all of them.
Imports only numpy, cv2 and maxflow.
"""
from __future__ import annotations

import cv2
import maxflow
import numpy as np

# 8-neighbourhood as (drow, dcol)
_NEIGHBOURS_8 = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))
_CROSS = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
_PENDING = np.uint32(0xFFFFFFFF)


# ---------------------------------------------------------------------------------------------- peaks

def find_peaks(heatmap: np.ndarray, threshold: float, min_distance: int,
               mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Local maxima of a (H,W) heat map.

    A pixel is a peak when it equals the maximum of the (2·min_distance+1)² square around it, exceeds
    `threshold` and (if given) lies where the bool (H,W) `mask` is True. A flat-topped peak (8-connected
    pixels sharing the maximum) yields one pixel: the plateau pixel nearest its centroid. Equal but
    separate maxima closer than `min_distance` are both kept.
    Returns rc int64 (K,2) (row, col) and scores float32 (K,), sorted by score descending (ties in
    row-major order)."""
    heat = np.asarray(heatmap, dtype=np.float32)
    if heat.ndim != 2:
        raise ValueError(f"heatmap must be (H,W), got shape {heat.shape}")
    if min_distance < 1:
        raise ValueError("min_distance must be >= 1")
    size = 2 * int(min_distance) + 1
    local_max = cv2.dilate(heat, np.ones((size, size), np.uint8))  # border never wins: constant = -inf
    candidates = (heat == local_max) & (heat > threshold)
    if mask is not None:
        candidates &= np.asarray(mask, dtype=bool)
    flat = np.flatnonzero(candidates)
    width = heat.shape[1]
    if flat.size > 1 and _has_adjacent(flat, width):
        flat = _one_per_plateau(candidates, flat, width)
    rows, cols = np.divmod(flat, width)
    scores = heat.ravel()[flat]
    order = np.argsort(-scores, kind="stable")
    rc = np.stack([rows[order], cols[order]], axis=1).astype(np.int64)
    return rc, scores[order].astype(np.float32)


def _has_adjacent(flat: np.ndarray, width: int) -> bool:
    """Whether any two of the sorted flat indices may be 8-neighbours (a cheap, conservative test:
    row wrap-around can give false positives, never false negatives)."""
    for offset in (1, width - 1, width, width + 1):
        pos = np.searchsorted(flat, flat + offset)
        pos = np.minimum(pos, flat.size - 1)
        if np.any(flat[pos] == flat + offset):
            return True
    return False


def _one_per_plateau(candidates: np.ndarray, flat: np.ndarray, width: int) -> np.ndarray:
    """Reduce 8-connected groups of candidate pixels (always equal-valued plateaus, since each equals
    its neighbourhood max) to the pixel nearest the group centroid. Returns sorted flat indices."""
    _, comp, _, centroids = cv2.connectedComponentsWithStats(candidates.view(np.uint8), connectivity=8,
                                                             ltype=cv2.CV_32S)
    rows, cols = np.divmod(flat, width)
    group = comp.ravel()[flat]
    dist2 = (rows - centroids[group, 1]) ** 2 + (cols - centroids[group, 0]) ** 2
    order = np.lexsort((flat, dist2, group))
    first = np.ones(order.size, bool)
    first[1:] = group[order[1:]] != group[order[:-1]]
    return np.sort(flat[order[first]])


# ------------------------------------------------------------------------------------------ decoders

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


def _setup(foreground: np.ndarray, seeds_rc, threshold: float):
    """Shared decoder input: float32 foreground, kept seeds (K,2) int64 and their components."""
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
    fg, seeds, comps = _setup(foreground, seeds_rc, threshold)
    return _watershed(fg, seeds, comps, elevation, keep_unseeded)


def _watershed(fg, seeds, comps, elevation, keep_unseeded) -> np.ndarray:
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


def seeded_graphcut(foreground: np.ndarray, seeds_rc, threshold: float = 0.5, smoothness: float = 1.0,
                    keep_unseeded: bool = False) -> np.ndarray:
    """Split the foreground mask into one instance per seed by graph cuts (PyMaxflow).

    Starts from the watershed split, then, in each component with >= 2 seeds, solves for every seed in
    turn one binary cut "this seed vs the other seeds" on a window around its region (its box grown by
    its radius + 2 px, where radius = sqrt(area / π) of its watershed region):
      - data term: d(p, s) / r_s for each seed s, the distance to the seed relative to that seed's
        radius, times this seed's radius to keep it in pixels; the "others" side pays the smallest of
        these over the other seeds of the window, so larger cells claim proportionally more;
      - pairwise term (4-neighbours): smoothness · mean foreground of the pair · exp(-|Δforeground| / 0.1),
        so cuts are short (they snap to necks) and prefer low or steep foreground;
      - the seed, the other seeds, pixels off the component and window edges inside it are fixed.
    The seed keeps the source-side part connected to it; pixels it loses go to the other seed with the
    smallest data term. Parameters and return value as `seeded_watershed`."""
    fg, seeds, comps = _setup(foreground, seeds_rc, threshold)
    labels = _watershed(fg, seeds, comps, None, keep_unseeded)
    multi = np.flatnonzero(comps.n_seeds[comps.seed_comp] >= 2)
    if multi.size == 0:
        return labels
    multi = multi[np.argsort(comps.seed_comp[multi], kind="stable")]  # seed indices grouped by component
    starts = np.flatnonzero(np.diff(comps.seed_comp[multi], prepend=-1))
    for group in np.split(multi, starts[1:]):
        c = comps.seed_comp[group[0]]
        x, y, w, h = comps.stats[c, :4]
        crop = (slice(y, y + h), slice(x, x + w))
        _split_component(labels[crop], comps.comp[crop] == c, fg[crop], group, seeds - [y, x], smoothness)
    return labels


def _split_component(lab: np.ndarray, comp: np.ndarray, fg: np.ndarray, group: np.ndarray,
                     seeds: np.ndarray, smoothness: float) -> None:
    """Graph-cut refinement, in place, of the uint32 crop `lab` of one component (bool `comp`) whose seeds
    are `group` (indices into `seeds` (K,2), crop coordinates; id = index + 1)."""
    idx = np.flatnonzero(comp & (lab != 0))
    rows, cols = np.divmod(idx, lab.shape[1])
    codes = np.searchsorted(group + 1, lab.ravel()[idx])  # ids in a component are exactly its seeds' ids
    n = group.size
    y0, y1, x0, x1 = _extent(codes, rows, cols, n, *lab.shape)
    radius = np.ones(len(seeds))
    radius[group] = np.maximum(np.sqrt(np.bincount(codes, minlength=n) / np.pi), 1.0)
    h, w = lab.shape
    for j, k in enumerate(group):
        margin = int(np.ceil(radius[k])) + 2
        ys = slice(max(y0[j] - margin, 0), min(y1[j] + margin, h))
        xs = slice(max(x0[j] - margin, 0), min(x1[j] + margin, w))
        fixed_edges = (ys.start > 0, xs.start > 0, ys.stop < h, xs.stop < w)
        _cut_one(lab[ys, xs], comp[ys, xs], fg[ys, xs], k + 1, seeds - [ys.start, xs.start], radius,
                 smoothness, fixed_edges)


_RIGHT = np.array([[0, 0, 0], [0, 0, 1], [0, 0, 0]])
_DOWN = np.array([[0, 0, 0], [0, 0, 0], [0, 1, 0]])


def _cut_one(lab: np.ndarray, comp: np.ndarray, fg: np.ndarray, sid: int, seeds: np.ndarray,
             radius: np.ndarray, smoothness: float, fixed_edges: tuple[bool, bool, bool, bool]) -> None:
    """One binary cut, in place on the uint32 window `lab`: id `sid` against the other ids on `comp`
    (bool, the seed's component). seeds (K,2) in window coordinates, ids = index + 1; radius (K,) px;
    fixed_edges: whether the top, left, bottom, right window edges cut through the component (so pixels
    there keep their side)."""
    others = np.unique(lab[comp])
    others = others[(others != 0) & (others != sid)].astype(np.intp)
    if others.size == 0:
        return
    hh, ww = lab.shape
    yy = np.arange(hh, dtype=np.float32)[None, :, None]
    xx = np.arange(ww, dtype=np.float32)[None, None, :]
    pts = seeds[others - 1].astype(np.float32)
    rel = (radius[sid - 1] / radius[others - 1]).astype(np.float32)[:, None, None]
    cost_others = np.hypot(yy - pts[:, 0, None, None], xx - pts[:, 1, None, None]) * rel
    choice = np.argmin(cost_others, axis=0)
    cost_out = np.take_along_axis(cost_others, choice[None], axis=0)[0]  # paid on leaving `sid`
    own = seeds[sid - 1]
    cost_in = np.hypot(yy[0] - own[0], xx[0] - own[1])  # paid on joining `sid`

    fixed_out = ~comp
    edge = np.zeros_like(comp)
    top, left, bottom, right = fixed_edges
    edge[0] |= top
    edge[:, 0] |= left
    edge[-1] |= bottom
    edge[:, -1] |= right
    fixed_out |= edge & (lab != sid)
    inside_win = (pts[:, 0] >= 0) & (pts[:, 0] < hh) & (pts[:, 1] >= 0) & (pts[:, 1] < ww)
    fixed_out[seeds[others[inside_win] - 1, 0], seeds[others[inside_win] - 1, 1]] = True
    cost_in[fixed_out] = 1e9
    cost_out[own[0], own[1]] = 1e9

    graph = maxflow.Graph[float]()
    nodes = graph.add_grid_nodes((hh, ww))
    for a, b, structure in ((fg[:, :-1], fg[:, 1:], _RIGHT), (fg[:-1], fg[1:], _DOWN)):
        weight = np.zeros((hh, ww), np.float64)
        both = comp[: a.shape[0], : a.shape[1]] & comp[hh - a.shape[0]:, ww - a.shape[1]:]
        weight[: a.shape[0], : a.shape[1]] = np.where(
            both, smoothness * 0.5 * (a + b) * np.exp(-np.abs(a - b) / 0.1), 0.0)
        graph.add_grid_edges(nodes, weights=weight, structure=structure, symmetric=True)
    graph.add_grid_tedges(nodes, cost_out, cost_in)
    graph.maxflow()
    gained = ~graph.get_grid_segments(nodes) & comp
    _, parts = cv2.connectedComponents(gained.view(np.uint8), connectivity=8, ltype=cv2.CV_32S)
    gained = parts == parts[own[0], own[1]]
    lost = (lab == sid) & ~gained
    lab[lost] = others[choice[lost]]
    lab[gained] = sid


def _extent(codes, rows, cols, n, h, w):
    """Per-code (n,) int64 y0, y1, x0, x1 (half-open) of pixels at (rows, cols) with codes 0..n-1."""
    out = []
    for coord, func, init in ((rows, np.minimum, h), (rows, np.maximum, -1),
                              (cols, np.minimum, w), (cols, np.maximum, -1)):
        ext = np.full(n, init, np.int64)
        func.at(ext, codes, coord)
        out.append(ext + 1 if func is np.maximum else ext)
    return out


# ------------------------------------------------------------------------------------- label tools

def _code_space(ids: np.ndarray):
    """Compact codes for the non-zero ids of labelled pixels.

    Returns (code_ids uint64 (n,), codes intp like `ids`): code c stands for id code_ids[c]. Ids are their
    own codes unless they are much sparser than the pixels (then np.unique)."""
    if ids.size == 0:
        return np.zeros(0, np.uint64), np.zeros(0, np.intp)
    top = int(ids.max())
    if top <= 4 * ids.size + 1024:
        return np.arange(top + 1, dtype=np.uint64), ids.astype(np.intp)
    uniq, codes = np.unique(ids, return_inverse=True)
    return uniq.astype(np.uint64), codes.reshape(-1).astype(np.intp)


def _labelled(labels: np.ndarray):
    """Flat indices of the non-zero pixels of (H,W) `labels`, their code space and codes."""
    flat = labels.ravel()
    idx = np.flatnonzero(flat)
    code_ids, codes = _code_space(flat[idx])
    return idx, code_ids, codes


def relabel_sequential(labels: np.ndarray) -> np.ndarray:
    """Renumber the ids of an integer (H,W) label image to 1..N keeping their order; 0 stays 0. uint32."""
    lab = np.asarray(labels)
    idx, code_ids, codes = _labelled(lab)
    present = np.bincount(codes, minlength=code_ids.size) > 0
    new = np.zeros(code_ids.size, np.uint32)
    new[present] = np.arange(1, np.count_nonzero(present) + 1, dtype=np.uint32)
    out = np.zeros(lab.shape, np.uint32)
    out.ravel()[idx] = new[codes]
    return out


def remove_small_instances(labels: np.ndarray, min_area: int) -> np.ndarray:
    """Set instances with fewer than `min_area` pixels to 0. Other ids are unchanged (run
    `relabel_sequential` to close the gaps). Returns uint32 (H,W)."""
    lab = np.asarray(labels)
    idx, code_ids, codes = _labelled(lab)
    small = np.bincount(codes, minlength=code_ids.size) < min_area
    out = lab.astype(np.uint32, copy=True)
    out.ravel()[idx[small[codes]]] = 0
    return out


def instance_table(labels: np.ndarray, score_map: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Per-instance statistics of an integer (H,W) label image, one row per id present (ascending).

    Columns: id uint32; area int64 (px); centroid_y, centroid_x float64 (px, pixel centres at integers);
    bbox_y0, bbox_x0, bbox_y1, bbox_x1 int64 (half-open); score float32 = mean of the (H,W) `score_map`
    over the instance, or 1.0 without one."""
    lab = np.asarray(labels)
    if lab.ndim != 2:
        raise ValueError(f"labels must be (H,W), got shape {lab.shape}")
    h, w = lab.shape
    idx, code_ids, codes = _labelled(lab)
    n = code_ids.size
    area = np.bincount(codes, minlength=n)
    rows, cols = np.divmod(idx, w)
    sum_y = np.bincount(codes, weights=rows, minlength=n)
    sum_x = np.bincount(codes, weights=cols, minlength=n)
    keep = np.flatnonzero(area)
    n_keep = area[keep]
    if score_map is None:
        score = np.ones(keep.size, np.float32)
    else:
        score_map = np.asarray(score_map)
        if score_map.shape != lab.shape:
            raise ValueError(f"score_map {score_map.shape} and labels {lab.shape} differ in size")
        values = score_map.ravel()[idx]
        score = (np.bincount(codes, weights=values, minlength=n)[keep] / n_keep).astype(np.float32)

    y0, y1, x0, x1 = _extent(codes, rows, cols, n, h, w)
    return {
        "id": code_ids[keep].astype(np.uint32),
        "area": n_keep.astype(np.int64),
        "centroid_y": sum_y[keep] / n_keep,
        "centroid_x": sum_x[keep] / n_keep,
        "bbox_y0": y0[keep], "bbox_x0": x0[keep], "bbox_y1": y1[keep], "bbox_x1": x1[keep],
        "score": score,
    }


# ---------------------------------------------------------------------------------------- overlay

def _id_colours(ids: np.ndarray) -> np.ndarray:
    """uint8 (n,3) bright pseudo-random colour per id, the same for an id in every image (seeded hash)."""
    x = ids.astype(np.uint64) + np.uint64(0x5EED)
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
    channels = [(x >> np.uint64(8 * k)) & np.uint64(0xFF) for k in range(3)]
    return (64 + np.stack(channels, axis=-1) * 191 // 255).astype(np.uint8)


def _gray8(image: np.ndarray, low: float = 1.0, high: float = 99.8) -> np.ndarray:
    """(H,W) or (H,W,3) image of any dtype → uint8 (H,W), `low`/`high` percentiles stretched to 0/255."""
    img = np.asarray(image)
    if img.ndim == 3:
        img = img.mean(axis=2, dtype=np.float32)
    img = np.ascontiguousarray(img, dtype=np.float32)
    # percentiles of a subsample: exact enough, much faster on large images
    sample = img[:: max(1, img.shape[0] // 512), :: max(1, img.shape[1] // 512)]
    sample = sample[np.isfinite(sample)]
    lo, hi = np.percentile(sample, [low, high]) if sample.size else (0.0, 0.0)
    scale = 255.0 / (hi - lo) if hi > lo else 0.0
    # convertScaleAbs rounds and saturates; values below `lo` would come out mirrored, so clamp first
    return cv2.convertScaleAbs(np.maximum(img, np.float32(lo)), alpha=scale, beta=-lo * scale)


def render_overlay(image: np.ndarray, labels: np.ndarray, alpha: float = 0.3) -> np.ndarray:
    """RGB preview: `image` (H,W) or (H,W,3), any dtype, shown as 8-bit gray (1–99.8 percentile
    stretch); instances filled with their colour at `alpha` and outlined in it (pixels with a
    4-neighbour of another id). Returns uint8 (H,W,3) RGB."""
    lab = np.asarray(labels)
    if np.shape(image)[:2] != lab.shape:
        raise ValueError(f"image {np.shape(image)} and labels {lab.shape} differ in size")
    out = np.repeat(_gray8(image)[..., None], 3, axis=2)
    idx, code_ids, codes = _labelled(lab)
    if idx.size == 0:
        return out
    colours = _id_colours(code_ids)[codes]
    flat = out.reshape(-1, 3)
    weight = int(round(alpha * 256))
    flat[idx] = (flat[idx].astype(np.uint16) * (256 - weight) + colours * np.uint16(weight) + 128) >> 8
    edge = np.zeros(lab.shape, bool)
    vertical = lab[1:] != lab[:-1]
    horizontal = lab[:, 1:] != lab[:, :-1]
    edge[1:] |= vertical
    edge[:-1] |= vertical
    edge[:, 1:] |= horizontal
    edge[:, :-1] |= horizontal
    on_edge = edge.ravel()[idx]
    flat[idx[on_edge]] = colours[on_edge]
    return out

"""Graph cuts on the pixel grid (PyMaxflow): one min-cut builder and the cuts built on it.

- `min_cut`: the one place a grid graph is built and cut (4-neighbour edges plus terminal costs).
- `binary_cut` / `graphcut_binary`: a threshold refined by a contrast-sensitive Potts smoothness term
  (WSISPDR's per-cell cut, machine-made foreground labels).
- `seeded_graphcut`: splitting a foreground into one instance per seed (the maps-and-seeds decoder).
"""
from __future__ import annotations

import cv2
import maxflow
import numpy as np

from cellpoint.runtime.labels import pixel_extents
from cellpoint.runtime.watershed import flood_components, seeded_components

_RIGHT = np.array([[0, 0, 0], [0, 0, 1], [0, 0, 0]])
_DOWN = np.array([[0, 0, 0], [0, 0, 0], [0, 1, 0]])
HARD = 1e9
"""A terminal cost that fixes a pixel's side."""


def min_cut(cost_inside: np.ndarray, cost_outside: np.ndarray, right: np.ndarray, down: np.ndarray) -> np.ndarray:
    """The minimum cut of a 4-connected grid graph: which pixels end up inside.

    cost_inside, cost_outside: float (H,W), what a pixel pays for ending inside / outside. right, down:
    float (H,W), the weight of the edge from each pixel to its right / lower neighbour (paid when the two
    end on different sides; the last column / row is unused). Returns bool (H,W), True inside."""
    graph = maxflow.Graph[float]()
    nodes = graph.add_grid_nodes(np.shape(cost_inside))
    graph.add_grid_edges(nodes, weights=right, structure=_RIGHT, symmetric=True)
    graph.add_grid_edges(nodes, weights=down, structure=_DOWN, symmetric=True)
    graph.add_grid_tedges(nodes, cost_outside, cost_inside)  # source side = inside
    graph.maxflow()
    return ~graph.get_grid_segments(nodes)


def otsu_level(image: np.ndarray) -> float:
    """Otsu threshold of a [0,1] float (H,W) image, on 256 levels, as a value in [0,1]."""
    u8 = cv2.convertScaleAbs(np.clip(image, 0.0, 1.0), alpha=255.0)
    t, _ = cv2.threshold(u8, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    return (float(t) + 0.5) / 255.0


def binary_cut(image: np.ndarray, level: float, smoothness: float = 2.0, sigma: float = 0.1,
               data_weight: float = 1.0, fg: np.ndarray | None = None, bg: np.ndarray | None = None) -> np.ndarray:
    """Threshold refined by a graph cut: bool (H,W) of pixels on the bright side of `level`, smoothed.

    image: float (H,W) in [0,1]. Data term: data_weight · (s − level) paid to label a pixel background
    when positive, its negative to label it foreground; pairwise term on 4-neighbours:
    contrast-sensitive Potts, smoothness · exp(−(s_p − s_q)² / 2σ²). fg, bg: optional disjoint bool hard
    seeds (always inside / always outside)."""
    image = np.asarray(image, dtype=np.float32)
    h, w = image.shape
    diff = np.float64(data_weight) * (image.astype(np.float64) - level)
    cost_bg = np.maximum(diff, 0.0)   # bright pixels pay to be background
    cost_fg = np.maximum(-diff, 0.0)  # dark pixels pay to be foreground
    if fg is not None:
        cost_bg[fg], cost_fg[fg] = HARD, 0.0
    if bg is not None:
        cost_fg[bg], cost_bg[bg] = HARD, 0.0
    two_sigma2 = 2.0 * float(sigma) ** 2
    neighbours = []
    for a, b in ((image[:, :-1], image[:, 1:]), (image[:-1], image[1:])):
        weight = np.zeros((h, w), np.float64)
        weight[: a.shape[0], : a.shape[1]] = smoothness * np.exp(-((a - b) ** 2) / two_sigma2)
        neighbours.append(weight)
    return min_cut(cost_fg, cost_bg, *neighbours)


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
    fg, seeds, comps = seeded_components(foreground, seeds_rc, threshold)
    labels = flood_components(fg, seeds, comps, None, keep_unseeded)
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
    y0, y1, x0, x1 = pixel_extents(codes, rows, cols, n, *lab.shape)
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

    neighbours = []
    for a, b in ((fg[:, :-1], fg[:, 1:]), (fg[:-1], fg[1:])):
        weight = np.zeros((hh, ww), np.float64)
        both = comp[: a.shape[0], : a.shape[1]] & comp[hh - a.shape[0]:, ww - a.shape[1]:]
        weight[: a.shape[0], : a.shape[1]] = np.where(
            both, smoothness * 0.5 * (a + b) * np.exp(-np.abs(a - b) / 0.1), 0.0)
        neighbours.append(weight)
    gained = min_cut(cost_in, cost_out, *neighbours) & comp
    _, parts = cv2.connectedComponents(gained.view(np.uint8), connectivity=8, ltype=cv2.CV_32S)
    gained = parts == parts[own[0], own[1]]
    lost = (lab == sid) & ~gained
    lab[lost] = others[choice[lost]]
    lab[gained] = sid

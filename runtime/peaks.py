"""Local maxima of heat maps: the seeds of the maps-and-seeds decoders and the proposals of grid decoders."""
from __future__ import annotations

import cv2
import numpy as np


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


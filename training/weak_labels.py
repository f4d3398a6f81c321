"""Derive weak labels from a full instance label image, the way the weak-supervision papers simulate them.

Input everywhere: `labels` (H,W) integer, 0 = background, each positive id one instance (ids need not be
contiguous). Coordinates: xy float, x = column, y = row, pixel centres at integers. Instances are always
returned in ascending id order. Random choices come only from the `rng` argument (a numpy Generator; None
means `np.random.default_rng(0)`), so the same seed gives the same labels.
"""
from __future__ import annotations

import numpy as np

PLACEMENTS = ("centroid", "uniform")
_JITTER_TRIES = 100

# Annotation time per cell in seconds (Point2Mask, Table 1 and text): LIVECell full masks took 46 s per
# cell, a bounding box ~7 s and labelling each in-box point as cell/background ~0.9 s.
MASK_SECONDS = 46.0
POINT_SECONDS = 1.0
BOX_SECONDS = 7.0
BOX_POINT_SECONDS = 0.9


def _instances(labels: np.ndarray) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
    """-> (ids ascending, rows per id, cols per id); rows/cols are int64 pixel index arrays."""
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be 2-D (H,W), got shape {labels.shape}")
    if labels.dtype.kind not in "iu":
        raise ValueError(f"labels must be integers, got dtype {labels.dtype}")
    flat = labels.ravel()
    where = np.flatnonzero(flat > 0)
    order = np.argsort(flat[where], kind="stable")
    where = where[order]
    ids, starts = np.unique(flat[where], return_index=True)
    if len(ids) == 0:
        return ids, [], []
    groups = np.split(where, starts[1:])
    width = labels.shape[1]
    return ids, [g // width for g in groups], [g % width for g in groups]


def _pixel_of(xy: np.ndarray) -> np.ndarray:
    """xy (...,2) float -> (...,2) int (col,row) of the pixel containing each point (halves round up)."""
    return np.floor(np.asarray(xy) + 0.5).astype(np.int64)


def _inside(labels: np.ndarray, xy: np.ndarray, label: int) -> np.ndarray:
    """Bool per point: does the pixel under xy (K,2) belong to instance `label`?"""
    pix = _pixel_of(xy)
    h, w = labels.shape
    ok = (pix[:, 0] >= 0) & (pix[:, 0] < w) & (pix[:, 1] >= 0) & (pix[:, 1] < h)
    ok[ok] = labels[pix[ok, 1], pix[ok, 0]] == label
    return ok


def points_from_labels(labels: np.ndarray, placement: str = "centroid", jitter: float = 0.0,
                       rng: np.random.Generator | None = None) -> np.ndarray:
    """One point per instance -> float64 (N,2) xy, ascending id order.

    placement "centroid": the mask centroid; if the pixel under it is not part of the mask (non-convex
    shapes), the nearest mask pixel centre instead. "uniform": the centre of a uniformly random mask pixel.
    jitter: Gaussian sd in pixels added to each point, re-drawn (up to 100 tries) until the point lies on
    its own mask; if no draw does, the un-jittered point is kept.
    """
    if placement not in PLACEMENTS:
        raise ValueError(f"placement must be one of {PLACEMENTS}, got {placement!r}")
    if not jitter >= 0:
        raise ValueError(f"jitter must be >= 0 pixels, got {jitter}")
    rng = np.random.default_rng(0) if rng is None else rng
    labels = np.asarray(labels)
    ids, rows, cols = _instances(labels)
    points = np.zeros((len(ids), 2), np.float64)
    for i, (label, r, c) in enumerate(zip(ids, rows, cols)):
        if placement == "uniform":
            k = rng.integers(len(r))
            point = np.array([c[k], r[k]], np.float64)
        else:
            point = np.array([c.mean(), r.mean()])
            if not _inside(labels, point[None], label)[0]:
                k = np.argmin((c - point[0]) ** 2 + (r - point[1]) ** 2)
                point = np.array([c[k], r[k]], np.float64)
        if jitter > 0:
            candidates = point + rng.normal(0.0, jitter, size=(_JITTER_TRIES, 2))
            good = np.flatnonzero(_inside(labels, candidates, label))
            if len(good):
                point = candidates[good[0]]
        points[i] = point
    return points


def box_points_from_labels(labels: np.ndarray, n_points: int,
                           rng: np.random.Generator | None = None) -> list[dict]:
    """Point2Mask annotation per instance: its bounding box plus n_points random points labelled cell/not.

    The box is the instance's pixel extent, x0 = min col - 0.5, y0 = min row - 0.5, x1 = max col + 0.5,
    y1 = max row + 0.5, so edge pixels are wholly inside it; points are drawn uniformly over that whole
    box, edge pixels included (Point2Mask: "anywhere inside or on the edge of the bounding box").
    Returns a list (ascending id) of dicts: id int, box [x0,y0,x1,y1] floats, points float64 (n,2) xy,
    point_labels int64 (n,): 1 if the pixel under the point belongs to this instance, else 0 (background
    or a neighbouring cell).
    """
    if int(n_points) != n_points or n_points < 1:
        raise ValueError(f"n_points must be a positive integer, got {n_points}")
    rng = np.random.default_rng(0) if rng is None else rng
    labels = np.asarray(labels)
    ids, rows, cols = _instances(labels)
    result = []
    for label, r, c in zip(ids, rows, cols):
        x0, x1 = c.min() - 0.5, c.max() + 0.5
        y0, y1 = r.min() - 0.5, r.max() + 0.5
        xy = np.stack([rng.uniform(x0, x1, n_points), rng.uniform(y0, y1, n_points)], axis=1)
        # a point exactly on the right/bottom edge rounds to the next pixel; it belongs to the edge pixel
        pix = _pixel_of(xy)
        pix[:, 0] = np.clip(pix[:, 0], c.min(), c.max())
        pix[:, 1] = np.clip(pix[:, 1], r.min(), r.max())
        inside = (labels[pix[:, 1], pix[:, 0]] == label).astype(np.int64)
        result.append({"id": int(label), "box": [float(x0), float(y0), float(x1), float(y1)],
                       "points": xy, "point_labels": inside})
    return result


def foreground_and_locations(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """LACSS weak labels -> (foreground bool (H,W), xy float64 (N,2)).

    foreground: labels > 0 (the image-level segmentation). xy: each instance's centre of mass, ascending
    id order, not snapped into the mask (LACSS used centres of mass; locations are only rough).
    """
    ids, rows, cols = _instances(labels)
    xy = np.array([[c.mean(), r.mean()] for r, c in zip(rows, cols)], np.float64).reshape(-1, 2)
    return np.asarray(labels) > 0, xy


def foreground_and_count(labels: np.ndarray) -> tuple[np.ndarray, int]:
    """Canonical-shape weak labels -> (foreground bool (H,W), number of instances int)."""
    ids, _, _ = _instances(labels)
    return np.asarray(labels) > 0, int(len(ids))


def seconds_per_cell(kind: str, n_points: int = 0) -> float:
    """Human annotation time of one cell in seconds, by Point2Mask's timing model (the cost model that
    `cellpoint labels` and the benchmarks share).

    kind "mask" (or "full"): 46 s (LIVECell full masks). "points": 1 s (one click near the centre; the
    paper's 0.9 s is for labelling a point already placed in a box). "box-points": 7 s per box + 0.9 s per
    point (n_points per cell; 6 points = 12.4 s, Table 1). "foreground-locations" and "foreground-count":
    0 -- machine-made in the papers' setting (foreground by thresholding a fluorescence channel, locations
    or count by nucleus detection on a DNA stain); if you make them by hand, budget them like "points"."""
    if n_points < 0:
        raise ValueError(f"n_points must be >= 0, got {n_points}")
    per_cell = {
        "mask": MASK_SECONDS,
        "full": MASK_SECONDS,
        "points": POINT_SECONDS,
        "box-points": BOX_SECONDS + BOX_POINT_SECONDS * n_points,
        "foreground-locations": 0.0,
        "foreground-count": 0.0,
    }
    if kind not in per_cell:
        raise ValueError(f"unknown annotation kind {kind!r}; expected one of {sorted(per_cell)}")
    return per_cell[kind]


def annotation_hours(kind: str, n_cells: int, n_points: int = 0) -> float:
    """Estimated human annotation time in hours for n_cells cells: n_cells × `seconds_per_cell(kind,
    n_points)` / 3600."""
    if n_cells < 0:
        raise ValueError(f"n_cells must be >= 0, got {n_cells}")
    return seconds_per_cell(kind, n_points) * n_cells / 3600.0

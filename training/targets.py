"""Dense training targets shared by the map-and-seed methods: centre heat maps and object-size estimates."""
from __future__ import annotations

import numpy as np


def center_heatmap(shape: tuple[int, int], centers_rc: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian peaks (height 1, sd `sigma` px) at each (row, col) centre; overlaps take the maximum.

    Returns float32 (H,W) in [0,1]."""
    h, w = shape
    heat = np.zeros((h, w), np.float32)
    radius = int(np.ceil(3 * sigma))
    offsets = np.arange(-radius, radius + 1)
    kernel = np.exp(-(offsets[:, None] ** 2 + offsets[None, :] ** 2) / (2 * sigma ** 2)).astype(np.float32)
    for r, c in np.round(np.asarray(centers_rc, float).reshape(-1, 2)).astype(int):
        r0, r1, c0, c1 = max(r - radius, 0), min(r + radius + 1, h), max(c - radius, 0), min(c + radius + 1, w)
        if r0 >= r1 or c0 >= c1:
            continue
        patch = kernel[r0 - r + radius:r1 - r + radius, c0 - c + radius:c1 - c + radius]
        np.maximum(heat[r0:r1, c0:c1], patch, out=heat[r0:r1, c0:c1])
    return heat


def label_centroids(labels: np.ndarray) -> np.ndarray:
    """(H,W) int label image → float64 (N,2) row/col centroids of ids 1..max present, in id order."""
    ids = labels.ravel()
    n = int(ids.max()) if ids.size else 0
    count = np.bincount(ids, minlength=n + 1)
    rows, cols = np.indices(labels.shape)
    cy = np.bincount(ids, rows.ravel(), minlength=n + 1)
    cx = np.bincount(ids, cols.ravel(), minlength=n + 1)
    present = np.nonzero(count[1:])[0] + 1
    return np.stack([cy[present] / count[present], cx[present] / count[present]], 1)


def median_diameter_from_labels(labels: np.ndarray) -> float:
    """Median equivalent-circle diameter (px) of the instances of a label image; nan if none."""
    count = np.bincount(labels.ravel())[1:]
    count = count[count > 0]
    return float(2 * np.sqrt(np.median(count) / np.pi)) if count.size else float("nan")


def median_diameter_from_regions(objectness: np.ndarray, region: np.ndarray, threshold: float = 0.5) -> float:
    """Median equivalent-circle diameter (px) of the seeds' regions where objectness > threshold.

    This is how a point-trained model learns object size without ever seeing a mask."""
    inside = (objectness > threshold) & (region >= 0)
    count = np.bincount(region[inside].ravel())
    count = count[count > 0]
    return float(2 * np.sqrt(np.median(count) / np.pi)) if count.size else float("nan")


def diameter_from_mask_and_count(foreground: np.ndarray, count: int) -> float:
    """Equivalent-circle diameter (px) of the average cell: 2·sqrt(area / (π·count)); nan if count is 0."""
    area = float(np.count_nonzero(foreground))
    return 2.0 * np.sqrt(area / (np.pi * count)) if count > 0 and area > 0 else float("nan")

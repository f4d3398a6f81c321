"""Label images: renumbering, removing small instances, resizing, and the per-instance table.

A label image is an integer (H,W) array, 0 = background, each id > 0 one instance. Imports only numpy."""
from __future__ import annotations

import numpy as np


def pixel_extents(codes, rows, cols, n, h, w):
    """Bounding boxes of coded pixels: per-code (n,) int64 y0, y1, x0, x1 (half-open) of pixels at (rows, cols) with codes 0..n-1."""
    out = []
    for coord, func, init in ((rows, np.minimum, h), (rows, np.maximum, -1),
                              (cols, np.minimum, w), (cols, np.maximum, -1)):
        ext = np.full(n, init, np.int64)
        func.at(ext, codes, coord)
        out.append(ext + 1 if func is np.maximum else ext)
    return out


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


def labelled_pixels(labels: np.ndarray):
    """Flat indices of the non-zero pixels of (H,W) `labels`, their code space and codes."""
    flat = labels.ravel()
    idx = np.flatnonzero(flat)
    code_ids, codes = _code_space(flat[idx])
    return idx, code_ids, codes


def relabel_sequential(labels: np.ndarray) -> np.ndarray:
    """Renumber the ids of an integer (H,W) label image to 1..N keeping their order; 0 stays 0. uint32."""
    lab = np.asarray(labels)
    idx, code_ids, codes = labelled_pixels(lab)
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
    idx, code_ids, codes = labelled_pixels(lab)
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
    idx, code_ids, codes = labelled_pixels(lab)
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

    y0, y1, x0, x1 = pixel_extents(codes, rows, cols, n, h, w)
    return {
        "id": code_ids[keep].astype(np.uint32),
        "area": n_keep.astype(np.int64),
        "centroid_y": sum_y[keep] / n_keep,
        "centroid_x": sum_x[keep] / n_keep,
        "bbox_y0": y0[keep], "bbox_x0": x0[keep], "bbox_y1": y1[keep], "bbox_x1": x1[keep],
        "score": score,
    }


def resize_labels(labels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a label image to (H,W), pixel centres aligned. Returns uint32."""
    lab = np.asarray(labels)
    h, w = lab.shape
    rows = np.clip(np.floor((np.arange(shape[0]) + 0.5) * h / shape[0]).astype(int), 0, h - 1)
    cols = np.clip(np.floor((np.arange(shape[1]) + 0.5) * w / shape[1]).astype(int), 0, w - 1)
    return lab[rows][:, cols].astype(np.uint32)


def median_diameter(table: dict[str, np.ndarray], min_cells: int = 5) -> float | None:
    """Median equivalent-circle diameter (px) of the instances in a table; None below `min_cells`."""
    area = table["area"]
    return float(2 * np.sqrt(np.median(area) / np.pi)) if len(area) >= min_cells else None


def interior_points(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One point well inside each cell: the pixel farthest from the cell's border (from the background and
    from touching cells), the first such pixel in raster order on ties. A centroid can fall outside a
    concave cell; this point cannot. labels: (H,W) integer label image. Returns ids int64 (N,) ascending and
    points int64 (N,2) row/col."""
    import cv2
    labels = np.asarray(labels)
    same = np.ones(labels.shape, bool)  # pixels whose 4-neighbours (inside the image) are of their own cell
    same[1:] &= labels[1:] == labels[:-1]
    same[:-1] &= labels[:-1] == labels[1:]
    same[:, 1:] &= labels[:, 1:] == labels[:, :-1]
    same[:, :-1] &= labels[:, :-1] == labels[:, 1:]
    inside = (labels > 0) & same
    distance = cv2.distanceTransform(np.pad(inside, 1).astype(np.uint8), cv2.DIST_L2, 5)[1:-1, 1:-1]
    rows, cols = np.nonzero(labels > 0)
    if rows.size == 0:
        return np.zeros(0, np.int64), np.zeros((0, 2), np.int64)
    ids = labels[rows, cols].astype(np.int64)
    order = np.lexsort((-distance[rows, cols], ids))  # by id, then farthest first (stable: raster order)
    first = np.ones(order.size, bool)
    first[1:] = ids[order][1:] != ids[order][:-1]
    pick = order[first]
    return ids[pick], np.stack([rows[pick], cols[pick]], axis=1).astype(np.int64)

"""The candidates decoder family: per-instance masks with scores → merged → one label image.

Candidates travel as three equal-length flat arrays, one entry per (candidate, pixel) where that
candidate's probability reaches the mask threshold:
    pixel int64 — flat index into the (H,W) image (row * W + col)
    owner int64 — candidate index 0..n-1
    prob  float32 — the candidate's probability at that pixel
A box-and-patch method turns its patches into this form with `candidates_from_patches`; a method that
renders instances (canonical shape) produces it directly. Imports only numpy."""
from __future__ import annotations

import numpy as np


def candidates_from_patches(boxes: np.ndarray, patches: list[np.ndarray], shape: tuple[int, int],
                            threshold: float = 0.5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mask patches placed in their boxes → (pixel, owner, prob), keeping pixels with prob >= threshold.

    boxes int (n,4) y0, x0, y1, x1 (half-open, image px; may reach outside the image, which is clipped);
    patches[k] float (y1-y0, x1-x0)."""
    h, w = shape
    pixels, owners, probs = [], [], []
    for k, ((y0, x0, y1, x1), patch) in enumerate(zip(np.asarray(boxes, int), patches)):
        patch = np.asarray(patch, np.float32)
        if patch.shape != (y1 - y0, x1 - x0):
            raise ValueError(f"candidate {k}: patch {patch.shape} does not fit its box {(y1 - y0, x1 - x0)}")
        rows, cols = np.nonzero(patch >= threshold)
        p = patch[rows, cols]
        rows, cols = rows + y0, cols + x0
        inside = (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)
        pixels.append(rows[inside].astype(np.int64) * w + cols[inside])
        owners.append(np.full(int(inside.sum()), k, np.int64))
        probs.append(p[inside])
    if not pixels:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    return np.concatenate(pixels), np.concatenate(owners), np.concatenate(probs).astype(np.float32)


def overlap_counts(pixel: np.ndarray, owner: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixels shared by each pair of candidates → (i, j, count) int64 arrays with i < j, pairs sharing
    at least one pixel only. A candidate listing a pixel twice counts it once."""
    code = np.unique(np.stack([pixel, owner], 1), axis=0) if pixel.size else np.zeros((0, 2), np.int64)
    pix, own = code[:, 0], code[:, 1]  # sorted by pixel, then owner
    firsts, seconds = [], []
    shift = 1
    while shift < pix.size:
        same = pix[shift:] == pix[:-shift]
        if not same.any():
            break
        firsts.append(own[:-shift][same])
        seconds.append(own[shift:][same])
        shift += 1
    if not firsts:
        empty = np.zeros(0, np.int64)
        return empty, empty, empty
    i, j = np.concatenate(firsts), np.concatenate(seconds)
    n = int(own.max()) + 1
    pairs, count = np.unique(np.minimum(i, j) * n + np.maximum(i, j), return_counts=True)
    return pairs // n, pairs % n, count.astype(np.int64)


def containment_merge(pixel: np.ndarray, owner: np.ndarray, n: int, ratio: float = 0.5) -> np.ndarray:
    """Merge each smaller candidate m into a bigger b when |b ∩ m| / |m| >= ratio (canonical shape, §2.3).

    Merging is transitive (a chain of containments forms one group). n: number of candidates.
    Returns int64 (n,): each candidate's group, named by the group's biggest member (ties: lowest index);
    apply it as `group[owner]` to relabel the pixel list."""
    area = np.bincount(owner, minlength=n) if owner.size else np.zeros(n, np.int64)
    parent = np.arange(n)

    def root(k):
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    i, j, count = overlap_counts(pixel, owner)
    smaller = np.where((area[i] < area[j]) | ((area[i] == area[j]) & (i > j)), i, j)
    contained = count / np.maximum(area[smaller], 1) >= ratio
    for a, b in zip(i[contained], j[contained]):
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    groups = np.array([root(k) for k in range(n)], np.int64)
    # name each group by its biggest member
    order = np.lexsort((np.arange(n), -area))       # biggest first, ties by index
    name = np.full(n, -1, np.int64)
    for k in order:
        if name[groups[k]] < 0:
            name[groups[k]] = k
    return name[groups]


def paste_candidates(pixel: np.ndarray, owner: np.ndarray, prob: np.ndarray,
                     shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Resolve overlaps by the highest probability (ties: lowest owner) and paint the label image.

    Returns labels uint32 (H,W) with id = owner + 1 (not yet consecutive) and the winning probability
    float32 (H,W) (0 on background)."""
    h, w = shape
    labels = np.zeros(h * w, np.uint32)
    score = np.zeros(h * w, np.float32)
    if pixel.size:
        order = np.lexsort((owner, -prob, pixel))
        first = np.ones(order.size, bool)
        first[1:] = pixel[order[1:]] != pixel[order[:-1]]
        win = order[first]
        labels[pixel[win]] = (owner[win] + 1).astype(np.uint32)
        score[pixel[win]] = prob[win]
    return labels.reshape(h, w), score.reshape(h, w)


def box_iou_one(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one box (4,) with boxes (n,4), all x0, y0, x1, y1 (continuous) → float64 (n,)."""
    lo = np.maximum(box[:2], boxes[:, :2])
    hi = np.minimum(box[2:], boxes[:, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=1)
    area = np.prod(np.clip(boxes[:, 2:] - boxes[:, :2], 0, None), axis=1)
    own = np.prod(np.clip(box[2:] - box[:2], 0, None))
    return inter / np.maximum(own + area - inter, 1e-9)


def box_nms(boxes: np.ndarray, scores: np.ndarray, iou: float = 0.5, limit: int | None = None) -> np.ndarray:
    """Greedy non-maximum suppression of candidate boxes: the strongest box is kept and every box whose
    IoU with it exceeds `iou` is dropped, then the next strongest left, and so on.

    boxes float (n,4) x0, y0, x1, y1; scores float (n,). Ties keep the lower index. Returns int64 indices
    of the kept boxes, strongest first, at most `limit` (None: no limit). Each kept box is compared only
    with the boxes whose left edge lies within the widest box's width of its own (a slab of the boxes
    sorted by x0), so thousands of cells cost milliseconds rather than n × kept comparisons."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    n = len(boxes)
    limit = n if limit is None else int(limit)
    by_x = np.argsort(boxes[:, 0], kind="stable")
    x0_sorted = boxes[by_x, 0]
    rank_in_x = np.empty(n, np.int64)
    rank_in_x[by_x] = np.arange(n)
    widest = float((boxes[:, 2] - boxes[:, 0]).max()) if n else 0.0
    alive = np.ones(n, bool)                      # in x0 order
    keep = []
    for k in np.argsort(-np.asarray(scores, np.float64), kind="stable"):
        if len(keep) >= limit:
            break
        if not alive[rank_in_x[k]]:
            continue
        keep.append(k)
        lo = np.searchsorted(x0_sorted, boxes[k, 0] - widest, "left")
        hi = np.searchsorted(x0_sorted, boxes[k, 2], "right")
        near = by_x[lo:hi]
        hit = alive[lo:hi] & (box_iou_one(boxes[k], boxes[near]) > iou)
        alive[lo:hi] &= ~hit
        alive[rank_in_x[k]] = False
    return np.asarray(keep, np.int64)

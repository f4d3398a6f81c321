"""Decoder of box detectors with a mask head (Point2Mask, Khalid et al.): per-level cell scores and box
distances → proposals → non-maximum suppression → one mask patch per box from the package's mask graph
→ pasted into one label image.

The main graph gives, at the network's scale, for each stride s in `strides` a score map "score_s{s}"
(1,h,w) (probability that a cell's box is centred near the location) and "boxes_s{s}" (4,h,w): distances
(l, t, r, b) in network px from the location — pixel (s·j + (s−1)/2, s·i + (s−1)/2) of grid cell (i, j)
— to the box's left, top, right and bottom edges; plus stride-4 "features" (F,h,w). The mask graph
turns (features (1,F,h,w), boxes (B,4)) into mask probabilities (B,1,M,M) over each box.

NMS runs here, in numpy, not in the graph: the main graph runs in tiles and its maps are stitched
before decoding, so proposals from the whole image only exist after stitching; the limits and
thresholds are then card parameters that can change without re-exporting, and the NMS is the shared
`candidates.box_nms`. Boxes are x0, y0, x1, y1 network px, continuous (pixel centres at integers).
Decodes at the network's scale, running the package's graph "masks".
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from cellpoint.runtime.candidates import box_nms, candidates_from_patches, paste_candidates
from cellpoint.runtime.decoding import DecodeContext, Decoder, Instances, Params
from cellpoint.runtime.labels import relabel_sequential, remove_small_instances
from cellpoint.runtime.peaks import find_peaks


class BoxMasksParams(Params):
    """strides: the pyramid levels' strides (network px), one "score_s{s}"/"boxes_s{s}" output pair each.
    score_threshold: a location proposes a box above this. peak_radius: a location proposes only if its
    score is the maximum of the (2r+1)² grid cells around it (0: every location above the threshold
    proposes). max_proposals: the strongest proposals over all levels kept for NMS. nms_iou: boxes
    overlapping a stronger one by more than this IoU are dropped. max_detections: boxes kept after NMS
    (LIVECell images hold up to ~3,000 cells). mask_threshold: a pixel belongs to a box's cell where its
    mask probability reaches this. min_area: network px², smaller instances are removed. batch: boxes
    per call of the mask graph."""
    strides: tuple[int, ...] = (4, 8, 16)
    score_threshold: float = 0.3
    peak_radius: int = 1
    max_proposals: int = 6000
    nms_iou: float = 0.5
    max_detections: int = 3000
    mask_threshold: float = 0.5
    min_area: int = 10
    batch: int = 256


def level_proposals(score: np.ndarray, distances: np.ndarray, stride: int, threshold: float,
                    peak_radius: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Boxes proposed by one pyramid level.

    score float (h,w) or (1,h,w) probabilities; distances float (4,h,w) (l, t, r, b) network px. A grid
    cell proposes when its score exceeds `threshold` (and, with peak_radius > 0, is the maximum of its
    neighbourhood). Returns boxes float64 (n,4) x0, y0, x1, y1 network px and scores float32 (n,)."""
    score = np.asarray(score, np.float32).reshape(np.shape(score)[-2:])
    if peak_radius > 0:
        rc, values = find_peaks(score, threshold, int(peak_radius))
    else:
        rc = np.argwhere(score > threshold)
        values = score[rc[:, 0], rc[:, 1]]
    if len(rc) == 0:
        return np.zeros((0, 4)), np.zeros(0, np.float32)
    y = rc[:, 0] * stride + (stride - 1) / 2.0
    x = rc[:, 1] * stride + (stride - 1) / 2.0
    l, t, r, b = np.asarray(distances, np.float64)[:, rc[:, 0], rc[:, 1]]
    return np.stack([x - l, y - t, x + r, y + b], axis=1), values.astype(np.float32)


def detect_boxes(maps: dict[str, np.ndarray], params: BoxMasksParams) -> tuple[np.ndarray, np.ndarray]:
    """All levels' proposals → the strongest `max_proposals` → NMS (IoU `nms_iou`) → at most
    `max_detections`. maps: "score_s{s}" and "boxes_s{s}" per stride s of params.strides.
    Returns boxes float64 (D,4) network px and scores float32 (D,), strongest first."""
    p = params
    found = [level_proposals(maps[f"score_s{s}"], maps[f"boxes_s{s}"], int(s), float(p.score_threshold),
                             int(p.peak_radius)) for s in p.strides]
    boxes = np.concatenate([b for b, _ in found]) if found else np.zeros((0, 4))
    scores = np.concatenate([s for _, s in found]) if found else np.zeros(0, np.float32)
    top = np.argsort(-scores, kind="stable")[:int(p.max_proposals)]
    boxes, scores = boxes[top], scores[top]
    keep = box_nms(boxes, scores, float(p.nms_iou), int(p.max_detections))
    return boxes[keep], scores[keep]


def pixel_extent(box: np.ndarray) -> tuple[int, int, int, int]:
    """The pixels whose centres lie in a continuous box (x0, y0, x1, y1) → half-open int (y0, x0, y1, x1);
    at least the one pixel nearest the box's centre."""
    x0, y0, x1, y1 = (float(v) for v in box)
    c0, c1 = int(np.ceil(x0)), int(np.floor(x1)) + 1
    r0, r1 = int(np.ceil(y0)), int(np.floor(y1)) + 1
    if c1 <= c0:
        c0 = int(np.floor((x0 + x1) / 2 + 0.5))
        c1 = c0 + 1
    if r1 <= r0:
        r0 = int(np.floor((y0 + y1) / 2 + 0.5))
        r1 = r0 + 1
    return r0, c0, r1, c1


def _interpolation(coords: np.ndarray, size: int) -> np.ndarray:
    """(n, size) matrix of linear interpolation weights at fractional indices `coords` (clamped to the
    ends: values beyond the first/last sample repeat it)."""
    u = np.clip(coords, 0, size - 1)
    i0 = np.clip(np.floor(u).astype(np.int64), 0, max(size - 2, 0))
    f = np.clip(u - i0, 0, 1)
    weights = np.zeros((len(u), size))
    rows = np.arange(len(u))
    weights[rows, i0] = 1 - f
    if size > 1:
        weights[rows, i0 + 1] += f
    return weights


def paste_patch(patch: np.ndarray, box: np.ndarray) -> tuple[tuple[int, int, int, int], np.ndarray]:
    """A mask patch (M,M) over a continuous box → its pixel extent (y0, x0, y1, x1) half-open and the
    patch resampled bilinearly at those pixels' centres, float32 (y1 − y0, x1 − x0). Patch pixel (i, j)
    sits at (x0 + (j + 0.5)·w/M, y0 + (i + 0.5)·h/M), w and h the box's size."""
    patch = np.asarray(patch, np.float64)
    m_y, m_x = patch.shape
    extent = pixel_extent(box)
    r0, c0, r1, c1 = extent
    w, h = max(box[2] - box[0], 1e-6), max(box[3] - box[1], 1e-6)
    wy = _interpolation((np.arange(r0, r1) - box[1]) * m_y / h - 0.5, m_y)
    wx = _interpolation((np.arange(c0, c1) - box[0]) * m_x / w - 0.5, m_x)
    return extent, (wy @ patch @ wx.T).astype(np.float32)


def decode_box_masks(maps: dict[str, np.ndarray], params: BoxMasksParams,
                     run_masks: Callable[[np.ndarray, np.ndarray], np.ndarray], shape: tuple[int, int]):
    """The Point2Mask decoder at the network's scale.

    maps: the main graph's outputs (see the module), "features" float (F,h,w) or (1,F,h,w). run_masks(features float32 (1,F,h,w), boxes float32 (B,4)) → mask
    probabilities (B,1,M,M) (the package's mask graph), called with at most `batch` boxes. shape: (H,W)
    of the network input. Overlapping masks are resolved by the highest probability
    (`candidates.paste_candidates`). Returns (labels uint32 (H,W) ids 1..N, score map float32 (H,W) = the
    winning mask probability, columns {"detection_score" float32 (N,)} in label order)."""
    p = params
    boxes, scores = detect_boxes(maps, p)
    features = np.ascontiguousarray(np.asarray(maps["features"], np.float32).reshape(
        (1,) + np.shape(maps["features"])[-3:]))
    extents, patches = [], []
    step = max(1, int(p.batch))
    for start in range(0, len(boxes), step):
        chunk = boxes[start:start + step]
        probs = np.asarray(run_masks(features, np.ascontiguousarray(chunk, np.float32)), np.float32)
        for box, prob in zip(chunk, probs[:, 0]):
            extent, patch = paste_patch(prob, box)
            extents.append(extent)
            patches.append(patch)
    extents = np.asarray(extents, np.int64).reshape(-1, 4)
    pixel, owner, prob = candidates_from_patches(extents, patches, shape, float(p.mask_threshold))
    labels, winning = paste_candidates(pixel, owner, prob, shape)
    labels = remove_small_instances(labels, int(p.min_area))
    present = np.unique(labels[labels > 0]).astype(np.int64) - 1
    return relabel_sequential(labels), winning, {"detection_score": scores[present]}


def _decode(context: DecodeContext, params: BoxMasksParams) -> Instances:
    """The registered form: the main graph's outputs at the network's scale, the mask graph per box batch."""
    def run_masks(features, boxes):
        return context.run_graph("masks", {"features": features, "boxes": boxes})
    return Instances(*decode_box_masks(context.maps, params, run_masks, context.network_input.shape[1:]))


DECODER = Decoder("box_masks", BoxMasksParams, _decode, scale="network", graphs=("masks",))

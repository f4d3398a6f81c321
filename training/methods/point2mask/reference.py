"""A torch reference decoding of Point2Mask's detector outputs, used to check training and the runtime's
numpy decoder (`runtime/decoders/box_masks.py`) against each other. Boxes: x0, y0, x1, y1 network px."""
from __future__ import annotations

import torch

from cellpoint.runtime.decoders.box_masks import BoxMasksParams
from cellpoint.training.methods.point2mask.config import DEFAULT_SIZE_RANGES
from cellpoint.training.methods.point2mask.loss import all_locations, flatten_levels


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU matrix of boxes (N,4) and (K,4) x0, y0, x1, y1 → (N,K)."""
    lo = torch.maximum(a[:, None, :2], b[None, :, :2])
    hi = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (hi - lo).clamp(min=0).prod(-1)
    area_a = (a[:, 2:] - a[:, :2]).clamp(min=0).prod(-1)
    area_b = (b[:, 2:] - b[:, :2]).clamp(min=0).prod(-1)
    return inter / (area_a[:, None] + area_b[None] - inter).clamp(min=1e-9)


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou: float, limit: int) -> torch.Tensor:
    """Greedy non-maximum suppression → int64 indices kept, highest score first, at most `limit`."""
    order = torch.argsort(scores, descending=True)
    overlap = box_iou(boxes[order], boxes[order]) > iou
    suppressed = torch.zeros(len(order), dtype=torch.bool)
    keep = []
    for k in range(len(order)):
        if suppressed[k]:
            continue
        keep.append(k)
        if len(keep) == limit:
            break
        suppressed |= overlap[k]
    return order[torch.tensor(keep, dtype=torch.long)]


def detect(levels, params: BoxMasksParams = BoxMasksParams()) -> tuple[torch.Tensor, torch.Tensor]:
    """A reference decoding of image 0's detector outputs (probabilities, as ExportDetector returns them)
    → (boxes (D,4) network px, scores (D,)), strongest first: score threshold, the top max_proposals,
    NMS, at most max_detections. The runtime has its own numpy version (runtime/decoders/box_masks.py,
    which also keeps only each level's local maxima, `peak_radius`); this one checks training."""
    scores, dists = flatten_levels(levels)
    locs, _, _ = all_locations(levels, DEFAULT_SIZE_RANGES)   # (the ranges play no part in decoding)
    s, d = scores[0], dists[0]
    cand = torch.nonzero(s > params.score_threshold)[:, 0]
    cand = cand[torch.argsort(s[cand], descending=True)[:params.max_proposals]]
    boxes = torch.cat([locs[cand] - d[cand, :2], locs[cand] + d[cand, 2:]], 1)
    keep = nms(boxes, s[cand], params.nms_iou, params.max_detections) if len(cand) else cand
    return boxes[keep], s[cand][keep]

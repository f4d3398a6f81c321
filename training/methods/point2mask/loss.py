"""Point2Mask's targets and losses (Khalid et al.).

Detection: each level answers for the cells whose largest distance max(l, t, r, b) lies in its size range;
only locations within `center_radius` strides of a box's centre are positives (centre sampling, FCOS).
Terms: sigmoid focal loss on the cell-ness score, GIoU loss on the positives' boxes, and for the mask head
either the point loss (the paper's: logits bilinearly interpolated at the annotated points, BCE against
their cell/background labels) or, in full mode, per-pixel BCE against the ground-truth mask resampled
into the box. The mask head is trained on (jittered) ground-truth boxes (data.py). Coordinates: network
px as in network.py."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from cellpoint.training.methods.point2mask.config import DEFAULT_SIZE_RANGES, STRIDES, LossParams
from cellpoint.training.methods.point2mask.network import Point2MaskNet, batched_mask_logits

# ------------------------------------------------------------------------------------- box targets

def level_locations(shape: tuple[int, int], stride: int, device=None) -> torch.Tensor:
    """Centres of a level's grid cells, (h·w, 2) float32 (x, y) network px, row-major: cell (i, j) at
    (stride·j + (stride−1)/2, stride·i + (stride−1)/2)."""
    h, w = shape
    ys = torch.arange(h, dtype=torch.float32, device=device) * stride + (stride - 1) / 2
    xs = torch.arange(w, dtype=torch.float32, device=device) * stride + (stride - 1) / 2
    return torch.stack(torch.meshgrid(xs, ys, indexing="xy"), -1).reshape(-1, 2)


def box_targets(locations: torch.Tensor, strides: torch.Tensor, ranges: torch.Tensor, boxes: torch.Tensor,
                center_radius: float = 1.5, ignore: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """FCOS assignment of ground-truth boxes to locations (all levels of one image together).

    locations (L,2) (x, y) px; strides (L,) px; ranges (L,2) [low, high) of max(l, t, r, b) for the
    location's level; boxes (K,4) x0, y0, x1, y1. A location is positive for a box when it lies strictly
    inside it, within center_radius·stride of its centre in x and in y, and its largest distance to the
    box edges is in its level's range; of several such boxes the smallest wins. `ignore` (J,4): boxes
    whose inside locations are neither positive nor negative (cells cut to a sliver by the crop).
    Returns label float (L,) 1 positive, 0 negative, −1 ignored; distances float (L,4) (l, t, r, b) to
    the assigned box (0 on non-positives)."""
    n_loc = len(locations)
    label = torch.zeros(n_loc)
    dist = torch.zeros(n_loc, 4)
    if ignore is not None and len(ignore):
        inside = _distances(locations, ignore).min(-1).values > 0
        label[inside.any(1)] = -1.0
    if len(boxes) == 0:
        return label, dist
    d = _distances(locations, boxes)                                        # (L,K,4)
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2                              # (K,2)
    near = ((locations[:, None] - centre[None]).abs() < center_radius * strides[:, None, None]).all(-1)
    largest = d.max(-1).values
    fits = (largest >= ranges[:, 0:1]) & (largest < ranges[:, 1:2])
    ok = (d.min(-1).values > 0) & near & fits                               # (L,K)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    cost = torch.where(ok, area[None].expand_as(ok), torch.full_like(ok, math.inf, dtype=area.dtype))
    best_cost, best = cost.min(1)
    positive = torch.isfinite(best_cost)
    label[positive] = 1.0
    dist[positive] = d[positive, best[positive]]
    return label, dist


def _distances(locations: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """(L,2) (x, y) and (K,4) boxes → (L,K,4) (x − x0, y − y0, x1 − x, y1 − y)."""
    x, y = locations[:, 0:1], locations[:, 1:2]
    return torch.stack([x - boxes[None, :, 0], y - boxes[None, :, 1], boxes[None, :, 2] - x,
                        boxes[None, :, 3] - y], -1)


def flatten_levels(levels: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-level (score (B,1,h,w), boxes (B,4,h,w)) → score (B,L) and distances (B,L,4), levels
    concatenated in STRIDES order, each row-major (the order of `level_locations`)."""
    scores = torch.cat([s.flatten(2)[:, 0] for s, _ in levels], 1)
    dists = torch.cat([d.flatten(2).transpose(1, 2) for _, d in levels], 1)
    return scores, dists


def all_locations(levels, size_ranges) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Locations (L,2), their strides (L,) and size ranges (L,2) for the levels' grid shapes."""
    locs, strides, ranges = [], [], []
    for (score, _), stride, rng in zip(levels, STRIDES, size_ranges):
        loc = level_locations(tuple(score.shape[-2:]), stride, score.device)
        locs.append(loc)
        strides.append(torch.full((len(loc),), float(stride)))
        ranges.append(torch.tensor([rng], dtype=torch.float32).expand(len(loc), 2))
    return torch.cat(locs), torch.cat(strides), torch.cat(ranges)


# ------------------------------------------------------------------------------------ detection loss

def focal_loss(logits: torch.Tensor, label: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0) -> torch.Tensor:
    """Sigmoid focal loss summed over non-ignored locations, divided by max(1, #positives):
        FL = −α·(1 − p)^γ·log p on positives, −(1 − α)·p^γ·log(1 − p) on negatives.
    logits, label (L,) or (B,L); label 1/0, −1 ignored."""
    valid = label >= 0
    target = label.clamp(min=0)
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p_t = p * target + (1 - p) * (1 - target)
    a_t = alpha * target + (1 - alpha) * (1 - target)
    loss = a_t * (1 - p_t) ** gamma * ce
    return (loss * valid).sum() / (label > 0).sum().clamp(min=1)


def giou_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean of 1 − GIoU between boxes given as distances (l, t, r, b) from the same location.
    pred, target (P,4) > 0 → scalar (0 when P = 0)."""
    if len(pred) == 0:
        return pred.sum() * 0
    area_p = (pred[:, 0] + pred[:, 2]) * (pred[:, 1] + pred[:, 3])
    area_t = (target[:, 0] + target[:, 2]) * (target[:, 1] + target[:, 3])
    lo, hi = torch.minimum(pred, target), torch.maximum(pred, target)
    inter = (lo[:, 0] + lo[:, 2]) * (lo[:, 1] + lo[:, 3])
    enclose = (hi[:, 0] + hi[:, 2]) * (hi[:, 1] + hi[:, 3])
    union = area_p + area_t - inter
    giou = inter / union - (enclose - union) / enclose
    return (1 - giou).mean()


def detection_loss(levels, boxes: list[torch.Tensor], ignore: list[torch.Tensor], size_ranges,
                   params: LossParams = LossParams()) -> tuple[torch.Tensor, torch.Tensor]:
    """(score term, box term) of a batch: `focal_loss` over all locations of all images normalised by
    the batch's positives, `giou_loss` over the positives. levels: the network's per-level outputs;
    boxes, ignore: per image (K_b,4), (J_b,4) network px."""
    scores, dists = flatten_levels(levels)
    locs, strides, ranges = all_locations(levels, size_ranges)
    labels, targets = zip(*[box_targets(locs, strides, ranges, b, params.center_radius, i)
                            for b, i in zip(boxes, ignore)])
    label, target = torch.stack(labels), torch.stack(targets)
    positive = label > 0
    l_score = focal_loss(scores, label, params.focal_alpha, params.focal_gamma)
    return l_score, giou_loss(dists[positive], target[positive])


# ----------------------------------------------------------------------------------------- mask loss

def point_logits(mask_logits: torch.Tensor, boxes: torch.Tensor,
                 points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mask logits bilinearly interpolated at points (the paper's Fig. 3; differentiable w.r.t. the logits).

    mask_logits (N,1,M,M) over boxes (N,4) network px; points (N,P,2) (x, y) network px. Returns (logits
    (N,P), inside bool (N,P)): whether each point lies in its box (points on the edge count; there the
    edge bins' values are extended)."""
    size = (boxes[:, 2:] - boxes[:, :2]).clamp(min=1e-6)                   # (N,2)
    g = 2 * (points - boxes[:, None, :2]) / size[:, None] - 1               # (N,P,2) in [−1, 1] inside
    sampled = F.grid_sample(mask_logits, g[:, None], mode="bilinear", padding_mode="border", align_corners=False)
    return sampled[:, 0, 0], (g.abs() <= 1).all(-1)


def point_loss(mask_logits: torch.Tensor, boxes: torch.Tensor, points: torch.Tensor,
               labels: torch.Tensor) -> torch.Tensor:
    """The Point2Mask loss: mean over valid points of BCE(σ(z(p)), y_p), z(p) the mask logits interpolated
    at point p (`point_logits`) and y_p its label (1 cell, 0 background). Valid: label ≥ 0 (−1 pads)
    and the point inside its box. mask_logits (N,1,M,M), boxes (N,4), points (N,P,2), labels (N,P)."""
    z, inside = point_logits(mask_logits, boxes, points)
    valid = (labels >= 0) & inside
    bce = F.binary_cross_entropy_with_logits(z, labels.clamp(min=0).to(z.dtype), reduction="none")
    return (bce * valid).sum() / valid.sum().clamp(min=1)


def mask_targets(labels: torch.Tensor, roi_index: torch.Tensor, rois: torch.Tensor, ids: torch.Tensor,
                 size: int) -> torch.Tensor:
    """Ground-truth masks resampled into boxes (full mode): the instance under each of the size×size bin
    centres (nearest pixel; outside the image → background) == the RoI's id.
    labels int64 (B,H,W); roi_index (R,); rois (R,4) network px; ids (R,) → float (R,size,size) 0/1."""
    _, h, w = labels.shape
    steps = (torch.arange(size, dtype=rois.dtype) + 0.5) / size
    x = torch.floor(rois[:, 0:1] + steps * (rois[:, 2:3] - rois[:, 0:1]) + 0.5).long()        # (R,S) cols
    y = torch.floor(rois[:, 1:2] + steps * (rois[:, 3:4] - rois[:, 1:2]) + 0.5).long()        # (R,S) rows
    inside = ((y >= 0) & (y < h))[:, :, None] & ((x >= 0) & (x < w))[:, None, :]
    under = labels[roi_index[:, None, None], y.clamp(0, h - 1)[:, :, None], x.clamp(0, w - 1)[:, None, :]]
    return ((under == ids[:, None, None]) & inside).float()


def mask_loss(mask_logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Full supervision: mean per-pixel BCE of (R,1,M,M) logits against (R,M,M) 0/1 targets."""
    if len(target) == 0:
        return mask_logits.sum() * 0
    return F.binary_cross_entropy_with_logits(mask_logits[:, 0], target)


# ---------------------------------------------------------------------------------------- all terms

def scale_gradient(x: torch.Tensor, factor: float) -> torch.Tensor:
    """x unchanged in the forward pass; the gradient flowing back through it multiplied by `factor`."""
    return x.detach() + factor * (x - x.detach())


def point2mask_loss(net: Point2MaskNet, batch: dict, mode: str, size_ranges=DEFAULT_SIZE_RANGES,
                    params: LossParams = LossParams()) -> tuple[torch.Tensor, dict]:
    """The training loss of one batch and its parts (floats): score + box·GIoU + mask·(point or mask term).

    batch: "image" (B,C,H,W) float32; per image lists "boxes" (K_b,4) and "ignore" (J_b,4) float32;
    the mask head's RoIs "roi_index" int64 (R,), "rois" (R,4); points mode: "roi_points" (R,N,2),
    "roi_point_labels" (R,N) (1/0, −1 = none); full mode: "labels" int64 (B,H,W), "roi_ids" int64 (R,)."""
    levels, features = net(batch["image"])
    l_score, l_box = detection_loss(levels, batch["boxes"], batch["ignore"], size_ranges, params)
    parts = {"score": l_score, "box": l_box}
    loss = l_score + params.box * l_box
    rois = batch["rois"]
    if len(rois):
        if mode != "full" and params.feature_grad != 1.0:
            features = scale_gradient(features, params.feature_grad)
        logits = batched_mask_logits(net, features, batch["roi_index"], rois)
        if mode == "full":
            target = mask_targets(batch["labels"], batch["roi_index"], rois, batch["roi_ids"], net.mask_size)
            parts["mask"] = mask_loss(logits, target)
        else:
            parts["point"] = point_loss(logits, rois, batch["roi_points"], batch["roi_point_labels"])
        loss = loss + params.mask * parts["mask" if mode == "full" else "point"]
    return loss, {k: float(v.detach()) for k, v in parts.items()}

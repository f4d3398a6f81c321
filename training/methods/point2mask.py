"""Point2Mask (Khalid et al.): box + N clicks per cell → instance masks; network and losses, pure torch.

A compact member of the Mask R-CNN family, sized for a CPU:
- backbone: widths w0..w3 = (16, 32, 64, 128) at strides 2, 4, 8, 16: a 4×4 stride-2 conv and a 3×3
  conv block (3×3 conv + BatchNorm + ReLU) at stride 2, then per stage a 2×2 max-pool and two blocks.
  This keeps feature (i, j) of stride s centred on pixel (s·i + (s−1)/2, s·j + (s−1)/2), the location
  the heads are trained for.
- feature pyramid at STRIDES = (4, 8, 16): 1×1 laterals to F channels, nearest 2× top-down sums, one
  3×3 conv + BatchNorm + ReLU per level. The stride-4 level is also the mask head's input.
- detection head (anchor-free, FCOS-like), shared by the levels: `head_convs` × (3×3 conv, GroupNorm,
  ReLU), then a 3×3 conv to a cell-ness logit and one to the box distances (l, t, r, b) =
  stride · exp(scale_level · raw) network px from the location to the box's left, top, right, bottom
  edges. Each level answers for the cells whose largest distance max(l, t, r, b) lies in its size range;
  only locations within `center_radius` strides of a box's centre are positives (centre sampling).
- mask head: RoIAlign by `grid_sample` (one bilinear sample per bin centre, S×S bins over the box) from
  the stride-4 features, `mask_convs` × (3×3 conv + ReLU), a 2× transposed conv + ReLU and a 1×1 conv →
  M×M mask logits over the box (M = 2S).

Coordinates everywhere: network px, x = column, y = row, pixel centres at integers; a box (x0, y0, x1, y1)
spans the continuous interval [x0, x1] × [y0, y1] (a whole-pixel box of columns c0..c1 is c0 − 0.5,
c1 + 0.5). Mask pixel (i, j) of a box sits at (x0 + (j + 0.5)·w/M, y0 + (i + 0.5)·h/M), w = x1 − x0.

Losses (see each function): sigmoid focal loss on the cell-ness score, GIoU loss on the positives'
boxes, and for the mask head either the point loss (the paper's: logits bilinearly interpolated at the
annotated points, BCE against their cell/background labels) or, in full mode, per-pixel BCE against the
ground-truth mask resampled into the box. The mask head is trained on (jittered) ground-truth boxes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

STRIDES = (4, 8, 16)
"""Pyramid levels of the detection head, network px per grid step."""
FEATURE_STRIDE = 4
"""Stride of the features the mask head samples."""
MULTIPLE = 16
"""Input height and width must be multiples of this (four 2× reductions: the stem and three pools)."""
DEFAULT_SIZE_RANGES = ((0.0, 16.0), (16.0, 40.0), (40.0, 1e5))
"""Per level, [low, high) of max(l, t, r, b) in network px (cells 8–32, 32–80, > 80 px across at a
canonical diameter of 32 px). 1e5 stands for infinity (JSON-safe)."""
MASK_INPUTS = ("features", "boxes")
MASK_OUTPUT = "masks"


@dataclass(frozen=True)
class LossParams:
    """Weights and shapes of the loss terms (the score term has weight 1)."""
    box: float = 1.0
    mask: float = 1.0
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    center_radius: float = 1.5       # positives: within this many strides of a box's centre
    feature_grad: float = 1.0        # scale of the point loss's gradient into the shared features (1: as is)


@dataclass(frozen=True)
class DecodeParams:
    """Inference limits and thresholds, for the card (never constants in code)."""
    score_threshold: float = 0.3
    peak_radius: int = 1             # a location proposes only as the maximum of its (2r+1)² neighbours
    nms_iou: float = 0.5
    max_proposals: int = 6000        # highest-scoring locations kept before NMS (over all levels)
    max_detections: int = 3000       # LIVECell has up to ~3,000 cells in one image
    mask_threshold: float = 0.5
    min_area: int = 10               # network px²
    batch: int = 256                 # boxes per call of the mask graph


# ------------------------------------------------------------------------------------------ network

def _conv_bn(c_in: int, c_out: int) -> nn.Sequential:
    """3×3 conv, BatchNorm, ReLU."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
                         nn.ReLU(inplace=True))


class Backbone(nn.Module):
    """(B,C,H,W) → [C2 (B,w1,H/4,W/4), C3 (B,w2,H/8,W/8), C4 (B,w3,H/16,W/16)]."""

    def __init__(self, in_channels: int = 1, widths=(16, 32, 64, 128)):
        super().__init__()
        w = tuple(widths)
        if len(w) != 4:
            raise ValueError(f"the Point2Mask backbone takes 4 widths (strides 2, 4, 8, 16), got {w}")
        # 4×4 stride-2 stem: output i sees inputs 2i − 1 .. 2i + 2, centred at 2i + 0.5 like a 2×2 pool,
        # at a quarter of the cost of a full-resolution conv
        self.stem = nn.Sequential(nn.Conv2d(in_channels, w[0], 4, stride=2, padding=1, bias=False),
                                  nn.BatchNorm2d(w[0]), nn.ReLU(inplace=True), _conv_bn(w[0], w[0]))
        self.stages = nn.ModuleList([
            nn.Sequential(_conv_bn(w[0], w[1]), _conv_bn(w[1], w[1])),
            nn.Sequential(_conv_bn(w[1], w[2]), _conv_bn(w[2], w[2])),
            nn.Sequential(_conv_bn(w[2], w[3]), _conv_bn(w[3], w[3]))])

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        outputs = []
        for stage in self.stages:
            x = stage(F.max_pool2d(x, 2))
            outputs.append(x)
        return outputs


class Pyramid(nn.Module):
    """[C2, C3, C4] → [P2, P3, P4], F channels each, at strides 4, 8, 16."""

    def __init__(self, widths=(16, 32, 64, 128), channels: int = 32):
        super().__init__()
        self.lateral = nn.ModuleList([nn.Conv2d(c, channels, 1) for c in tuple(widths)[1:]])
        self.smooth = nn.ModuleList([_conv_bn(channels, channels) for _ in STRIDES])

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        x = self.lateral[-1](feats[-1])
        merged = [x]
        for lateral, f in zip(reversed(self.lateral[:-1]), reversed(feats[:-1])):
            x = lateral(f) + F.interpolate(x, scale_factor=2.0, mode="nearest")
            merged.insert(0, x)
        return [smooth(m) for smooth, m in zip(self.smooth, merged)]


class DetectionHead(nn.Module):
    """Shared over levels: P (B,F,h,w) at level k → (score logits (B,1,h,w), box distances (B,4,h,w)
    network px, (l, t, r, b) from the location to the box edges, > 0)."""

    def __init__(self, channels: int = 32, convs: int = 2, prior: float = 0.01):
        super().__init__()
        tower = []
        for _ in range(convs):
            tower += [nn.Conv2d(channels, channels, 3, padding=1), nn.GroupNorm(8, channels), nn.ReLU(inplace=True)]
        self.tower = nn.Sequential(*tower)
        self.score = nn.Conv2d(channels, 1, 3, padding=1)
        self.box = nn.Conv2d(channels, 4, 3, padding=1)
        self.scales = nn.Parameter(torch.ones(len(STRIDES)))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.01)
                nn.init.zeros_(m.bias)
        with torch.no_grad():  # few locations are cells: start every score at `prior` (RetinaNet)
            self.score.bias.fill_(-math.log((1 - prior) / prior))

    def forward(self, p: torch.Tensor, level: int) -> tuple[torch.Tensor, torch.Tensor]:
        t = self.tower(p)
        raw = (self.box(t) * self.scales[level]).clamp(max=8.0)  # exp(8)·16 px: far beyond any cell
        return self.score(t), torch.exp(raw) * STRIDES[level]


class MaskHead(nn.Module):
    """RoI features (N,F,S,S) → mask logits (N,1,2S,2S). No normalisation: RoIs are independent."""

    def __init__(self, channels: int = 32, convs: int = 4):
        super().__init__()
        layers = []
        for _ in range(convs):
            layers += [nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(inplace=True)]
        self.body = nn.Sequential(*layers)
        self.up = nn.ConvTranspose2d(channels, channels, 2, stride=2)
        self.out = nn.Conv2d(channels, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(F.relu(self.up(self.body(x))))


class Point2MaskNet(nn.Module):
    """Backbone + pyramid + detection head + mask head.

    forward(image (B,C,H,W), H, W multiples of MULTIPLE) → (levels, features): levels a list, one
    (score logits (B,1,H/s,W/s), box distances (B,4,H/s,W/s) px) per stride s in STRIDES; features
    (B,F,H/4,W/4) the mask head's input. mask_logits(features (1,F,h,w), boxes (N,4)) → (N,1,M,M)."""

    def __init__(self, in_channels: int = 1, widths=(16, 32, 64, 128), channels: int = 32, head_convs: int = 2,
                 mask_convs: int = 4, roi_size: int = 14):
        super().__init__()
        self.channels, self.roi_size = channels, roi_size
        self.backbone = Backbone(in_channels, widths)
        self.pyramid = Pyramid(widths, channels)
        self.head = DetectionHead(channels, head_convs)
        self.mask_head = MaskHead(channels, mask_convs)

    @property
    def mask_size(self) -> int:
        return 2 * self.roi_size

    def forward(self, image: torch.Tensor):
        pyramid = self.pyramid(self.backbone(image))
        return [self.head(p, k) for k, p in enumerate(pyramid)], pyramid[0]

    def mask_logits(self, features: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        return self.mask_head(roi_align(features, boxes, self.roi_size, FEATURE_STRIDE))


# ------------------------------------------------------------------------------------------ RoIAlign

def roi_grid(boxes: torch.Tensor, size: int, feature_hw: tuple[int, int], stride: int) -> torch.Tensor:
    """grid_sample coordinates (align_corners=False) of the size×size bin centres of each box.

    boxes float (N,4) x0, y0, x1, y1 network px; features of (h, w) at `stride`, feature (i, j) centred on
    pixel (stride·i + (stride−1)/2, stride·j + (stride−1)/2). Returns (N,size,size,2) as (x, y) in [−1, 1]
    for points inside the image."""
    steps = (torch.arange(size, dtype=boxes.dtype, device=boxes.device) + 0.5) / size       # (S,)
    x = boxes[:, 0:1] + steps * (boxes[:, 2:3] - boxes[:, 0:1])                              # (N,S)
    y = boxes[:, 1:2] + steps * (boxes[:, 3:4] - boxes[:, 1:2])
    # pixel → feature index u = (x − (s−1)/2)/s → normalised (2u + 1)/w − 1 = 2(x + 0.5)/(s·w) − 1
    gx = 2 * (x + 0.5) / (stride * feature_hw[1]) - 1
    gy = 2 * (y + 0.5) / (stride * feature_hw[0]) - 1
    n = boxes.shape[0]
    return torch.stack([gx[:, None, :].expand(n, size, size), gy[:, :, None].expand(n, size, size)], -1)


def roi_align(features: torch.Tensor, boxes: torch.Tensor, size: int, stride: int = FEATURE_STRIDE) -> torch.Tensor:
    """RoIAlign of one image with one bilinear sample per bin: features (1,F,h,w), boxes (N,4) network px
    → (N,F,size,size). Outside the feature map the border value is used. Exports as ONNX GridSample."""
    h, w = features.shape[-2:]
    grid = roi_grid(boxes, size, (h, w), stride)
    n = boxes.shape[0]
    out = F.grid_sample(features, grid.reshape(1, n * size, size, 2), mode="bilinear", padding_mode="border",
                        align_corners=False)                                                # (1,F,N·S,S)
    return out.reshape(features.shape[1], n, size, size).permute(1, 0, 2, 3)


def batched_mask_logits(net: Point2MaskNet, features: torch.Tensor, roi_index: torch.Tensor,
                        rois: torch.Tensor) -> torch.Tensor:
    """Mask logits (R,1,M,M) for RoIs of several images: features (B,F,h,w), roi_index int64 (R,) the image
    of each RoI, rois (R,4). Images are sampled one at a time (grid_sample pairs batch entries)."""
    roi_feats = rois.new_zeros(len(rois), features.shape[1], net.roi_size, net.roi_size)
    for b in torch.unique(roi_index).tolist():
        pick = roi_index == b
        roi_feats[pick] = roi_align(features[b:b + 1], rois[pick], net.roi_size, FEATURE_STRIDE)
    return net.mask_head(roi_feats)


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


# ------------------------------------------------------------------------------ export and decoding

def detector_outputs() -> list[dict]:
    """The card's entries for ExportDetector's outputs, in order (name, axes, stride, description)."""
    outputs = []
    for s in STRIDES:
        outputs += [
            {"name": f"score_s{s}", "axes": "bcyx", "stride": s,
             "description": f"cell-ness probability per stride-{s} location (centre px {s}·i + {(s - 1) / 2})"},
            {"name": f"boxes_s{s}", "axes": "bcyx", "stride": s,
             "description": "distances (l, t, r, b) network px from the location to its box's edges"}]
    outputs.append({"name": "features", "axes": "bcyx", "stride": FEATURE_STRIDE,
                    "description": "stride-4 features the mask graph samples its RoIs from"})
    return outputs


class ExportDetector(nn.Module):
    """The exported main graph: image (B,C,H,W) float32 → score_s4 (B,1,H/4,W/4), boxes_s4 (B,4,H/4,W/4),
    score_s8, boxes_s8, score_s16, boxes_s16, features (B,F,H/4,W/4); see `detector_outputs`."""

    def __init__(self, net: Point2MaskNet):
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor):
        levels, features = self.net(image)
        out = []
        for score, dist in levels:
            out += [torch.sigmoid(score), dist]
        return (*out, features)


class ExportMaskHead(nn.Module):
    """The exported mask graph: features (1,F,h,w) (stride 4), boxes (N,4) float32 x0, y0, x1, y1 network
    px → masks (N,1,M,M) probabilities over each box (mask pixel (i, j) at the box's bin centre)."""

    def __init__(self, net: Point2MaskNet):
        super().__init__()
        self.net = net

    def forward(self, features: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net.mask_logits(features, boxes))


def decoder_params(cfg) -> dict:
    """The card's decoder entry. cfg: any object with `decode` (DecodeParams), `size_ranges` and
    `roi_size` (S; masks are 2S square). Distances and areas in network px."""
    d = cfg.decode
    return {"name": "box_masks", "decode_at": "network", "strides": list(STRIDES),
            "size_ranges": [list(map(float, r)) for r in cfg.size_ranges], "feature_stride": FEATURE_STRIDE,
            "roi_size": int(cfg.roi_size), "mask_size": 2 * int(cfg.roi_size),
            "score_threshold": d.score_threshold, "peak_radius": d.peak_radius, "nms_iou": d.nms_iou, "max_proposals": d.max_proposals,
            "max_detections": d.max_detections, "mask_threshold": d.mask_threshold, "min_area": d.min_area,
            "batch": d.batch}


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


def detect(levels, params: DecodeParams = DecodeParams()) -> tuple[torch.Tensor, torch.Tensor]:
    """A reference decoding of image 0's detector outputs (probabilities, as ExportDetector returns them)
    → (boxes (D,4) network px, scores (D,)), strongest first: score threshold, the top max_proposals,
    NMS, at most max_detections. The runtime has its own numpy version (runtime/box_masks.py, which also
    keeps only each level's local maxima, `peak_radius`); this one checks training."""
    scores, dists = flatten_levels(levels)
    locs, _, _ = all_locations(levels, DEFAULT_SIZE_RANGES)   # (the ranges play no part in decoding)
    s, d = scores[0], dists[0]
    cand = torch.nonzero(s > params.score_threshold)[:, 0]
    cand = cand[torch.argsort(s[cand], descending=True)[:params.max_proposals]]
    boxes = torch.cat([locs[cand] - d[cand, :2], locs[cand] + d[cand, 2:]], 1)
    keep = nms(boxes, s[cand], params.nms_iou, params.max_detections) if len(cand) else cand
    return boxes[keep], s[cand][keep]

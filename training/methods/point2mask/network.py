"""Point2Mask's network (Khalid et al.), a compact member of the Mask R-CNN family sized for a CPU, and the
wrappers whose forwards are the exported graphs.

- backbone: widths w0..w3 = (16, 32, 64, 128) at strides 2, 4, 8, 16: a 4×4 stride-2 conv and a 3×3
  conv block (3×3 conv + BatchNorm + ReLU) at stride 2, then per stage a 2×2 max-pool and two blocks.
  This keeps feature (i, j) of stride s centred on pixel (s·i + (s−1)/2, s·j + (s−1)/2), the location
  the heads are trained for.
- feature pyramid at STRIDES = (4, 8, 16): 1×1 laterals to F channels, nearest 2× top-down sums, one
  3×3 conv + BatchNorm + ReLU per level. The stride-4 level is also the mask head's input.
- detection head (anchor-free, FCOS-like), shared by the levels: `head_convs` × (3×3 conv, GroupNorm,
  ReLU), then a 3×3 conv to a cell-ness logit and one to the box distances (l, t, r, b) =
  stride · exp(scale_level · raw) network px from the location to the box's left, top, right, bottom
  edges (which level answers for which cell, and the losses: loss.py).
- mask head: RoIAlign by `grid_sample` (one bilinear sample per bin centre, S×S bins over the box) from
  the stride-4 features, `mask_convs` × (3×3 conv + ReLU), a 2× transposed conv + ReLU and a 1×1 conv →
  M×M mask logits over the box (M = 2S).

Coordinates everywhere: network px, x = column, y = row, pixel centres at integers; a box (x0, y0, x1, y1)
spans the continuous interval [x0, x1] × [y0, y1] (a whole-pixel box of columns c0..c1 is c0 − 0.5,
c1 + 0.5). Mask pixel (i, j) of a box sits at (x0 + (j + 0.5)·w/M, y0 + (i + 0.5)·h/M), w = x1 − x0.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cellpoint.training.methods.point2mask.config import FEATURE_STRIDE, MASK_INPUTS, MASK_OUTPUT, MULTIPLE, STRIDES
from cellpoint.training.methods.spec import GraphExport


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


# ------------------------------------------------------------------------------------------- export

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


def masks_graph(net: Point2MaskNet, probe: np.ndarray) -> GraphExport:
    """The package's graph "masks" (masks.onnx) for `cellpoint export`: RoIAlign (grid_sample) + mask
    head, inputs features (1,F,h,w) (stride 4) and boxes (N,4) float32 x0, y0, x1, y1 network px, output
    masks (N,1,M,M); N, h and w dynamic.

    Its example inputs (traced, and the parity check's) are the stride-4 features of the probe (float32
    (1,C,H,W), cut or zero-padded to multiples of MULTIPLE) and boxes of several sizes, one partly
    outside the image."""
    h, w = (max(probe.shape[2] // MULTIPLE, 1) * MULTIPLE, max(probe.shape[3] // MULTIPLE, 1) * MULTIPLE)
    image = np.zeros((1, probe.shape[1], h, w), np.float32)
    part = probe[:1, :, :h, :w]
    image[:, :, :part.shape[2], :part.shape[3]] = part
    with torch.no_grad():
        features = ExportDetector(net).eval()(torch.from_numpy(image))[-1].contiguous()
    boxes = torch.tensor([[0.25 * w, 0.2 * h, 0.6 * w, 0.7 * h], [3.5, 5.0, 20.0, 14.5],
                          [w - 12.0, h - 9.0, w + 6.0, h + 3.5]], dtype=torch.float32)
    dynamic = {MASK_INPUTS[0]: {2: "height_grid4", 3: "width_grid4"}, MASK_INPUTS[1]: {0: "cells"},
               MASK_OUTPUT: {0: "cells"}}
    return GraphExport(ExportMaskHead(net).eval(), dict(zip(MASK_INPUTS, (features, boxes))), MASK_OUTPUT, dynamic,
                       "masks.onnx")

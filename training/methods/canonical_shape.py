"""Canonical shape learning and transformation (Costa, Gaudio, Campilho, Cardoso, MIDL 2022).

Two models trained jointly from an image-level foreground mask and a cell count only:
- the implicit shape MLP: (x, y, r) → log p(s | x, y, r), three linear layers with 8, 4 and 1 outputs,
  the input concatenated to the outputs of the first two, ReLU inside, a negative Softplus at the end;
- the encoder: a small residual backbone whose last stride is replaced by dilation (output stride 16),
  with two 1×1 heads that predict, for each cell of the feature grid, INSTANCES_PER_CELL instances'
  affine transforms T = [L | t] (L lower-triangular, positive diagonal) and presence p(z).

An instance is rendered by mapping image coordinates into canonical coordinates, X' = L·X + t, and
evaluating the MLP there; instances combine by the maximum of p(s)·p(z) (the paper's equation 2).
Coordinates: X = (x, y) in network pixels divided by `unit` (the canonical radius, half the canonical
diameter), and t is carried as the instance centre c (network px) with t = −L·c/unit — the same affine
family, parameterised so the head predicts where the cell is relative to its grid cell.
Loss (label kind "foreground-count"): BCE + soft Dice between the rendered foreground (upsampled from a
grid `render_stride` times coarser, as in the paper) and the mask, + α·(Σ p(z) − K)²."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

INSTANCES_PER_CELL = 2
STRIDE = 16
OUTPUTS = [
    {"name": "presence", "axes": "bcyx", "stride": STRIDE,
     "description": "p(z) of each instance slot per grid cell, (N, I, H/16, W/16)"},
    {"name": "center_offset", "axes": "bcyx", "stride": STRIDE,
     "description": "instance centre minus grid-cell centre, network px, (dx, dy) per slot"},
    {"name": "transform", "axes": "bcyx", "stride": STRIDE,
     "description": "lower-triangular L of X' = L(p - c)/unit, (l11, l21, l22) per slot, l11, l22 > 0"},
]
OUTPUT_NAMES = tuple(o["name"] for o in OUTPUTS)


@dataclass(frozen=True)
class ShapeParams:
    alpha: float = 1e-2          # weight of the count loss L_cnt (0 switches it off, the paper's ablation)
    render_stride: int = 4       # training renders on a grid this many px apart, then upsamples
    unit: float = 12.0           # canonical radius in network px: X = pixel / unit
    presence_bias: float = -2.0  # initial presence logit: few instances present at the start


class ShapeMLP(nn.Module):
    """(..., 2) canonical coordinates (x, y) → (...) log p(s | x, y, r), r = sqrt(x² + y²)."""

    def __init__(self, disk_init: bool = True):
        super().__init__()
        self.fc1 = nn.Linear(3, 8)
        self.fc2 = nn.Linear(3 + 8, 4)
        self.fc3 = nn.Linear(3 + 4, 1)
        if disk_init:  # start as a soft unit disk, p(s) = sigmoid(−4(r − 1)); training reshapes it freely
            with torch.no_grad():
                self.fc3.weight.mul_(0.1)
                self.fc3.weight[0, 2] = 4.0
                self.fc3.bias.fill_(-4.0)

    def forward(self, xy: torch.Tensor) -> torch.Tensor:
        r = torch.sqrt((xy ** 2).sum(-1, keepdim=True) + 1e-12)
        inp = torch.cat([xy, r], -1)
        h = F.relu(self.fc1(inp))
        h = F.relu(self.fc2(torch.cat([inp, h], -1)))
        return -F.softplus(self.fc3(torch.cat([inp, h], -1))).squeeze(-1)


class _Residual(nn.Module):
    """ResNet basic block: two 3×3 convs with BatchNorm, a projected shortcut when the shape changes."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1, dilation: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, padding=dilation, dilation=dilation, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.short = (nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
                      if stride != 1 or c_in != c_out else nn.Identity())

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + self.short(x))


class ShapeEncoder(nn.Module):
    """(N, C, H, W) → raw heads on the (H/16, W/16) grid: presence logits (N, I, h, w) and transform
    parameters (N, 5·I, h, w), I = INSTANCES_PER_CELL; per instance (offset_x, offset_y, a, b, l21).

    widths: stem and four stages; stages 1–3 halve the resolution, stage 4 dilates instead (the paper's
    last stride replaced by dilation), so the output stride is 16."""

    def __init__(self, in_channels: int = 1, widths=(16, 32, 64, 96, 128), presence_bias: float = -2.0):
        super().__init__()
        w = tuple(widths)
        self.stem = nn.Sequential(nn.Conv2d(in_channels, w[0], 3, 2, 1, bias=False), nn.BatchNorm2d(w[0]),
                                  nn.ReLU(inplace=True))
        self.stages = nn.Sequential(_Residual(w[0], w[1], 2), _Residual(w[1], w[2], 2),
                                    _Residual(w[2], w[3], 2), _Residual(w[3], w[4], 1, dilation=2))
        self.presence = nn.Conv2d(w[4], INSTANCES_PER_CELL, 1)
        self.transform = nn.Conv2d(w[4], 5 * INSTANCES_PER_CELL, 1)
        with torch.no_grad():
            self.presence.bias.fill_(presence_bias)
            self.transform.weight.mul_(0.1)
            bias = torch.zeros(INSTANCES_PER_CELL, 5)
            bias[:, 2:4] = float(np.log(np.e - 1))  # softplus → 1: canonical radius at the start
            self.transform.bias.copy_(bias.flatten())

    def forward(self, x: torch.Tensor):
        f = self.stages(self.stem(x))
        return self.presence(f), self.transform(f)


class CanonicalShapeNet(nn.Module):
    """Encoder + shape MLP. forward(image) → (presence p(z) (N,I,h,w), centre offset (N,2I,h,w) in network
    px relative to the grid cell's centre as (dx, dy) pairs, L entries (N,3I,h,w) as (l11, l21, l22) with
    l11, l22 > 0) — the outputs the exported graph returns."""

    def __init__(self, in_channels: int = 1, widths=(16, 32, 64, 96, 128), presence_bias: float = -2.0):
        super().__init__()
        self.encoder = ShapeEncoder(in_channels, widths, presence_bias)
        self.shape = ShapeMLP()

    def forward(self, x: torch.Tensor):
        presence, raw = self.encoder(x)
        n, _, h, w = raw.shape
        raw = raw.view(n, INSTANCES_PER_CELL, 5, h, w)
        offset = raw[:, :, 0:2] * STRIDE
        l11 = F.softplus(raw[:, :, 2:3]) + 1e-3
        l22 = F.softplus(raw[:, :, 3:4]) + 1e-3
        l21 = raw[:, :, 4:5]
        transform = torch.cat([l11, l21, l22], 2)
        return (torch.sigmoid(presence), offset.reshape(n, 2 * INSTANCES_PER_CELL, h, w),
                transform.reshape(n, 3 * INSTANCES_PER_CELL, h, w))


def cell_centers(h: int, w: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Grid cell centres in network px (pixel centres at integers): cell j spans px [16j, 16j+16), so its
    centre is 16j + 7.5. Returns (cy (h,1), cx (1,w)) float32."""
    cy = torch.arange(h, dtype=torch.float32, device=device)[:, None] * STRIDE + (STRIDE - 1) / 2
    cx = torch.arange(w, dtype=torch.float32, device=device)[None, :] * STRIDE + (STRIDE - 1) / 2
    return cy, cx


def instances_from_outputs(presence, offset, transform):
    """Flatten the grid outputs into instance lists.

    Returns pz (N,M), center (N,M,2) as (x, y) network px, L (N,M,3) as (l11, l21, l22); M = I·h·w."""
    n, i, h, w = presence.shape
    cy, cx = cell_centers(h, w, presence.device)
    off = offset.view(n, i, 2, h, w)
    center = torch.stack([off[:, :, 0] + cx, off[:, :, 1] + cy], -1)      # (N,I,h,w,2)
    L = transform.view(n, i, 3, h, w).permute(0, 1, 3, 4, 2)             # (N,I,h,w,3)
    return presence.reshape(n, -1), center.reshape(n, -1, 2), L.reshape(n, -1, 3)


def canonical_coordinates(points_xy: torch.Tensor, center: torch.Tensor, L: torch.Tensor, unit: float):
    """X' = L·(p − c)/unit for every point and instance.

    points_xy (P,2) network px; center (N,M,2); L (N,M,3) → (N,M,P,2)."""
    d = (points_xy[None, None] - center[:, :, None]) / unit          # (N,M,P,2)
    l11, l21, l22 = L[..., 0:1], L[..., 1:2], L[..., 2:3]
    u = l11 * d[..., 0]
    v = l21 * d[..., 0] + l22 * d[..., 1]
    return torch.stack([u, v], -1)


def render_foreground(net: CanonicalShapeNet, outputs, size: tuple[int, int], params: ShapeParams) -> torch.Tensor:
    """The paper's equation 2 on a coarse grid, upsampled: p(y|I) = max_i p(s_i)·p(z_i).

    size: (H, W) of the input crop. Returns (N, H, W) probabilities."""
    pz, center, L = instances_from_outputs(*outputs)
    s = params.render_stride
    gh, gw = size[0] // s, size[1] // s
    ys = torch.arange(gh, dtype=torch.float32) * s + (s - 1) / 2
    xs = torch.arange(gw, dtype=torch.float32) * s + (s - 1) / 2
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), -1).reshape(-1, 2)   # (P,2) (x,y)
    log_ps = net.shape(canonical_coordinates(grid, center, L, params.unit))           # (N,M,P)
    prob = (log_ps.exp() * pz[:, :, None]).max(1).values.view(-1, 1, gh, gw)
    return F.interpolate(prob, size=size, mode="bilinear", align_corners=False)[:, 0]


def dice_loss(prob: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """Smooth Dice loss, per image then averaged: 1 − (2Σpg + s)/(Σp + Σg + s)."""
    p, g = prob.flatten(1), target.flatten(1)
    return (1 - (2 * (p * g).sum(1) + smooth) / (p.sum(1) + g.sum(1) + smooth)).mean()


def count_loss(pz: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """L_cnt = (Σ_i p(z_i) − K)², averaged over the batch. pz (N,M), count (N,)."""
    return ((pz.sum(1) - count) ** 2).mean()


def shape_loss(net: CanonicalShapeNet, image: torch.Tensor, foreground: torch.Tensor, count: torch.Tensor,
               params: ShapeParams) -> tuple[torch.Tensor, dict]:
    """L_BCE + L_Dice + α·L_cnt for a batch. image (N,1,H,W), foreground (N,H,W) 0/1, count (N,)."""
    outputs = net(image)
    prob = render_foreground(net, outputs, tuple(image.shape[-2:]), params).clamp(1e-6, 1 - 1e-6)
    l_bce = F.binary_cross_entropy(prob, foreground)
    l_dice = dice_loss(prob, foreground)
    l_cnt = count_loss(outputs[0].flatten(1), count)
    loss = l_bce + l_dice + params.alpha * l_cnt
    return loss, {"bce": l_bce.item(), "dice": l_dice.item(), "cnt": l_cnt.item()}


class ExportEncoder(nn.Module):
    """The exported graph: image → presence, center_offset, transform (the shape MLP is not in it; its 88
    weights travel in the card and the runtime evaluates them with numpy)."""

    def __init__(self, net: CanonicalShapeNet):
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor):
        return self.net(image)


def mlp_weights(mlp: ShapeMLP) -> dict:
    """The shape MLP's weights as nested lists for the card: {fc1: {weight, bias}, fc2: .., fc3: ..}."""
    return {name: {"weight": layer.weight.detach().tolist(), "bias": layer.bias.detach().tolist()}
            for name, layer in (("fc1", mlp.fc1), ("fc2", mlp.fc2), ("fc3", mlp.fc3))}


def decoder_params(net: CanonicalShapeNet, params: ShapeParams) -> dict:
    """The card's decoder entry for the shared candidates decoder `canonical_shape`."""
    return {"name": "canonical_shape", "stride": STRIDE, "instances_per_cell": INSTANCES_PER_CELL,
            "unit": params.unit, "presence_threshold": 0.5, "mask_threshold": 0.5,
            "containment_merge": 0.5, "min_area": 8, "shape_mlp": mlp_weights(net.shape)}

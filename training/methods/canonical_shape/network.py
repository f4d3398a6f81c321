"""The canonical-shape networks (Costa, Gaudio, Campilho, Cardoso, MIDL 2022) and the exported graph.

- ShapeMLP, the implicit shape: (x, y, r) → log p(s | x, y, r), three linear layers with 8, 4 and 1 outputs,
  the input concatenated to the outputs of the first two, ReLU inside, a negative Softplus at the end;
- ShapeEncoder, a small residual backbone whose last stride is replaced by dilation (output stride 16),
  with two 1×1 heads that predict, for each cell of the feature grid, INSTANCES_PER_CELL instances'
  affine transforms T = [L | t] (L lower-triangular, positive diagonal) and presence p(z);
- CanonicalShapeNet, the two together; ExportEncoder, its exported graph (the MLP travels as an asset)."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cellpoint.training.methods.canonical_shape.config import INSTANCES_PER_CELL, STRIDE

OUTPUTS = [
    {"name": "presence", "axes": "bcyx", "stride": STRIDE,
     "description": "p(z) of each instance slot per grid cell, (N, I, H/16, W/16)"},
    {"name": "center_offset", "axes": "bcyx", "stride": STRIDE,
     "description": "instance centre minus grid-cell centre, network px, (dx, dy) per slot"},
    {"name": "transform", "axes": "bcyx", "stride": STRIDE,
     "description": "lower-triangular L of X' = L(p - c)/unit, (l11, l21, l22) per slot, l11, l22 > 0"},
]
OUTPUT_NAMES = tuple(o["name"] for o in OUTPUTS)


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


class ExportEncoder(nn.Module):
    """The exported graph: image (N,C,H,W) float32 → presence, center_offset, transform (the shape MLP is
    not in it; its 88 weights travel as the package asset "shape_mlp", evaluated by the runtime with numpy)."""

    def __init__(self, net: CanonicalShapeNet):
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor):
        return self.net(image)


def mlp_weights(mlp: ShapeMLP) -> dict:
    """The shape MLP's weights as nested float lists, the package asset "shape_mlp": {fc1: {weight (8,3),
    bias (8,)}, fc2: {(4,11), (4,)}, fc3: {(1,7), (1,)}}."""
    return {name: {"weight": layer.weight.detach().tolist(), "bias": layer.bias.detach().tolist()}
            for name, layer in (("fc1", mlp.fc1), ("fc2", mlp.fc2), ("fc3", mlp.fc3))}

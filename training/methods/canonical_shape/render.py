"""The paper's rendering (equation 2) in torch: each instance maps pixels into canonical coordinates,
X' = L·X + t, where the shape MLP gives p(s); instances combine by the maximum of p(s)·p(z).

Coordinates: X = (x, y) in network pixels divided by `unit` (the canonical radius, half the canonical
diameter), and t is carried as the instance centre c (network px) with t = −L·c/unit — the same affine
family, parameterised so the head predicts where the cell is relative to its grid cell."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from cellpoint.training.methods.canonical_shape.config import STRIDE, ShapeParams
from cellpoint.training.methods.canonical_shape.network import CanonicalShapeNet


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

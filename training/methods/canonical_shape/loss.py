"""Targets and losses of the canonical-shape method (label kind "foreground-count"): BCE + soft Dice
between the rendered foreground (upsampled from a grid `render_stride` times coarser, as in the paper) and
the mask, + α·(Σ p(z) − K)², K the number of cells with at least one pixel in the crop."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from cellpoint.training.methods.canonical_shape.config import ShapeParams
from cellpoint.training.methods.canonical_shape.network import CanonicalShapeNet
from cellpoint.training.methods.canonical_shape.render import render_foreground


def crop_count(instances: np.ndarray) -> int:
    """K of a crop: how many distinct cells have at least one pixel in it (instances: ids, 0 = background)."""
    ids = instances[instances > 0]
    return int(len(np.unique(ids)))


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

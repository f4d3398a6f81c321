"""LACSS's losses (Shrestha, Kuang, Yu), from the paper's text (its supplement is unavailable, so the
formulas here are this module's):
- location: BCE on the score map, positives the grid cells containing a location, summed and divided by
  the number of positives; smooth-L1 of the offsets on positive cells, also per positive.
- full supervision: mean BCE between each window's mask logits and that cell's ground-truth mask.
- weak supervision (image foreground + locations): `spill_loss`, `cover_loss`, `overlap_loss` (or
  `window_consistency_loss` + `overlap_loss`, the form of the authors' code).
- aux: `aux_losses` (the aux net fits the main network's boundaries; the main network's boundaries are
  pulled towards the aux net's prediction).
The instance head is teacher forced: during training its windows sit on the ground-truth locations."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from cellpoint.training.methods.lacss.config import LPN_STRIDE, LossWeights
from cellpoint.training.methods.lacss.network import AuxNet, LacssNet
from cellpoint.training.methods.lacss.windows import Windows, gather_windows

EPS = 1e-6


# ------------------------------------------------------------------------------------ location loss

def grid_cells(yx: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """The grid cell (row, col) holding each location: floor((yx + 0.5)/stride) — cell i spans pixels
    [4i, 4i + 3], i.e. [4i − 0.5, 4i + 3.5) in continuous px — clamped to the grid. int64 (N,2)."""
    cell = torch.floor((yx + 0.5) / LPN_STRIDE).long()
    return torch.stack([cell[:, 0].clamp(0, grid[0] - 1), cell[:, 1].clamp(0, grid[1] - 1)], 1)


def location_targets(batch_index: torch.Tensor, yx: torch.Tensor, shape: tuple[int, int, int]):
    """LPN targets for a batch of (B, h, w) grids.

    Returns score (B,1,h,w) float 0/1 (1 where a grid cell holds a location), offsets (B,2,h,w) float
    (location minus the grid cell's centre (i·4 + 1.5, j·4 + 1.5), network px; set on positive cells)
    and positive bool (B,h,w). Two locations in one cell: the later one's offsets win."""
    b, h, w = shape
    score = torch.zeros(b, 1, h, w)
    offsets = torch.zeros(b, 2, h, w)
    cell = grid_cells(yx, (h, w))
    centre = cell.float() * LPN_STRIDE + (LPN_STRIDE - 1) / 2
    bi = batch_index.long()
    score[bi, 0, cell[:, 0], cell[:, 1]] = 1.0
    offsets[bi, :, cell[:, 0], cell[:, 1]] = (yx - centre).float()
    return score, offsets, score[:, 0] > 0.5


def location_loss(score_logits: torch.Tensor, offsets: torch.Tensor, batch_index: torch.Tensor,
                  yx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(score term, offset term).

    score = Σ_cells BCE(logit, target) / max(1, #positives); offset = Σ_positive smooth-L1(pred − target,
    β = 1 px) summed over dy, dx / max(1, #positives). score_logits (B,1,h,w), offsets (B,2,h,w) px."""
    b, _, h, w = score_logits.shape
    target, target_offsets, positive = location_targets(batch_index, yx, (b, h, w))
    n = max(1, int(positive.sum()))
    l_score = F.binary_cross_entropy_with_logits(score_logits, target, reduction="sum") / n
    pred = offsets.permute(0, 2, 3, 1)[positive]
    l_offset = F.smooth_l1_loss(pred, target_offsets.permute(0, 2, 3, 1)[positive], reduction="sum", beta=1.0) / n
    return l_score, l_offset


# ---------------------------------------------------------------------------------- instance losses

def _masked_mean(values: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return (values * weight).sum() / weight.sum().clamp(min=1.0)


def mask_loss(logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Full supervision: mean over valid window pixels of BCE(logit, target).
    logits, target, valid (N,P,P); valid = 1 where the window pixel lies in the crop and the location has
    a ground-truth mask."""
    return _masked_mean(F.binary_cross_entropy_with_logits(logits, target, reduction="none"), valid)


def spill_loss(logits: torch.Tensor, foreground: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Weak (i), a cell's mask lies inside the foreground:
        Σ_k Σ_u v_k(u)·(1 − fg(u))·(−log(1 − p_k(u))) / Σ_k Σ_u v_k(u),
    the BCE towards 0 of every window pixel on background, averaged over all valid window pixels.
    logits (N,P,P); foreground, valid (N,P,P) gathered into the windows."""
    return _masked_mean(F.softplus(logits) * (1 - foreground), valid)


def cover_loss(logits: torch.Tensor, geometry: Windows, foreground: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Weak (i), every foreground pixel is covered by some cell: BCE towards 1 of the noisy-or of the
    masks on that pixel, U(u) = 1 − Π_k (1 − p_k(u)), i.e. with S(u) = Σ_k −log(1 − p_k(u)),
        mean over foreground pixels inside at least one window of −log(1 − exp(−S(u))).
    Foreground pixels no window reaches (a cell without a location) cannot be covered and do not count.
    logits, valid (N,P,P); foreground (B,H,W)."""
    s = geometry.unpad(geometry.paste(F.softplus(logits) * valid))
    reached = geometry.unpad(geometry.paste(valid)) > 0
    weight = foreground * reached
    return _masked_mean(-torch.log(-torch.expm1(-s.clamp(min=1e-4))), weight)


def window_consistency_loss(logits: torch.Tensor, foreground: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Weak (i) as the authors' code writes it: every cell's mask agrees with the foreground across its
    whole window, linearly in the probability,
        Σ_k Σ_u v_k(u)·[(1 − fg(u))·p_k(u) + fg(u)·(1 − p_k(u))] / Σ_k Σ_u v_k(u).
    Each mask is pulled over all foreground in its window; the overlap term shares contested foreground
    between neighbours. logits (N,P,P); foreground, valid (N,P,P) gathered into the windows."""
    p = torch.sigmoid(logits)
    return _masked_mean((1 - foreground) * p + foreground * (1 - p), valid)


def overlap_loss(logits: torch.Tensor, geometry: Windows, valid: torch.Tensor) -> torch.Tensor:
    """Weak (ii), masks do not overlap: each mask's probability times the others' −log(1 − p_j),
        Σ_k Σ_u v_k(u)·p_k(u)·Σ_{j≠k} −log(1 − p_j(u)) / Σ_k Σ_u v_k(u).
    The −log(1 − p) factor keeps a push on confident overlapping masks (a product p_k·p_j would vanish
    in the sigmoid's saturation). logits, valid (N,P,P)."""
    sp = F.softplus(logits) * valid
    others = geometry.read(geometry.paste(sp)) - sp
    return _masked_mean(torch.sigmoid(logits) * others, valid)


# ------------------------------------------------------------------------------------------ aux

_SOBEL = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]) / 4


def instance_edges(prob: torch.Tensor) -> torch.Tensor:
    """Boundary strength of soft masks: Sobel gradient magnitude (kernels /4, so a sharp 0→1 step gives 1
    on the pixels either side), replicate padding at the window border. prob (N,P,P) → (N,P,P) ≥ 0."""
    kernel = torch.stack([_SOBEL.t(), _SOBEL])[:, None].to(prob)              # d/drow, d/dcol
    grad = F.conv2d(F.pad(prob[:, None], (1, 1, 1, 1), mode="replicate"), kernel)
    return torch.sqrt((grad ** 2).sum(1) + EPS) - EPS ** 0.5


def boundary_map(logits: torch.Tensor, geometry: Windows, valid: torch.Tensor) -> torch.Tensor:
    """The main network's instance boundaries in the images: B(u) = 1 − exp(−Σ_k e_k(u)) with e_k the
    `instance_edges` of mask k (a smooth union that saturates at contacts). → (B,H,W) in [0,1)."""
    edges = instance_edges(torch.sigmoid(logits)) * valid
    return 1 - torch.exp(-geometry.unpad(geometry.paste(edges)))


def aux_losses(aux_logits: torch.Tensor, boundary: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The two aux terms, each training one side (stop-gradient on the other):
        fit   = mean_u BCE(a(u), sg[B(u)])          → trains the auxnet on the main network's boundaries
        agree = mean_u (B(u) − sg[σ(a(u))])²        → pulls the main network's boundaries to the auxnet's
    aux_logits (B,1,H,W) from AuxNet; boundary (B,H,W) from `boundary_map`."""
    a = aux_logits[:, 0]
    fit = F.binary_cross_entropy_with_logits(a, boundary.detach())
    agree = F.mse_loss(boundary, torch.sigmoid(a).detach())
    return fit, agree


# -------------------------------------------------------------------------------------- all terms

def lacss_loss(net: LacssNet, batch: dict, mode: str, window: int, weights: LossWeights = LossWeights(),
               aux_net: AuxNet | None = None, weak_loss: str = "union") -> tuple[torch.Tensor, dict]:
    """The training loss of one batch and its parts (floats).

    batch: "image" (B,C,H,W) float32; "batch_index" int64 (N,) and "yx" float32 (N,2) the locations
    (network px); weak mode: "foreground" (B,H,W) float 0/1; full mode: "labels" int64 (B,H,W) and "ids"
    int64 (N,) (each location's instance id in labels, 0 = no mask: the location trains the LPN only).
    The head's windows sit on the given (ground-truth) locations. aux_net: adds the aux terms.
    weak_loss: "union" = spill + cover (no mask off the foreground, their union covers it) + overlap;
    "window" = `window_consistency_loss` (weighted by `weights.cover`) + overlap, the form of the
    authors' code (better on nuclei from human-derived labels, collapses on whole cells here)."""
    image, bi, yx = batch["image"], batch["batch_index"], batch["yx"]
    score, offsets, features = net(image)
    l_score, l_offset = location_loss(score, offsets, bi, yx)
    loss = l_score + weights.offset * l_offset
    parts = {"score": l_score, "offset": l_offset}
    if len(yx):
        windows, encoding, geometry = gather_windows(features, bi, yx, window)
        logits = net.instance_logits(windows, encoding)[:, 0]
        b, _, h, w = image.shape
        valid = geometry.gather(image.new_ones(b, 1, h, w))[:, 0]
        if mode == "full":
            target = geometry.gather(batch["labels"][:, None].float())[:, 0] == batch["ids"][:, None, None]
            has_mask = (batch["ids"] > 0).float()[:, None, None]
            parts["mask"] = mask_loss(logits, target.float(), valid * has_mask)
            loss = loss + weights.mask * parts["mask"]
        else:
            fg = batch["foreground"].float()
            fg_windows = geometry.gather(fg[:, None])[:, 0]
            if weak_loss == "window":
                parts["consistency"] = window_consistency_loss(logits, fg_windows, valid)
                loss = loss + weights.cover * parts["consistency"]
            else:
                parts["spill"] = spill_loss(logits, fg_windows, valid)
                parts["cover"] = cover_loss(logits, geometry, fg, valid)
                loss = loss + weights.spill * parts["spill"] + weights.cover * parts["cover"]
            parts["overlap"] = overlap_loss(logits, geometry, valid)
            loss = loss + weights.overlap * parts["overlap"]
        if aux_net is not None:
            parts["aux_fit"], parts["aux_agree"] = aux_losses(aux_net(image), boundary_map(logits, geometry, valid))
            loss = loss + weights.aux * (parts["aux_fit"] + parts["aux_agree"])
    return loss, {k: float(v.detach()) for k, v in parts.items()}

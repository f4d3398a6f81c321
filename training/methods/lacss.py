"""LACSS, location assisted cell segmentation (Shrestha, Kuang, Yu): network and losses, pure torch.

Network (`LacssNet`), all fully convolutional:
- backbone: an encoder/decoder over four resolutions (strides 1, 2, 4, 8; 3×3 conv + BatchNorm + ReLU,
  max-pool down; FPN-like up: 1×1 conv, bilinear upsampling, add the skip, 3×3 conv). It gives the
  stride-4 decoder features for the LPN and the stride-1 "high-resolution" features (F channels, ≥ 0)
  for the head.
- location proposal network (LPN) on the stride-4 features (LPN_STRIDE): per grid cell a score logit
  ("a location of interest lies in this cell") and the offsets (dy, dx) in network px from the grid
  cell's centre, pixel (i·4 + 1.5, j·4 + 1.5). No size is predicted.
- instance head: for one location (y, x) (float network px) it reads a P×P window of the features,
  top = floor(y + 0.5) − P//2, left = floor(x + 0.5) − P//2, window pixel (i, j) = image pixel
  (top + i, left + j), zero outside the image, concatenated with the location encoding
  channel 0 = (top + i − y)/P, channel 1 = (left + j − x)/P; a few 3×3 convs → one mask logit per
  window pixel. (floor(v + 0.5) is the runtime's rounding, cellpoint.runtime.location_masks.)
Training only: `AuxNet`, a low field-of-view (9×9 px) edge predictor on the image.

Losses (the paper's text; its supplement is unavailable, so the formulas here are this module's):
- location: BCE on the score map, positives the grid cells containing a location, summed and divided by
  the number of positives; smooth-L1 of the offsets on positive cells, also per positive.
- full supervision: mean BCE between each window's mask logits and that cell's ground-truth mask.
- weak supervision (image foreground + locations): `spill_loss`, `cover_loss`, `overlap_loss`.
- aux: `aux_losses` (auxnet fits the main network's boundaries; the main network's boundaries are
  pulled towards the auxnet's prediction).
The seg head is teacher forced: during training its windows sit on the ground-truth locations.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

LPN_STRIDE = 4
"""Grid spacing of the score and offset maps, network px."""
MULTIPLE = 8
"""Input height and width must be multiples of this (three 2× poolings)."""
OUTPUT_NAMES = ("score", "offsets", "features")
EPS = 1e-6


@dataclass(frozen=True)
class LossWeights:
    """Weights of the loss terms (the score term has weight 1)."""
    offset: float = 1.0
    mask: float = 1.0       # full supervision
    spill: float = 1.0      # weak: mask outside the foreground
    cover: float = 1.0      # weak: foreground not covered by any mask
    overlap: float = 1.0    # weak: two masks on one pixel
    aux: float = 1.0        # both aux terms (only when the aux net trains)


# ------------------------------------------------------------------------------------------ network

def _conv_bn(c_in: int, c_out: int) -> nn.Sequential:
    """3×3 conv, BatchNorm, ReLU."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
                         nn.ReLU(inplace=True))


class Backbone(nn.Module):
    """(B,C,H,W) → (stride-4 features (B,widths[2],H/4,W/4), stride-1 features (B,F,H,W) ≥ 0).

    Encoder: widths = channels at strides 1, 2, 4, 8; one 3×3 conv block at stride 1, two at the others,
    2×2 max-pool between. Decoder (FPN-like, to fit a CPU budget): at each finer level, a 1×1 conv of the
    coarser output, bilinear 2× upsampling, plus the encoder's skip, then one 3×3 conv block; the last
    gives `features` channels."""

    def __init__(self, in_channels: int = 1, widths=(16, 32, 64, 128), features: int = 16):
        super().__init__()
        w = tuple(widths)
        if len(w) != 4:
            raise ValueError(f"LACSS backbone takes 4 widths (strides 1, 2, 4, 8), got {w}")
        self.down = nn.ModuleList([_conv_bn(in_channels, w[0]),
                                   nn.Sequential(_conv_bn(w[0], w[1]), _conv_bn(w[1], w[1])),
                                   nn.Sequential(_conv_bn(w[1], w[2]), _conv_bn(w[2], w[2])),
                                   nn.Sequential(_conv_bn(w[2], w[3]), _conv_bn(w[3], w[3]))])
        self.lateral = nn.ModuleList([nn.Conv2d(w[3], w[2], 1), nn.Conv2d(w[2], w[1], 1), nn.Conv2d(w[1], w[0], 1)])
        self.up = nn.ModuleList([_conv_bn(w[2], w[2]), _conv_bn(w[1], w[1]), _conv_bn(w[0], features)])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        skips = []
        for i, block in enumerate(self.down):
            x = block(F.max_pool2d(x, 2) if i else x)
            skips.append(x)
        outputs = []
        for lateral, block, skip in zip(self.lateral, self.up, reversed(skips[:-1])):
            x = block(skip + F.interpolate(lateral(x), size=skip.shape[-2:], mode="bilinear", align_corners=False))
            outputs.append(x)
        return outputs[0], outputs[-1]


class InstanceHead(nn.Module):
    """(windows (N,F,P,P), encoding (N,2,P,P)) → mask logits (N,1,P,P): `layers` 3×3 conv + ReLU of
    `width` channels, then a 1×1 conv. No normalisation: windows are independent of each other."""

    def __init__(self, features: int = 16, width: int = 16, layers: int = 2):
        super().__init__()
        convs, c = [], features + 2
        for _ in range(layers):
            convs += [nn.Conv2d(c, width, 3, padding=1), nn.ReLU(inplace=True)]
            c = width
        self.body = nn.Sequential(*convs)
        self.out = nn.Conv2d(c, 1, 1)

    def forward(self, windows: torch.Tensor, encoding: torch.Tensor) -> torch.Tensor:
        return self.out(self.body(torch.cat([windows, encoding], 1)))


class LacssNet(nn.Module):
    """Backbone + LPN + instance head.

    forward(image (B,C,H,W), H and W multiples of MULTIPLE) → (score logits (B,1,H/4,W/4), offsets
    (B,2,H/4,W/4) as (dy, dx) network px from the grid cell's centre, features (B,F,H,W)).
    instance_logits(windows, encoding) → (N,1,P,P) mask logits."""

    def __init__(self, in_channels: int = 1, widths=(16, 32, 64, 128), features: int = 16,
                 head_width: int = 16, head_layers: int = 2, score_bias: float = -4.0):
        super().__init__()
        self.backbone = Backbone(in_channels, widths, features)
        c = tuple(widths)[2]
        self.lpn = nn.Sequential(nn.Conv2d(c, c // 2, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(c // 2, 3, 1))
        self.head = InstanceHead(features, head_width, head_layers)
        with torch.no_grad():  # few grid cells hold a location: start the score low, the offsets near 0
            self.lpn[2].bias.copy_(torch.tensor([score_bias, 0.0, 0.0]))
            self.lpn[2].weight[1:].mul_(0.1)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        d4, features = self.backbone(image)
        lpn = self.lpn(d4)
        return lpn[:, :1], lpn[:, 1:] * LPN_STRIDE, features

    def instance_logits(self, windows: torch.Tensor, encoding: torch.Tensor) -> torch.Tensor:
        return self.head(windows, encoding)


class AuxNet(nn.Module):
    """Training-only low field-of-view boundary predictor: image (B,C,H,W) → edge logits (B,1,H,W).

    `layers` 3×3 convs (field of view 2·layers + 1 px: 9 px for 4) + ReLU, then a 1×1 conv."""

    def __init__(self, in_channels: int = 1, width: int = 8, layers: int = 4):
        super().__init__()
        convs, c = [], in_channels
        for _ in range(layers):
            convs += [nn.Conv2d(c, width, 3, padding=1), nn.ReLU(inplace=True)]
            c = width
        self.net = nn.Sequential(*convs, nn.Conv2d(c, 1, 1))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.net(image)


class ExportFeatures(nn.Module):
    """The exported main graph: image (B,C,H,W) float32 → score (B,1,H/4,W/4) probability, offsets
    (B,2,H/4,W/4) (dy, dx) network px, features (B,F,H,W)."""

    def __init__(self, net: LacssNet):
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor):
        score, offsets, features = self.net(image)
        return torch.sigmoid(score), offsets, features


class ExportInstance(nn.Module):
    """The exported instance graph: windows (N,F,P,P), encoding (N,2,P,P) → masks (N,1,P,P) probability."""

    def __init__(self, net: LacssNet):
        super().__init__()
        self.head = net.head

    def forward(self, windows: torch.Tensor, encoding: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.head(windows, encoding))


def decoder_params(cfg) -> dict:
    """The card's entry for the runtime's `location_masks` decoder. cfg: any object with `window` (P) and
    `diameter` (the canonical cell diameter, network px). Distances and areas in network px."""
    d = float(cfg.diameter)
    return {"name": "location_masks", "decode_at": "network", "stride": LPN_STRIDE, "window": int(cfg.window),
            "score_threshold": 0.5, "min_distance": round(d / 4, 2), "mask_threshold": 0.5,
            "min_area": int(round(np.pi * (d / 8) ** 2)), "batch": 64}


# ---------------------------------------------------------------------------------------- windows

def window_origins(yx: torch.Tensor, size: int) -> torch.Tensor:
    """Top-left pixel (row, col) of each location's window: floor(yx + 0.5) − size//2.
    yx float (N,2) network px → int64 (N,2)."""
    return torch.floor(yx + 0.5).long() - size // 2


def location_encoding(yx: torch.Tensor, size: int) -> torch.Tensor:
    """(N,2) float locations → float32 (N,2,P,P): channel 0 = (top + i − y)/P, channel 1 = (left + j − x)/P."""
    origins = window_origins(yx, size).to(torch.float64)
    steps = torch.arange(size, dtype=torch.float64, device=yx.device)
    rows = (origins[:, 0, None] + steps - yx[:, 0, None].double()) / size      # (N,P)
    cols = (origins[:, 1, None] + steps - yx[:, 1, None].double()) / size
    n = len(yx)
    return torch.stack([rows[:, :, None].expand(n, size, size), cols[:, None, :].expand(n, size, size)],
                       1).float()


@dataclass
class Windows:
    """Where N windows of size P lie in a batch of B images of (H,W): flat indices into the images
    zero-padded by `pad` on every side, shape (B, H+2·pad, W+2·pad). Lets maps be gathered into windows
    and window values be pasted (summed) back into the images, both differentiable."""
    index: torch.Tensor   # int64 (N,P,P)
    batch: int
    height: int
    width: int
    pad: int

    @classmethod
    def at(cls, batch_index: torch.Tensor, yx: torch.Tensor, size: int, batch: int, height: int, width: int):
        """Windows of `size` around locations yx (N,2) float of images batch_index (N,) int64."""
        origins = window_origins(yx, size)
        pad = 0 if len(origins) == 0 else int(max(0, -int(origins.min()),
                                                  int((origins[:, 0] + size - height).max()),
                                                  int((origins[:, 1] + size - width).max())))
        steps = torch.arange(size, device=yx.device)
        rows = origins[:, 0, None] + pad + steps                                  # (N,P)
        cols = origins[:, 1, None] + pad + steps
        hp, wp = height + 2 * pad, width + 2 * pad
        index = batch_index.long()[:, None, None] * (hp * wp) + rows[:, :, None] * wp + cols[:, None, :]
        return cls(index, batch, height, width, pad)

    def _padded_shape(self) -> tuple[int, int]:
        return self.height + 2 * self.pad, self.width + 2 * self.pad

    def gather(self, maps: torch.Tensor) -> torch.Tensor:
        """maps (B,K,H,W) → (N,K,P,P), zero outside the images."""
        k = maps.shape[1]
        flat = F.pad(maps, (self.pad,) * 4).permute(0, 2, 3, 1).reshape(-1, k)
        n, p, _ = self.index.shape
        return flat[self.index.reshape(-1)].view(n, p, p, k).permute(0, 3, 1, 2)

    def paste(self, values: torch.Tensor) -> torch.Tensor:
        """values (N,P,P) → padded canvas (B, H+2·pad, W+2·pad), each pixel the sum over windows on it."""
        hp, wp = self._padded_shape()
        canvas = values.new_zeros(self.batch * hp * wp).index_add(0, self.index.reshape(-1), values.reshape(-1))
        return canvas.view(self.batch, hp, wp)

    def read(self, canvas: torch.Tensor) -> torch.Tensor:
        """Padded canvas (B, H+2·pad, W+2·pad) → its values at every window pixel (N,P,P)."""
        return canvas.reshape(-1)[self.index]

    def unpad(self, canvas: torch.Tensor) -> torch.Tensor:
        """Padded canvas → (B,H,W)."""
        return canvas[:, self.pad:self.pad + self.height, self.pad:self.pad + self.width]


def gather_windows(features: torch.Tensor, batch_index: torch.Tensor, yx: torch.Tensor, size: int):
    """The instance head's inputs for N locations of a batch.

    features (B,F,H,W); batch_index int64 (N,); yx float (N,2) network px. Returns windows (N,F,P,P)
    (zero outside the image; differentiable w.r.t. features), encoding (N,2,P,P) and the `Windows`."""
    b, _, h, w = features.shape
    geometry = Windows.at(batch_index, yx, size, b, h, w)
    return geometry.gather(features), location_encoding(yx, size), geometry


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

WEAK_LOSSES = ("union", "window")


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

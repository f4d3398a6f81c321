"""The scale model: a small network that tells how large the cells in an image tile are, so the runtime can
segment an image without being told its cell diameter (`cellpoint.runtime.scale`).

It is trained from each image's foreground mask and cell count only (the diameter of the average cell,
2·sqrt(foreground area / (π·count)), is the one number it learns from), on tiles shown at random zooms so
that their cells are between 2^-2.5 and 2^2.5 times `canonical` px; it outputs, on a stride-16 grid, the
log2 ratio of the cells' diameter to `canonical` and a presence logit (are there cells within a grid cell).
Trained once for all methods; `cellpoint export --scale-model` puts it into a package as graph "scale"."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cellpoint.training.augment import jitter_intensity
from cellpoint.training.loop import cosine_schedule, optimise

SCALE_FORMAT = "cellpoint-scale/1"
STRIDE = 16


@dataclass
class ScaleConfig:
    canonical: float = 24.0          # px: the cell diameter whose log2 ratio is 0
    octaves: float = 2.5             # tiles show cells from canonical·2^-octaves to canonical·2^+octaves
    widths: tuple = (16, 32, 64, 96, 128)
    crop: int = 128
    batch: int = 16
    steps: int = 4000
    lr: float = 2e-3
    seed: int = 0
    log_every: int = 200


def _conv(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class ScaleNet(nn.Module):
    """(B,1,H,W), H and W multiples of 16 → (B,2,H/16,W/16): channel 0 the log2 ratio of the cells'
    diameter to canonical, channel 1 the presence logit. Each grid cell sees its neighbourhood and, through
    a global average of the features, the whole tile."""

    def __init__(self, widths=(16, 32, 64, 96, 128)):
        super().__init__()
        w = tuple(widths)
        blocks, c = [], 1
        for i, width in enumerate(w):
            blocks.append(nn.Sequential(_conv(c, width), *([_conv(width, width)] if i else [])))
            c = width
        self.blocks = nn.ModuleList(blocks)
        self.context = nn.Conv2d(c, c, 1)
        self.head = nn.Sequential(nn.Conv2d(c, 64, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(64, 2, 1))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = image
        for i, block in enumerate(self.blocks):
            x = block(F.max_pool2d(x, 2) if i else x)
        x = F.relu(x + self.context(x.mean(dim=(2, 3), keepdim=True)))
        return self.head(x)


def image_diameter(labels: np.ndarray) -> float:
    """The average cell's equivalent diameter (px) from the foreground and the cell count of a label image;
    nan without cells."""
    from cellpoint.training.targets import diameter_from_mask_and_count
    foreground = labels > 0
    return diameter_from_mask_and_count(foreground, len(np.unique(labels[foreground])))


def sample_tile(image: np.ndarray, foreground: np.ndarray, diameter: float, cfg: ScaleConfig,
                rng: np.random.Generator) -> tuple[np.ndarray, float, np.ndarray]:
    """A training tile: (image float32 (S,S), target log2 ratio, presence float32 (S/16,S/16) 0/1).

    The image (float32 (H,W), normalised) is zoomed so its cells (`diameter` px) become canonical·2^u px,
    u uniform in ±octaves; a random S×S window of the zoomed image (zero past its edge), rotated, maybe
    flipped and inverted, intensity-jittered. Presence: a grid cell holds foreground."""
    u = float(rng.uniform(-cfg.octaves, cfg.octaves))
    zoom = cfg.canonical * 2.0 ** u / diameter
    size = cfg.crop
    window = max(2, int(round(size / zoom)))
    h, w = image.shape
    y0 = int(rng.integers(min(0, h - window), max(h - window, 0) + 1))
    x0 = int(rng.integers(min(0, w - window), max(w - window, 0) + 1))
    k, flip, invert = int(rng.integers(4)), bool(rng.integers(2)), bool(rng.integers(2))

    def crop(arr, nearest):
        part = np.zeros((window, window), np.float32)
        ys, xs = slice(max(y0, 0), min(y0 + window, h)), slice(max(x0, 0), min(x0 + window, w))
        part[ys.start - y0:ys.stop - y0, xs.start - x0:xs.stop - x0] = arr[ys, xs]
        interp = cv2.INTER_NEAREST if nearest else (cv2.INTER_AREA if zoom < 1 else cv2.INTER_LINEAR)
        out = np.rot90(cv2.resize(part, (size, size), interpolation=interp), k)
        return np.ascontiguousarray(out[:, ::-1] if flip else out)

    tile = crop(image, False)
    if invert:
        tile = np.float32(1.0) - tile
    tile = jitter_intensity(tile, rng)
    fg = crop(foreground.astype(np.float32), True)
    presence = fg.reshape(size // STRIDE, STRIDE, size // STRIDE, STRIDE).max(axis=(1, 3))
    return tile, u, presence


def scale_loss(output: torch.Tensor, target: torch.Tensor, presence: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """Smooth-L1 of the log2 ratio where cells are present (per present grid cell) + BCE of presence.
    output (B,2,h,w); target (B,); presence (B,h,w) 0/1."""
    ratio, logit = output[:, 0], output[:, 1]
    weight = presence
    reg = (F.smooth_l1_loss(ratio, target[:, None, None].expand_as(ratio), reduction="none") * weight).sum() \
        / weight.sum().clamp(min=1)
    cls = F.binary_cross_entropy_with_logits(logit, presence)
    return reg + cls, {"ratio": float(reg.detach()), "presence": float(cls.detach())}


def train_scale(examples: list[list[dict]], cfg: ScaleConfig, log=print) -> dict:
    """Train on examples grouped by data set ([[{"image", "foreground", "diameter"}, ...], ...]); each
    batch item picks a data set uniformly, then an image of it. Returns the scale checkpoint dict."""
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    groups = [g for g in examples if g]
    net = ScaleNet(cfg.widths)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=1e-4)
    net.train()

    def step_loss(step):
        tiles, targets, presence = [], [], []
        for _ in range(cfg.batch):
            group = groups[int(rng.integers(len(groups)))]
            ex = group[int(rng.integers(len(group)))]
            tile, u, p = sample_tile(ex["image"], ex["foreground"], ex["diameter"], cfg, rng)
            tiles.append(tile), targets.append(u), presence.append(p)
        output = net(torch.from_numpy(np.stack(tiles))[:, None])
        return scale_loss(output, torch.tensor(targets, dtype=torch.float32), torch.from_numpy(np.stack(presence)))

    seconds = optimise(net.parameters(), step_loss, cfg.steps, opt, cosine_schedule(opt, cfg.steps, cfg.lr), log,
                       cfg.log_every, clip_norm=10.0)
    net.eval()
    return {"format": SCALE_FORMAT, "model": {"widths": list(cfg.widths)}, "state_dict": net.state_dict(),
            "canonical_px": cfg.canonical, "config": asdict(cfg), "train_seconds": seconds}


def build_scale_network(checkpoint: dict) -> ScaleNet:
    """The scale checkpoint's network, in eval mode."""
    net = ScaleNet(tuple(checkpoint["model"]["widths"]))
    net.load_state_dict(checkpoint["state_dict"])
    return net.eval()


def load_scale_checkpoint(path) -> dict:
    """A scale checkpoint (tensors and plain data only); ValueError naming the file otherwise."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != SCALE_FORMAT:
        raise ValueError(f"{path}: not a cellpoint scale model (format {SCALE_FORMAT})")
    return checkpoint


def predict_log_ratio(net: ScaleNet, tiles: np.ndarray) -> np.ndarray:
    """(B,1,S,S) float32 tiles → (B,2,S/16,S/16) float32 outputs, with torch (for checks and benchmarks)."""
    with torch.no_grad():
        return net(torch.from_numpy(np.ascontiguousarray(tiles, np.float32))).numpy()

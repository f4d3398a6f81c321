"""Training loop of the canonical-shape method: from an image-level foreground mask and cell counts.

Each image is rescaled so its cells have the canonical diameter, the size estimated from the mask and the
count alone (d = 2·sqrt(foreground area / (π·K))). Training draws random 128×128 crops; as in the paper,
the count K of a crop is the number of cells with at least one pixel in it, so the example keeps an
instance-id map whose only use is that count — the loss sees the crop's foreground and K, nothing else."""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from cellpoint.runtime.normalize import normalize_percentile
from cellpoint.training.methods import canonical_shape as method
from cellpoint.training.train import CHECKPOINT_FORMAT, _resize, sample_crop


@dataclass
class ShapeTrainConfig:
    widths: tuple = (16, 32, 64, 96, 128)
    diameter: float = 24.0                 # canonical cell diameter, px, the network sees
    crop: int = 128                        # the paper's patch size
    batch: int = 16
    steps: int = 3000
    # "adam" (default: from scratch on a CPU budget it fits in 3000 steps where the paper's SGD did not),
    # or "sgd": Nesterov momentum 0.9 (the paper's). Both follow the one-cycle schedule.
    optimizer: str = "adam"
    lr: float = 1e-3                       # the one-cycle maximum (the paper's SGD used 1e-2)
    seed: int = 0
    scale_range: tuple = (0.8, 1.25)
    params: method.ShapeParams = field(default_factory=method.ShapeParams)


def diameter_from_mask_and_count(foreground: np.ndarray, count: int) -> float:
    """Equivalent-circle diameter (px) of the average cell: 2·sqrt(area / (π·count)); nan if count is 0."""
    area = float(np.count_nonzero(foreground))
    return 2.0 * np.sqrt(area / (np.pi * count)) if count > 0 and area > 0 else float("nan")


def prepare_shape_example(image: np.ndarray, labels: np.ndarray, cfg: ShapeTrainConfig) -> dict:
    """One image at the canonical scale. image (H,W) raw; labels (H,W) instance ids (used for the
    foreground and for counting cells per crop only). Returns {"image", "foreground", "instances": float32
    (H',W'), "scale", "diameter"}."""
    norm = normalize_percentile(image[None].astype(np.float32))[0]
    foreground = labels > 0
    count = len(np.unique(labels[foreground]))
    diameter = diameter_from_mask_and_count(foreground, count)
    scale = cfg.diameter / diameter if np.isfinite(diameter) else 1.0
    shape = (max(8, round(norm.shape[0] * scale)), max(8, round(norm.shape[1] * scale)))
    return {"image": _resize(norm, shape),
            "foreground": _resize(foreground.astype(np.float32), shape, nearest=True),
            "instances": _resize(labels.astype(np.float32), shape, nearest=True),
            "scale": scale, "diameter": diameter}


def crop_count(instances: np.ndarray) -> int:
    """K of a crop: how many distinct cells have at least one pixel in it."""
    ids = instances[instances > 0]
    return int(len(np.unique(ids)))


def train_shape(examples: list[dict], cfg: ShapeTrainConfig, log=print) -> dict:
    """Train encoder + shape MLP on prepared examples. Returns a checkpoint dict (CHECKPOINT_FORMAT)."""
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    net = method.CanonicalShapeNet(1, cfg.widths, cfg.params.presence_bias)
    if cfg.optimizer == "adam":
        opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    else:
        opt = torch.optim.SGD(net.parameters(), lr=cfg.lr, momentum=0.9, nesterov=True, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.steps)
    start = time.perf_counter()
    net.train()
    for step in range(cfg.steps):
        crops = [sample_crop(examples[int(rng.integers(len(examples)))], cfg, rng) for _ in range(cfg.batch)]
        image = torch.from_numpy(np.stack([c["image"] for c in crops]))[:, None]
        foreground = torch.from_numpy(np.stack([c["foreground"] for c in crops]))
        count = torch.tensor([crop_count(c["instances"]) for c in crops], dtype=torch.float32)
        loss, parts = method.shape_loss(net, image, foreground, count, cfg.params)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 10.0)
        opt.step()
        sched.step()
        if step % 100 == 0 or step == cfg.steps - 1:
            log(f"step {step:5d}/{cfg.steps}  loss {loss.item():.4f}  "
                + "  ".join(f"{k} {v:.3f}" for k, v in parts.items())
                + f"  ({time.perf_counter() - start:.0f} s)")
    net.eval()
    return {
        "format": CHECKPOINT_FORMAT,
        "method": "canonical_shape",
        "label_kind": "foreground-count",
        "model": {"arch": "canonical_shape", "in_channels": 1, "widths": list(cfg.widths)},
        "state_dict": net.state_dict(),
        "diameter": cfg.diameter,
        "normalization": {"kind": "percentile", "low": 1.0, "high": 99.8},
        "decoder": method.decoder_params(net, cfg.params),
        "config": {k: (asdict(v) if k == "params" else v) for k, v in vars(cfg).items()},
        "train_seconds": time.perf_counter() - start,
    }


def build_shape_network(checkpoint: dict) -> method.CanonicalShapeNet:
    """The checkpoint's network with its weights, in eval mode."""
    net = method.CanonicalShapeNet(checkpoint["model"]["in_channels"], tuple(checkpoint["model"]["widths"]))
    net.load_state_dict(checkpoint["state_dict"])
    return net.eval()

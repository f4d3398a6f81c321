"""The training loop for the map-and-seed methods: prepare targets once, then train on random crops.

Every image is first rescaled so that its cells have the model's canonical diameter; in weak mode the
cell size comes from the objectness regions grown from the clicks, never from a mask."""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import cv2
import numpy as np
import torch

from cellpoint.runtime.normalize import normalize_percentile
from cellpoint.training.methods import objectness as method
from cellpoint.training.objectness import objectness_targets, region_boundaries
from cellpoint.training.targets import label_centroids, median_diameter_from_labels, median_diameter_from_regions
from cellpoint.training.unet import UNet

CHECKPOINT_FORMAT = "cellpoint-checkpoint/1"


@dataclass
class TrainConfig:
    labels: str = "points"                 # "points" (weak) or "full" (upper bound)
    widths: tuple = (8, 16, 32, 64, 128)
    diameter: float = 24.0                 # canonical cell diameter, px, the network sees
    crop: int = 128
    batch: int = 16
    steps: int = 3000
    lr: float = 1e-3
    seed: int = 0
    point_placement: str = "centroid"
    point_jitter: float = 0.0
    scale_range: tuple = (0.7, 1.4)
    params: method.ObjectnessParams = field(default_factory=method.ObjectnessParams)


def _resize(arr: np.ndarray, shape: tuple[int, int], nearest: bool = False) -> np.ndarray:
    interp = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    return cv2.resize(arr, (shape[1], shape[0]), interpolation=interp)


def prepare_example(image: np.ndarray, points_rc: np.ndarray | None, labels: np.ndarray | None,
                    cfg: TrainConfig) -> dict:
    """One image's training arrays at the canonical scale.

    image: (H,W) raw intensities. Weak mode needs points_rc (K,2) row/col; full mode needs labels (H,W).
    Returns {"image": float32 (H',W'), <target maps float32 (H',W')>, "scale": float, "diameter": float}."""
    norm = normalize_percentile(image[None].astype(np.float32))[0]
    if cfg.labels == "points":
        objectness, _, region = objectness_targets(norm, points_rc, cfg.params.w)
        diameter = median_diameter_from_regions(objectness, region)
    else:
        diameter = median_diameter_from_labels(labels)
    scale = cfg.diameter / diameter if np.isfinite(diameter) and diameter > 0 else 1.0
    shape = (max(8, round(norm.shape[0] * scale)), max(8, round(norm.shape[1] * scale)))
    out = {"image": _resize(norm, shape), "scale": scale, "diameter": diameter}
    if cfg.labels == "points":
        pts = np.clip(np.round(np.asarray(points_rc, float) * scale), 0, np.array(shape) - 1).astype(int)
        region = _resize(region, shape, nearest=True)
        targets = method.point_targets(out["image"], pts, cfg.params)
        # objectness: grown at the native resolution, where the clicks and intensities are exact
        targets["objectness"] = _resize(objectness, shape)
        boundary = region_boundaries(region)
        targets["point_label"][boundary & (targets["point_label"] < 0.5)] = 0
        targets["point_weight"][boundary & (targets["point_label"] < 0.5)] = cfg.params.boundary_weight
    else:
        small = _resize(labels.astype(np.int32), shape, nearest=True)
        targets = method.full_targets(small, label_centroids(small), cfg.params)
    out.update(targets)
    return out


_NEAREST_KEYS = {"point_label", "point_weight", "foreground", "instances"}


def sample_crop(example: dict, cfg: TrainConfig, rng: np.random.Generator) -> dict:
    """A random crop of size cfg.crop, rescaled by a random factor, flipped and rotated; float32 maps."""
    scale = float(np.exp(rng.uniform(*np.log(cfg.scale_range))))
    window = max(8, int(round(cfg.crop / scale)))
    h, w = example["image"].shape
    pad_value = {"point_label": -1.0}
    crop = {}
    y0 = int(rng.integers(0, max(h - window, 0) + 1))
    x0 = int(rng.integers(0, max(w - window, 0) + 1))
    for key, arr in example.items():
        if not isinstance(arr, np.ndarray):
            continue
        part = arr[y0:y0 + window, x0:x0 + window]
        if part.shape != (window, window):
            full = np.full((window, window), pad_value.get(key, 0.0), np.float32)
            full[:part.shape[0], :part.shape[1]] = part
            part = full
        part = _resize(part, (cfg.crop, cfg.crop), nearest=key in _NEAREST_KEYS)
        crop[key] = part
    k, flip = int(rng.integers(4)), bool(rng.integers(2))
    for key in crop:
        arr = np.rot90(crop[key], k)
        crop[key] = np.ascontiguousarray(arr[:, ::-1] if flip else arr)
    gain, gamma = rng.uniform(0.8, 1.25), np.exp(rng.uniform(-0.3, 0.3))
    img = np.clip(crop["image"], 0, None) ** gamma * gain + rng.uniform(-0.05, 0.05)
    crop["image"] = (img + rng.normal(0, rng.uniform(0, 0.03), img.shape)).astype(np.float32)
    return crop


def train(examples: list[dict], cfg: TrainConfig, log=print) -> dict:
    """Train a UNet on prepared examples. Returns a checkpoint dict (see CHECKPOINT_FORMAT)."""
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    net = UNet(1, method.OUT_CHANNELS, cfg.widths)
    with torch.no_grad():  # start the centre map near zero, as CenterNet does, so the focal loss starts sane
        net.head.bias[2] = -4.0
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.steps, eta_min=cfg.lr * 0.01)
    loss_fn = method.weak_loss if cfg.labels == "points" else method.full_loss
    start = time.perf_counter()
    net.train()
    for step in range(cfg.steps):
        crops = [sample_crop(examples[int(rng.integers(len(examples)))], cfg, rng) for _ in range(cfg.batch)]
        batch = {k: torch.from_numpy(np.stack([c[k] for c in crops])) for k in crops[0]}
        logits = net(batch["image"][:, None])
        loss, parts = loss_fn(logits, batch, cfg.params)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 200 == 0 or step == cfg.steps - 1:
            log(f"step {step:5d}/{cfg.steps}  loss {loss.item():.4f}  "
                + "  ".join(f"{k} {v:.3f}" for k, v in parts.items())
                + f"  ({time.perf_counter() - start:.0f} s)")
    net.eval()
    return {
        "format": CHECKPOINT_FORMAT,
        "method": "objectness",
        "label_kind": cfg.labels,
        "model": {"arch": "unet", "in_channels": 1, "out_channels": method.OUT_CHANNELS,
                  "widths": list(cfg.widths)},
        "state_dict": net.state_dict(),
        "diameter": cfg.diameter,
        "normalization": {"kind": "percentile", "low": 1.0, "high": 99.8},
        "decoder": method.decoder_params(cfg.params, cfg.labels),
        "config": {k: (asdict(v) if k == "params" else v) for k, v in vars(cfg).items()},
        "train_seconds": time.perf_counter() - start,
    }


def build_network(checkpoint: dict) -> torch.nn.Module:
    """The checkpoint's network with its weights, in eval mode."""
    spec = checkpoint["model"]
    net = UNet(spec["in_channels"], spec["out_channels"], tuple(spec["widths"]))
    net.load_state_dict(checkpoint["state_dict"])
    return net.eval()

"""Training of the canonical-shape method: from an image-level foreground mask and cell counts.

Each image is rescaled so its cells have the canonical diameter, the size estimated from the mask and the
count alone (d = 2·sqrt(foreground area / (π·K))). Training draws random 128×128 crops; as in the paper,
the count K of a crop is the number of cells with at least one pixel in it, so the example keeps an
instance-id map whose only use is that count — the loss sees the crop's foreground and K, nothing else."""
from __future__ import annotations

import numpy as np
import torch

from cellpoint.runtime.decoders.canonical_shape import CanonicalShapeParams
from cellpoint.runtime.normalize import normalize_percentile
from cellpoint.training.augment import crop_maps, resize
from cellpoint.training.checkpoint import make_checkpoint
from cellpoint.training.loop import optimise
from cellpoint.training.start import initialise
from cellpoint.training.methods.canonical_shape.config import STRIDE, ShapeTrainConfig
from cellpoint.training.methods.canonical_shape.loss import crop_count, shape_loss
from cellpoint.training.methods.canonical_shape.network import CanonicalShapeNet
from cellpoint.training.targets import diameter_from_mask_and_count

LOG_EVERY = 100  # steps between log lines
CLIP_NORM = 10.0  # gradients' total norm is clipped to this


def prepare_example(image: np.ndarray, labels: np.ndarray, cfg: ShapeTrainConfig) -> dict:
    """One image at the canonical scale. image (H,W) raw; labels (H,W) instance ids (used for the
    foreground and for counting cells per crop only). Returns {"image", "foreground", "instances": float32
    (H',W'), "scale", "diameter"}."""
    norm = normalize_percentile(image[None].astype(np.float32))[0]
    foreground = labels > 0
    count = len(np.unique(labels[foreground]))
    diameter = diameter_from_mask_and_count(foreground, count)
    scale = cfg.diameter / diameter if np.isfinite(diameter) else 1.0
    shape = (max(8, round(norm.shape[0] * scale)), max(8, round(norm.shape[1] * scale)))
    return {"image": resize(norm, shape),
            "foreground": resize(foreground.astype(np.float32), shape, nearest=True),
            "instances": resize(labels.astype(np.float32), shape, nearest=True),
            "scale": scale, "diameter": diameter}


_NEAREST_KEYS = frozenset({"foreground", "instances"})


def sample_crop(example: dict, cfg: ShapeTrainConfig, rng: np.random.Generator) -> dict:
    """A random crop of size cfg.crop, rescaled by a random factor, flipped and rotated, the image
    intensity-jittered: {"image", "foreground", "instances": float32 (crop, crop)}."""
    return crop_maps(example, cfg.crop, cfg.scale_range, rng, _NEAREST_KEYS)


def decoder_params(cfg: ShapeTrainConfig) -> CanonicalShapeParams:
    """The package's decoder parameters: the encoder's grid stride and the canonical radius it trained
    with; the thresholds keep the decoder's defaults."""
    return CanonicalShapeParams(stride=STRIDE, unit=cfg.params.unit)


def _optimizer(net: torch.nn.Module, cfg: ShapeTrainConfig) -> torch.optim.Optimizer:
    """Adam, or (cfg.optimizer "sgd") Nesterov SGD with momentum 0.9 and weight decay 1e-4."""
    if cfg.optimizer == "adam":
        return torch.optim.Adam(net.parameters(), lr=cfg.lr)
    return torch.optim.SGD(net.parameters(), lr=cfg.lr, momentum=0.9, nesterov=True, weight_decay=1e-4)


def train(examples: list[dict], cfg: ShapeTrainConfig, log=print) -> dict:
    """Train encoder + shape MLP on prepared examples with the one-cycle schedule. Returns a checkpoint dict
    (`checkpoint.make_checkpoint`); the shape MLP's weights are in its state dict (net.shape)."""
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model = {"arch": "canonical_shape", "in_channels": 1, "widths": list(cfg.widths)}
    net = CanonicalShapeNet(1, cfg.widths, cfg.params.presence_bias)
    pretraining = initialise(net, cfg, log)
    opt = _optimizer(net, cfg)
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.steps)
    net.train()

    def step_loss(step):
        crops = [sample_crop(examples[int(rng.integers(len(examples)))], cfg, rng) for _ in range(cfg.batch)]
        image = torch.from_numpy(np.stack([c["image"] for c in crops]))[:, None]
        foreground = torch.from_numpy(np.stack([c["foreground"] for c in crops]))
        count = torch.tensor([crop_count(c["instances"]) for c in crops], dtype=torch.float32)
        return shape_loss(net, image, foreground, count, cfg.params)

    seconds = optimise(net.parameters(), step_loss, cfg.steps, opt, schedule, log, LOG_EVERY, CLIP_NORM,
                       budget_seconds=cfg.minutes * 60 or None)
    net.eval()
    return make_checkpoint("canonical_shape", "foreground-count", model, net, cfg.diameter, "canonical_shape",
                           decoder_params(cfg), cfg, seconds,
                           **({"training_data": pretraining} if pretraining else {}))


def build_network(checkpoint: dict) -> CanonicalShapeNet:
    """The checkpoint's network (with its weights if it has them), in eval mode."""
    spec = checkpoint["model"]
    net = CanonicalShapeNet(spec["in_channels"], tuple(spec["widths"]))
    if "state_dict" in checkpoint:
        net.load_state_dict(checkpoint["state_dict"])
    return net.eval()

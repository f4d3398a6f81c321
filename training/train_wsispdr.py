"""Training loop of WSISPDR's detection network (Nishimura, Ker, Bise): a U-Net regressed with mean
squared error onto Gaussian peaks at the clicked (rough) cell centroids — its cell-position likelihood map.

Every image is first rescaled so its cells have the canonical diameter; the cell size of a data set is
what its user states (one number per data set, like the runtime's `diameter`), never measured per cell.
Label kind "points" trains from clicks; "full" is the same network whose instances come from masks'
centroids (the detection is then as good as the clicks allow; masks add nothing to this loss)."""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np
import torch

from cellpoint.runtime.normalize import normalize_percentile
from cellpoint.training.methods.wsispdr_net import DetectionUNet
from cellpoint.training.targets import center_heatmap
from cellpoint.training.train import CHECKPOINT_FORMAT, _resize, sample_crop


@dataclass
class WsispdrConfig:
    widths: tuple = (16, 32, 64, 128)
    diameter: float = 32.0          # canonical cell diameter, px, the network sees
    sigma: float = 5.0              # sd (px, canonical scale) of the Gaussian peak at each centroid
    crop: int = 128
    batch: int = 8
    steps: int = 2000
    lr: float = 1e-3
    seed: int = 0
    scale_range: tuple = (0.8, 1.25)
    data_term: str = "intensity"    # the runtime graph-cut's cell evidence: intensity | inverted | texture


def prepare_wsispdr_example(image: np.ndarray, points_rc: np.ndarray, cell_diameter: float,
                            cfg: WsispdrConfig) -> dict:
    """One image at the canonical scale: {"image", "likelihood": float32 (H',W'), "scale"}.

    image (H,W) raw; points_rc (K,2) clicks as row/col; cell_diameter: the data set's typical cell
    diameter in px (what the user states)."""
    norm = normalize_percentile(image[None].astype(np.float32))[0]
    scale = cfg.diameter / cell_diameter
    shape = (max(8, round(norm.shape[0] * scale)), max(8, round(norm.shape[1] * scale)))
    points = np.asarray(points_rc, float).reshape(-1, 2) * scale
    return {"image": _resize(norm, shape), "likelihood": center_heatmap(shape, points, cfg.sigma),
            "scale": scale}


def train_wsispdr(examples: list[dict], cfg: WsispdrConfig, label_kind: str = "points", log=print) -> dict:
    """Train the detection U-Net on prepared examples. Returns a checkpoint dict (CHECKPOINT_FORMAT)."""
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    net = DetectionUNet(1, cfg.widths)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.steps, eta_min=cfg.lr * 0.01)
    start = time.perf_counter()
    net.train()
    for step in range(cfg.steps):
        crops = [sample_crop(examples[int(rng.integers(len(examples)))], cfg, rng) for _ in range(cfg.batch)]
        image = torch.from_numpy(np.stack([c["image"] for c in crops]))[:, None]
        target = torch.from_numpy(np.stack([c["likelihood"] for c in crops]))[:, None]
        loss = torch.nn.functional.mse_loss(net(image), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 100 == 0 or step == cfg.steps - 1:
            log(f"step {step:5d}/{cfg.steps}  mse {loss.item():.5f}  ({time.perf_counter() - start:.0f} s)")
    net.eval()
    return {
        "format": CHECKPOINT_FORMAT,
        "method": "wsispdr",
        "label_kind": label_kind,
        "model": {"arch": "detection_unet", "in_channels": 1, "widths": list(cfg.widths)},
        "state_dict": net.state_dict(),
        "diameter": cfg.diameter,
        "normalization": {"kind": "percentile", "low": 1.0, "high": 99.8},
        "decoder": decoder_params(cfg),
        "config": asdict(cfg),
        "train_seconds": time.perf_counter() - start,
    }


def decoder_params(cfg: WsispdrConfig) -> dict:
    """The card's decoder entry for the runtime's `detection_response` decoder (at the network's scale)."""
    return {"name": "detection_response", "decode_at": "network", "detection_threshold": 0.3,
            "detection_min_area": 4, "window": 128, "batch": 16, "data_term": cfg.data_term,
            "seed_fraction": 0.5, "support_fraction": 0.05, "smoothness": 2.0, "sigma": 0.1, "margin": 6,
            "min_area": 20, "data_weight": 1.0}


class LikelihoodOutput(torch.nn.Module):
    """The exported main graph: image (N,1,H,W) → (likelihood (N,1,H,W),)."""

    def __init__(self, net: DetectionUNet):
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor):
        return (self.net(image),)


def build_wsispdr_network(checkpoint: dict) -> DetectionUNet:
    """The checkpoint's network with its weights, in eval mode."""
    net = DetectionUNet(checkpoint["model"]["in_channels"], tuple(checkpoint["model"]["widths"]))
    net.load_state_dict(checkpoint["state_dict"])
    return net.eval()

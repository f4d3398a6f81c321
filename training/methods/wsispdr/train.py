"""Training of WSISPDR's detection network (Nishimura, Ker, Bise): a U-Net regressed with mean squared
error onto Gaussian peaks at the clicked (rough) cell centroids — its cell-position likelihood map.

Every image is first rescaled so its cells have the canonical diameter; the cell size of a data set is
what its user states (one number per data set, like the runtime's `diameter`), never measured per cell.
Label kind "points" trains from clicks; "nuclei-dog" from locations a machine found in the nuclear stain."""
from __future__ import annotations

import numpy as np
import torch

from cellpoint.runtime.decoders.detection_response import DetectionResponseParams
from cellpoint.runtime.normalize import normalize_percentile
from cellpoint.training.augment import crop_maps, resize
from cellpoint.training.checkpoint import make_checkpoint
from cellpoint.training.loop import cosine_schedule, optimise
from cellpoint.training.start import initialise
from cellpoint.training.methods.wsispdr.config import WsispdrConfig
from cellpoint.training.methods.wsispdr.network import DetectionUNet
from cellpoint.training.targets import center_heatmap

LOG_EVERY = 100  # steps between log lines


def prepare_example(image: np.ndarray, points_rc: np.ndarray, cell_diameter: float, cfg: WsispdrConfig) -> dict:
    """One image at the canonical scale: {"image", "likelihood": float32 (H',W'), "scale"}.

    image (H,W) raw; points_rc (K,2) clicks as row/col; cell_diameter: the data set's typical cell
    diameter in px (what the user states)."""
    norm = normalize_percentile(image[None].astype(np.float32))[0]
    scale = cfg.diameter / cell_diameter
    shape = (max(8, round(norm.shape[0] * scale)), max(8, round(norm.shape[1] * scale)))
    points = np.asarray(points_rc, float).reshape(-1, 2) * scale
    return {"image": resize(norm, shape), "likelihood": center_heatmap(shape, points, cfg.sigma), "scale": scale}


def decoder_params(cfg: WsispdrConfig) -> DetectionResponseParams:
    """The package's decoder parameters: the runtime's defaults with the configured data term."""
    return DetectionResponseParams(data_term=cfg.data_term)


def train(examples: list[dict], cfg: WsispdrConfig, label_kind: str = "points", log=print) -> dict:
    """Train the detection U-Net on prepared examples. Returns a checkpoint dict (`checkpoint.make_checkpoint`)."""
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model = {"arch": "detection_unet", "in_channels": 1, "widths": list(cfg.widths)}
    net = build_network({"model": model})
    pretraining = initialise(net, cfg, log)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    net.train()

    def step_loss(step):
        crops = [crop_maps(examples[int(rng.integers(len(examples)))], cfg.crop, cfg.scale_range, rng)
                 for _ in range(cfg.batch)]
        image = torch.from_numpy(np.stack([c["image"] for c in crops]))[:, None]
        target = torch.from_numpy(np.stack([c["likelihood"] for c in crops]))[:, None]
        return torch.nn.functional.mse_loss(net(image), target), {}

    seconds = optimise(net.parameters(), step_loss, cfg.steps, opt, cosine_schedule(opt, cfg.steps, cfg.lr), log,
                       LOG_EVERY, budget_seconds=cfg.minutes * 60 or None)
    net.eval()
    return make_checkpoint("wsispdr", label_kind, model, net, cfg.diameter, "detection_response",
                           decoder_params(cfg), cfg, seconds,
                           **({"training_data": pretraining} if pretraining else {}))


def build_network(checkpoint: dict) -> DetectionUNet:
    """The checkpoint's network (with its weights if it has them), in eval mode."""
    spec = checkpoint["model"]
    net = DetectionUNet(spec["in_channels"], tuple(spec["widths"]))
    if "state_dict" in checkpoint:
        net.load_state_dict(checkpoint["state_dict"])
    return net.eval()

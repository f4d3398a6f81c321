"""Training of LACSS (location assisted cell segmentation): from an image-level foreground mask and a
location per cell ("weak", label kind "foreground-locations"), or from full masks ("full"), on random
crops of the prepared examples (data.py)."""
from __future__ import annotations

import numpy as np
import torch

from cellpoint.runtime.decoders.location_masks import LocationMasksParams
from cellpoint.training.checkpoint import make_checkpoint
from cellpoint.training.loop import cosine_schedule, optimise
from cellpoint.training.start import initialise, start_point
from cellpoint.training.methods.lacss.config import LPN_STRIDE, MULTIPLE, LacssConfig
from cellpoint.training.methods.lacss.data import collate, sample_crop
from cellpoint.training.methods.lacss.loss import lacss_loss
from cellpoint.training.methods.lacss.network import AuxNet, LacssNet

CLIP_NORM = 10.0  # largest total gradient norm of the networks' parameters


def decoder_params(cfg) -> LocationMasksParams:
    """The package's `location_masks` decoder parameters. cfg: any object with `window` (P) and `diameter`
    (the canonical cell diameter, network px): locations closer than a quarter diameter merge, instances
    smaller than a disk of a quarter diameter go. Distances and areas in network px."""
    d = float(cfg.diameter)
    return LocationMasksParams(window=int(cfg.window), min_distance=round(d / 4, 2),
                               min_area=int(round(np.pi * (d / 8) ** 2)))


def train(examples: list[dict], cfg: LacssConfig, log=print) -> dict:
    """Train LACSS on prepared examples (all of cfg.mode). Returns a checkpoint dict
    (`checkpoint.make_checkpoint`); the aux net's weights, not part of the exported model, are kept under
    "aux_state_dict" (None without the aux net)."""
    if cfg.crop % MULTIPLE:
        raise ValueError(f"crop {cfg.crop} is not a multiple of {MULTIPLE}")
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model = {"arch": "lacss", "in_channels": int(examples[0]["image"].shape[0]), "widths": list(cfg.widths),
             "features": cfg.features, "head_width": cfg.head_width, "head_layers": cfg.head_layers,
             "window": cfg.window, "lpn_stride": LPN_STRIDE, "multiple": MULTIPLE}
    net = build_network({"model": model})
    aux = AuxNet(model["in_channels"], cfg.aux_width, cfg.aux_layers) if cfg.aux else None
    pretraining = initialise(net, cfg, log)
    if aux is not None and cfg.init_from:
        aux_state = start_point(cfg.init_from).get("aux_state_dict")
        if aux_state:  # a checkpoint keeps the aux net; a package does not (it then starts afresh)
            aux.load_state_dict(aux_state)
    params = list(net.parameters()) + (list(aux.parameters()) if aux is not None else [])
    opt = torch.optim.Adam(params, lr=cfg.lr)
    net.train()

    def step_loss(step):
        crops = [sample_crop(examples[int(rng.integers(len(examples)))], cfg, rng) for _ in range(cfg.batch)]
        return lacss_loss(net, collate(crops), cfg.mode, cfg.window, cfg.weights, aux, cfg.weak_loss)

    # log lines: means since the previous line (terms absent in crops without locations count as 0)
    seconds = optimise(params, step_loss, cfg.steps, opt, cosine_schedule(opt, cfg.steps, cfg.lr), log,
                       cfg.log_every, CLIP_NORM, budget_seconds=cfg.minutes * 60 or None)
    net.eval()
    label_kind = "full" if cfg.mode == "full" else "foreground-locations"
    return make_checkpoint("lacss", label_kind, model, net, cfg.diameter, "location_masks", decoder_params(cfg),
                           cfg, seconds, aux_state_dict=aux.state_dict() if aux is not None else None,
                           **({"training_data": pretraining} if pretraining else {}))


def build_network(checkpoint: dict) -> LacssNet:
    """The checkpoint's network (with its weights if it has them), in eval mode."""
    spec = checkpoint["model"]
    net = LacssNet(spec["in_channels"], tuple(spec["widths"]), spec["features"], spec["head_width"],
                   spec["head_layers"])
    if "state_dict" in checkpoint:
        net.load_state_dict(checkpoint["state_dict"])
    return net.eval()

"""A sixth method for the registry test: one folder (this one) and one registry line.

A two-layer convolutional network trained from masks (label kind "full") to predict the foreground; its
exported graph also returns the foreground blurred over a cell's width as the centre map, so the runtime's
existing `maps_and_seeds` decoder turns it into instances. Tiny and fast; it only has to work on the
synthetic discs of the tests."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cellpoint.training import sources
from cellpoint.training.methods import ExportPlan, MethodSpec, TrainRequest


@dataclass
class ToyConfig:
    steps: int = 300
    batch: int = 4
    crop: int = 64
    lr: float = 1e-2
    diameter: float = 18.0
    seed: int = 0
    scale_range: tuple = (0.9, 1.1)
    log_every: int = 20


def configure(request: TrainRequest) -> ToyConfig:
    if request.supervision != "full" and not request.masks_dir:
        import click
        raise click.UsageError("the toy method trains from masks: give --masks")
    return ToyConfig(steps=request.steps or ToyConfig.steps, batch=request.batch or ToyConfig.batch,
                     seed=request.seed)


def jobs(request: TrainRequest, cfg: ToyConfig) -> list:
    out = []
    for image in sources.user_images(request.images_dir):
        mask = sources.mask_file(request.masks_dir, image.stem)
        if mask is None:
            sources.skip(image, "a mask")
            continue
        out.append((image, mask))
    return out


def prepare(job) -> dict:
    from cellpoint.runtime.normalize import normalize_percentile
    from cellpoint.training.annotations import read_label_image
    image_path, mask_path = job
    image = sources.read_gray(image_path).astype(np.float32)
    return {"image": normalize_percentile(image[None])[0],
            "foreground": (read_label_image(mask_path) > 0).astype(np.float32)}


def _network():
    import torch
    from torch import nn

    class ToyNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 1, 3, padding=1))

        def forward(self, image):
            return self.body(image)

    class ToyExport(nn.Module):
        """image → (foreground probability, the foreground blurred over 17 px: peaks at cell centres)."""
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, image):
            fg = torch.sigmoid(self.net(image))
            return fg, nn.functional.avg_pool2d(fg, 17, stride=1, padding=8, count_include_pad=False)

    return ToyNet, ToyExport


def build_network(checkpoint: dict):
    net = _network()[0]()
    if "state_dict" in checkpoint:
        net.load_state_dict(checkpoint["state_dict"])
    return net.eval()


def train(examples: list[dict], cfg: ToyConfig, log) -> dict:
    import torch
    from cellpoint.runtime.decoders.maps_and_seeds import MapsAndSeedsParams
    from cellpoint.training.augment import crop_maps
    from cellpoint.training.checkpoint import make_checkpoint
    from cellpoint.training.loop import cosine_schedule, optimise
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    net = build_network({}).train()
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)

    def step_loss(step):
        crops = [crop_maps(examples[int(rng.integers(len(examples)))], cfg.crop, cfg.scale_range, rng,
                           frozenset({"foreground"})) for _ in range(cfg.batch)]
        image = torch.from_numpy(np.stack([c["image"] for c in crops]))[:, None]
        target = torch.from_numpy(np.stack([c["foreground"] for c in crops]))[:, None]
        loss = torch.nn.functional.binary_cross_entropy_with_logits(net(image), target)
        return loss, {"bce": float(loss.detach())}

    seconds = optimise(net.parameters(), step_loss, cfg.steps, opt, cosine_schedule(opt, cfg.steps, cfg.lr), log,
                       cfg.log_every)
    return make_checkpoint("toy", "full", {"arch": "toy", "in_channels": 1}, net.eval(), cfg.diameter,
                           "maps_and_seeds", MapsAndSeedsParams(min_distance=6.0, min_area=20.0), cfg, seconds)


def export(checkpoint: dict, probe) -> ExportPlan:
    outputs = [{"name": "foreground", "axes": "bcyx", "stride": 1, "description": "P(cell)"},
               {"name": "centers", "axes": "bcyx", "stride": 1, "description": "foreground blurred over 17 px"}]
    return ExportPlan(_network()[1](build_network(checkpoint)).eval(), outputs)


SPEC = MethodSpec(name="toy", title="a test method (masks)", reference="none: a test", label_kinds=("full",),
                  decoder="maps_and_seeds", configure=configure, jobs=jobs, prepare=prepare, train=train,
                  labels=lambda request, cfg, folder: "full masks", export=export, build_network=build_network)

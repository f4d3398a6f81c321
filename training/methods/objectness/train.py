"""Training of the objectness method: prepare each image's targets once, then train on random crops.

Every image is first rescaled so that its cells have the model's canonical diameter; in weak mode the
cell size comes from the objectness regions grown from the clicks, never from a mask."""
from __future__ import annotations

import numpy as np
import torch

from cellpoint.runtime.decoders.maps_and_seeds import MapsAndSeedsParams
from cellpoint.training.augment import JITTERS, crop_maps, resize
from cellpoint.training.checkpoint import make_checkpoint, normalise
from cellpoint.training.loop import cosine_schedule, optimise
from cellpoint.training.methods.objectness import loss as method
from cellpoint.training.methods.objectness.config import TrainConfig
from cellpoint.training.methods.objectness.network import UNet
from cellpoint.training.methods.objectness.regions import objectness_targets, region_boundaries
from cellpoint.training.sampling import example_picker
from cellpoint.training.start import initialise
from cellpoint.training.targets import label_centroids, median_diameter_from_labels, median_diameter_from_regions

def prepare_example(image: np.ndarray, points_rc: np.ndarray | None, labels: np.ndarray | None,
                    cfg: TrainConfig) -> dict:
    """One image's training arrays at the canonical scale.

    image: (H,W) raw intensities. Weak mode needs points_rc (K,2) row/col; full mode needs labels (H,W).
    Returns {"image": float32 (H',W'), <target maps float32 (H',W')>, "scale": float, "diameter": float}."""
    norm = normalise(image, cfg.normalization)
    if cfg.labels == "points":
        objectness, _, region = objectness_targets(norm, points_rc, cfg.params.w)
        diameter = median_diameter_from_regions(objectness, region)
    else:
        diameter = median_diameter_from_labels(labels)
    scale = cfg.diameter / diameter if np.isfinite(diameter) and diameter > 0 else 1.0
    shape = (max(8, round(norm.shape[0] * scale)), max(8, round(norm.shape[1] * scale)))
    out = {"image": resize(norm, shape), "scale": scale, "diameter": diameter}
    if cfg.labels == "points":
        pts = np.clip(np.round(np.asarray(points_rc, float) * scale), 0, np.array(shape) - 1).astype(int)
        region = resize(region, shape, nearest=True)
        targets = method.point_targets(out["image"], pts, cfg.params)
        # objectness: grown at the native resolution, where the clicks and intensities are exact
        targets["objectness"] = resize(objectness, shape)
        boundary = region_boundaries(region)
        targets["point_label"][boundary & (targets["point_label"] < 0.5)] = 0
        targets["point_weight"][boundary & (targets["point_label"] < 0.5)] = cfg.params.boundary_weight
    else:
        small = resize(labels.astype(np.int32), shape, nearest=True)
        targets = method.full_targets(small, label_centroids(small), cfg.params)
    out.update(targets)
    return out


_NEAREST_KEYS = frozenset({"point_label", "point_weight", "foreground", "instances"})


def sample_crop(example: dict, cfg: TrainConfig, rng: np.random.Generator) -> dict:
    """A random crop of size cfg.crop, rescaled by a random factor, flipped and rotated; float32 maps
    (unlabelled pixels of point_label stay -1 past the image's edge)."""
    return crop_maps(example, cfg.crop, cfg.scale_range, rng, _NEAREST_KEYS, {"point_label": -1.0},
                     JITTERS[cfg.intensity])


def prepare_val_example(image: np.ndarray, labels: np.ndarray, cfg: TrainConfig) -> dict:
    """A val image for choosing the checkpoint: normalised and rescaled by its masks' own cell size to the
    canonical diameter, with its masks at that scale. {"image" float32 (h,w), "labels" int32 (h,w),
    "split": "val"}."""
    norm = normalise(image, cfg.normalization)
    diameter = median_diameter_from_labels(labels)
    scale = cfg.diameter / diameter if np.isfinite(diameter) and diameter > 0 else 1.0
    shape = (max(16, round(norm.shape[0] * scale)), max(16, round(norm.shape[1] * scale)))
    return {"image": resize(norm, shape), "labels": resize(labels.astype(np.int32), shape, nearest=True),
            "split": "val"}


def prepare_held_out_example(image: np.ndarray, points_rc: np.ndarray, cfg: TrainConfig) -> dict:
    """A user's held-out image for choosing the checkpoint by its clicks: normalised and rescaled to the
    canonical diameter as a training image is (cell size from the clicks' objectness regions).
    {"image" float32 (h,w), "points" float64 (K,2) row/col at that scale, "split": "val"}."""
    norm = normalise(image, cfg.normalization)
    objectness, _, region = objectness_targets(norm, points_rc, cfg.params.w)
    diameter = median_diameter_from_regions(objectness, region)
    scale = cfg.diameter / diameter if np.isfinite(diameter) and diameter > 0 else 1.0
    shape = (max(16, round(norm.shape[0] * scale)), max(16, round(norm.shape[1] * scale)))
    points = (np.asarray(points_rc, np.float64) + 0.5) * np.array(shape) / np.array(norm.shape) - 0.5
    return {"image": resize(norm, shape), "points": points, "split": "val"}


def click_f1(labels: list[np.ndarray], points: list[np.ndarray]) -> float:
    """F1 of found cells against clicks over images: a click hits the cell under it, each cell counts once.
    labels: (H,W) int label images; points: (K,2) row/col per image."""
    hits = found = clicks = 0
    for image, pts in zip(labels, points):
        rc = np.clip(np.round(pts).astype(int), 0, np.array(image.shape) - 1).reshape(-1, 2)
        under = image[rc[:, 0], rc[:, 1]]
        hits += len(np.unique(under[under > 0]))
        found += len(np.unique(image)) - (1 if (image == 0).any() else 0)
        clicks += len(rc)
    return 2.0 * hits / (found + clicks) if found + clicks else 0.0


def val_f1(net: UNet, examples: list[dict], cfg: TrainConfig) -> float:
    """F1@0.5 over val examples of the network decoded as its package would be (maps_and_seeds, at the
    canonical scale); held-out examples with clicks ("points") instead of masks score `click_f1`, and the
    two are averaged when both kinds are given."""
    from cellpoint.runtime.decoders.maps_and_seeds import DECODER
    from cellpoint.runtime.decoding import DecodeContext
    from cellpoint.runtime.tiling import predict_tiled
    from cellpoint.training.evaluation import matching_metrics
    from cellpoint.training.methods.objectness.network import ExportHead
    head, params, found = ExportHead(net).eval(), decoder_params(cfg), []

    def run(batch):
        with torch.no_grad():
            fg, centers = head(torch.from_numpy(batch))
        return {"foreground": fg.numpy(), "centers": centers.numpy()}
    for ex in examples:
        maps = {k: v[0] for k, v in predict_tiled(run, ex["image"][None], tile=1024, overlap=64, multiple=16).items()}
        context = DecodeContext(maps, ex["image"][None], ex["image"].shape, 1.0, 16, lambda *a: None)
        found.append(DECODER.decode(context, params).labels)
    scores = []
    masked = [k for k, ex in enumerate(examples) if "labels" in ex]
    if masked:
        scores.append(matching_metrics([examples[k]["labels"] for k in masked], [found[k] for k in masked])["f1_50"])
    clicked = [k for k, ex in enumerate(examples) if "points" in ex]
    if clicked:
        scores.append(click_f1([found[k] for k in clicked], [examples[k]["points"] for k in clicked]))
    return float(np.mean(scores))


def decoder_params(cfg: TrainConfig) -> MapsAndSeedsParams:
    """The package's decoder parameters. Weak mode trains P(cell) towards Obj/(Obj + β_bg·(1 − Obj)), so
    the foreground threshold that corresponds to objectness 0.5 (where w was tuned) is 1/(1 + β_bg); full
    mode uses 0.5. Centre peaks are at least two centre-map sigmas apart."""
    threshold = 1.0 / (1.0 + cfg.params.beta_background) if cfg.labels == "points" else 0.5
    return MapsAndSeedsParams(foreground_threshold=round(threshold, 4),
                              min_distance=max(2, int(round(2 * cfg.params.center_sigma))))


def train(examples: list[dict], cfg: TrainConfig, log=print) -> dict:
    """Train a UNet on prepared examples. Returns a checkpoint dict (`checkpoint.make_checkpoint`)."""
    val = [ex for ex in examples if ex.get("split") == "val"]
    examples = [ex for ex in examples if ex.get("split") != "val"]
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    pick = example_picker([ex.get("group", "") for ex in examples], rng, cfg.balance)
    model = {"arch": "unet", "in_channels": 1, "out_channels": method.OUT_CHANNELS, "widths": list(cfg.widths)}
    net = build_network({"model": model})
    with torch.no_grad():  # start the centre map near zero, as CenterNet does, so the focal loss starts sane
        net.head.bias[2] = -4.0
    pretraining = initialise(net, cfg, log)
    teacher = None
    if cfg.init_from and cfg.keep_start > 0:  # the starting network, kept fixed, as a teacher
        import copy
        teacher = copy.deepcopy(net).eval()
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    loss_fn = method.weak_loss if cfg.labels == "points" else method.full_loss
    net.train()

    best = {"f1": -1.0, "step": None, "state": None}

    def step_loss(step):
        if val and step and step % cfg.val_every == 0:
            keep_if_best(step)
        crops = [sample_crop(examples[pick()], cfg, rng) for _ in range(cfg.batch)]
        batch = {k: torch.from_numpy(np.stack([c[k] for c in crops])) for k in crops[0]}
        logits = net(batch["image"][:, None])
        loss, parts = loss_fn(logits, batch, cfg.params)
        if teacher is not None:
            with torch.no_grad():
                taught = teacher(batch["image"][:, None])
            kept = method.keep_start_loss(logits, taught)
            loss = loss + cfg.keep_start * kept
            parts["keep"] = kept.item()
        return loss, parts

    def keep_if_best(step):
        f1 = val_f1(net.eval(), val, cfg)
        net.train()
        log(f"val F1@0.5 at step {step}: {f1:.4f}" + (" (best so far)" if f1 > best["f1"] else ""))
        if f1 > best["f1"]:
            best.update(f1=f1, step=step, state={k: v.detach().clone() for k, v in net.state_dict().items()})

    if val and cfg.init_from:  # the starting network is a candidate too: fine-tuning must not make it worse
        keep_if_best(0)
    seconds = optimise(net.parameters(), step_loss, cfg.steps, opt, cosine_schedule(opt, cfg.steps, cfg.lr), log,
                       cfg.log_every, budget_seconds=cfg.minutes * 60 or None)
    extra = {"training_data": pretraining} if pretraining else {}
    if val:
        keep_if_best(cfg.steps)
        net.load_state_dict(best["state"])
        extra["selection"] = {"val_f1_50": best["f1"], "step": best["step"]}
    net.eval()
    return make_checkpoint("objectness", cfg.labels, model, net, cfg.diameter, "maps_and_seeds",
                           decoder_params(cfg), cfg, seconds, normalization=cfg.normalization,
                           polarity=cfg.polarity, **extra)


def build_network(checkpoint: dict) -> UNet:
    """The checkpoint's network (with its weights if it has them), in eval mode."""
    spec = checkpoint["model"]
    net = UNet(spec["in_channels"], spec["out_channels"], tuple(spec["widths"]))
    if "state_dict" in checkpoint:
        net.load_state_dict(checkpoint["state_dict"])
    return net.eval()

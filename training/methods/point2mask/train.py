"""Training of Point2Mask: from a box and N clicks labelled cell/background per cell ("points", label kind
"box-points"), or from full masks ("full", the upper bound), on random crops of the prepared examples
(data.py), optionally starting from the weights of an earlier point2mask checkpoint (`init_from`).

Crops are drawn from the examples by the config's `balance` over their "group" (data set family and image
kind); with `val_every`, the network is scored every that many steps on the val examples (those with
"split": "val") as its package would decode them, and the best-scoring state is kept."""
from __future__ import annotations

import msgspec
import numpy as np
import torch

from cellpoint.runtime.decoders.box_masks import BoxMasksParams
from cellpoint.training.checkpoint import load_checkpoint, make_checkpoint
from cellpoint.training.start import initialise
from cellpoint.training.loop import cosine_schedule, optimise
from cellpoint.training.methods.point2mask.config import (FEATURE_STRIDE, MASK_INPUTS, MODES, MULTIPLE, STRIDES,
                                                          Point2MaskConfig)
from cellpoint.training.methods.point2mask.data import collate, sample_crop
from cellpoint.training.methods.point2mask.loss import point2mask_loss
from cellpoint.training.methods.point2mask.network import ExportDetector, ExportMaskHead, Point2MaskNet
from cellpoint.training.sampling import example_picker

CLIP_NORM = 10.0  # largest total gradient norm of the network's parameters


def model_spec(cfg: Point2MaskConfig, in_channels: int) -> dict:
    """The checkpoint's "model": the network's constructor arguments and its architecture facts."""
    return {"arch": "point2mask", "in_channels": in_channels, "widths": list(cfg.widths),
            "channels": cfg.channels, "head_convs": cfg.head_convs, "mask_convs": cfg.mask_convs,
            "roi_size": cfg.roi_size, "mask_size": 2 * cfg.roi_size, "strides": list(STRIDES),
            "feature_stride": FEATURE_STRIDE, "multiple": MULTIPLE}


def decoder_params(cfg: Point2MaskConfig) -> BoxMasksParams:
    """The package's `box_masks` decoder parameters: the config's, with the network's pyramid strides."""
    return msgspec.structs.replace(cfg.decode, strides=tuple(STRIDES))


def val_f1(net: Point2MaskNet, examples: list[dict], cfg: Point2MaskConfig) -> float:
    """F1@0.5 over val examples (`data.prepare_val_example`) of the network decoded as its package would
    decode it: the main graph tiled as the runtime tiles it, then the runtime's `box_masks` decoder with the
    checkpoint's decoder parameters, its mask graph run by the torch mask head; at the canonical scale."""
    from cellpoint.runtime.decoders.box_masks import DECODER
    from cellpoint.runtime.decoding import DecodeContext
    from cellpoint.runtime.tiling import predict_tiled
    from cellpoint.training.evaluation import matching_metrics
    from cellpoint.training.methods.point2mask.network import detector_outputs
    detector, mask_head = ExportDetector(net).eval(), ExportMaskHead(net).eval()
    names, params, found = [o["name"] for o in detector_outputs()], decoder_params(cfg), []

    def run(batch):
        with torch.no_grad():
            return {k: v.numpy() for k, v in zip(names, detector(torch.from_numpy(batch)))}

    def run_graph(role, inputs):
        with torch.no_grad():
            return mask_head(*(torch.from_numpy(np.asarray(inputs[k], np.float32)) for k in MASK_INPUTS)).numpy()
    for ex in examples:
        maps = predict_tiled(run, ex["image"], tile=1024, overlap=64, multiple=MULTIPLE)
        context = DecodeContext(maps, ex["image"], ex["image"].shape[1:], 1.0, MULTIPLE, run_graph)
        found.append(DECODER.decode(context, params).labels)
    return float(matching_metrics([ex["labels"] for ex in examples], found)["f1_50"])


def train(examples: list[dict], cfg: Point2MaskConfig, log=print) -> dict:
    """Train Point2Mask on prepared examples (all of cfg.mode; those with "split": "val" are only scored,
    see the module). Returns a checkpoint dict (`checkpoint.make_checkpoint`, with the config's
    normalisation and polarity, and with val "selection" {val_f1_50, step} when val examples were given);
    trained from `cfg.init_from`'s weights, it lists that checkpoint's training data with role
    "pretraining" under "training_data"."""
    if cfg.mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {cfg.mode!r}")
    if cfg.crop % MULTIPLE:
        raise ValueError(f"crop {cfg.crop} is not a multiple of {MULTIPLE}")
    val = [ex for ex in examples if ex.get("split") == "val"]
    examples = [ex for ex in examples if ex.get("split") != "val"]
    if not examples:
        raise ValueError("no training examples (only val ones)")
    if cfg.val_every and not val:
        raise ValueError(f"val_every={cfg.val_every} needs val examples (the data sets' val splits)")
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    pick = example_picker([ex.get("group", "") for ex in examples], rng, cfg.balance)
    model = model_spec(cfg, int(examples[0]["image"].shape[0]))
    net = build_network({"model": model})
    extra = {}
    pretraining = initialise(net, cfg, log)
    if pretraining:
        extra["training_data"] = pretraining
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    net.train()

    best = {"f1": -1.0, "step": None, "state": None}

    def keep_if_best(step):
        f1 = val_f1(net.eval(), val, cfg)
        net.train()
        log(f"val F1@0.5 at step {step}: {f1:.4f}" + (" (best so far)" if f1 > best["f1"] else ""))
        if f1 > best["f1"]:
            best.update(f1=f1, step=step, state={k: v.detach().clone() for k, v in net.state_dict().items()})

    def step_loss(step):
        if val and cfg.val_every and step and step % cfg.val_every == 0:
            keep_if_best(step)
        crops = [sample_crop(examples[pick()], cfg, rng) for _ in range(cfg.batch)]
        return point2mask_loss(net, collate(crops, cfg, rng), cfg.mode, cfg.size_ranges, cfg.loss)

    seconds = optimise(net.parameters(), step_loss, cfg.steps, opt, cosine_schedule(opt, cfg.steps, cfg.lr), log,
                       cfg.log_every, CLIP_NORM, budget_seconds=cfg.minutes * 60 or None)
    if val:
        keep_if_best(cfg.steps)
        net.load_state_dict(best["state"])
        extra["selection"] = {"val_f1_50": best["f1"], "step": best["step"]}
    net.eval()
    label_kind = "full" if cfg.mode == "full" else "box-points"
    return make_checkpoint("point2mask", label_kind, model, net, cfg.diameter, "box_masks", decoder_params(cfg),
                           cfg, seconds, normalization=cfg.normalization, polarity=cfg.polarity, **extra)


def build_network(checkpoint: dict) -> Point2MaskNet:
    """The checkpoint's network (with its weights if it has them), in eval mode."""
    spec = checkpoint["model"]
    net = Point2MaskNet(spec["in_channels"], tuple(spec["widths"]), spec["channels"], spec["head_convs"],
                        spec["mask_convs"], spec["roi_size"])
    if "state_dict" in checkpoint:
        net.load_state_dict(checkpoint["state_dict"])
    return net.eval()


def export_modules(checkpoint: dict) -> tuple[ExportDetector, ExportMaskHead]:
    """The two exported graphs' torch modules, in eval mode, sharing one network: image → detector outputs
    + features, and (features, boxes) → masks."""
    net = build_network(checkpoint)
    return ExportDetector(net).eval(), ExportMaskHead(net).eval()

"""Training loop of Point2Mask: from a box and N clicks labelled cell/background per cell ("points", label
kind "box-points"), or from full masks ("full", the upper bound).

Every image is first rescaled so its cells have the canonical diameter: the diameter the caller states,
else the one the labels imply (full: median equivalent-circle diameter of the masks; points: from each
box's area times the fraction of its clicks that fall on the cell, a Monte-Carlo estimate of the cell's
area — no mask needed). Training draws random crops (random scale, rotation by multiples of 90°, flips,
intensity jitter). Boxes cut by the crop are clipped to it, and their clicks outside the crop dropped;
a box cut to a sliver (narrower than `min_box` px) is neither a positive nor a negative for the
detector. The mask head is trained on the ground-truth boxes (jittered), at most `max_rois` per step."""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, is_dataclass

import numpy as np
import torch

from cellpoint.runtime.normalize import normalize_percentile
from cellpoint.training.methods import point2mask as method
from cellpoint.training.targets import median_diameter_from_labels
from cellpoint.training.train import CHECKPOINT_FORMAT, _resize

MODES = ("points", "full")


@dataclass
class Point2MaskConfig:
    mode: str = "points"                   # "points" (box + N clicks) or "full" (masks, the upper bound)
    n_points: int = 6                      # clicks per cell when derived from masks (the paper's best)
    widths: tuple = (16, 32, 64, 128)      # backbone widths at strides 2, 4, 8, 16
    channels: int = 32                     # F, pyramid, detection head and mask head channels
    head_convs: int = 2
    mask_convs: int = 4                    # 3×3 convs of the mask head (Mask R-CNN's head has 4)
    roi_size: int = 14                     # S; masks are M = 2S = 28 px square
    size_ranges: tuple = method.DEFAULT_SIZE_RANGES
    diameter: float = 32.0                 # canonical cell diameter, px, the network sees
    crop: int = 160                        # training crop, a multiple of method.MULTIPLE
    batch: int = 6
    steps: int = 2000
    lr: float = 1e-3                       # AdamW, cosine decay to lr/100
    weight_decay: float = 1e-4
    seed: int = 0
    scale_range: tuple = (0.8, 1.25)
    box_jitter: float = 0.05               # sd of the RoI edges' jitter, fraction of the box's size
    min_box: float = 3.0                   # px; narrower clipped boxes are ignored (see module)
    max_rois: int = 64                     # mask-head RoIs per step (a random subset of the boxes)
    log_every: int = 100
    init_from: str = ""                    # a point2mask checkpoint whose weights training starts from
    loss: method.LossParams = field(default_factory=method.LossParams)
    decode: method.DecodeParams = field(default_factory=method.DecodeParams)


# ------------------------------------------------------------------------------------------ examples

def _channels_first(image: np.ndarray) -> np.ndarray:
    """(H,W) or (H,W,C) → float32 (C,H,W)."""
    arr = np.asarray(image, np.float32)
    return arr[None] if arr.ndim == 2 else np.moveaxis(arr, -1, 0)


def box_points_arrays(cells: list[dict]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """`weak_labels.box_points_from_labels` output (or the "cells" of a `_boxpoints.json`) → arrays:
    boxes float64 (K,4), points float64 (K,N,2) xy, point_labels int64 (K,N) (1 cell, 0 not, −1 padding
    where a cell has fewer than N points), ids int64 (K,)."""
    n = max([len(c["points"]) for c in cells], default=1)
    boxes = np.array([c["box"] for c in cells], np.float64).reshape(-1, 4)
    points = np.zeros((len(cells), n, 2))
    labels = np.full((len(cells), n), -1, np.int64)
    for k, c in enumerate(cells):
        m = len(c["points"])
        points[k, :m] = np.asarray(c["points"], np.float64).reshape(-1, 2)
        labels[k, :m] = np.asarray(c["point_labels"])
    ids = np.array([c.get("id", k + 1) for k, c in enumerate(cells)], np.int64)
    return boxes, points, labels, ids


def diameter_from_box_points(boxes: np.ndarray, point_labels: np.ndarray) -> float:
    """Median equivalent-circle diameter (px) of the cells estimated from box + clicks only: a cell's area
    ≈ its box's area × the fraction of its clicks labelled cell (clicks are uniform in the box). Cells
    without clicks are skipped; nan if none is left or every estimate is 0."""
    labels = np.asarray(point_labels)
    valid = labels >= 0
    has = valid.any(1)
    if not has.any():
        return float("nan")
    fraction = (labels == 1).sum(1)[has] / valid.sum(1)[has]
    b = np.asarray(boxes, np.float64)[has]
    area = np.median((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) * fraction)
    return float(2 * np.sqrt(area / np.pi)) if area > 0 else float("nan")


def _scale_xy(xy: np.ndarray, scale: float) -> np.ndarray:
    """Continuous coordinates after resizing by `scale` (as cv2.resize maps pixel centres)."""
    return (np.asarray(xy, np.float64) + 0.5) * scale - 0.5


def prepare_point2mask_example(image: np.ndarray, boxes: np.ndarray, points: np.ndarray | None,
                               point_labels: np.ndarray | None, labels: np.ndarray | None = None,
                               diameter: float | None = None, cfg: Point2MaskConfig | None = None,
                               ids: np.ndarray | None = None) -> dict:
    """One image's training arrays at the canonical scale.

    image: (H,W) or (H,W,C) raw intensities. boxes float (K,4) x0, y0, x1, y1 px (pixel centres at
    integers; `box_points_from_labels` boxes). points float (K,N,2) xy and point_labels int (K,N) 1 cell /
    0 background / −1 none (points mode; may be None in full mode). labels (H,W) instance ids (full mode)
    with ids (K,) the instance of each box (None: the ids present in labels, ascending, as
    `box_points_from_labels` orders them). diameter: the cells' diameter in this image, px (None: from the
    labels, see the module).
    Returns {"image": float32 (C,H',W') normalised, "boxes": float32 (K,4), "points": float32 (K,N,2),
    "point_labels": int8 (K,N), full: "labels" int32 (H',W') and "ids" int32 (K,) (0 = the cell vanished
    in the resize: no mask target), "scale", "diameter"}."""
    cfg = cfg or Point2MaskConfig()
    if cfg.mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {cfg.mode!r}")
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    k = len(boxes)
    if points is None:
        if cfg.mode != "full":
            raise ValueError("points mode needs points and point_labels")
        points, point_labels = np.zeros((k, 1, 2)), np.full((k, 1), -1)
    point_labels = np.asarray(point_labels).reshape(k, -1) if k else np.zeros((0, 1), np.int64)
    points = np.asarray(points, np.float64).reshape(k, point_labels.shape[1], 2)
    if cfg.mode == "full":
        if labels is None:
            raise ValueError("full mode needs labels")
        labels = np.asarray(labels).astype(np.int32)
        ids = np.unique(labels[labels > 0]) if ids is None else np.asarray(ids)
        if len(ids) != k:
            raise ValueError(f"{k} boxes but {len(ids)} instance ids")
        estimate = median_diameter_from_labels(labels)
    else:
        estimate = diameter_from_box_points(boxes, point_labels)
    diameter = float(diameter) if diameter else estimate
    scale = cfg.diameter / diameter if np.isfinite(diameter) and diameter > 0 else 1.0
    norm = normalize_percentile(_channels_first(image))
    shape = (max(8, round(norm.shape[1] * scale)), max(8, round(norm.shape[2] * scale)))
    out = {"image": np.stack([_resize(c, shape) for c in norm]),
           "boxes": _scale_xy(boxes, scale).astype(np.float32),
           "points": _scale_xy(points, scale).astype(np.float32),
           "point_labels": point_labels.astype(np.int8), "scale": scale, "diameter": diameter}
    if cfg.mode == "full":
        small = _resize(labels.astype(np.float32), shape, nearest=True).astype(np.int32)
        out["labels"] = small
        out["ids"] = np.where(np.isin(ids, small), ids, 0).astype(np.int32)
    return out


# --------------------------------------------------------------------------------------------- crops

def transform_xy(xy: np.ndarray, size: int, k: int, flip: bool) -> np.ndarray:
    """Where continuous points (..., 2) (x, y) of a size×size array go under np.rot90(arr, k) then, if
    flip, arr[:, ::-1]."""
    x, y = xy[..., 0].copy(), xy[..., 1].copy()
    for _ in range(k % 4):          # one rot90: element (r, c) moves to (size − 1 − c, r)
        x, y = y, size - 1 - x
    if flip:
        x = size - 1 - x
    return np.stack([x, y], -1)


def transform_boxes(boxes: np.ndarray, size: int, k: int, flip: bool) -> np.ndarray:
    """Boxes (K,4) under the same rotation/flip (corners moved, then re-ordered)."""
    a = transform_xy(boxes[:, :2], size, k, flip)
    b = transform_xy(boxes[:, 2:], size, k, flip)
    return np.concatenate([np.minimum(a, b), np.maximum(a, b)], 1)


def _jitter_intensity(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The intensity augmentation of training.train.sample_crop: gain, gamma, offset, Gaussian noise."""
    gain, gamma = rng.uniform(0.8, 1.25), np.exp(rng.uniform(-0.3, 0.3))
    img = np.clip(image, 0, None) ** gamma * gain + rng.uniform(-0.05, 0.05)
    return (img + rng.normal(0, rng.uniform(0, 0.03), img.shape)).astype(np.float32)


def _crop_plane(arr: np.ndarray, y0: int, x0: int, window: int, size: int, nearest: bool) -> np.ndarray:
    """arr[y0:y0+window, x0:x0+window], zero-padded past the image, resized to size×size."""
    part = arr[y0:y0 + window, x0:x0 + window]
    if part.shape != (window, window):
        full = np.zeros((window, window), np.float32)
        full[:part.shape[0], :part.shape[1]] = part
        part = full
    return _resize(np.ascontiguousarray(part, np.float32), (size, size), nearest=nearest)


def sample_point2mask_crop(example: dict, cfg: Point2MaskConfig, rng: np.random.Generator) -> dict:
    """A random cfg.crop² crop at a random scale, rotated, flipped and intensity-jittered.

    Returns {"image": float32 (C,S,S), "boxes": float32 (K,4) clipped to the crop (cells with a part in
    it, at least min_box wide and high), "ignore": float32 (J,4) the slivers, "points" float32 (K,N,2),
    "point_labels" int8 (K,N) (−1 for points outside the crop), full: "labels" int32 (S,S), "ids" (K,)}."""
    size = cfg.crop
    scale = float(np.exp(rng.uniform(*np.log(cfg.scale_range))))
    window = max(8, int(round(size / scale)))
    _, h, w = example["image"].shape
    y0 = int(rng.integers(0, max(h - window, 0) + 1))
    x0 = int(rng.integers(0, max(w - window, 0) + 1))
    k, flip = int(rng.integers(4)), bool(rng.integers(2))

    def plane(arr, nearest=False):
        out = np.rot90(_crop_plane(arr, y0, x0, window, size, nearest), k)
        return np.ascontiguousarray(out[:, ::-1] if flip else out)

    def to_crop(xy):  # image px → crop px before rotation
        return (np.asarray(xy, np.float64) - (x0, y0) + 0.5) * (size / window) - 0.5

    boxes = example["boxes"]
    moved = transform_boxes(np.concatenate([to_crop(boxes[:, :2]), to_crop(boxes[:, 2:])], 1), size, k, flip)
    clipped = np.clip(moved, -0.5, size - 0.5)
    extent = clipped[:, 2:] - clipped[:, :2]
    present = (extent > 0).all(1)
    keep = present & (extent >= cfg.min_box).all(1)
    points = transform_xy(to_crop(example["points"]), size, k, flip)
    inside = ((points >= clipped[:, None, :2]) & (points <= clipped[:, None, 2:])).all(-1)
    crop = {"image": _jitter_intensity(np.stack([plane(c) for c in example["image"]]), rng),
            "boxes": clipped[keep].astype(np.float32), "ignore": clipped[present & ~keep].astype(np.float32),
            "points": points[keep].astype(np.float32),
            "point_labels": np.where(inside, example["point_labels"], -1)[keep].astype(np.int8)}
    if "labels" in example:
        crop["labels"] = plane(example["labels"].astype(np.float32), nearest=True).astype(np.int32)
        crop["ids"] = example["ids"][keep]
    return crop


def _jitter_boxes(boxes: np.ndarray, amount: float, size: int, rng: np.random.Generator) -> np.ndarray:
    """Each edge moved by N(0, amount·box side), kept inside the crop and at least 1 px wide."""
    side = np.tile(boxes[:, 2:] - boxes[:, :2], 2)                          # (w, h, w, h)
    out = boxes + rng.normal(0, amount, boxes.shape) * side
    out = np.clip(out, -0.5, size - 0.5)
    out[:, 2:] = np.maximum(out[:, 2:], out[:, :2] + 1)
    return out


def collate(crops: list[dict], cfg: Point2MaskConfig, rng: np.random.Generator) -> dict:
    """Crops → the batch `method.point2mask_loss` takes: per-image box lists, and at most cfg.max_rois
    jittered ground-truth boxes (a random subset over the batch) as the mask head's RoIs."""
    batch = {"image": torch.from_numpy(np.stack([c["image"] for c in crops])),
             "boxes": [torch.from_numpy(c["boxes"]) for c in crops],
             "ignore": [torch.from_numpy(c["ignore"]) for c in crops]}
    index = np.concatenate([np.full(len(c["boxes"]), b) for b, c in enumerate(crops)]).astype(np.int64)
    cell = np.concatenate([np.arange(len(c["boxes"])) for c in crops]).astype(np.int64)
    if len(index) > cfg.max_rois:
        pick = np.sort(rng.choice(len(index), cfg.max_rois, replace=False))
        index, cell = index[pick], cell[pick]
    boxes = np.array([crops[b]["boxes"][k] for b, k in zip(index, cell)], np.float64).reshape(-1, 4)
    batch["roi_index"] = torch.from_numpy(index)
    batch["rois"] = torch.from_numpy(_jitter_boxes(boxes, cfg.box_jitter, cfg.crop, rng).astype(np.float32))
    if cfg.mode == "full":
        batch["labels"] = torch.from_numpy(np.stack([c["labels"] for c in crops]).astype(np.int64))
        batch["roi_ids"] = torch.tensor([int(crops[b]["ids"][k]) for b, k in zip(index, cell)], dtype=torch.int64)
    else:  # images may differ in clicks per cell: pad with label −1
        n = max(c["points"].shape[1] for c in crops)
        points = np.zeros((len(index), n, 2), np.float32)
        labels = np.full((len(index), n), -1, np.int64)
        for r, (b, k) in enumerate(zip(index, cell)):
            m = crops[b]["points"].shape[1]
            points[r, :m], labels[r, :m] = crops[b]["points"][k], crops[b]["point_labels"][k]
        batch["roi_points"], batch["roi_point_labels"] = torch.from_numpy(points), torch.from_numpy(labels)
    return batch


# -------------------------------------------------------------------------------------------- train

def _model_spec(cfg: Point2MaskConfig, in_channels: int) -> dict:
    return {"arch": "point2mask", "in_channels": in_channels, "widths": list(cfg.widths),
            "channels": cfg.channels, "head_convs": cfg.head_convs, "mask_convs": cfg.mask_convs,
            "roi_size": cfg.roi_size, "mask_size": 2 * cfg.roi_size, "strides": list(method.STRIDES),
            "feature_stride": method.FEATURE_STRIDE, "multiple": method.MULTIPLE}


def _build(model: dict) -> method.Point2MaskNet:
    return method.Point2MaskNet(model["in_channels"], tuple(model["widths"]), model["channels"],
                                model["head_convs"], model["mask_convs"], model["roi_size"])


def _initial_weights(path: str, model: dict) -> dict:
    """The state dict of the point2mask checkpoint at `path`; ValueError if its network differs from `model`."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    if checkpoint.get("method") != "point2mask" or checkpoint.get("model") != model:
        raise ValueError(f"{path}: not a point2mask checkpoint of the same network "
                         f"({checkpoint.get('method')}, {checkpoint.get('model')} vs {model})")
    return checkpoint["state_dict"]


def train_point2mask(examples: list[dict], cfg: Point2MaskConfig, log=print) -> dict:
    """Train Point2Mask on prepared examples (all of cfg.mode). Returns a checkpoint dict (CHECKPOINT_FORMAT)."""
    if cfg.mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {cfg.mode!r}")
    if cfg.crop % method.MULTIPLE:
        raise ValueError(f"crop {cfg.crop} is not a multiple of {method.MULTIPLE}")
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model = _model_spec(cfg, int(examples[0]["image"].shape[0]))
    net = _build(model)
    if cfg.init_from:
        net.load_state_dict(_initial_weights(cfg.init_from, model))
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.steps, eta_min=cfg.lr * 0.01)
    start = time.perf_counter()
    net.train()
    sums, n = {}, 0
    for step in range(cfg.steps):
        crops = [sample_point2mask_crop(examples[int(rng.integers(len(examples)))], cfg, rng)
                 for _ in range(cfg.batch)]
        loss, parts = method.point2mask_loss(net, collate(crops, cfg, rng), cfg.mode, cfg.size_ranges, cfg.loss)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 10.0)
        opt.step()
        sched.step()
        for key, value in {"loss": float(loss.detach()), **parts}.items():
            sums[key] = sums.get(key, 0.0) + value
        n += 1
        if step % cfg.log_every == 0 or step == cfg.steps - 1:
            # means since the previous line
            log(f"step {step:5d}/{cfg.steps}  " + "  ".join(f"{k} {v / n:.4f}" for k, v in sums.items())
                + f"  ({time.perf_counter() - start:.0f} s)")
            sums, n = {}, 0
    net.eval()
    return {
        "format": CHECKPOINT_FORMAT,
        "method": "point2mask",
        "label_kind": "full" if cfg.mode == "full" else "box-points",
        "model": model,
        "state_dict": net.state_dict(),
        "diameter": cfg.diameter,
        "normalization": {"kind": "percentile", "low": 1.0, "high": 99.8},
        "decoder": method.decoder_params(cfg),
        "config": {k: (asdict(v) if is_dataclass(v) else v) for k, v in vars(cfg).items()},
        "train_seconds": time.perf_counter() - start,
    }


def build_point2mask_network(checkpoint: dict) -> method.Point2MaskNet:
    """The checkpoint's network with its weights, in eval mode."""
    net = _build(checkpoint["model"])
    net.load_state_dict(checkpoint["state_dict"])
    return net.eval()


def export_modules(checkpoint: dict) -> tuple[method.ExportDetector, method.ExportMaskHead]:
    """The two exported graphs' torch modules, in eval mode: image → detector outputs + features, and
    (features, boxes) → masks."""
    net = build_point2mask_network(checkpoint)
    return method.ExportDetector(net).eval(), method.ExportMaskHead(net).eval()

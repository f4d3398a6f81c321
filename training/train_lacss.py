"""Training loop of LACSS (location assisted cell segmentation): from an image-level foreground mask and a
location per cell ("weak", label kind "foreground-locations"), or from full masks ("full").

Every image is first rescaled so its cells have the canonical diameter: the diameter the user states,
else the one the labels imply (full: median equivalent-circle diameter of the masks; weak:
2·sqrt(foreground area / (π·#locations))). Training draws random crops (random scale, rotation by
multiples of 90°, flips, intensity jitter); the locations inside a crop (any number, also none) are the
LPN's targets and, teacher forced, where the instance head's windows sit."""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from cellpoint.runtime.normalize import normalize_percentile
from cellpoint.training.methods import lacss as method
from cellpoint.training.targets import label_centroids, median_diameter_from_labels
from cellpoint.training.train import CHECKPOINT_FORMAT, _resize
from cellpoint.training.train_shape import diameter_from_mask_and_count

MODES = ("full", "weak")


@dataclass
class LacssConfig:
    mode: str = "weak"                     # "weak" (foreground + locations) or "full" (masks)
    aux: bool = True                       # train with the low field-of-view aux net (meant for weak mode)
    weak_loss: str = "union"               # method.WEAK_LOSSES: how masks are tied to the foreground
    widths: tuple = (16, 32, 64, 128)      # backbone widths at strides 1, 2, 4, 8
    features: int = 16                     # F, channels of the high-resolution features
    head_width: int = 16                   # channels of the instance head's 3×3 convs
    head_layers: int = 2
    aux_width: int = 8                     # aux net: channels of its 3×3 convs
    aux_layers: int = 4                    # aux net: 3×3 convs, field of view 2·layers + 1 px
    diameter: float = 24.0                 # canonical cell diameter, px, the network sees
    window: int = 48                       # P, the instance head's window (two diameters)
    crop: int = 128                        # training crop, a multiple of method.MULTIPLE
    batch: int = 8
    steps: int = 2500
    lr: float = 1e-3                       # Adam, cosine decay to lr/100
    seed: int = 0
    scale_range: tuple = (0.8, 1.25)
    log_every: int = 100
    weights: method.LossWeights = field(default_factory=method.LossWeights)


# ------------------------------------------------------------------------------------------ examples

def _channels_first(image: np.ndarray) -> np.ndarray:
    """(H,W) or (H,W,C) → float32 (C,H,W)."""
    arr = np.asarray(image, np.float32)
    return arr[None] if arr.ndim == 2 else np.moveaxis(arr, -1, 0)


def _scale_points(yx: np.ndarray, scale: float) -> np.ndarray:
    """Pixel-centre coordinates after resizing by `scale` (as cv2.resize maps them)."""
    return (np.asarray(yx, np.float64).reshape(-1, 2) + 0.5) * scale - 0.5


def location_ids(labels: np.ndarray, yx: np.ndarray) -> np.ndarray:
    """The instance id under each location (0 when it falls on background or outside). int32 (K,)."""
    rc = np.floor(np.asarray(yx, np.float64).reshape(-1, 2) + 0.5).astype(int)
    inside = (rc >= 0).all(1) & (rc[:, 0] < labels.shape[0]) & (rc[:, 1] < labels.shape[1])
    ids = np.zeros(len(rc), np.int32)
    ids[inside] = labels[rc[inside, 0], rc[inside, 1]]
    return ids


def prepare_lacss_example(image: np.ndarray, locations: np.ndarray | None, foreground: np.ndarray | None = None,
                          labels: np.ndarray | None = None, diameter: float | None = None,
                          cfg: LacssConfig | None = None) -> dict:
    """One image's training arrays at the canonical scale.

    image: (H,W) or (H,W,C) raw intensities. locations: float (K,2) (y, x) px, one per cell (full mode:
    None = the masks' centroids). weak: foreground bool (H,W) (None = labels > 0); full: labels (H,W)
    instance ids. diameter: the cells' diameter in this image, px (None = from the labels, see module).
    Returns {"image": float32 (C,H',W') normalised, "locations": float32 (K,2) (y, x) at the canonical
    scale, weak: "foreground" float32 (H',W') 0/1, full: "labels" int32 (H',W') and "ids" int32 (K,)
    (each location's instance id, 0 = none), "scale", "diameter"}."""
    cfg = cfg or LacssConfig()
    if cfg.mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {cfg.mode!r}")
    norm = normalize_percentile(_channels_first(image))
    if cfg.mode == "full":
        if labels is None:
            raise ValueError("full mode needs labels")
        labels = np.asarray(labels).astype(np.int32)
        yx = label_centroids(labels) if locations is None else np.asarray(locations, np.float64).reshape(-1, 2)
        ids = location_ids(labels, yx)
        estimate = median_diameter_from_labels(labels)
    else:
        if foreground is None and labels is None:
            raise ValueError("weak mode needs a foreground mask (or labels to derive it from)")
        foreground = np.asarray(labels) > 0 if foreground is None else np.asarray(foreground, bool)
        yx = np.asarray(locations, np.float64).reshape(-1, 2)
        estimate = diameter_from_mask_and_count(foreground, len(yx))
    diameter = float(diameter) if diameter else estimate
    scale = cfg.diameter / diameter if np.isfinite(diameter) and diameter > 0 else 1.0
    shape = (max(8, round(norm.shape[1] * scale)), max(8, round(norm.shape[2] * scale)))
    out = {"image": np.stack([_resize(c, shape) for c in norm]),
           "locations": _scale_points(yx, scale).astype(np.float32), "scale": scale, "diameter": diameter}
    if cfg.mode == "full":
        small = _resize(labels.astype(np.float32), shape, nearest=True).astype(np.int32)
        out["labels"] = small
        # ids from the native labels: the resized mask of a small cell may miss its location's pixel
        out["ids"] = np.where(np.isin(ids, small), ids, 0).astype(np.int32)
    else:
        out["foreground"] = _resize(foreground.astype(np.float32), shape, nearest=True)
    return out


# --------------------------------------------------------------------------------------------- crops

def rotate_points(yx: np.ndarray, size: int, k: int, flip: bool) -> np.ndarray:
    """Where points (y, x) of a size×size array go under np.rot90(arr, k) then, if flip, arr[:, ::-1]."""
    y, x = yx[:, 0].copy(), yx[:, 1].copy()
    for _ in range(k % 4):          # one rot90: element (r, c) moves to (size − 1 − c, r)
        y, x = size - 1 - x, y
    if flip:
        x = size - 1 - x
    return np.stack([y, x], 1)


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


def sample_lacss_crop(example: dict, cfg: LacssConfig, rng: np.random.Generator) -> dict:
    """A random cfg.crop² crop at a random scale, rotated, flipped and intensity-jittered, with the
    locations inside it. Returns {"image": float32 (C,S,S), "locations": float32 (K,2) (y, x), and
    "foreground" float32 (S,S) or "labels" int32 (S,S) + "ids" int32 (K,)}; K may be 0."""
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

    crop = {"image": _jitter_intensity(np.stack([plane(c) for c in example["image"]]), rng)}
    yx = (example["locations"].astype(np.float64) - (y0, x0) + 0.5) * (size / window) - 0.5
    inside = ((yx >= -0.5) & (yx < size - 0.5)).all(1)
    crop["locations"] = rotate_points(yx[inside], size, k, flip).astype(np.float32)
    if "labels" in example:
        crop["labels"] = plane(example["labels"].astype(np.float32), nearest=True).astype(np.int32)
        crop["ids"] = example["ids"][inside]
    else:
        crop["foreground"] = plane(example["foreground"], nearest=True)
    return crop


def collate(crops: list[dict]) -> dict:
    """Crops → the batch `method.lacss_loss` takes (tensors; locations flattened with their image index)."""
    counts = [len(c["locations"]) for c in crops]
    batch = {"image": torch.from_numpy(np.stack([c["image"] for c in crops])),
             "batch_index": torch.repeat_interleave(torch.arange(len(crops)), torch.tensor(counts)),
             "yx": torch.from_numpy(np.concatenate([c["locations"] for c in crops]).reshape(-1, 2))}
    if "labels" in crops[0]:
        batch["labels"] = torch.from_numpy(np.stack([c["labels"] for c in crops]).astype(np.int64))
        batch["ids"] = torch.from_numpy(np.concatenate([c["ids"] for c in crops]).astype(np.int64))
    else:
        batch["foreground"] = torch.from_numpy(np.stack([c["foreground"] for c in crops]))
    return batch


# -------------------------------------------------------------------------------------------- train

def _build(model: dict) -> method.LacssNet:
    return method.LacssNet(model["in_channels"], tuple(model["widths"]), model["features"],
                           model["head_width"], model["head_layers"])


def train_lacss(examples: list[dict], cfg: LacssConfig, log=print) -> dict:
    """Train LACSS on prepared examples (all of cfg.mode). Returns a checkpoint dict (CHECKPOINT_FORMAT);
    the aux net's weights, not part of the exported model, are kept under "aux_state_dict"."""
    if cfg.crop % method.MULTIPLE:
        raise ValueError(f"crop {cfg.crop} is not a multiple of {method.MULTIPLE}")
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model = {"arch": "lacss", "in_channels": int(examples[0]["image"].shape[0]), "widths": list(cfg.widths),
             "features": cfg.features, "head_width": cfg.head_width, "head_layers": cfg.head_layers,
             "window": cfg.window, "lpn_stride": method.LPN_STRIDE, "multiple": method.MULTIPLE}
    net = _build(model)
    aux = method.AuxNet(model["in_channels"], cfg.aux_width, cfg.aux_layers) if cfg.aux else None
    params = list(net.parameters()) + (list(aux.parameters()) if aux is not None else [])
    opt = torch.optim.Adam(params, lr=cfg.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.steps, eta_min=cfg.lr * 0.01)
    start = time.perf_counter()
    net.train()
    sums, n = {}, 0
    for step in range(cfg.steps):
        crops = [sample_lacss_crop(examples[int(rng.integers(len(examples)))], cfg, rng) for _ in range(cfg.batch)]
        loss, parts = method.lacss_loss(net, collate(crops), cfg.mode, cfg.window, cfg.weights, aux,
                                          cfg.weak_loss)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 10.0)
        opt.step()
        sched.step()
        for key, value in {"loss": float(loss.detach()), **parts}.items():
            sums[key] = sums.get(key, 0.0) + value
        n += 1
        if step % cfg.log_every == 0 or step == cfg.steps - 1:
            # means since the previous line (parts absent in crops without locations count as 0)
            log(f"step {step:5d}/{cfg.steps}  " + "  ".join(f"{k} {v / n:.4f}" for k, v in sums.items())
                + f"  ({time.perf_counter() - start:.0f} s)")
            sums, n = {}, 0
    net.eval()
    return {
        "format": CHECKPOINT_FORMAT,
        "method": "lacss",
        "label_kind": "full" if cfg.mode == "full" else "foreground-locations",
        "model": model,
        "state_dict": net.state_dict(),
        "aux_state_dict": aux.state_dict() if aux is not None else None,
        "diameter": cfg.diameter,
        "normalization": {"kind": "percentile", "low": 1.0, "high": 99.8},
        "decoder": method.decoder_params(cfg),
        "config": {k: (asdict(v) if k == "weights" else v) for k, v in vars(cfg).items()},
        "train_seconds": time.perf_counter() - start,
    }


def build_lacss_network(checkpoint: dict) -> method.LacssNet:
    """The checkpoint's network with its weights, in eval mode."""
    net = _build(checkpoint["model"])
    net.load_state_dict(checkpoint["state_dict"])
    return net.eval()


def export_modules(checkpoint: dict) -> tuple[method.ExportFeatures, method.ExportInstance]:
    """The two exported graphs' torch modules, in eval mode: image → (score, offsets, features), and
    (windows, encoding) → masks."""
    net = build_lacss_network(checkpoint)
    return method.ExportFeatures(net).eval(), method.ExportInstance(net).eval()

"""LACSS's training data: one image's arrays at the canonical scale, random crops of them with the
locations inside, and batches of crops for `loss.lacss_loss`.

Every image is first rescaled so its cells have the canonical diameter: the diameter the user states,
else the one the labels imply (full: median equivalent-circle diameter of the masks; weak:
2·sqrt(foreground area / (π·#locations))). Crops have a random scale, rotation by multiples of 90°, flips
and intensity jitter (`training.augment`); the locations inside a crop (any number, also none) are the
LPN's targets and, teacher forced, where the instance head's windows sit."""
from __future__ import annotations

import numpy as np
import torch

from cellpoint.runtime.normalize import normalize_percentile
from cellpoint.training.augment import Crop, jitter_intensity, resize, rotate_yx
from cellpoint.training.methods.lacss.config import MODES, LacssConfig
from cellpoint.training.targets import diameter_from_mask_and_count, label_centroids, median_diameter_from_labels


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


def prepare_example(image: np.ndarray, locations: np.ndarray | None, foreground: np.ndarray | None = None,
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
    out = {"image": np.stack([resize(c, shape) for c in norm]),
           "locations": _scale_points(yx, scale).astype(np.float32), "scale": scale, "diameter": diameter}
    if cfg.mode == "full":
        small = resize(labels.astype(np.float32), shape, nearest=True).astype(np.int32)
        out["labels"] = small
        # ids from the native labels: the resized mask of a small cell may miss its location's pixel
        out["ids"] = np.where(np.isin(ids, small), ids, 0).astype(np.int32)
    else:
        out["foreground"] = resize(foreground.astype(np.float32), shape, nearest=True)
    return out


def sample_crop(example: dict, cfg: LacssConfig, rng: np.random.Generator) -> dict:
    """A random cfg.crop² crop at a random scale, rotated, flipped and intensity-jittered, with the
    locations inside it. Returns {"image": float32 (C,S,S), "locations": float32 (K,2) (y, x), and
    "foreground" float32 (S,S) or "labels" int32 (S,S) + "ids" int32 (K,)}; K may be 0."""
    size = cfg.crop
    crop = Crop.sample(rng, example["image"].shape[1:], size, cfg.scale_range)
    out = {"image": jitter_intensity(np.stack([crop.plane(c) for c in example["image"]]), rng)}
    yx = crop.to_crop_yx(example["locations"])
    inside = ((yx >= -0.5) & (yx < size - 0.5)).all(1)
    out["locations"] = rotate_yx(yx[inside], size, crop.k, crop.flip).astype(np.float32)
    if "labels" in example:
        out["labels"] = crop.plane(example["labels"].astype(np.float32), nearest=True).astype(np.int32)
        out["ids"] = example["ids"][inside]
    else:
        out["foreground"] = crop.plane(example["foreground"], nearest=True)
    return out


def collate(crops: list[dict]) -> dict:
    """Crops → the batch `loss.lacss_loss` takes (tensors; locations flattened with their image index)."""
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

"""Point2Mask's training data: one image's arrays at the canonical scale, random crops of them with the boxes
and clicks inside, and batches of crops for `loss.point2mask_loss`.

Labels: a box and N clicks labelled cell/background per cell ("points", label kind "box-points"), or full
masks ("full", the upper bound). Every image is first rescaled so its cells have the canonical diameter:
the diameter the caller states, else the one the labels imply (full: median equivalent-circle diameter of
the masks; points: from each box's area times the fraction of its clicks that fall on the cell, a
Monte-Carlo estimate of the cell's area — no mask needed), and normalised with the config's kind. Crops
have a random scale (the config's `scale_range`), rotation by multiples of 90°, flips and intensity jitter
(the config's `intensity`, `augment.JITTERS`). Val images (for choosing the checkpoint) are prepared as the
package would see them at their cells' true size (`prepare_val_example`). Boxes cut by the crop are clipped to
it, and their clicks outside the crop dropped; a box cut to a sliver (narrower than `min_box` px) is
neither a positive nor a negative for the detector. The mask head is trained on the ground-truth boxes
(jittered), at most `max_rois` per step."""
from __future__ import annotations

import cv2
import numpy as np
import torch

from cellpoint.runtime.normalize import normalize_percentile
from cellpoint.training.augment import JITTERS, Crop, resize, rotate_boxes, rotate_xy
from cellpoint.training.checkpoint import normalise
from cellpoint.training.methods.point2mask.config import MODES, Point2MaskConfig
from cellpoint.training.targets import median_diameter_from_labels

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


def prepare_example(image: np.ndarray, boxes: np.ndarray, points: np.ndarray | None,
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
    norm = normalised(_channels_first(image), cfg.normalization)
    shape = (max(8, round(norm.shape[1] * scale)), max(8, round(norm.shape[2] * scale)))
    out = {"image": np.stack([resize(c, shape) for c in norm]),
           "boxes": _scale_xy(boxes, scale).astype(np.float32),
           "points": _scale_xy(points, scale).astype(np.float32),
           "point_labels": point_labels.astype(np.int8), "scale": scale, "diameter": diameter}
    if cfg.mode == "full":
        small = resize(labels.astype(np.float32), shape, nearest=True).astype(np.int32)
        out["labels"] = small
        out["ids"] = np.where(np.isin(ids, small), ids, 0).astype(np.int32)
    return out


def normalised(image: np.ndarray, kind: str = "percentile") -> np.ndarray:
    """A (C,H,W) image normalised for training with the card's preprocessing `kind`: "percentile" as
    Point2Mask always trained (`normalize_percentile`, without the runtime's spike suppression, so the
    default training is unchanged); any other kind exactly as the runtime normalises (`checkpoint.normalise`).
    float32 (C,H,W)."""
    if kind == "percentile":
        return normalize_percentile(image)
    return normalise(image, kind)


def prepare_val_example(image: np.ndarray, labels: np.ndarray, cfg: Point2MaskConfig) -> dict:
    """A val image for choosing the checkpoint, as the package would see it at the cells' true size:
    (H,W) raw intensities normalised as the runtime does (`checkpoint.normalise`, the config's kind) and
    rescaled (the runtime's interpolation) so the median equivalent-circle diameter of its masks becomes the
    canonical one; labels (H,W) instance ids resized with it (nearest). Returns {"image": float32 (1,h,w),
    "labels": int32 (h,w), "split": "val"}."""
    norm = normalise(np.asarray(image, np.float32)[None], cfg.normalization)
    diameter = median_diameter_from_labels(labels)
    scale = cfg.diameter / diameter if np.isfinite(diameter) and diameter > 0 else 1.0
    shape = (max(16, round(norm.shape[1] * scale)), max(16, round(norm.shape[2] * scale)))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    small = np.stack([cv2.resize(c, shape[::-1], interpolation=interpolation) for c in norm])
    return {"image": small.astype(np.float32),
            "labels": resize(np.asarray(labels).astype(np.int32), shape, nearest=True), "split": "val"}


# --------------------------------------------------------------------------------------------- crops

def sample_crop(example: dict, cfg: Point2MaskConfig, rng: np.random.Generator) -> dict:
    """A random cfg.crop² crop at a random scale in cfg.scale_range, rotated, flipped and intensity-jittered
    (`augment.Crop`, `augment.JITTERS[cfg.intensity]`).

    Returns {"image": float32 (C,S,S), "boxes": float32 (K,4) clipped to the crop (cells with a part in
    it, at least min_box wide and high), "ignore": float32 (J,4) the slivers, "points" float32 (K,N,2),
    "point_labels" int8 (K,N) (−1 for points outside the crop), full: "labels" int32 (S,S), "ids" (K,)}."""
    size = cfg.crop
    crop = Crop.sample(rng, example["image"].shape[1:], size, cfg.scale_range)
    k, flip = crop.k, crop.flip
    boxes = example["boxes"]
    moved = rotate_boxes(np.concatenate([crop.to_crop_xy(boxes[:, :2]), crop.to_crop_xy(boxes[:, 2:])], 1),
                         size, k, flip)
    clipped = np.clip(moved, -0.5, size - 0.5)
    extent = clipped[:, 2:] - clipped[:, :2]
    present = (extent > 0).all(1)
    keep = present & (extent >= cfg.min_box).all(1)
    points = rotate_xy(crop.to_crop_xy(example["points"]), size, k, flip)
    inside = ((points >= clipped[:, None, :2]) & (points <= clipped[:, None, 2:])).all(-1)
    out = {"image": JITTERS[cfg.intensity](np.stack([crop.plane(c) for c in example["image"]]), rng),
           "boxes": clipped[keep].astype(np.float32), "ignore": clipped[present & ~keep].astype(np.float32),
           "points": points[keep].astype(np.float32),
           "point_labels": np.where(inside, example["point_labels"], -1)[keep].astype(np.int8)}
    if "labels" in example:
        out["labels"] = crop.plane(example["labels"].astype(np.float32), nearest=True).astype(np.int32)
        out["ids"] = example["ids"][keep]
    return out


def _jitter_boxes(boxes: np.ndarray, amount: float, size: int, rng: np.random.Generator) -> np.ndarray:
    """Each edge moved by N(0, amount·box side), kept inside the crop and at least 1 px wide."""
    side = np.tile(boxes[:, 2:] - boxes[:, :2], 2)                          # (w, h, w, h)
    out = boxes + rng.normal(0, amount, boxes.shape) * side
    out = np.clip(out, -0.5, size - 0.5)
    out[:, 2:] = np.maximum(out[:, 2:], out[:, :2] + 1)
    return out


def collate(crops: list[dict], cfg: Point2MaskConfig, rng: np.random.Generator) -> dict:
    """Crops → the batch `loss.point2mask_loss` takes: per-image box lists, and at most cfg.max_rois
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

"""An RGB preview of a segmentation: the image in gray, each instance tinted and outlined in its colour."""
from __future__ import annotations

import cv2
import numpy as np

from cellpoint.runtime.labels import labelled_pixels


def _id_colours(ids: np.ndarray) -> np.ndarray:
    """uint8 (n,3) bright pseudo-random colour per id, the same for an id in every image (seeded hash)."""
    x = ids.astype(np.uint64) + np.uint64(0x5EED)
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
    channels = [(x >> np.uint64(8 * k)) & np.uint64(0xFF) for k in range(3)]
    return (64 + np.stack(channels, axis=-1) * 191 // 255).astype(np.uint8)


def _gray8(image: np.ndarray, low: float = 1.0, high: float = 99.8) -> np.ndarray:
    """(H,W) or (H,W,3) image of any dtype → uint8 (H,W), `low`/`high` percentiles stretched to 0/255."""
    img = np.asarray(image)
    if img.ndim == 3:
        img = img.mean(axis=2, dtype=np.float32)
    img = np.ascontiguousarray(img, dtype=np.float32)
    # percentiles of a subsample: exact enough, much faster on large images
    sample = img[:: max(1, img.shape[0] // 512), :: max(1, img.shape[1] // 512)]
    sample = sample[np.isfinite(sample)]
    lo, hi = np.percentile(sample, [low, high]) if sample.size else (0.0, 0.0)
    scale = 255.0 / (hi - lo) if hi > lo else 0.0
    # convertScaleAbs rounds and saturates; values below `lo` would come out mirrored, so clamp first
    return cv2.convertScaleAbs(np.maximum(img, np.float32(lo)), alpha=scale, beta=-lo * scale)


def render_overlay(image: np.ndarray, labels: np.ndarray, alpha: float = 0.3) -> np.ndarray:
    """RGB preview: `image` (H,W) or (H,W,3), any dtype, shown as 8-bit gray (1–99.8 percentile
    stretch); instances filled with their colour at `alpha` and outlined in it (pixels with a
    4-neighbour of another id). Returns uint8 (H,W,3) RGB."""
    lab = np.asarray(labels)
    if np.shape(image)[:2] != lab.shape:
        raise ValueError(f"image {np.shape(image)} and labels {lab.shape} differ in size")
    out = np.repeat(_gray8(image)[..., None], 3, axis=2)
    idx, code_ids, codes = labelled_pixels(lab)
    if idx.size == 0:
        return out
    colours = _id_colours(code_ids)[codes]
    flat = out.reshape(-1, 3)
    weight = int(round(alpha * 256))
    flat[idx] = (flat[idx].astype(np.uint16) * (256 - weight) + colours * np.uint16(weight) + 128) >> 8
    edge = np.zeros(lab.shape, bool)
    vertical = lab[1:] != lab[:-1]
    horizontal = lab[:, 1:] != lab[:, :-1]
    edge[1:] |= vertical
    edge[:-1] |= vertical
    edge[:, 1:] |= horizontal
    edge[:, :-1] |= horizontal
    on_edge = edge.ravel()[idx]
    flat[idx[on_edge]] = colours[on_edge]
    return out

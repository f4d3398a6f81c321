"""Training crops and their augmentation, shared by every method: a random window at a random scale,
rotated by a multiple of 90°, maybe flipped, and intensity-jittered; points and boxes follow the pixels.

Random draws happen in a fixed order (scale, window origin, rotation, flip, then gain, gamma, offset, noise
level, noise), so a seeded generator gives the same crops whichever method asks."""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


def resize(arr: np.ndarray, shape: tuple[int, int], nearest: bool = False) -> np.ndarray:
    """cv2 resize of a 2-D array to (H,W): bilinear, or nearest neighbour for labels."""
    interp = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    return cv2.resize(arr, (shape[1], shape[0]), interpolation=interp)


@dataclass(frozen=True)
class Crop:
    """Where a training crop comes from: the window [y0, y0+window) × [x0, x0+window) of the example,
    resized to size×size, then np.rot90(·, k) and, if flip, mirrored left-right."""
    y0: int
    x0: int
    window: int
    size: int
    k: int
    flip: bool

    @classmethod
    def sample(cls, rng: np.random.Generator, shape: tuple[int, int], size: int,
               scale_range: tuple[float, float]) -> Crop:
        """A random crop of an example of (H,W) `shape`: scale log-uniform in `scale_range` (the window is
        size/scale px), origin uniform, rotation uniform in 0..3, flip with probability 1/2."""
        scale = float(np.exp(rng.uniform(*np.log(scale_range))))
        window = max(8, int(round(size / scale)))
        h, w = shape
        y0 = int(rng.integers(0, max(h - window, 0) + 1))
        x0 = int(rng.integers(0, max(w - window, 0) + 1))
        k, flip = int(rng.integers(4)), bool(rng.integers(2))
        return cls(y0, x0, window, size, k, flip)

    def plane(self, arr: np.ndarray, nearest: bool = False, fill: float = 0.0) -> np.ndarray:
        """The crop of a 2-D array (padded with `fill` past its edge): float32 (size, size), contiguous."""
        part = arr[self.y0:self.y0 + self.window, self.x0:self.x0 + self.window]
        if part.shape != (self.window, self.window):
            full = np.full((self.window, self.window), fill, np.float32)
            full[:part.shape[0], :part.shape[1]] = part
            part = full
        out = np.rot90(resize(np.ascontiguousarray(part, np.float32), (self.size, self.size), nearest), self.k)
        return np.ascontiguousarray(out[:, ::-1] if self.flip else out)

    def to_crop_yx(self, yx: np.ndarray) -> np.ndarray:
        """Continuous (y, x) coordinates (..., 2) of the example → the crop's, before rotation and flip."""
        return (np.asarray(yx, np.float64) - (self.y0, self.x0) + 0.5) * (self.size / self.window) - 0.5

    def to_crop_xy(self, xy: np.ndarray) -> np.ndarray:
        """Continuous (x, y) coordinates (..., 2) of the example → the crop's, before rotation and flip."""
        return (np.asarray(xy, np.float64) - (self.x0, self.y0) + 0.5) * (self.size / self.window) - 0.5


def rotate_yx(yx: np.ndarray, size: int, k: int, flip: bool) -> np.ndarray:
    """Where points (N,2) (y, x) of a size×size array go under np.rot90(arr, k) then, if flip, arr[:, ::-1]."""
    y, x = yx[:, 0].copy(), yx[:, 1].copy()
    for _ in range(k % 4):          # one rot90: element (r, c) moves to (size − 1 − c, r)
        y, x = size - 1 - x, y
    if flip:
        x = size - 1 - x
    return np.stack([y, x], 1)


def rotate_xy(xy: np.ndarray, size: int, k: int, flip: bool) -> np.ndarray:
    """Where continuous points (..., 2) (x, y) of a size×size array go under np.rot90(arr, k) then, if
    flip, arr[:, ::-1]."""
    x, y = xy[..., 0].copy(), xy[..., 1].copy()
    for _ in range(k % 4):          # one rot90: element (r, c) moves to (size − 1 − c, r)
        x, y = y, size - 1 - x
    if flip:
        x = size - 1 - x
    return np.stack([x, y], -1)


def rotate_boxes(boxes: np.ndarray, size: int, k: int, flip: bool) -> np.ndarray:
    """Boxes (K,4) x0, y0, x1, y1 under the same rotation/flip (corners moved, then re-ordered)."""
    a = rotate_xy(boxes[:, :2], size, k, flip)
    b = rotate_xy(boxes[:, 2:], size, k, flip)
    return np.concatenate([np.minimum(a, b), np.maximum(a, b)], 1)


def jitter_intensity(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Intensity augmentation of a normalised image (any shape): gain ×0.8–1.25, gamma e^±0.3, offset ±0.05,
    Gaussian noise of sd up to 0.03. Returns float32."""
    gain, gamma = rng.uniform(0.8, 1.25), np.exp(rng.uniform(-0.3, 0.3))
    img = np.clip(image, 0, None) ** gamma * gain + rng.uniform(-0.05, 0.05)
    return (img + rng.normal(0, rng.uniform(0, 0.03), img.shape)).astype(np.float32)


def crop_maps(example: dict, size: int, scale_range: tuple[float, float], rng: np.random.Generator,
              nearest: frozenset = frozenset(), fill: dict | None = None, jitter=None) -> dict:
    """A random crop of every 2-D array of `example` (all (H,W), "image" among them; other entries are
    skipped), resized with nearest neighbour for the keys in `nearest` and padded past the edge with
    fill[key] (default 0); the image is intensity-jittered (`jitter`, default `jitter_intensity`).
    Returns {key: float32 (size, size)}."""
    crop = Crop.sample(rng, example["image"].shape, size, scale_range)
    fill = fill or {}
    out = {key: crop.plane(arr, key in nearest, fill.get(key, 0.0))
           for key, arr in example.items() if isinstance(arr, np.ndarray)}
    out["image"] = (jitter or jitter_intensity)(out["image"], rng)
    return out


def jitter_intensity_wide(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Intensity augmentation covering the kinds of images users bring, for a normalised 2-D image (or a
    stack of them, (C,H,W)): gamma e^±0.6, gain ×0.5–1.6, offset ±0.15, a linear background ramp of up to
    0.25 across the image, Gaussian blur (σ up to 1.5 px, one image in three), Gaussian noise of sd up to
    0.08, and one image in four quantised to 8 bits over its range. Returns float32 of the same shape."""
    gain, gamma = rng.uniform(0.5, 1.6), np.exp(rng.uniform(-0.6, 0.6))
    offset, ramp, angle = rng.uniform(-0.15, 0.15), rng.uniform(0, 0.25), rng.uniform(0, 2 * np.pi)
    blur = rng.uniform(0.3, 1.5) if rng.random() < 1 / 3 else 0.0
    noise, quantise = rng.uniform(0, 0.08), rng.random() < 0.25
    img = np.clip(np.asarray(image, np.float32), 0, None) ** gamma * gain + offset
    h, w = img.shape[-2:]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = img + ramp * ((np.cos(angle) * xx / max(w, 1) + np.sin(angle) * yy / max(h, 1)) - 0.5)
    if blur:
        planes = img.reshape(-1, h, w)
        img = np.stack([cv2.GaussianBlur(p, (0, 0), blur) for p in planes]).reshape(img.shape)
    img = img + rng.normal(0, noise, img.shape)
    if quantise:
        lo, hi = float(img.min()), float(img.max())
        if hi > lo:
            img = np.round((img - lo) / (hi - lo) * 255) / 255 * (hi - lo) + lo
    return img.astype(np.float32)


JITTERS = {"basic": jitter_intensity, "wide": jitter_intensity_wide}
"""Intensity augmentations by name (a training config's `intensity`)."""

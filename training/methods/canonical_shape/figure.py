"""The package figure of a canonical-shape model: its learned shape (numpy and OpenCV only)."""
from __future__ import annotations

import cv2
import numpy as np

from cellpoint.runtime.decoders.canonical_shape import canonical_image

FILE = "canonical_shape.png"
CAPTION = ("Learned canonical shape p(s | x, y) on [-2, 2]^2 canonical units (white = 1); "
           "red: the unit circle, radius = `unit` network px before each cell's own transform.")


def shape_figure(weights: dict, size: int = 257) -> np.ndarray:
    """p(s | x, y) of the shape MLP `weights` (the "shape_mlp" asset) over [−2, 2]² canonical units, white = 1,
    with the unit circle in red for scale. Returns uint8 (size, size, 3) RGB."""
    gray = (np.clip(canonical_image(weights, size, 2.0), 0, 1) * 255).astype(np.uint8)
    rgb = np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))
    cv2.circle(rgb, (size // 2, size // 2), size // 4, (255, 0, 0), 1, lineType=cv2.LINE_AA)
    return rgb

"""Labels made by a machine from the image itself: one location per nucleus from a nuclear stain.

LACSS (and WSISPDR's "no annotation" row) replace the annotator's clicks by the local maxima of a
difference of Gaussians of the nuclear channel (σ 4.2 and 5 px in LACSS). Plain functions on arrays."""
from __future__ import annotations

import cv2
import numpy as np

from cellpoint.runtime.normalize import normalize_percentile
from cellpoint.runtime.postprocess import find_peaks


def difference_of_gaussians(image: np.ndarray, sigma_small: float = 4.2, sigma_large: float = 5.0) -> np.ndarray:
    """G_small * image − G_large * image of a (H,W) image normalised to [0,1] (1–99.8 percentiles).

    Bright blobs of radius about σ·√2 give positive peaks at their centres. Returns float32 (H,W)."""
    img = normalize_percentile(np.asarray(image, np.float32)[None])[0]
    small = cv2.GaussianBlur(img, (0, 0), sigma_small, borderType=cv2.BORDER_REFLECT)
    large = cv2.GaussianBlur(img, (0, 0), sigma_large, borderType=cv2.BORDER_REFLECT)
    return (small - large).astype(np.float32)


def nuclei_locations(image: np.ndarray, sigma_small: float = 4.2, sigma_large: float = 5.0,
                     threshold: float = 0.1, min_distance: int | None = None) -> np.ndarray:
    """One location per nucleus: local maxima of the difference of Gaussians of a nuclear-stain image.

    image: (H,W) nuclear channel, any dtype. threshold: a peak must exceed this fraction of the 99.9th
    percentile of the positive DoG response (rejects background noise). min_distance: px between peaks
    (default: round(σ_large)). For nuclei of another size, scale both σ by (diameter / 14 px).
    Returns float64 (K,2) xy (x = column), strongest first."""
    dog = difference_of_gaussians(image, sigma_small, sigma_large)
    positive = dog[dog > 0]
    if positive.size == 0:
        return np.zeros((0, 2), np.float64)
    level = threshold * float(np.percentile(positive, 99.9))
    distance = int(round(sigma_large)) if min_distance is None else int(min_distance)
    rc, _ = find_peaks(dog, level, max(1, distance))
    return rc[:, ::-1].astype(np.float64)

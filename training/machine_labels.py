"""Labels made by a machine from the image itself: one location per nucleus from a nuclear stain, and
the image-level foreground from a fluorescence channel.

LACSS (and WSISPDR's "no annotation" row) replace the annotator's clicks by the local maxima of a
difference of Gaussians of the nuclear channel (σ 4.2 and 5 px in LACSS), and the hand-drawn foreground
by a threshold refined with a graph cut (LACSS cut each image at five thresholds and let a person pick
one; `foreground_candidates` makes the five and `choose_foreground` picks one automatically, by their
agreement with the nucleus locations when there are any).
Plain functions on arrays."""
from __future__ import annotations

import cv2
import numpy as np

from cellpoint.runtime.graphcut import binary_cut, otsu_level
from cellpoint.runtime.normalize import normalize_percentile
from cellpoint.runtime.peaks import find_peaks

FOREGROUND_FACTORS = (0.45, 0.6, 0.8, 1.0, 1.25)
"""The five candidate thresholds, as multiples of the image's Otsu level (on the 1–99.8% normalised image)."""


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


def foreground_candidates(image: np.ndarray, factors=FOREGROUND_FACTORS, smoothness: float = 1.0,
                          sigma: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Five image-level foreground masks of a fluorescence channel, from low to high threshold.

    image: (H,W) any dtype, bright cells. Each candidate is the graph cut (`binary_cut`, PyMaxflow)
    of the 1–99.8% normalised image at level factor × Otsu level, so edges follow the image instead of a
    bare threshold's noise. Returns (masks bool (5,H,W), levels float (5,) in normalised units)."""
    img = normalize_percentile(np.asarray(image, np.float32)[None])[0]
    otsu = otsu_level(img)
    levels = np.clip(np.asarray(factors, np.float64) * otsu, 1e-3, 0.999)
    masks = np.stack([binary_cut(img, level, smoothness=smoothness, sigma=sigma) for level in levels])
    return masks, levels


def boundary_contrast(image: np.ndarray, mask: np.ndarray) -> float:
    """Mean gradient magnitude of the normalised (H,W) image on the inner boundary of bool `mask`
    (0 for an empty or full mask): how well the mask's outline follows the image's edges."""
    img = normalize_percentile(np.asarray(image, np.float32)[None])[0]
    smooth = cv2.GaussianBlur(img, (0, 0), 1.0)
    gradient = np.hypot(cv2.Sobel(smooth, cv2.CV_32F, 1, 0), cv2.Sobel(smooth, cv2.CV_32F, 0, 1))
    m = mask.astype(np.uint8)
    edge = m.astype(bool) & ~cv2.erode(m, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_REPLICATE).astype(bool)
    return float(gradient[edge].mean()) if edge.any() and not m.all() else 0.0


def location_consistency(mask: np.ndarray, xy: np.ndarray) -> float:
    """How well a foreground mask agrees with nucleus locations found independently (e.g. by DoG):
    the harmonic mean of (share of the locations that fall on the foreground) and (share of the
    foreground's area in connected components that hold a location). A threshold too high drops
    nuclei (their locations fall outside); too low adds background blobs with no location. mask: bool
    (H,W); xy: float (K,2) x, y px. Returns a float in [0, 1] (0 without locations or foreground)."""
    if len(xy) == 0 or not mask.any():
        return 0.0
    n, components = cv2.connectedComponents(mask.astype(np.uint8))
    rc = np.floor(np.asarray(xy, np.float64)[:, ::-1] + 0.5).astype(int)
    hit = components[rc[:, 0].clip(0, mask.shape[0] - 1), rc[:, 1].clip(0, mask.shape[1] - 1)]
    covered = float((hit > 0).mean())
    areas = np.bincount(components.ravel(), minlength=n)
    held = np.zeros(n, bool)
    held[hit[hit > 0]] = True
    explained = float(areas[held].sum() / areas[1:].sum())
    return 2 * covered * explained / (covered + explained) if covered + explained else 0.0


def choose_foreground(image: np.ndarray, masks: np.ndarray, locations: np.ndarray | None = None) -> int:
    """The automatic pick among candidate masks (K,H,W). With nucleus locations (float (K,2) x, y px,
    e.g. `nuclei_locations`): the candidate that agrees best with them (`location_consistency`; on the
    DSB and Coelho train images it is within 0.02–0.03 IoU of the best of five, where the edge criterion
    below falls 0.08–0.2 short, `benchmarks/results/machine_labels.md`). Without: the one whose outline
    lies on the strongest image edges (`boundary_contrast`). Ties go to the lower threshold. Returns its
    index."""
    if locations is not None and len(locations):
        return int(np.argmax([location_consistency(m, locations) for m in masks]))
    return int(np.argmax([boundary_contrast(image, m) for m in masks]))

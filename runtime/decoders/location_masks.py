"""Decoder of location-conditioned models (LACSS, Shrestha et al.): location proposals → one mask per
location from the package's instance graph → pasted into one label image.

The main graph gives, at the network's scale, a location score map and sub-pixel offsets on a grid of
`stride` px, plus high-resolution features (F,H,W). Each location picks a window of P×P features around
itself, with a 2-channel encoding of where in the window the location lies; the instance graph turns a
batch of such windows into mask probabilities. Overlaps go to the most probable cell (the shared
candidates decoder). Decodes at the network's scale, running the package's graph "instances".
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from cellpoint.runtime.candidates import candidates_from_patches, paste_candidates
from cellpoint.runtime.decoding import DecodeContext, Decoder, Instances, Params
from cellpoint.runtime.labels import relabel_sequential, remove_small_instances
from cellpoint.runtime.peaks import find_peaks


class LocationMasksParams(Params):
    """Distances, areas and the window in network px. score_threshold: a grid cell proposes a location
    above this. min_distance: of two locations closer than this the weaker goes. mask_threshold: a
    window pixel belongs to the cell where the instance graph's probability reaches this. min_area:
    smaller instances are removed. window: P, the instance graph's window side. stride: grid spacing of
    the score and offset maps. batch: locations per call of the instance graph."""
    score_threshold: float = 0.5
    min_distance: float = 4.0
    mask_threshold: float = 0.5
    min_area: int = 10
    window: int = 48
    stride: int = 4
    batch: int = 64


def decode_locations(score: np.ndarray, offsets: np.ndarray, stride: int, threshold: float = 0.5,
                     min_distance: float = 4.0) -> tuple[np.ndarray, np.ndarray]:
    """Locations of interest from the location proposal outputs.

    score: float (h,w) probability that a location lies in each grid cell; offsets: float (2,h,w),
    (dy, dx) in network px from the grid cell's centre, which is pixel (i·stride + (stride−1)/2,
    j·stride + (stride−1)/2). A grid cell proposes a location when its score exceeds `threshold` and is
    the maximum of its 3×3 neighbourhood; of two proposals closer than `min_distance` px the weaker goes.
    Returns (yx float64 (N,2) network px, scores float32 (N,)), strongest first."""
    score = np.asarray(score, np.float32)
    rc, values = find_peaks(score, threshold, 1)
    if len(rc) == 0:
        return np.zeros((0, 2)), np.zeros(0, np.float32)
    centre = rc * stride + (stride - 1) / 2.0
    yx = centre + np.asarray(offsets, np.float64)[:, rc[:, 0], rc[:, 1]].T
    order = np.argsort(-values, kind="stable")
    yx, values = yx[order], values[order]
    kept = np.zeros(len(yx), bool)
    for k in range(len(yx)):  # greedy, strongest first
        kept[k] = not np.any(np.hypot(*(yx[kept] - yx[k]).T) < min_distance)
    return yx[kept], values[kept].astype(np.float32)


def window_origins(yx: np.ndarray, size: int) -> np.ndarray:
    """Top-left pixel (row, col) of each location's size×size window: round(y) − size//2, round(x) − size//2.
    yx: float (N,2). Returns int64 (N,2)."""
    return (np.floor(np.asarray(yx, np.float64) + 0.5).astype(np.int64) - size // 2).reshape(-1, 2)


def gather_windows(features: np.ndarray, yx: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The instance graph's inputs for N locations.

    features: float32 (F,H,W); yx: float (N,2) network px. Returns windows float32 (N,F,size,size) (zero
    outside the image), encoding float32 (N,2,size,size) with channel 0 = (row − y)/size and channel 1 =
    (col − x)/size for each window pixel, and origins int64 (N,2)."""
    feats = np.asarray(features, np.float32)
    f, h, w = feats.shape
    origins = window_origins(yx, size)
    n = len(origins)
    windows = np.zeros((n, f, size, size), np.float32)
    for k, (y0, x0) in enumerate(origins):
        ys, xs = slice(max(y0, 0), min(y0 + size, h)), slice(max(x0, 0), min(x0 + size, w))
        if ys.start < ys.stop and xs.start < xs.stop:
            windows[k, :, ys.start - y0:ys.stop - y0, xs.start - x0:xs.stop - x0] = feats[:, ys, xs]
    steps = np.arange(size, dtype=np.float64)
    yx = np.asarray(yx, np.float64).reshape(-1, 2)
    rows = (origins[:, 0, None] + steps[None] - yx[:, 0, None]) / size  # (N,size)
    cols = (origins[:, 1, None] + steps[None] - yx[:, 1, None]) / size
    encoding = np.stack([np.broadcast_to(rows[:, :, None], (n, size, size)),
                         np.broadcast_to(cols[:, None, :], (n, size, size))], axis=1).astype(np.float32)
    return windows, encoding, origins


def decode_location_masks(maps: dict[str, np.ndarray], params: LocationMasksParams,
                          run_instances: Callable[[np.ndarray, np.ndarray], np.ndarray]):
    """The LACSS decoder at the network's scale.

    maps: "score" float (h,w) or (1,h,w), "offsets" float (2,h,w), "features" float (F,H,W).
    run_instances(windows (B,F,P,P), encoding (B,2,P,P)) → mask probabilities (B,1,P,P) (the package's
    instance graph), called in batches of `batch` locations.
    Returns (labels uint32 (H,W) ids 1..N, score map float32 (H,W) = the winning mask probability,
    columns {"location_score" float32 (N,), "location_y", "location_x" float64 (N,) network px}, label
    order)."""
    p = params
    features = np.asarray(maps["features"], np.float32)
    shape = features.shape[1:]
    score = np.asarray(maps["score"], np.float32).reshape(np.shape(maps["score"])[-2:])
    yx, scores = decode_locations(score, maps["offsets"], int(p.stride), float(p.score_threshold),
                                  float(p.min_distance))
    size = int(p.window)
    patches = []
    origins = window_origins(yx, size)
    for start in range(0, len(yx), int(p.batch)):
        windows, encoding, _ = gather_windows(features, yx[start:start + int(p.batch)], size)
        probs = np.asarray(run_instances(windows, encoding), np.float32)
        patches += list(probs[:, 0])
    boxes = np.concatenate([origins, origins + size], axis=1)
    pixel, owner, prob = candidates_from_patches(boxes, patches, shape, float(p.mask_threshold))
    labels, winning = paste_candidates(pixel, owner, prob, shape)
    labels = remove_small_instances(labels, int(p.min_area))
    present = np.unique(labels[labels > 0]).astype(np.int64) - 1
    columns = {"location_score": scores[present], "location_y": yx[present, 0], "location_x": yx[present, 1]}
    return relabel_sequential(labels), winning, columns


def _decode(context: DecodeContext, params: LocationMasksParams) -> Instances:
    """The registered form: the main graph's outputs at the network's scale, location columns in image px."""
    maps = context.maps

    def run_instances(windows, encoding):
        return context.run_graph("instances", {"windows": windows, "encoding": encoding})

    labels, score, columns = decode_location_masks(
        {"score": maps["score"][0], "offsets": maps["offsets"], "features": maps["features"]}, params, run_instances)
    columns = {k: v / context.scale if k in ("location_y", "location_x") else v for k, v in columns.items()}
    return Instances(labels, score, columns)


DECODER = Decoder("location_masks", LocationMasksParams, _decode, scale="network", graphs=("instances",))

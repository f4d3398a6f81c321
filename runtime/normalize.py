"""Intensity normalisation and layout shared by training and the runtime."""
from __future__ import annotations

import cv2
import numpy as np

SATURATED_MAX_FRACTION = 0.05
"""normalize_percentile_robust leaves out the pixels at a channel's maximum when they are fewer than this
fraction of the sample (hot pixels, saturated areas); more of them are taken as real signal."""


def to_channels_first(image: np.ndarray, n_channels: int) -> np.ndarray:
    """(H,W) or (H,W,C) array → float32 (n_channels, H, W).

    A single-channel image is repeated when the model wants more channels; a multi-channel image must
    already have exactly n_channels (choose them with `channels=` when reading)."""
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = arr[None]
    elif arr.ndim == 3:
        arr = np.moveaxis(arr, -1, 0)
    else:
        raise ValueError(f"expected a (H,W) or (H,W,C) image, got shape {arr.shape}")
    if arr.shape[0] != n_channels:
        if arr.shape[0] == 1:
            arr = np.repeat(arr, n_channels, 0)
        else:
            raise ValueError(f"the model takes {n_channels} channel(s), the image has {arr.shape[0]}; "
                             "choose them with --channels (channels= in Python)")
    return arr.astype(np.float32, copy=False)


SPIKE_RANGES = 8.0
"""suppress_spikes replaces a pixel by the median of its 3×3 neighbourhood when it differs from it by more
than this many times the channel's robust percentile range (hot or dead camera pixels). No image of the
shared data sets has such a pixel (the largest: 6.0 ranges, DSB; 4.7, LIVECell's phase halos), so clean
images pass unchanged; a pixel at 65,535 in a 12-bit image is 15 or more."""

SPIKE_AT_LIMIT_RANGES = 0.5
"""A pixel at the channel's own maximum (or minimum) is a spike already when it differs from its 3×3 median
by more than this many robust ranges: in an image that fills its bit depth (Usiigaci's 16-bit phase
contrast reaches 65,535 in its halos) a hot pixel is no brighter than the brightest real pixels, only
alone (at most one neighbour also at the limit). A real saturated or black area is left as it is."""


def suppress_spikes(channel: np.ndarray, levels: tuple[float, float] | None = None) -> np.ndarray:
    """A (H,W) channel with its isolated spikes set to their 3×3 median: pixels that differ from that median
    by more than SPIKE_RANGES × the robust 1–99.8 percentile range, or by more than SPIKE_AT_LIMIT_RANGES ×
    it when they sit, alone or in a pair, at the channel's maximum or minimum value (hot or dead pixels).
    levels: the (low, high) range to measure against (a whole image's, for one block of it); default the
    channel's own robust percentiles. Returns float32 (H,W); the input itself when it has none."""
    channel = np.ascontiguousarray(channel, dtype=np.float32)
    lo, hi = levels if levels is not None else robust_percentiles(channel)
    if not hi > lo:
        return channel
    median = cv2.medianBlur(channel, 3)
    deviation = np.abs(channel - median)
    at_limit = ((channel == channel.max()) | (channel == channel.min())).astype(np.uint8)
    # alone or in a pair: the edge and corner pixels of a real saturated (or black) area have more company
    alone = cv2.boxFilter(at_limit, -1, (3, 3), normalize=False, borderType=cv2.BORDER_CONSTANT) <= 2
    spikes = deviation > SPIKE_RANGES * (hi - lo)
    spikes |= (at_limit > 0) & alone & (deviation > SPIKE_AT_LIMIT_RANGES * (hi - lo))
    if not spikes.any():
        return channel
    out = channel.copy()
    out[spikes] = median[spikes]
    return out


def normalize_percentile(image: np.ndarray, low: float = 1.0, high: float = 99.8) -> np.ndarray:
    """Scale each channel of a (C,H,W) array so its `low` and `high` percentiles map to 0 and 1.

    Returns float32 (C,H,W); values outside the percentiles are not clipped. A flat channel becomes 0."""
    arr = np.asarray(image, dtype=np.float32)
    out = np.empty_like(arr)
    for c in range(arr.shape[0]):
        channel = arr[c]
        # percentiles of a subsample: exact enough and much faster on large images
        sample = channel[:: max(1, channel.shape[0] // 512), :: max(1, channel.shape[1] // 512)]
        lo, hi = np.percentile(sample, [low, high])
        out[c] = (channel - lo) / (hi - lo) if hi > lo else 0.0
    return out


def _subsample(channel: np.ndarray) -> np.ndarray:
    """Every k-th row and column of a (H,W) array so that about 512 px or fewer remain a side."""
    return channel[:: max(1, channel.shape[0] // 512), :: max(1, channel.shape[1] // 512)]


def robust_percentiles(channel: np.ndarray, low: float = 1.0, high: float = 99.8) -> tuple[float, float]:
    """The `low` and `high` percentiles of a (H,W) channel that hot pixels and saturated areas do not pull.

    Taken on a subsample (~512 px a side) that is 3×3-median-filtered (removes isolated hot or dead pixels),
    leaving out the pixels equal to its maximum when they are fewer than SATURATED_MAX_FRACTION of it
    (saturated pixels and areas). Returns (lo, hi) in the channel's units."""
    sample = np.ascontiguousarray(_subsample(np.asarray(channel, dtype=np.float32)))
    sample = cv2.medianBlur(sample, 3).ravel()
    top = sample.max()
    at_top = sample == top
    if at_top.sum() < SATURATED_MAX_FRACTION * sample.size:
        sample = sample[~at_top]
    lo, hi = np.percentile(sample, [low, high])
    return float(lo), float(hi)


def normalize_percentile_robust(image: np.ndarray, low: float = 1.0, high: float = 99.8,
                                clip: tuple[float, float] = (-0.5, 1.5)) -> np.ndarray:
    """Scale each channel of a (C,H,W) array so its robust `low` and `high` percentiles (see
    `robust_percentiles`) map to 0 and 1, then clip to `clip`.

    Returns float32 (C,H,W). A flat channel becomes 0. 0.3 % hot pixels or a saturated patch of 0.5 % of the
    area move the other pixels' values by < 0.01 (tests/test_normalize.py)."""
    arr = np.asarray(image, dtype=np.float32)
    out = np.empty_like(arr)
    for c in range(arr.shape[0]):
        lo, hi = robust_percentiles(arr[c], low, high)
        out[c] = (arr[c] - lo) / (hi - lo) if hi > lo else 0.0
    return np.clip(out, float(clip[0]), float(clip[1]), out=out)


NORMALIZATIONS = {
    "percentile": lambda x, pre: normalize_percentile(x, pre.low, pre.high),
    "percentile_robust": lambda x, pre: normalize_percentile_robust(x, pre.low, pre.high, tuple(pre.clip)),
}
"""Normalisations by the card's `inputs[0].preprocessing.kind`: (C,H,W) array, the preprocessing entry →
float32 (C,H,W)."""


def normalize(image: np.ndarray, preprocessing, levels: np.ndarray | None = None) -> np.ndarray:
    """Normalise a (C,H,W) array as the card's preprocessing entry says, after `suppress_spikes` on each
    channel (so hot pixels neither pull the percentiles nor look like tiny cells). levels: float (C,2), each
    channel's (value → 0, value → 1), e.g. a whole image's `channel_levels` for one block of it; default the
    image's own. Returns float32 (C,H,W)."""
    arr = np.asarray(image, dtype=np.float32)
    if levels is None:
        cleaned = np.stack([suppress_spikes(c) for c in arr]) if arr.ndim == 3 else arr
        return NORMALIZATIONS[preprocessing.kind](cleaned, preprocessing)
    out = np.empty_like(arr)
    for c, (lo, hi) in enumerate(np.asarray(levels, np.float64)):
        channel = suppress_spikes(arr[c], (lo, hi))
        out[c] = (channel - lo) / (hi - lo) if hi > lo else 0.0
    clip = getattr(preprocessing, "clip", None)
    return np.clip(out, float(clip[0]), float(clip[1]), out=out) if clip is not None else out


def channel_levels(image: np.ndarray, preprocessing) -> np.ndarray:
    """Each channel's (value → 0, value → 1) as `normalize` computes them for a (C,H,W) array (a whole image,
    or a thumbnail of one), after spike suppression. Returns float64 (C,2)."""
    arr = np.asarray(image, dtype=np.float32)
    levels = []
    for channel in arr:
        cleaned = suppress_spikes(channel)
        if preprocessing.kind == "percentile_robust":
            levels.append(robust_percentiles(cleaned, preprocessing.low, preprocessing.high))
        else:
            levels.append(tuple(np.percentile(_subsample(cleaned), [preprocessing.low, preprocessing.high])))
    return np.asarray(levels, np.float64)

"""Intensity normalisation and layout shared by training and the runtime."""
from __future__ import annotations

import numpy as np


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
                             "select channels explicitly")
    return arr.astype(np.float32, copy=False)


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


NORMALIZATIONS = {"percentile": lambda x, pre: normalize_percentile(x, pre.low, pre.high)}
"""Normalisations by the card's `inputs[0].preprocessing.kind`: (C,H,W) array, the preprocessing entry →
float32 (C,H,W)."""


def normalize(image: np.ndarray, preprocessing) -> np.ndarray:
    """Normalise a (C,H,W) array as the card's preprocessing entry says. Returns float32 (C,H,W)."""
    return NORMALIZATIONS[preprocessing.kind](image, preprocessing)

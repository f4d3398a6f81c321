"""The ranges the runtime accepts for its arguments, checked before any work (each raises OptionError naming
the argument, its value and the range)."""
from __future__ import annotations

import math
from collections.abc import Sequence

from cellpoint.runtime.errors import OptionError

ZOOM_RANGE = (1 / 64, 8.0)
"""How far an image may be rescaled for the network (network px per image px): a given diameter must lie
between the model's diameter / 8 and its diameter × 64. Beyond 8× up, a 2,000² image would need a
16,000² network input; below 1/64, cells of the model's size shrink to under a pixel's worth of context."""

MAX_NETWORK_PIXELS = 2 ** 31
"""The largest network input (px) an image may be rescaled to; larger ones are refused with a message
instead of failing on allocation."""

MAX_CHANNEL_INDEX = 1023

MIN_SIDE = 2
"""Images narrower than this (px) on either side are refused as too small to segment."""


def diameter_range(model_diameter: float) -> tuple[float, float]:
    """(lowest, highest) cell diameter (image px) accepted for a model trained at `model_diameter` px."""
    return model_diameter / ZOOM_RANGE[1], model_diameter / ZOOM_RANGE[0]


def check_diameter(diameter: float, model_diameter: float, what: str = "diameter") -> float:
    """`diameter` (px) as a float if it is finite and within `diameter_range`; else OptionError naming
    `what`."""
    value = _finite_positive(diameter, what, "px")
    lo, hi = diameter_range(model_diameter)
    if not lo <= value <= hi:
        raise OptionError(f"{what} {value:g} px is outside {lo:g}–{hi:g} px (the model's {model_diameter:g} px "
                          f"÷ {ZOOM_RANGE[1]:g} to × {1 / ZOOM_RANGE[0]:g})")
    return value


def check_pixel_size(pixel_size: float, what: str = "pixel size") -> float:
    """µm per pixel as a float if it is finite and positive; else OptionError."""
    return _finite_positive(pixel_size, what, "µm/px")


def min_tile(overlap: int, multiple: int) -> int:
    """The smallest tile (px) that leaves each tile more of its own than it shares: twice the overlap,
    at least overlap + multiple, rounded up to a multiple."""
    need = max(2 * overlap, overlap + multiple)
    return -(-need // multiple) * multiple


def check_tile(tile: int, overlap: int, multiple: int) -> int:
    """`tile` as an int if it is at least `min_tile(overlap, multiple)`; else OptionError."""
    if isinstance(tile, float) and not math.isfinite(tile):
        raise OptionError(f"tile {tile} is not a finite number")
    low = min_tile(overlap, multiple)
    if int(tile) < low:
        raise OptionError(f"tile {int(tile)} px is too small for this model: at least {low} px (its tiles "
                          f"overlap by {overlap} px)")
    return int(tile)


def check_channels(channels: Sequence[int]) -> list[int]:
    """Channel indices as a list of ints, each 0..MAX_CHANNEL_INDEX, at least one; else OptionError."""
    out = list(channels)
    if not out:
        raise OptionError("channels: give at least one channel index")
    for c in out:
        if isinstance(c, bool) or not isinstance(c, int) and not (hasattr(c, "__index__")):
            raise OptionError(f"channels: {c!r} is not an integer index")
        if not 0 <= int(c) <= MAX_CHANNEL_INDEX:
            raise OptionError(f"channels: index {int(c)} is out of range (0 to {MAX_CHANNEL_INDEX})")
    return [int(c) for c in out]


def check_network_size(height: int, width: int, zoom: float, diameter: float) -> None:
    """OptionError when an (height, width) image rescaled by `zoom` would exceed MAX_NETWORK_PIXELS."""
    h, w = round(height * zoom), round(width * zoom)
    if h * w > MAX_NETWORK_PIXELS:
        raise OptionError(f"at diameter {diameter:g} px this {height}×{width} image would be rescaled to {h}×{w} px "
                          f"(more than {MAX_NETWORK_PIXELS:,} px); give a larger diameter")


def _finite_positive(value: float, what: str, unit: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise OptionError(f"{what} {value!r} is not a number") from None
    if not math.isfinite(number) or number <= 0:
        raise OptionError(f"{what} must be a positive finite number of {unit}, got {value!r}")
    return number

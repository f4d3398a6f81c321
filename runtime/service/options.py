"""The query parameters of `POST /segment` → keyword arguments of `Segmenter.segment`."""
from __future__ import annotations

from collections.abc import Mapping

from cellpoint.runtime.errors import OptionError
from cellpoint.runtime.limits import check_channels, check_pixel_size

QUERY_PARAMETERS = ("diameter", "pixel_size", "channels", "refine_diameter")


def segment_options(query: Mapping[str, str]) -> dict:
    """{'diameter': '30', 'pixel_size': '0.65', 'channels': '1,0', 'refine_diameter': 'false'} →
    {'diameter': 30.0, 'pixel_size': 0.65, 'channels': [1, 0], 'refine_diameter': False}; absent parameters
    are left out. The diameter's range depends on the model and is checked by `Segmenter.segment`.
    Raises OptionError naming the parameter for an unknown parameter or a malformed value."""
    unknown = sorted(set(query) - set(QUERY_PARAMETERS))
    if unknown:
        raise OptionError(f"unknown query parameter(s) {', '.join(unknown)} (known: {', '.join(QUERY_PARAMETERS)})")
    out: dict = {}
    if "diameter" in query:
        out["diameter"] = _number(query["diameter"], "diameter")
    if "pixel_size" in query:
        out["pixel_size"] = check_pixel_size(_number(query["pixel_size"], "pixel_size"), "pixel_size")
    if "channels" in query:
        text = query["channels"]
        try:
            out["channels"] = check_channels([int(c) for c in text.split(",")])
        except ValueError as error:
            reason = str(error) if isinstance(error, OptionError) else "expected comma-separated channel indices"
            raise OptionError(f"channels={text!r}: {reason} (e.g. 0 or 1,0)") from None
    if "refine_diameter" in query:
        text = query["refine_diameter"].strip().lower()
        if text not in ("true", "false", "1", "0"):
            raise OptionError(f"refine_diameter={query['refine_diameter']!r}: expected true or false")
        out["refine_diameter"] = text in ("true", "1")
    return out


def _number(text: str, name: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise OptionError(f"{name}={text!r} is not a number") from None

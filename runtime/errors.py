"""The exceptions cellpoint raises on purpose. Each message names the file or package and the reason, so a
caller can print it as one line; catch `CellpointError` to catch them all."""
from __future__ import annotations


class CellpointError(Exception):
    """Root of every error cellpoint raises deliberately (bad package, bad image, unusable device)."""


class PackageError(CellpointError, ValueError):
    """A model package that is missing, incomplete, invalid or fails a checksum; the message names the
    package folder and the card field or file at fault."""


class ImageError(CellpointError, ValueError):
    """An image that cannot be segmented (wrong shape, dtype, empty, NaN); the message says why."""


class DeviceError(CellpointError, RuntimeError):
    """The requested execution device is not available in this onnxruntime build."""


class OptionError(CellpointError, ValueError):
    """An argument outside its valid range (a diameter, pixel size, tile size or channel list); the message
    names the argument, the value and the range."""

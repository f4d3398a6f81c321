"""A request body → the frame as a numpy image, or a FrameError saying in one line why not.

Three forms of frame are taken:
- a TIFF file (one 2-D plane, gray or with a channel axis; the same shape rules as `cellpoint segment`),
- a PNG file (8 or 16 bit; colour order returned as RGB(A)),
- raw pixels: the bytes of a C-ordered (H,W) or (H,W,C) array, little-endian, described by the headers
  `X-Shape: H,W` (or `H,W,C`) and `X-Dtype: uint16` (a numpy dtype name), so that a client needs no image
  library to send one.
A body with `X-Shape` is raw; any other is recognised by its first bytes (the Content-Type is not trusted).
Gray stored as RGB(A) in a TIFF or PNG reads as the gray plane, as `cellpoint segment` reads it."""
from __future__ import annotations

import io
import math
from collections.abc import Mapping

import cv2
import numpy as np
import tifffile

from cellpoint.runtime.errors import ImageError
from cellpoint.runtime.image_io import _check_values, _collapse_gray, _guess_axes, opencv_to_rgb
from cellpoint.runtime.limits import MIN_SIDE

TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # classic TIFF and BigTIFF, both byte orders
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
RAW_DTYPES = ("uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "float64")
_CHANNEL_AXES = "CS"  # tifffile's channel and sample axes
_PNG_CHANNELS = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}  # PNG colour type → channels as decoded (palette → RGB)
_FRAME = "frame"  # how messages from image_io's checks name the request's frame


class FrameError(ImageError):
    """A request body that is not a usable frame. status: the HTTP status to answer with (400, or 413 for a
    frame that decodes to more bytes than allowed)."""

    def __init__(self, reason: str, status: int = 400):
        super().__init__(reason)
        self.status = status


def decode_frame(body: bytes | bytearray | memoryview, headers: Mapping[str, str],
                 max_bytes: int) -> np.ndarray:
    """The frame in a request body as an (H,W) or (H,W,C) array in the file's (or the stated) dtype.

    headers: the request's headers (any letter case); `X-Shape` and `X-Dtype` are read for raw pixels.
    max_bytes: the largest decoded frame; a larger one raises FrameError with status 413 before it is
    decoded. Raises FrameError (status 400) for an empty body, an unknown format, an undecodable file, a
    stack, a wrong raw size, and ImageError for NaN/inf values."""
    lowered = {k.lower(): v for k, v in headers.items()}
    data = memoryview(body).cast("B")
    if len(data) == 0:
        raise FrameError("empty request body: send the frame (a TIFF or PNG file, or raw pixels) as the body")
    if "x-shape" in lowered or "x-dtype" in lowered:
        return decode_raw(data, lowered.get("x-shape"), lowered.get("x-dtype"), max_bytes)
    head = bytes(data[:8])
    if head[:4] in TIFF_MAGIC:
        return decode_tiff(data, max_bytes)
    if head == PNG_MAGIC:
        return decode_png(data, max_bytes)
    raise FrameError("the body is neither a TIFF nor a PNG file; for raw pixels send the headers X-Shape "
                     "(e.g. 512,512) and X-Dtype (e.g. uint16)")


def decode_raw(data: memoryview, shape_text: str | None, dtype_text: str | None, max_bytes: int) -> np.ndarray:
    """Raw little-endian C-ordered pixels → (H,W) or (H,W,C) array of the stated dtype (native byte order).
    FrameError for a missing or malformed header or a body whose size is not prod(shape) × itemsize."""
    if not shape_text or not dtype_text:
        raise FrameError("raw pixels need both headers X-Shape (e.g. 512,512 or 512,512,3) and X-Dtype "
                         f"(one of {', '.join(RAW_DTYPES)})")
    shape = parse_shape(shape_text)
    dtype = parse_dtype(dtype_text)
    expected = math.prod(shape) * dtype.itemsize
    if expected > max_bytes:
        raise FrameError(f"raw frame of shape {shape_text.strip()} {dtype.name} is {_mb(expected)}, over the "
                         f"limit of {_mb(max_bytes)}", 413)
    if len(data) != expected:
        raise FrameError(f"raw frame of shape {','.join(map(str, shape))} {dtype.name} needs {expected} bytes, "
                         f"the body has {len(data)}")
    image = np.frombuffer(data, dtype).reshape(shape)
    return image if dtype.isnative else image.astype(dtype.newbyteorder("="))


def parse_shape(text: str) -> tuple[int, ...]:
    """'512,512' or '512,512,3' → (512, 512) or (512, 512, 3); FrameError otherwise."""
    try:
        shape = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise FrameError(f"X-Shape {text!r} is not comma-separated integers (e.g. 512,512 or 512,512,3)") from None
    if len(shape) not in (2, 3) or min(shape) < 1:
        raise FrameError(f"X-Shape {text!r}: expected height,width or height,width,channels, all positive")
    if min(shape[:2]) < MIN_SIDE:
        raise FrameError(f"X-Shape {text!r}: a frame of {shape[1]}×{shape[0]} px is too small to segment "
                         f"(at least {MIN_SIDE}×{MIN_SIDE} px)")
    return shape


def parse_dtype(text: str) -> np.dtype:
    """A numpy dtype name ('uint16', or '<u2') of RAW_DTYPES, little-endian → np.dtype; FrameError otherwise."""
    try:
        dtype = np.dtype(text.strip())
    except TypeError:
        dtype = None
    if dtype is None or dtype.name not in RAW_DTYPES:
        raise FrameError(f"X-Dtype {text!r} is not one of {', '.join(RAW_DTYPES)}")
    if dtype.byteorder == ">":
        raise FrameError(f"X-Dtype {text!r} is big-endian; send little-endian pixels")
    return dtype.newbyteorder("<")


def decode_tiff(data: memoryview, max_bytes: int) -> np.ndarray:
    """A TIFF file's one 2-D plane → (H,W) or (H,W,C), singleton axes dropped, a channel or sample axis last.
    FrameError for a file tifffile cannot read, a stack of planes, or more than `max_bytes` (413)."""
    try:
        with tifffile.TiffFile(io.BytesIO(data)) as tif:
            series = tif.series
            if not series:
                raise FrameError("the TIFF holds no image")
            first = series[0]
            nbytes = math.prod(first.shape) * np.dtype(first.dtype).itemsize
            if nbytes > max_bytes:
                raise FrameError(f"the TIFF's image is {_mb(nbytes)}, over the limit of {_mb(max_bytes)}", 413)
            if len(series) > 1 and all(len(s.shape) == 2 and s.shape == first.shape for s in series):
                raise FrameError(f"the TIFF is a stack of {len(series)} planes; send one plane per request")
            axes, image = first.axes, np.asarray(first.asarray())
            planar_rgb = axes.startswith("S") and tif.pages[0].photometric == 2 and not (tif.is_imagej or tif.is_ome)
    except FrameError:
        raise
    except Exception as error:  # tifffile raises many types for corrupt files
        raise FrameError(f"cannot read the TIFF ({type(error).__name__}: {error})") from None
    if len(axes) != image.ndim:
        axes = _guess_axes(image.shape)
    if planar_rgb:  # a (3,H,W) array saved as it is looks like this; `cellpoint segment` takes it as planes too
        axes = "Q" + axes[1:]
    keep = [i for i, n in enumerate(image.shape) if n > 1]
    image = image.reshape([image.shape[i] for i in keep])
    axes = "".join(axes[i] for i in keep)
    channel = [i for i, a in enumerate(axes) if a in _CHANNEL_AXES]
    other = [i for i, a in enumerate(axes) if a not in _CHANNEL_AXES]
    if len(other) < 2 or len(channel) > 1:
        raise FrameError(f"the TIFF's image has shape {image.shape} (axes {axes!r}); expected a 2-D (H,W) or "
                         "(H,W,C) frame")
    if len(other) > 2:
        planes = math.prod(image.shape[i] for i in other[:-2])
        raise FrameError(f"the TIFF is a stack of {planes} planes (axes {axes!r}); send one plane per request")
    image = np.ascontiguousarray(np.transpose(image, other + channel))
    _check_values(_FRAME, image)
    return _collapse_gray(image)


def decode_png(data: memoryview, max_bytes: int) -> np.ndarray:
    """A PNG file → (H,W) or (H,W,C) uint8/uint16 with RGB(A) channel order. The size in its header is checked
    against `max_bytes` (413) before decoding; FrameError for a file OpenCV cannot decode."""
    if len(data) < 33:
        raise FrameError("the PNG is truncated (no header)")
    width = int.from_bytes(data[16:20], "big")
    height = int.from_bytes(data[20:24], "big")
    depth, colour = data[24], data[25]
    nbytes = width * height * _PNG_CHANNELS.get(colour, 4) * (2 if depth == 16 else 1)
    if nbytes > max_bytes:
        raise FrameError(f"the PNG's image ({width}×{height} px) is {_mb(nbytes)}, over the limit of "
                         f"{_mb(max_bytes)}", 413)
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None or image.size == 0:
        raise FrameError("cannot decode the PNG (corrupt or truncated)")
    if min(image.shape[:2]) < MIN_SIDE:
        raise FrameError(f"a frame of {image.shape[1]}×{image.shape[0]} px is too small to segment "
                         f"(at least {MIN_SIDE}×{MIN_SIDE} px)")
    return _collapse_gray(opencv_to_rgb(image))


def _mb(nbytes: int) -> str:
    return f"{nbytes / 2 ** 20:.1f} MB"

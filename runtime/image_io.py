"""Read microscopy images into numpy arrays and write results atomically.

Reading:  `read_image(path, channels=None)` -> (H,W) or (H,W,C) array in the file's dtype.
Writing:  `write_labels_tif`, `write_png`, both through `atomic_write` so a crash never leaves a half-written file.
"""
from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np
import tifffile

from cellpoint.runtime.errors import ImageError

TIFF_SUFFIXES = {".tif", ".tiff"}
CV2_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp"}
FOLDER_SUFFIXES = {".tif", ".tiff", ".png", ".jpg", ".jpeg"}
"""The files a folder given as input contributes (images; not recursive)."""
# A trailing axis longer than this is not a channel axis (it is the width of a stack plane).
_MAX_TRAILING_CHANNELS = 16


class ImageReadError(ImageError):
    """An image file could not be read or is not a usable 2-D image; the message names the file and why."""

    def __init__(self, path, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


def read_image(path, channels: Sequence[int] | None = None) -> np.ndarray:
    """Read a 2-D image (TIFF, PNG, JPEG, BMP) as (H,W) or (H,W,C), keeping the file's dtype.

    - TIFF (8/16/32-bit integer or float): multi-page and planar files are read whole; singleton axes are
      dropped; a leading axis of size <= 4 in front of a large last axis is taken as channels and moved last.
    - PNG/JPEG/BMP: colour order is returned as RGB(A), not OpenCV's BGR(A).
    - Gray stored as colour: when `channels` is None and a 3- or 4-channel image has identical first three
      channels (and, for 4 channels, a constant fourth/alpha channel), the single gray plane (H,W) is returned.
      Fluorescence saved as RGB(A) (e.g. DSB 2018) therefore reads as the gray image it is.
    - `channels`: indices into the file's channels (after the moves above, before the gray collapse), in the
      order wanted; one index gives (H,W), several give (H,W,len(channels)).

    Raises ImageReadError (naming the file) for a missing/unreadable file, an unsupported extension,
    an array that is not 2-D or 3-D, zero size, complex data, or NaN/inf values in a float image.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in TIFF_SUFFIXES | CV2_SUFFIXES:
        raise ImageReadError(path, f"unsupported extension {path.suffix!r} "
                                   f"(expected one of {sorted(TIFF_SUFFIXES | CV2_SUFFIXES)})")
    if not path.is_file():
        raise ImageReadError(path, "file not found" if not path.exists() else "not a regular file")
    image = _read_tiff(path) if suffix in TIFF_SUFFIXES else _read_cv2(path)
    _check_values(path, image)
    if channels is not None:
        return _select_channels(path, image, channels)
    return _collapse_gray(image)


def _read_tiff(path: Path) -> np.ndarray:
    """TIFF -> (H,W) or (H,W,C), channels last."""
    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series
            if len(series) > 1 and all(len(x.shape) == 2 and x.shape == series[0].shape for x in series):
                # separate 2-D series of one shape (e.g. pages written one by one): read them as planes
                axes, image = "Q" + series[0].axes, np.stack([x.asarray() for x in series])
            else:
                axes, image = series[0].axes, series[0].asarray()
    except Exception as error:  # tifffile raises many types for corrupt files
        raise ImageReadError(path, f"cannot read TIFF ({type(error).__name__}: {error})") from error
    image = np.asarray(image)
    if image.size == 0:
        raise ImageReadError(path, f"image has zero size (shape {image.shape})")
    if len(axes) != image.ndim:  # tifffile normally keeps these in step; fall back to shape rules if not
        axes = "?" * image.ndim
    keep = [i for i, n in enumerate(image.shape) if n > 1]
    if len(keep) < 2:
        raise ImageReadError(path, f"image has shape {image.shape}; expected a 2-D image")
    image = image.reshape([image.shape[i] for i in keep])
    axes = "".join(axes[i] for i in keep)
    if image.ndim == 3:
        image = _channels_last(path, image, axes)
    elif image.ndim != 2:
        raise ImageReadError(path, f"image has shape {image.shape} (axes {axes!r}); expected 2-D (H,W) "
                                   "or 3-D (H,W,C); z-stacks and time series are not supported")
    return image


def _channels_last(path: Path, image: np.ndarray, axes: str) -> np.ndarray:
    """Move the channel axis of a 3-D TIFF array last, or raise if it looks like a stack."""
    for name in "SC":  # tifffile's sample and channel axes
        if name in axes:
            return np.moveaxis(image, axes.index(name), -1)
    first, last = image.shape[0], image.shape[-1]
    if first <= 4 and last > 4:
        return np.moveaxis(image, 0, -1)
    if last <= _MAX_TRAILING_CHANNELS:
        return image
    raise ImageReadError(path, f"image has shape {image.shape} (axes {axes!r}); {first} planes look like a "
                               "z-stack or time series, expected 2-D (H,W) or (H,W,C)")


def _read_cv2(path: Path) -> np.ndarray:
    """PNG/JPEG/BMP -> (H,W) or (H,W,C) with RGB(A) channel order."""
    try:
        data = np.fromfile(path, dtype=np.uint8)  # imdecode also copes with non-ASCII paths
    except OSError as error:
        raise ImageReadError(path, f"cannot read file ({error})") from error
    if data.size == 0:
        raise ImageReadError(path, "file is empty")
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ImageReadError(path, "cannot decode image (corrupt or not really a "
                                   f"{path.suffix.lstrip('.').upper()} file)")
    if image.size == 0:
        raise ImageReadError(path, f"image has zero size (shape {image.shape})")
    if image.ndim == 3:
        if image.shape[2] == 1:
            image = image[:, :, 0]
        elif image.shape[2] == 3:
            image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        elif image.shape[2] == 4:
            image = cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA)
    if image.ndim not in (2, 3):
        raise ImageReadError(path, f"image has shape {image.shape}; expected 2-D (H,W) or 3-D (H,W,C)")
    return image


def _check_values(path: Path, image: np.ndarray) -> None:
    if np.iscomplexobj(image):
        raise ImageReadError(path, f"complex pixel type {image.dtype} is not supported")
    if image.dtype.kind == "f" and not np.isfinite(image).all():
        n_nan = int(np.isnan(image).sum())
        n_inf = int(np.isinf(image).sum())
        raise ImageReadError(path, f"float image contains {n_nan} NaN and {n_inf} inf values; "
                                   "replace them (e.g. with 0) before segmenting")


def _select_channels(path: Path, image: np.ndarray, channels: Sequence[int]) -> np.ndarray:
    n = 1 if image.ndim == 2 else image.shape[2]
    index = [int(c) for c in channels]
    if not index:
        raise ImageReadError(path, "channels=[] selects nothing; give at least one channel index")
    bad = [c for c in index if not 0 <= c < n]
    if bad:
        raise ImageReadError(path, f"channel(s) {bad} out of range: the image has {n} channel(s) "
                                   f"(valid 0..{n - 1})")
    if image.ndim == 2:
        image = image[:, :, None]
    selected = image[:, :, index]
    return selected[:, :, 0] if len(index) == 1 else np.ascontiguousarray(selected)


def _collapse_gray(image: np.ndarray) -> np.ndarray:
    """(H,W,3|4) with R=G=B (and constant alpha) -> (H,W); anything else unchanged."""
    if image.ndim != 3:
        return image
    if image.shape[2] == 1:
        return image[:, :, 0]
    if image.shape[2] not in (3, 4):
        return image
    gray = image[:, :, 0]
    if not (np.array_equal(gray, image[:, :, 1]) and np.array_equal(gray, image[:, :, 2])):
        return image
    if image.shape[2] == 4:
        alpha = image[:, :, 3]
        if not (alpha == alpha.flat[0]).all():
            return image
    return np.ascontiguousarray(gray)


@contextlib.contextmanager
def atomic_write(path) -> Iterator[Path]:
    """Yield a temporary path beside `path` (same suffix, so writers pick the same format).

    On normal exit the temporary file replaces `path` in one rename; on an exception it is removed and
    `path` is left untouched. The parent directory is created if missing.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{uuid.uuid4().hex[:8]}.tmp{path.suffix}")
    try:
        yield tmp
        if not tmp.exists():
            raise OSError(f"{path}: writer produced no file")
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def write_labels_tif(path, labels: np.ndarray) -> None:
    """Write a (H,W) non-negative integer label image as a zlib-compressed TIFF.

    Stored as uint16 when the largest label is <= 65535, else uint32. Raises ValueError naming `path` for
    non-integer, non-2-D, negative or > uint32 labels.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"{path}: labels must be 2-D (H,W), got shape {labels.shape}")
    if labels.dtype.kind not in "biu":
        raise ValueError(f"{path}: labels must be integers, got dtype {labels.dtype}")
    top = int(labels.max()) if labels.size else 0
    if labels.size and int(labels.min()) < 0:
        raise ValueError(f"{path}: labels must be >= 0, found {int(labels.min())}")
    if top > np.iinfo(np.uint32).max:
        raise ValueError(f"{path}: label {top} does not fit in uint32")
    out = labels.astype(np.uint16 if top <= np.iinfo(np.uint16).max else np.uint32, copy=False)
    with atomic_write(path) as tmp:
        tifffile.imwrite(tmp, out, compression="zlib")


def write_png(path, array: np.ndarray) -> None:
    """Write a PNG atomically. `array`: (H,W) gray, (H,W,3) RGB or (H,W,4) RGBA; uint8, uint16 or bool
    (bool is written as 0/255 uint8). Raises ValueError naming `path` for other shapes or dtypes."""
    array = np.asarray(array)
    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    if array.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"{path}: PNG needs uint8, uint16 or bool data, got {array.dtype}")
    if array.ndim == 3 and array.shape[2] == 3:
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
    elif array.ndim == 3 and array.shape[2] == 4:
        array = cv2.cvtColor(array, cv2.COLOR_RGBA2BGRA)
    elif array.ndim != 2:
        raise ValueError(f"{path}: PNG needs (H,W), (H,W,3) or (H,W,4), got shape {array.shape}")
    ok, encoded = cv2.imencode(".png", array)
    if not ok:
        raise OSError(f"{path}: PNG encoding failed")
    with atomic_write(path) as tmp:
        tmp.write_bytes(encoded.tobytes())

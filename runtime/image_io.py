"""Read microscopy images into numpy arrays and write results atomically.

Reading:  `read_image(path, channels=None)` -> (H,W) or (H,W,C) array in the file's dtype;
          `read_planes(path, channels=None)` -> [(plane label, array)] for z-stacks and time series.
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
from cellpoint.runtime.limits import MIN_SIDE

TIFF_SUFFIXES = {".tif", ".tiff"}
CV2_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp"}
FOLDER_SUFFIXES = {".tif", ".tiff", ".png", ".jpg", ".jpeg"}
"""The files a folder given as input contributes (images; not recursive)."""
# A trailing axis longer than this is not a channel axis (it is the width of a stack plane).
_MAX_TRAILING_CHANNELS = 16
_CHANNEL_AXES = "CS"  # tifffile's channel and sample axes; every other axis but Y, X is a stack axis
_PLANE_PREFIX = {"Z": "z", "T": "t"}  # plane labels: z0, t1, t0z1; other stack axes (I, Q, ...) give p0, p1


class ImageReadError(ImageError):
    """An image file could not be read or is not a usable 2-D image; the message names the file and why."""

    def __init__(self, path, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


def read_image(path, channels: Sequence[int] | None = None) -> np.ndarray:
    """Read a 2-D image (TIFF, PNG, JPEG, BMP) as (H,W) or (H,W,C), keeping the file's dtype.

    - TIFF (8/16/32-bit integer or float): multi-page and planar files are read whole; singleton axes are
      dropped; a channel ('C') or sample ('S', RGB(A)) axis is moved last.
    - Stacks: a TIFF with further axes — Z or T (from ImageJ/OME metadata), or 2+ equal grayscale pages of
      unknown meaning (axes 'I'/'Q', e.g. pages written one by one) — is a z-stack or time series, not
      channels: it raises ImageReadError (use `read_planes`), unless `channels` is given and the stack has
      one stack axis and no channel axis, in which case its planes are taken as the channels.
    - PNG/JPEG/BMP: colour order is returned as RGB(A), not OpenCV's BGR(A).
    - Gray stored as colour: when `channels` is None and a 3- or 4-channel image has identical first three
      channels (and, for 4 channels, a constant fourth/alpha channel), the single gray plane (H,W) is returned.
      Fluorescence saved as RGB(A) (e.g. DSB 2018) therefore reads as the gray image it is.
    - `channels`: indices into the file's channels (after the moves above, before the gray collapse), in the
      order wanted; one index gives (H,W), several give (H,W,len(channels)).

    Raises ImageReadError (naming the file) for a missing/unreadable file, an unsupported extension,
    a stack (see above), zero size, complex data, or NaN/inf values in a float image.
    """
    path = Path(path)
    image, axes, file_axes = _load(path)
    n_stack = _n_stack_axes(image, axes)
    if n_stack:
        if channels is None or n_stack > 1 or image.ndim > 3:
            raise ImageReadError(path, _stack_reason(image, axes, file_axes, channels is not None))
        image = np.moveaxis(image, 0, -1)  # the caller says the planes are channels
    return _finish(path, image, channels)


def read_planes(path, channels: Sequence[int] | None = None) -> list[tuple[str, np.ndarray]]:
    """Read an image, or each plane of a z-stack / time series, as [(label, (H,W) or (H,W,C) array)].

    A stack (see `read_image`) gives one entry per plane in file order, labelled by its position on each
    stack axis: "z0", "z1", ... for Z, "t0", ... for T, "t0z1" for a T×Z stack, "p0", ... for pages of
    unknown meaning. Any other image gives one entry labelled "". `channels` picks among each plane's own
    channels (as in `read_image`); gray stored as colour collapses per plane. Raises ImageReadError as
    `read_image` does."""
    path = Path(path)
    image, axes, _ = _load(path)
    n_stack = _n_stack_axes(image, axes)
    if not n_stack:
        return [("", _finish(path, image, channels))]
    planes = image.reshape((-1,) + image.shape[n_stack:])
    labels = _plane_labels(axes[:n_stack], image.shape[:n_stack])
    return [(label, _finish(path, plane, channels)) for label, plane in zip(labels, planes)]


def _load(path: Path) -> tuple[np.ndarray, str, str]:
    """Check the path, read the file and its values -> (array, axes, the file's axes): the array's axes are
    stack axes first, then 'Y', 'X', then at most one channel axis ('C' or 'S'); singleton axes dropped."""
    suffix = path.suffix.lower()
    if suffix not in TIFF_SUFFIXES | CV2_SUFFIXES:
        raise ImageReadError(path, f"unsupported extension {path.suffix!r} "
                                   f"(expected one of {sorted(TIFF_SUFFIXES | CV2_SUFFIXES)})")
    if not path.is_file():
        raise ImageReadError(path, "file not found" if not path.exists() else "not a regular file")
    if path.stat().st_size == 0:
        raise ImageReadError(path, "file is empty (0 bytes)")
    if suffix in TIFF_SUFFIXES:
        image, axes, file_axes = _read_tiff(path)
    else:
        image = _read_cv2(path)
        axes = file_axes = "YX" if image.ndim == 2 else "YXS"
    _check_values(path, image)
    return image, axes, file_axes


def _finish(path: Path, image: np.ndarray, channels: Sequence[int] | None) -> np.ndarray:
    """(H,W) or (H,W,C) -> the `channels` asked for, or the gray plane of gray stored as colour."""
    if channels is not None:
        return _select_channels(path, image, channels)
    return _collapse_gray(image)


def _read_tiff(path: Path) -> tuple[np.ndarray, str, str]:
    """TIFF -> (array, axes, the file's axes) in tifffile's letters, singleton axes dropped; the array's
    axes are ordered stack axes, 'Y', 'X', channel axis."""
    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series
            if len(series) > 1 and all(len(x.shape) == 2 and x.shape == series[0].shape for x in series):
                # separate 2-D series of one shape (e.g. pages written one by one): a stack of planes
                axes, image = "Q" + series[0].axes, np.stack([x.asarray() for x in series])
            else:
                axes, image = series[0].axes, series[0].asarray()
            if axes.startswith("S") and tif.pages[0].photometric == 2 and not (tif.is_imagej or tif.is_ome):
                # planar RGB with no metadata: a (3,H,W) numpy z-stack saved as it is looks exactly like this
                # (tifffile's default); take it as planes of unknown kind, never silently as colour
                axes = "Q" + axes[1:]
    except Exception as error:  # tifffile raises many types for corrupt files
        raise ImageReadError(path, f"cannot read TIFF ({type(error).__name__}: {error})") from error
    image = np.asarray(image)
    if image.size == 0:
        raise ImageReadError(path, f"image has zero size (shape {image.shape})")
    if len(axes) != image.ndim:  # tifffile normally keeps these in step; fall back to shape rules if not
        axes = _guess_axes(image.shape)
    keep = [i for i, n in enumerate(image.shape) if n > 1]
    if len(keep) < 2:
        raise ImageReadError(path, f"image of shape {image.shape} is too small to segment (at least "
                                   f"{MIN_SIDE}×{MIN_SIDE} px)")
    image = image.reshape([image.shape[i] for i in keep])
    axes = "".join(axes[i] for i in keep)
    channel = [i for i, a in enumerate(axes) if a in _CHANNEL_AXES]
    other = [i for i, a in enumerate(axes) if a not in _CHANNEL_AXES]
    if len(channel) > 1 or len(other) < 2:
        raise ImageReadError(path, f"image has shape {image.shape} (axes {axes!r}); expected 2-D (H,W) or "
                                   "(H,W,C), or a stack of those")
    order = other + channel  # the last two non-channel axes are the plane's rows and columns
    return np.ascontiguousarray(np.transpose(image, order)), "".join(axes[i] for i in order), axes


def _guess_axes(shape: tuple[int, ...]) -> str:
    """Axes letters from the shape alone: a short last axis is channels, leading axes are stack axes."""
    if len(shape) == 2:
        return "YX"
    if shape[-1] <= _MAX_TRAILING_CHANNELS:
        return "Q" * (len(shape) - 3) + "YXS"
    return "Q" * (len(shape) - 2) + "YX"


def _n_stack_axes(image: np.ndarray, axes: str) -> int:
    """How many leading axes of a `_load` array are stack axes (0 for a plain image)."""
    return image.ndim - 2 - int(axes[-1] in _CHANNEL_AXES)


def _stack_kind(stack_axes: str) -> str:
    if "Z" in stack_axes and "T" in stack_axes:
        return "time-lapse z-stack"
    if "Z" in stack_axes:
        return "z-stack"
    if "T" in stack_axes:
        return "time series"
    return "z-stack or time series"


def _stack_reason(image: np.ndarray, axes: str, file_axes: str, channels_given: bool) -> str:
    """One line saying the file is a stack and what to do about it (`axes` as `_load` orders them)."""
    n_stack = _n_stack_axes(image, axes)
    n_planes = int(np.prod(image.shape[:n_stack]))
    head = f"{_stack_kind(axes[:n_stack])} of {n_planes} planes"
    if image.ndim > n_stack + 2:
        return (f"{head} of {image.shape[-1]} channels (axes {file_axes!r}); segment its planes one by one with "
                "--planes (--channels then picks each plane's channels)")
    if channels_given:
        return f"{head} (axes {file_axes!r}) cannot be read as channels; segment its planes one by one with --planes"
    if n_stack > 1 or n_planes > _MAX_TRAILING_CHANNELS:  # these are never channels
        return f"{head} (axes {file_axes!r}); segment its planes one by one with --planes"
    return (f"{head} (axes {file_axes!r}); segment its planes one by one with --planes, or pick channels with "
            "--channels if they are channels")


def _plane_labels(stack_axes: str, shape: tuple[int, ...]) -> list[str]:
    """Labels of the planes of a stack in C order, e.g. axes 'TZ', shape (2,3) -> t0z0, t0z1, ..., t1z2."""
    prefixes = [_PLANE_PREFIX.get(a, "p") for a in stack_axes]
    return ["".join(f"{p}{i}" for p, i in zip(prefixes, index)) for index in np.ndindex(*shape)]


def opencv_to_rgb(image: np.ndarray) -> np.ndarray:
    """An image as OpenCV decodes it ((H,W) or (H,W,C), BGR(A) order) → (H,W) for one channel, else
    (H,W,C) in RGB(A) order."""
    if image.ndim == 3:
        if image.shape[2] == 1:
            return image[:, :, 0]
        if image.shape[2] == 3:
            return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        if image.shape[2] == 4:
            return cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA)
    return image


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
    if min(image.shape[:2]) < MIN_SIDE:
        raise ImageReadError(path, f"image of {image.shape[1]}×{image.shape[0]} px is too small to segment "
                                   f"(at least {MIN_SIDE}×{MIN_SIDE} px)")
    image = opencv_to_rgb(image)
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


_UM_PER_UNIT = {"um": 1.0, "µm": 1.0, "μm": 1.0, "micron": 1.0, "microns": 1.0, "micrometer": 1.0,
                "micrometre": 1.0, "nm": 1e-3, "nanometer": 1e-3, "å": 1e-4, "mm": 1e3, "millimeter": 1e3, "cm": 1e4,
                "m": 1e6, "meter": 1e6}
_MAX_BARE_TIFF_UM = 20.0
"""A plain TIFF resolution (no OME or ImageJ metadata) stating a larger pixel than this (µm; 1270 dpi) is a
print or screen resolution (72, 96, 300 dpi ...) written by default, not a microscope's pixel size."""


def _um_per_unit(unit: str) -> float | None:
    """µm per `unit` (case-insensitive; ImageJ's escaped "\\u00B5m" is µm), or None for a unit that is not a
    length (e.g. "pixel") or not known."""
    import re
    text = re.sub(r"\\u([0-9a-fA-F]{4})", lambda m: chr(int(m.group(1), 16)), str(unit)).strip()
    return _UM_PER_UNIT.get(text) or _UM_PER_UNIT.get(text.lower())


def read_pixel_size(path) -> float | None:
    """The pixel size (µm per pixel, along x) a TIFF states in its metadata, or None: OME-XML PhysicalSizeX
    (with its unit, µm when none is given), else ImageJ's resolution tag with ImageJ's unit (micron, µm
    written as "\\u00B5m", nm, mm, ...; a unit that is not a length, such as "pixel", gives None), else a
    plain TIFF resolution in px per cm or inch when it means at most 20 µm per pixel (larger ones are the
    72/96/300 dpi that non-microscopy software writes). Other files, and files that state nothing usable,
    give None (never an error)."""
    path = Path(path)
    if path.suffix.lower() not in TIFF_SUFFIXES:
        return None
    try:
        with tifffile.TiffFile(path) as tif:
            if tif.is_ome and tif.ome_metadata:
                import re
                size = re.search(r'PhysicalSizeX="([^"]+)"', tif.ome_metadata)
                unit = re.search(r'PhysicalSizeXUnit="([^"]+)"', tif.ome_metadata)
                factor = _um_per_unit(unit.group(1) if unit else "µm")
                if size and factor and float(size.group(1)) > 0:
                    return float(size.group(1)) * factor
            page = tif.pages[0]
            resolution = page.tags.get("XResolution")
            if resolution is None:
                return None
            numerator, denominator = resolution.value
            if not numerator or not denominator:
                return None
            per_unit = denominator / numerator                       # units per pixel
            if tif.is_imagej:
                factor = _um_per_unit((tif.imagej_metadata or {}).get("unit", ""))
                return per_unit * factor if factor else None
            unit = page.tags.get("ResolutionUnit")
            factor = {2: 25400.0, 3: 1e4}.get(int(unit.value) if unit else 0)  # inch, centimetre
            return per_unit * factor if factor and per_unit * factor <= _MAX_BARE_TIFF_UM else None
    except Exception:  # metadata we cannot read is metadata we do not have
        return None


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
        with contextlib.suppress(OSError):  # gone, or the folder refuses: never hide the first error
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

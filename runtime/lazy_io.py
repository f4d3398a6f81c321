"""Images too large to read whole: open them for reading by regions, and write label images by tiles.

`open_lazily(path)` → a `LazyImage` (a context manager) whose `.array` slices like a numpy (H,W) or
(H,W,C) array but reads only the tiles or strips a slice touches: TIFF and BigTIFF (tiled or stripped,
pyramids read at full resolution) through tifffile's zarr store, and OME-Zarr folders (`*.zarr`).
`label_store(folder, shape)` makes an on-disk zarr array of zeros for `blockwise.segment_blockwise` to write
into, and `write_tiled_labels(path, store)` turns it into a tiled, compressed BigTIFF tile by tile."""
from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile

from cellpoint.runtime.image_io import TIFF_SUFFIXES, ImageReadError, atomic_write

TILE = 1024
"""Tile side (px) of the label store's chunks and of the tiled label TIFF."""


def declared_shape(path) -> tuple[int, ...] | None:
    """The shape a TIFF's first series or an OME-Zarr's full-resolution array declares, without reading
    pixels; None for other files or when it cannot be read (the normal reader then says why)."""
    path = Path(path)
    try:
        if path.suffix.lower() in TIFF_SUFFIXES and path.is_file():
            with tifffile.TiffFile(path) as tif:
                return tuple(tif.series[0].shape)
        if is_zarr(path):
            return tuple(_open_zarr_level0(path).shape)
    except Exception:  # noqa: BLE001 - a corrupt file is the normal reader's to report
        return None
    return None


def is_zarr(path) -> bool:
    """Whether `path` is a zarr / OME-Zarr folder."""
    path = Path(path)
    return path.is_dir() and (path.suffix.lower() == ".zarr" or (path / "zarr.json").exists()
                              or (path / ".zattrs").exists())


class _ChannelsLast:
    """A (C,H,W) array presented as (H,W,C): slicing [ys, xs] reads [:, ys, xs] and moves C last."""

    def __init__(self, array):
        self._array = array
        c, h, w = array.shape
        self.shape, self.dtype = (h, w, c), array.dtype

    def __getitem__(self, key):
        ys, xs = key
        return np.moveaxis(np.asarray(self._array[:, ys, xs]), 0, -1)


@dataclass
class LazyImage:
    """An opened large image: `array` (slices as (H,W) or (H,W,C)) and what must be closed after."""
    array: object
    _store: object = None

    def __enter__(self) -> LazyImage:
        return self

    def __exit__(self, *exc) -> None:
        close = getattr(self._store, "close", None)
        if close is not None:
            close()


def open_lazily(path) -> LazyImage:
    """Open a TIFF or OME-Zarr for reading by regions. Singleton axes are dropped; a channel axis ('C' or
    'S') is presented last. Raises ImageReadError naming the file for anything else (stacks: use --planes
    on a smaller file, or split it)."""
    import zarr
    path = Path(path)
    try:
        if is_zarr(path):
            array, axes, store = _open_zarr_level0(path), _zarr_axes(path), None
        else:
            with tifffile.TiffFile(path) as tif:
                axes = tif.series[0].axes
            store = tifffile.imread(path, aszarr=True, level=0)
            opened = zarr.open(store, mode="r")
            array = opened if hasattr(opened, "shape") else opened["0"]
    except Exception as error:  # noqa: BLE001 - many reader errors; one line naming the file
        raise ImageReadError(path, f"cannot open for reading by blocks ({type(error).__name__}: {error})") from None
    keep = [i for i, n in enumerate(array.shape) if n > 1]
    if len(axes) != len(array.shape):
        axes = "YX" if len(keep) == 2 else "?" * len(array.shape)
    kept_axes = "".join(axes[i] for i in keep)
    if kept_axes in ("YX", "YXS", "YXC"):
        view = _Squeezed(array, keep)
    elif kept_axes in ("CYX", "SYX"):
        view = _ChannelsLast(_Squeezed(array, keep))
    else:
        if store is not None:
            store.close()
        raise ImageReadError(path, f"a large image of axes {axes!r} and shape {tuple(array.shape)}: only 2-D "
                                   "images (with or without channels) are read by blocks; split stacks first")
    return LazyImage(view, store)


class _Squeezed:
    """An array with its singleton axes hidden: shape without them; slicing indexes the kept axes."""

    def __init__(self, array, keep: list[int]):
        self._array, self._keep = array, keep
        self.shape = tuple(array.shape[i] for i in keep)
        self.dtype = array.dtype

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        full: list = [0] * len(self._array.shape)
        for i, axis in enumerate(self._keep):
            full[axis] = key[i] if i < len(key) else slice(None)
        return np.asarray(self._array[tuple(full)])


def _open_zarr_level0(path: Path):
    """The full-resolution array of a zarr folder: the array itself, or an OME-Zarr group's first dataset."""
    import zarr
    opened = zarr.open(str(path), mode="r")
    if hasattr(opened, "shape"):
        return opened
    datasets = _multiscales(path, opened)
    return opened[datasets[0]["path"]] if datasets else opened["0"]


def _multiscales(path: Path, group) -> list[dict]:
    attrs = dict(group.attrs)
    ome = attrs.get("ome", attrs)
    scales = ome.get("multiscales") or []
    return scales[0].get("datasets", []) if scales else []


def _zarr_axes(path: Path) -> str:
    """Axes letters (upper case, tifffile's convention) of an OME-Zarr's multiscales, or '' if unknown."""
    import zarr
    opened = zarr.open(str(path), mode="r")
    if hasattr(opened, "shape"):
        return ""
    attrs = dict(opened.attrs)
    scales = attrs.get("ome", attrs).get("multiscales") or [{}]
    axes = scales[0].get("axes") or []
    return "".join((a["name"] if isinstance(a, dict) else str(a)).upper() for a in axes)


def label_store(folder, shape: tuple[int, int]):
    """A new on-disk zarr array of uint32 zeros of (H,W) `shape` in `folder` (replaced if it exists),
    chunked TILE×TILE."""
    import zarr
    folder = Path(folder)
    if folder.exists():
        shutil.rmtree(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    return zarr.create_array(str(folder), shape=shape, chunks=(TILE, TILE), dtype="uint32", fill_value=0)


def _tiles(store) -> Iterator[np.ndarray]:
    """The store's TILE×TILE tiles in row-major order, edge tiles padded with zeros."""
    h, w = store.shape
    for y in range(0, h, TILE):
        for x in range(0, w, TILE):
            tile = np.zeros((TILE, TILE), np.uint32)
            part = np.asarray(store[y:y + TILE, x:x + TILE])
            tile[:part.shape[0], :part.shape[1]] = part
            yield tile


def write_tiled_labels(path, store, cells: int) -> None:
    """Write the label store as a tiled, zlib-compressed BigTIFF at `path` (atomically), uint16 when `cells`
    fit, else uint32, tile by tile (bounded memory)."""
    dtype = np.uint16 if cells <= np.iinfo(np.uint16).max else np.uint32
    tiles = (t.astype(dtype) for t in _tiles(store))
    with atomic_write(path) as tmp:
        tifffile.imwrite(tmp, tiles, shape=tuple(store.shape), dtype=dtype, tile=(TILE, TILE),
                         compression="zlib", bigtiff=True)


def remove_store(folder) -> None:
    shutil.rmtree(folder, ignore_errors=True)

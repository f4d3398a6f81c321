"""The image and its label image as one OME-Zarr store (OME-NGFF 0.4 on zarr v2 by default, or 0.5 on
zarr v3), written with `zarr` alone; napari (with napari-ome-zarr) and `ome-zarr-py` open it with the cells
as a labels layer over the image.

Layout (NGFF "labels" convention):

    <name>.ome.zarr/           image group: multiscales of the image, axes [c,] y, x
        0/, 1/, ...            the image at full resolution, then halved per level (every other pixel)
        labels/                group listing its label images: {"labels": [<label name>]}
            cells/             label group: multiscales + "image-label" (source: the image; properties)
                0/, 1/, ...    uint16 or uint32 labels, the same levels, axes as the image's (c of size 1)

Pyramid levels are added until the longer side fits in one chunk (1024 px). Units: each level's
coordinateTransformations scale is the pixel size in µm (axes y and x have unit "micrometer") when it is
known, else 1 (pixels, no unit); a level halved k times has scale × 2^k. Every array is written chunk by
chunk from any (H,W[,C]) array that slices like numpy (a zarr array, a lazily read TIFF), so the writer
works in bounded memory for images larger than memory too."""
from __future__ import annotations

import contextlib
import math
import os
import shutil
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np

CHUNK = 1024
"""Chunk side (px) of every array, and the size the pyramid stops at."""
NGFF_VERSIONS = ("0.4", "0.5")


@contextlib.contextmanager
def atomic_directory(path) -> Iterator[Path]:
    """Yield a temporary folder beside `path` (named `.<stem>.<hex>.tmp<suffix>`, like `atomic_write`'s
    files, so a dead run's leftovers are found the same way); on normal exit it replaces `path` (an
    existing one is moved aside first, then removed); on an exception it is removed and `path` is left as
    it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{uuid.uuid4().hex[:8]}.tmp{path.suffix}")
    old = path.with_name(f".{path.stem}.{uuid.uuid4().hex[:8]}.tmp{path.suffix}")
    try:
        yield tmp
        if not tmp.is_dir():
            raise OSError(f"{path}: writer produced no folder")
        if path.exists() or path.is_symlink():
            os.replace(path, old)
        os.replace(tmp, path)
    finally:
        for leftover in (tmp, old):
            if leftover.is_dir() and not leftover.is_symlink():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    leftover.unlink()


def level_shapes(height: int, width: int, chunk: int = CHUNK) -> list[tuple[int, int]]:
    """(h, w) of each pyramid level: the full size, then halved (rounding up, as every other pixel is kept)
    until the longer side is at most `chunk`."""
    shapes = [(int(height), int(width))]
    while max(shapes[-1]) > chunk:
        h, w = shapes[-1]
        shapes.append((math.ceil(h / 2), math.ceil(w / 2)))
    return shapes


def write_ome_zarr(path, image, labels, *, pixel_size: float | None = None, label_name: str = "cells",
                   name: str = "", channel_names: Sequence[str] | None = None,
                   properties: Mapping[str, np.ndarray] | None = None, max_label: int | None = None,
                   version: str = "0.4", chunk: int = CHUNK) -> None:
    """Write `image` and its `labels` as an OME-Zarr store at `path` (a folder, replaced atomically).

    image: (H,W) or (H,W,C) array of any real dtype, or anything that slices like one and has .shape and
    .dtype (read chunk by chunk). labels: (H,W) non-negative integer array (or sliceable likewise), 0 =
    background. pixel_size: µm per pixel (the scale of y and x), or None (pixels). label_name: the label
    image's name under labels/. name: the multiscales' name (e.g. the image's stem). channel_names: one per
    channel (default c0, c1, ...), stored in "omero" with a colour and a display range per channel.
    properties: {column: (N,) array} with an "id" column: each id's numeric values as its image-label
    "properties" entry (label-value = the id; non-finite values left out). max_label: the largest label if
    known: labels are stored as uint16 when it fits, else uint32 (a numpy `labels` is measured when it is
    not given; any other is stored as uint32). version: "0.4" (zarr v2, the most widely read) or "0.5"
    (zarr v3).
    Raises ValueError for shapes or dtypes that do not fit."""
    import zarr
    if version not in NGFF_VERSIONS:
        raise ValueError(f"version must be one of {NGFF_VERSIONS}, got {version!r}")
    if len(image.shape) not in (2, 3) or tuple(image.shape[:2]) != tuple(labels.shape) or len(labels.shape) != 2:
        raise ValueError(f"image {tuple(image.shape)} and labels {tuple(labels.shape)} do not fit: expected "
                         "(H,W[,C]) and (H,W)")
    if np.dtype(labels.dtype).kind not in "biu":
        raise ValueError(f"labels must be integers, got {labels.dtype}")
    height, width = (int(n) for n in labels.shape)
    channels = int(image.shape[2]) if len(image.shape) == 3 else 0
    if channel_names is not None and len(channel_names) != max(channels, 1):
        raise ValueError(f"{len(channel_names)} channel names for {max(channels, 1)} channel(s)")
    if max_label is None and isinstance(labels, np.ndarray):
        max_label = int(labels.max()) if labels.size else 0
    fits = max_label is not None and int(max_label) <= np.iinfo(np.uint16).max
    label_dtype = np.uint16 if fits else np.uint32
    shapes = level_shapes(height, width, chunk)
    axes = _axes(channels, pixel_size is not None)
    v2 = version == "0.4"
    with atomic_directory(path) as tmp:
        root = zarr.open_group(str(tmp), mode="w", zarr_format=2 if v2 else 3)
        names = [a["name"] for a in axes]
        _write_levels(root, shapes, image, channels, np.dtype(image.dtype), chunk, v2, names)
        label_group = root.create_group("labels").create_group(label_name)
        _write_levels(label_group, shapes, labels, 1 if channels else 0, np.dtype(label_dtype), chunk, v2, names)
        image_meta = {"multiscales": [_multiscale(name, axes, shapes, pixel_size, channels, version)],
                      "omero": _omero(root[str(len(shapes) - 1)], channels, channel_names)}
        label_meta = {"multiscales": [_multiscale(label_name, axes, shapes, pixel_size, channels, version)],
                      "image-label": {"source": {"image": "../../"}}}
        if properties is not None:
            label_meta["image-label"]["properties"] = _properties(properties)
        if v2:
            label_meta["image-label"]["version"] = version
        _set_attrs(root, image_meta, version)
        _set_attrs(root["labels"], {"labels": [label_name]}, version)
        _set_attrs(label_group, label_meta, version)


def _axes(channels: int, physical: bool) -> list[dict]:
    space = {"type": "space", "unit": "micrometer"} if physical else {"type": "space"}
    return ([{"name": "c", "type": "channel"}] if channels else []) + [dict(name="y", **space),
                                                                       dict(name="x", **space)]


def _multiscale(name: str, axes: list[dict], shapes, pixel_size, channels: int, version: str) -> dict:
    """One multiscales entry: the datasets 0, 1, ... with their scale transformations."""
    size = float(pixel_size) if pixel_size is not None else 1.0
    datasets = []
    for level, _ in enumerate(shapes):
        scale = ([1.0] if channels else []) + [size * 2 ** level] * 2
        datasets.append({"path": str(level), "coordinateTransformations": [{"type": "scale", "scale": scale}]})
    entry = {"name": name, "axes": axes, "datasets": datasets, "type": "nearest"}  # every other pixel
    if version == "0.4":
        entry["version"] = version
    return entry


_COLOURS = ("FFFFFF", "00FF00", "FF00FF", "00FFFF", "FFFF00", "FF0000", "0000FF")


def _omero(smallest, channels: int, names) -> dict:
    """The "omero" block viewers take channel names, colours and display ranges from: each channel's window
    is its range in the smallest level, shown from its 0.5th to its 99.5th percentile."""
    data = np.asarray(smallest[...], np.float64).reshape(max(channels, 1), -1)
    names = [f"c{k}" for k in range(len(data))] if names is None else [str(n) for n in names]
    out = []
    for k, values in enumerate(data):
        low, high = (float(v) for v in np.percentile(values, [0.5, 99.5]))
        out.append({"label": names[k], "color": _COLOURS[k % len(_COLOURS)] if channels else _COLOURS[0],
                    "active": True, "window": {"min": float(values.min()), "max": float(values.max()),
                                               "start": low, "end": high}})
    return {"channels": out, "rdefs": {"model": "color" if channels else "greyscale"}}


def _set_attrs(group, metadata: dict, version: str) -> None:
    """NGFF metadata as the version places it: top-level attributes (0.4) or under "ome" (0.5)."""
    if version == "0.4":
        group.attrs.update(metadata)
    else:
        group.attrs["ome"] = {"version": version, **metadata}


def _properties(table: Mapping[str, np.ndarray]) -> list[dict]:
    """image-label "properties": one dict per id with "label-value" and the numeric, finite columns."""
    ids = np.asarray(table["id"]).tolist()
    columns = [c for c in table if c != "id" and np.asarray(table[c]).dtype.kind in "biuf"]
    out = []
    for k, cell in enumerate(ids):
        entry: dict = {"label-value": int(cell)}
        for column in columns:
            value = np.asarray(table[column])[k].item()
            if not (isinstance(value, float) and not math.isfinite(value)):
                entry[column] = value
        out.append(entry)
    return out


def _write_levels(group, shapes, source, channels: int, dtype: np.dtype, chunk: int, v2: bool,
                  axis_names: list[str]) -> None:
    """Arrays "0", "1", ... of `group`: level 0 copied from `source` ((H,W[,C]), channels moved first; with
    `channels` 1 and a 2-D source, a leading axis of size 1), each further level every other pixel of the
    one before, chunk by chunk."""
    lead = (channels,) if channels else ()
    options = {"chunk_key_encoding": {"name": "v2", "separator": "/"}} if v2 else {"dimension_names": axis_names}
    arrays = []
    for level, (h, w) in enumerate(shapes):
        arrays.append(group.create_array(str(level), shape=lead + (h, w), chunks=(1,) * len(lead) + (chunk, chunk),
                                         dtype=dtype, fill_value=0, **options))
    h, w = shapes[0]
    for y in range(0, h, chunk):
        for x in range(0, w, chunk):
            block = np.asarray(source[y:y + chunk, x:x + chunk])
            if block.ndim == 3:
                block = np.moveaxis(block, -1, 0)
            elif channels:
                block = block[None]
            arrays[0][..., y:y + block.shape[-2], x:x + block.shape[-1]] = block.astype(dtype, copy=False)
    for level in range(1, len(shapes)):
        h, w = shapes[level]
        previous = arrays[level - 1]
        for y in range(0, h, chunk):
            for x in range(0, w, chunk):
                block = np.asarray(previous[..., 2 * y:2 * (y + chunk):2, 2 * x:2 * (x + chunk):2])
                arrays[level][..., y:y + block.shape[-2], x:x + block.shape[-1]] = block

"""A segmentation → the bytes of a response: the label image as TIFF, or the instances with their outlines as
JSON; and the one-line JSON of an error. Which one a client gets is chosen from its Accept header."""
from __future__ import annotations

import io
from typing import TYPE_CHECKING

import msgspec
import numpy as np
import tifffile

from cellpoint.runtime.polygons import instance_polygons

if TYPE_CHECKING:
    from cellpoint.runtime.segmenter import SegmentationResult

TIFF = "image/tiff"
JSON = "application/json"
_ANY = ("*/*", "image/*", "application/*")
_encoder = msgspec.json.Encoder()
# Columns every instance has, written under the names below; any other column of the decoder's table is
# written under its own name.
_TABLE_CORE = {"id", "area", "centroid_y", "centroid_x", "bbox_y0", "bbox_x0", "bbox_y1", "bbox_x1", "score"}


def choose_format(accept: str | None) -> str | None:
    """The response type for an Accept header: TIFF or JSON, whichever the client ranks first (by q, then
    order); JSON for no header or a wildcard; None when the client accepts neither (answer 406)."""
    if not accept or not accept.strip():
        return JSON
    ranked = []
    for position, part in enumerate(accept.split(",")):
        kind, *params = (p.strip() for p in part.split(";"))
        q = 1.0
        for p in params:
            if p.lower().startswith("q="):
                try:
                    q = float(p[2:])
                except ValueError:
                    q = 0.0
        if q > 0:
            ranked.append((-q, position, kind.lower()))
    for _, _, kind in sorted(ranked):
        if kind in (TIFF, "image/tif"):
            return TIFF
        if kind == JSON:
            return JSON
        if kind in _ANY:
            return TIFF if kind == "image/*" else JSON
    return None


def labels_tiff(labels: np.ndarray) -> bytes:
    """A (H,W) label image as the bytes of an uncompressed TIFF: uint16 when its largest id fits, else uint32.
    (Uncompressed: on a local link compressing costs more time than sending the bytes.)"""
    top = int(labels.max()) if labels.size else 0
    out = labels.astype(np.uint16 if top <= np.iinfo(np.uint16).max else np.uint32, copy=False)
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, out)
    return buffer.getvalue()


def instances(result: SegmentationResult) -> list[dict]:
    """One dict per instance, in id order: id, area (px), centroid [y, x], bbox [y0, x0, y1, x1] (half-open),
    score, polygon [[x, y], ...] (the outer boundary along pixel edges, pixel-corner coordinates, clockwise
    on screen; `runtime.polygons`), plus any further column of the decoder's table under its name."""
    table = result.table
    polygons = instance_polygons(result.labels, table)
    extra = [c for c in table if c not in _TABLE_CORE]
    out = []
    for k, i in enumerate(table["id"].tolist()):
        row = {"id": int(i), "area": _number(table["area"][k]),
               "centroid": [_number(table["centroid_y"][k]), _number(table["centroid_x"][k])],
               "bbox": [int(table[c][k]) for c in ("bbox_y0", "bbox_x0", "bbox_y1", "bbox_x1")],
               "score": _number(table["score"][k]),
               "polygon": _vertices(polygons.get(int(i)))}
        for c in extra:
            row[c] = _number(table[c][k])
        out.append(row)
    return out


def result_document(result: SegmentationResult) -> dict:
    """The JSON document of a segmentation (before its timing is added): model, diameter (px) and where it came
    from, conversion, height, width, cells (count), instances (see `instances`)."""
    return {"model": result.model, "diameter": round(float(result.diameter), 3),
            "diameter_source": result.diameter_source, "conversion": result.conversion,
            "height": int(result.labels.shape[0]), "width": int(result.labels.shape[1]),
            "cells": int(len(result.table["id"])), "instances": instances(result)}


def error_json(status: int, reason: str) -> bytes:
    """One line: {"error": reason, "status": status} and a newline."""
    return _encoder.encode({"error": " ".join(str(reason).split()), "status": status}) + b"\n"


def encode(data) -> bytes:
    """Any JSON-able value → JSON bytes."""
    return _encoder.encode(data)


def _number(value) -> int | float:
    value = value.item() if hasattr(value, "item") else value
    return value if isinstance(value, int) else round(float(value), 4)


def _vertices(polygon: np.ndarray | None) -> list[list[int]]:
    """(K,2) corner vertices → [[x, y], ...]; they lie on pixel corners, so integers."""
    if polygon is None or len(polygon) == 0:
        return []
    return np.rint(polygon).astype(np.int64).tolist()

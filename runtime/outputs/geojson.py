"""Cell outlines as GeoJSON that QuPath imports (drag the file onto the image, or File > Import objects).

A FeatureCollection with one Feature per cell:
- "id": a UUID (QuPath keeps it as the object's id), the same for the same image name and label on every run;
- "geometry": a Polygon in pixel coordinates of the full-resolution image, origin at the top-left corner of
  the top-left pixel (QuPath's convention, and our outlines'); the exterior ring counter-clockwise with the
  numbers as they are (RFC 7946's winding; clockwise on screen, where y points down), closed (first vertex
  = last). An outline that touches itself at a corner (a bay of background joined to the outside only
  diagonally) becomes an exterior plus holes that touch it at that corner, which keeps the geometry valid;
- "properties": "objectType" ("detection" by default, or "annotation"), "name" (the label id),
  "measurements" ({name: number}: "label" = the label id, then the table's columns, e.g. score, area_px,
  area_um2), and "classification" ({"name", "color"}) when one is given.

The collection carries a foreign member "cellpoint" with the image name and its pixel size in µm (null when
unknown); QuPath ignores it and takes the pixel size from the image it imports onto."""
from __future__ import annotations

import json
import math
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from cellpoint.runtime.image_io import atomic_write

_NAMESPACE = uuid.UUID("7b0e3c2a-5f1d-4c6e-9a38-2f4d8e1b6c90")
"""The namespace of the features' UUIDs (uuid5 of the image name and the label)."""
OBJECT_TYPES = ("detection", "annotation")


def outline_geometry(vertices, holes: Sequence[np.ndarray] = ()) -> dict:
    """A GeoJSON geometry (dict) of one cell from its rings: a float (K,2) outline (x, y) in pixel-corner
    coordinates (first vertex repeated at the end or not, K ≥ 3 distinct vertices) and the outlines of the
    `holes` in it; or `vertices` a list of rings as `polygons.instance_outlines` gives them (the outlines of
    the cell's parts, winding as the first, then its holes, winding the other way). A Polygon, or a
    MultiPolygon for a cell in parts (or an outline that touches itself and so splits); exteriors
    counter-clockwise and holes clockwise (signed area of the numbers as they are), each hole in the
    smallest exterior around it, rings closed. Whole-number coordinates are written as integers. Raises
    ValueError for fewer than 3 vertices, non-finite values or no area."""
    rings = [_checked(r) for r in (list(vertices) if isinstance(vertices, (list, tuple)) else [vertices])]
    rings += [_checked(h) for h in holes]
    sign = 1.0 if _signed_area(rings[0]) >= 0 else -1.0  # the first outline's winding marks exteriors
    polygons: list[tuple[np.ndarray, list[np.ndarray]]] = []
    loose_holes: list[np.ndarray] = []
    for ring in rings:
        loops = [loop for loop in _simple_loops(ring) if len(loop) >= 3 and _signed_area(loop) != 0]
        if sign * _signed_area(ring) <= 0:
            loose_holes += loops
            continue
        exteriors = sorted((lp for lp in loops if sign * _signed_area(lp) > 0), key=lambda lp: -abs(_signed_area(lp)))
        polygons.append((exteriors[0], [lp for lp in loops if sign * _signed_area(lp) < 0]))
        polygons += [(e, []) for e in exteriors[1:]]
    if not polygons:
        raise ValueError("an outline of zero area")
    for hole in loose_holes:
        point = _point_inside(hole)
        around = [p for p in polygons if _contains(p[0], point)] or polygons[:1]
        min(around, key=lambda p: abs(_signed_area(p[0])))[1].append(hole)
    coordinates = [[_ring(e, +1)] + [_ring(h, -1) for h in hs] for e, hs in polygons]
    if len(coordinates) == 1:
        return {"type": "Polygon", "coordinates": coordinates[0]}
    return {"type": "MultiPolygon", "coordinates": coordinates}


def _checked(vertices) -> np.ndarray:
    """A ring as float64 (K,2) without its closing vertex; ValueError unless finite with ≥ 3 vertices."""
    points = np.asarray(vertices, np.float64)
    if points.ndim != 2 or points.shape[1] != 2 or not np.isfinite(points).all():
        raise ValueError(f"an outline must be a finite (K,2) array, got shape {points.shape}")
    if len(points) > 1 and np.array_equal(points[0], points[-1]):
        points = points[:-1]
    if len(points) < 3:
        raise ValueError(f"an outline needs at least 3 vertices, got {len(points)}")
    return points


def _contains(ring: np.ndarray, point: np.ndarray) -> bool:
    """Whether `point` (x, y) is inside the closed (K,2) `ring` (even-odd ray casting; not for points on it)."""
    x, y = ring[:, 0], ring[:, 1]
    x2, y2 = np.roll(x, -1), np.roll(y, -1)
    crosses = (y > point[1]) != (y2 > point[1])
    with np.errstate(divide="ignore", invalid="ignore"):
        at = x + (point[1] - y) * (x2 - x) / (y2 - y)
    return bool(np.count_nonzero(crosses & (point[0] < at)) % 2)


def _point_inside(ring: np.ndarray) -> np.ndarray:
    """A point strictly inside a ring traced along pixel edges: the centre of the pixel beside the middle
    of its first edge, on the side the ring encloses."""
    start, end = ring[0], ring[1]
    middle, step = (start + end) / 2, (end - start) / np.linalg.norm(end - start)
    beside = middle + 0.5 * np.array([step[1], -step[0]])
    return beside if _contains(ring, beside) else middle - 0.5 * np.array([step[1], -step[0]])


def _simple_loops(points: np.ndarray) -> list[np.ndarray]:
    """Split a closed vertex path at the vertices it visits more than once into loops that visit each vertex
    once (a path with no repeated vertex is one loop)."""
    stack: list[int] = []
    where: dict[tuple[float, float], int] = {}
    loops = []
    for k, vertex in enumerate(map(tuple, points.tolist())):
        if vertex in where:
            start = where[vertex]
            loops.append(points[stack[start:]])
            for j in stack[start + 1:]:
                del where[tuple(points[j].tolist())]
            del stack[start + 1:]
        else:
            where[vertex] = len(stack)
            stack.append(k)
    loops.append(points[stack])
    return loops


def _signed_area(loop: np.ndarray) -> float:
    x, y = loop[:, 0], loop[:, 1]
    return float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2


def _ring(loop: np.ndarray, winding: int) -> list[list[float | int]]:
    """A closed GeoJSON ring with the given winding (+1 counter-clockwise, -1 clockwise, numbers as they are)."""
    if np.sign(_signed_area(loop)) != winding:
        loop = loop[::-1]
    closed = np.vstack([loop, loop[:1]])
    if np.array_equal(closed, np.round(closed)):
        return closed.astype(np.int64).tolist()
    return closed.tolist()


def cell_features(polygons: Mapping[int, np.ndarray | list[np.ndarray]], table: Mapping[str, np.ndarray] | None = None, *,
                  image_name: str = "", object_type: str = "detection",
                  classification: tuple[str, Sequence[int]] | None = None) -> list[dict]:
    """GeoJSON Features (dicts) of cell outlines, ascending label id.

    polygons: {label id: float (K,2) (x, y) vertices in pixel-corner coordinates, or a list [outline,
    *holes] of them (`polygons.instance_outlines`)}. table: {column: (N,)
    array} with an "id" column; every other numeric column becomes a measurement of the cell with that id
    (non-finite values are left out: JSON has no NaN). image_name: part of each feature's UUID (so that the
    cells of different images get different ids). object_type: "detection" (light, many) or "annotation"
    (editable). classification: (class name, (r, g, b) 0-255) or None."""
    if object_type not in OBJECT_TYPES:
        raise ValueError(f"object_type must be one of {OBJECT_TYPES}, got {object_type!r}")
    rows = _rows(table)
    features = []
    for cell in sorted(polygons):
        measurements: dict[str, float | int] = {"label": int(cell)}
        measurements.update(rows.get(int(cell), {}))
        properties: dict = {"objectType": object_type, "name": str(cell), "measurements": measurements}
        if classification is not None:
            name, colour = classification
            properties["classification"] = {"name": str(name), "color": [int(c) for c in colour]}
        features.append({"type": "Feature", "id": str(uuid.uuid5(_NAMESPACE, f"{image_name}/{int(cell)}")),
                         "geometry": outline_geometry(polygons[cell]), "properties": properties})
    return features


def _rows(table: Mapping[str, np.ndarray] | None) -> dict[int, dict[str, float | int]]:
    """{id: {column: value}} of a table's numeric columns other than id, finite values only."""
    if table is None or "id" not in table:
        return {}
    columns = [c for c in table if c != "id" and np.asarray(table[c]).dtype.kind in "biuf"]
    rows: dict[int, dict[str, float | int]] = {}
    for k, cell in enumerate(np.asarray(table["id"]).tolist()):
        row = {}
        for column in columns:
            value = np.asarray(table[column])[k].item()
            if isinstance(value, float) and not math.isfinite(value):
                continue
            row[column] = value
        rows[int(cell)] = row
    return rows


def write_geojson(path, polygons: Mapping[int, np.ndarray | list[np.ndarray]], table: Mapping[str, np.ndarray] | None = None, *,
                  image_name: str = "", pixel_size: float | None = None, object_type: str = "detection",
                  classification: tuple[str, Sequence[int]] | None = None) -> None:
    """Write the cell outlines as a GeoJSON FeatureCollection at `path` (atomically), QuPath's import format;
    arguments as `cell_features`. pixel_size: µm per pixel, recorded in the collection's "cellpoint" member
    (coordinates stay in pixels, as QuPath expects)."""
    collection = {"type": "FeatureCollection",
                  "cellpoint": {"image": image_name, "pixel_size_um": pixel_size, "coordinates": "pixels"},
                  "features": cell_features(polygons, table, image_name=image_name, object_type=object_type,
                                            classification=classification)}
    with atomic_write(Path(path)) as tmp:
        tmp.write_text(json.dumps(collection, separators=(",", ":")))

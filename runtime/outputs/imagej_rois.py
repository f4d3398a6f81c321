"""Cell outlines as an ImageJ/Fiji ROI set: a zip of `.roi` files, one polygon ROI per cell (a composite
ROI for a cell with holes), named by its label id (written with `roifile`). Fiji: File > Open the zip (or drag it) fills the ROI Manager.

ImageJ's polygon coordinates are pixel corners, as ours are (pixel (r, c) covers x ∈ [c, c+1],
y ∈ [r, r+1]), and ImageJ fills a polygon by the pixel-centre rule, so an outline traced along pixel edges
gives back the cell's pixels exactly in Fiji (its mask, area and measurements)."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from cellpoint.runtime.image_io import atomic_write


def polygon_roi(name: str, vertices: np.ndarray, position: int | None = None):
    """One `roifile.ImagejRoi` from float (K,2) vertices (x, y) in pixel-corner coordinates (K ≥ 3, the
    first vertex repeated at the end or not). Whole-number vertices (outlines along pixel edges) make a
    traced ROI with integer coordinates, as Fiji's wand and Analyze Particles make; others a polygon ROI with
    sub-pixel coordinates. position: the stack slice (0-based) it belongs to, or None."""
    from roifile import ROI_OPTIONS, ROI_TYPE, ImagejRoi
    points = np.asarray(vertices, np.float64)
    if points.ndim != 2 or points.shape[1] != 2 or not np.isfinite(points).all():
        raise ValueError(f"ROI {name}: vertices must be a finite (K,2) array, got shape {points.shape}")
    if len(points) > 1 and np.array_equal(points[0], points[-1]):
        points = points[:-1]
    if len(points) < 3:
        raise ValueError(f"ROI {name}: a polygon needs at least 3 vertices, got {len(points)}")
    whole = np.array_equal(points, np.round(points)) and points.min() >= 0 and points.max() <= 32767
    roi = ImagejRoi.frompoints(points.astype(np.int32) if whole else points, name=name, position=position)
    roi.roitype = ROI_TYPE.TRACED if whole else ROI_TYPE.POLYGON
    roi.options &= ~(ROI_OPTIONS.OVERLAY_BACKGROUNDS | ROI_OPTIONS.OVERLAY_LABELS)
    if whole:  # the bounds of a corner-coordinate outline end at its largest corner, not one past it
        roi.right, roi.bottom = int(points[:, 0].max()), int(points[:, 1].max())
    return roi


def composite_roi(name: str, rings, position: int | None = None):
    """One composite `roifile.ImagejRoi` (ImageJ's ShapeRoi) from whole-number (K,2) rings (x, y) in
    pixel-corner coordinates: the outline first, then the outlines of its holes. Its path (MOVETO, LINETO …,
    CLOSE per ring) is in image coordinates; ImageJ fills it by the even-odd rule, so the holes stay empty."""
    from roifile import ROI_TYPE
    roi = polygon_roi(name, rings[0], position)
    path: list[float] = []
    for ring in rings:
        ring = np.asarray(ring, np.float64)
        path += [0, *ring[0]]
        for vertex in ring[1:]:
            path += [1, *vertex]
        path.append(4)
    roi.roitype = ROI_TYPE.RECT  # a composite ROI is a RECT with shape data
    roi.multi_coordinates = np.asarray(path, np.float32)
    roi.shape_roi_size = len(path)
    roi.integer_coordinates = roi.subpixel_coordinates = None
    roi.n_coordinates = 0
    return roi


def write_roi_zip(path, polygons: Mapping[int, np.ndarray | list[np.ndarray]], position: int | None = None) -> None:
    """Write `polygons` ({label id: float (K,2) (x, y) vertices in pixel-corner coordinates, or a list
    [outline, *holes] of them, e.g. from `polygons.instance_outlines`}) as an ImageJ ROI zip at `path`,
    atomically: one ROI per id in ascending order, named by the id (entry `<id>.roi`); a polygon (traced)
    ROI, or a composite ROI for a cell with holes. An empty mapping gives a zip with no entries. position: the
    stack slice (0-based) the ROIs belong to, or None for a 2-D image. Raises ValueError for a polygon of
    fewer than 3 vertices."""
    from roifile import roiwrite

    def roi(cell):
        rings = polygons[cell]
        if isinstance(rings, np.ndarray):
            return polygon_roi(str(cell), rings, position)
        return (polygon_roi(str(cell), rings[0], position) if len(rings) == 1
                else composite_roi(str(cell), rings, position))
    rois = [roi(cell) for cell in sorted(polygons)]
    with atomic_write(Path(path)) as tmp:
        if rois:
            roiwrite(tmp, rois, mode="w")
        else:
            import zipfile
            zipfile.ZipFile(tmp, "w").close()

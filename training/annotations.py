"""Read and write the annotations users bring: COCO instance masks, label images, point lists.

Pixel coordinates everywhere: x = column, y = row, pixel centres at integer coordinates
(so pixel (row r, col c) covers x in [c-0.5, c+0.5], y in [r-0.5, r+0.5]).
"""
from __future__ import annotations

import csv
import json
import warnings
from pathlib import Path

import numpy as np
from pycocotools import mask as mask_utils

from cellpoint.runtime.image_io import ImageReadError, atomic_write, read_image


def coco_label_image(coco: dict, image_id) -> np.ndarray:
    """Paint one image's COCO instance annotations into a label image.

    coco: a loaded COCO dict (images + annotations); segmentations may be polygons, uncompressed RLE or
    compressed RLE. Returns uint32 (H,W): 0 = background, instance k (1..N) = the k-th annotation of this
    image in file order; later annotations overwrite earlier ones where they overlap. Crowd annotations
    (iscrowd=1) are skipped. Raises KeyError if image_id is not in coco["images"].
    """
    info = next((im for im in coco["images"] if im["id"] == image_id), None)
    if info is None:
        raise KeyError(f"image id {image_id!r} not found in the COCO images")
    h, w = int(info["height"]), int(info["width"])
    labels = np.zeros((h, w), np.uint32)
    k = 0
    for ann in coco["annotations"]:
        if ann["image_id"] != image_id or ann.get("iscrowd", 0):
            continue
        k += 1
        labels[_decode_segmentation(ann["segmentation"], h, w)] = k
    return labels


def _decode_segmentation(segmentation, h: int, w: int) -> np.ndarray:
    """COCO segmentation (polygon list, RLE dict with list or string counts) -> bool (H,W)."""
    if isinstance(segmentation, list):
        polygons = [p for p in segmentation if len(p) >= 6]  # pycocotools needs >= 3 vertices
        if not polygons:
            return np.zeros((h, w), bool)
        rle = mask_utils.merge(mask_utils.frPyObjects(polygons, h, w))
    elif isinstance(segmentation.get("counts"), list):
        rle = mask_utils.frPyObjects(segmentation, h, w)
    else:
        rle = dict(segmentation)
        if isinstance(rle["counts"], str):
            rle["counts"] = rle["counts"].encode("ascii")
    with warnings.catch_warnings():  # pycocotools' decode trips a harmless numpy 2 copy-keyword warning
        warnings.filterwarnings("ignore", message=".*copy keyword", category=DeprecationWarning)
        return mask_utils.decode(rle).astype(bool)


def read_label_image(path) -> np.ndarray:
    """Read an instance label image (TIFF/PNG; 0 = background) -> uint32 (H,W).

    Accepts 8/16/32-bit integer (and bool) data. Raises ImageReadError naming the file if the data are
    float, negative, or not a single 2-D plane.
    """
    image = read_image(path)
    if image.ndim != 2:
        raise ImageReadError(path, f"label image must be 2-D (H,W), got shape {image.shape}")
    if image.dtype.kind not in "biu":
        raise ImageReadError(path, f"label image must hold integers, got dtype {image.dtype}")
    if image.dtype.kind == "i" and image.size and int(image.min()) < 0:
        raise ImageReadError(path, f"label image has negative values (min {int(image.min())})")
    return image.astype(np.uint32)


def read_points(path) -> tuple[np.ndarray, np.ndarray | None]:
    """Read point annotations -> (xy float64 (N,2), labels int64 (N,) or None).

    CSV: rows `x,y` or `x,y,label`, optional header line. JSON: `[{"x":..,"y":..,"label":..}, ...]` (label
    optional) or `{"points": [[x,y], ...], "labels": [...]}` (labels optional). Raises ValueError naming the
    file and the reason for malformed content.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: points file not found")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        xy, labels = _points_from_csv(path)
    elif suffix == ".json":
        xy, labels = _points_from_json(path)
    else:
        raise ValueError(f"{path}: unsupported points file type {path.suffix!r} (expected .csv or .json)")
    if not np.isfinite(xy).all():
        raise ValueError(f"{path}: point coordinates must be finite numbers")
    return xy, labels


def _points_from_csv(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    with open(path, newline="") as f:
        rows = [r for r in csv.reader(f) if r and any(c.strip() for c in r)]
    if rows and not _is_number(rows[0][0]):
        header = [c.strip().lower() for c in rows[0]]
        if header[:2] != ["x", "y"]:
            raise ValueError(f"{path}: CSV header must start with x,y (got {','.join(rows[0])})")
        rows = rows[1:]
    if not rows:
        return np.zeros((0, 2), np.float64), None
    widths = {len(r) for r in rows}
    if widths - {2, 3} or len(widths) > 1:
        raise ValueError(f"{path}: every CSV row must have 2 (x,y) or 3 (x,y,label) columns; "
                         f"found rows with {sorted(widths)} columns")
    try:
        values = np.array([[float(c) for c in r] for r in rows], np.float64)
    except ValueError as error:
        raise ValueError(f"{path}: non-numeric value in CSV ({error})") from None
    xy = values[:, :2]
    labels = _as_int_labels(path, values[:, 2]) if widths == {3} else None
    return np.ascontiguousarray(xy, np.float64), labels


def _points_from_json(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: invalid JSON ({error})") from None
    try:
        if isinstance(data, list):
            xy = np.array([[float(p["x"]), float(p["y"])] for p in data], np.float64).reshape(-1, 2)
            has = ["label" in p for p in data]
            if any(has) and not all(has):
                raise ValueError("either every point or no point must have a 'label'")
            labels = [p["label"] for p in data] if data and all(has) else None
        elif isinstance(data, dict) and "points" in data:
            xy = np.array(data["points"], np.float64).reshape(-1, 2)
            labels = data.get("labels")
        else:
            raise ValueError('expected a list of {"x","y"} objects or {"points": [[x,y],...]}')
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{path}: malformed points JSON ({error})") from None
    if labels is not None:
        labels = _as_int_labels(path, np.asarray(labels, np.float64))
        if len(labels) != len(xy):
            raise ValueError(f"{path}: {len(labels)} labels for {len(xy)} points")
    return xy, labels


def _as_int_labels(path: Path, values: np.ndarray) -> np.ndarray:
    if not np.all(np.isfinite(values)) or not np.all(values == np.round(values)):
        raise ValueError(f"{path}: point labels must be integers")
    return values.astype(np.int64)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def write_points_csv(path, xy: np.ndarray, labels: np.ndarray | None = None) -> None:
    """Write points atomically as CSV with header `x,y` or `x,y,label`. xy: (N,2) x=column, y=row."""
    xy = np.asarray(xy, np.float64).reshape(-1, 2)
    if labels is not None:
        labels = np.asarray(labels).reshape(-1)
        if len(labels) != len(xy):
            raise ValueError(f"{path}: {len(labels)} labels for {len(xy)} points")
    with atomic_write(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["x", "y"] if labels is None else ["x", "y", "label"])
        for i, (x, y) in enumerate(xy):
            row = [_fmt(x), _fmt(y)]
            writer.writerow(row if labels is None else row + [int(labels[i])])


def _fmt(value: float) -> str:
    return repr(float(value))  # shortest text that reads back to the same float


def write_json(path, obj, indent: int | None = 2) -> None:
    """Write `obj` as JSON atomically (numpy scalars and arrays are converted); indent=None is compact."""
    text = json.dumps(obj, indent=indent, default=_json_default)
    with atomic_write(path) as tmp:
        tmp.write_text(text + "\n")


def _json_default(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")

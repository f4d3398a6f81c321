"""Open a `cellpoint segment` output folder in napari: each `<stem>_labels.tif` as a Labels layer, its
`<stem>_instances.csv` as the layer's features (one row per cell; napari matches rows to labels by the
`index` column, a copy of `id`).

No napari import: the functions return napari's plain "layer data tuples" (data, keyword arguments,
layer type), so they can be used and tested without a viewer."""
from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import numpy as np
import tifffile

LABELS_SUFFIX = "_labels.tif"
TABLE_SUFFIX = "_instances.csv"
INTEGER_COLUMNS = ("id", "area", "bbox_y0", "bbox_x0", "bbox_y1", "bbox_x1")
"""Columns of the runtime's instance table that hold integers; every other numeric column is read as float
(a CSV writes the float 33.0 as 33)."""

LayerData = tuple[np.ndarray, dict, str]


def labels_files(path: str | Path) -> list[Path]:
    """The label images `path` stands for: a folder's `*_labels.tif` (sorted, not recursive, hidden files
    left out), or `path` itself when it is one. Empty for anything else."""
    path = Path(path)
    if path.is_dir():
        return sorted(p for p in path.iterdir()
                      if p.name.endswith(LABELS_SUFFIX) and p.is_file() and not p.name.startswith("."))
    if path.is_file() and path.name.endswith(LABELS_SUFFIX):
        return [path]
    return []


def get_reader(path: str | list[str]) -> Callable[[str | list[str]], list[LayerData]] | None:
    """napari's reader hook: `read_outputs` when `path` (or each of a list of paths) is a folder holding
    `*_labels.tif` files or is such a file, else None (napari then asks another reader)."""
    paths = [path] if isinstance(path, (str, Path)) else list(path)
    if not paths or not all(labels_files(p) for p in paths):
        return None
    return read_outputs


def read_outputs(path: str | list[str]) -> list[LayerData]:
    """Every label image of `path` (a folder, a `<stem>_labels.tif`, or a list of them) as
    (labels, {"name": stem, "features": table, "metadata": {...}}, "labels"), in name order."""
    paths = [path] if isinstance(path, (str, Path)) else list(path)
    return [read_labels(file) for p in paths for file in labels_files(p)]


def read_labels(file: str | Path) -> LayerData:
    """One `<stem>_labels.tif` → a Labels layer data tuple named `<stem>`, with the table of
    `<stem>_instances.csv` beside it as features (none when the CSV is missing)."""
    file = Path(file)
    stem = file.name[: -len(LABELS_SUFFIX)]
    labels = tifffile.imread(file)
    table_path = file.with_name(stem + TABLE_SUFFIX)
    kwargs: dict = {"name": stem, "metadata": {"cellpoint": {"labels": str(file)}}}
    if table_path.is_file():
        table = read_table(table_path)
        if "id" in table:
            table = {"index": table["id"].astype(np.int64), **table}
        kwargs["features"] = table
        kwargs["metadata"]["cellpoint"]["table"] = str(table_path)
    return labels, kwargs, "labels"


def read_table(path: str | Path) -> dict[str, np.ndarray]:
    """A CSV with a header line → {column: numpy array}: int64 for the INTEGER_COLUMNS, float64 for other
    columns of numbers, str for the rest."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        return {}
    header, body = rows[0], rows[1:]
    columns = list(zip(*body)) if body else [()] * len(header)
    return {name: _column(values, name in INTEGER_COLUMNS) for name, values in zip(header, columns)}


def _column(values: tuple[str, ...], integer: bool) -> np.ndarray:
    """CSV strings → int64 (when `integer` and they all are), float64 (when they are all numbers or empty;
    empty → NaN), else str."""
    if integer:
        try:
            return np.array([int(v) for v in values], dtype=np.int64)
        except ValueError:
            pass
    try:
        return np.array([float(v) if v.strip() else np.nan for v in values], dtype=np.float64)
    except ValueError:
        return np.array(values, dtype=str)

"""Corrections as clicks, without napari: one click per predicted cell, what the user changed, what it cost,
and the label files `cellpoint train` reads (`<stem>_points.csv`, `<stem>_boxpoints.json`,
`<stem>_corrections.json`).

Coordinates: napari's (row, col) data coordinates in; files hold x = column, y = row, pixel centres at
integer coordinates (as `cellpoint labels` writes them). Costs per Point2Mask's table 1: a click 1 s, a
box 7 s + 0.9 s per click in it; a deletion 0.5 s; an accepted prediction nothing."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from cellpoint.runtime.image_io import atomic_write
from cellpoint.runtime.labels import interior_points

CLICK_S, DELETE_S, BOX_S, BOX_CLICK_S = 1.0, 0.5, 7.0, 0.9
AUTO_CLICKS = 6  # clicks an accepted predicted cell's box gets from its predicted mask (free)


def predicted_clicks(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One click per predicted cell, inside it (`runtime.labels.interior_points`). labels: (H,W) ints.
    Returns ids int64 (N,) and points float64 (N,2) row/col."""
    ids, rc = interior_points(labels)
    return ids, rc.astype(np.float64)


def _key(points: np.ndarray) -> set[tuple[float, float]]:
    return {(round(float(r), 3), round(float(c), 3)) for r, c in np.asarray(points, np.float64).reshape(-1, 2)}


def correction_counts(predicted: np.ndarray, current: np.ndarray) -> tuple[int, int]:
    """(added, deleted): points of `current` not among `predicted`, and predicted ones no longer there.
    Both (N,2) row/col; a moved point counts as one deletion and one click."""
    before, after = _key(predicted), _key(current)
    return len(after - before), len(before - after)


def annotation_seconds(added: int, deleted: int, boxes_drawn: int = 0, box_clicks: int = 0) -> float:
    """The estimated annotation time (s) of a correction: clicks added, deletions, boxes drawn and the
    clicks inside drawn boxes (counted once, at the box rate, not as added clicks)."""
    return (CLICK_S * (added - box_clicks) + DELETE_S * deleted + BOX_S * boxes_drawn
            + BOX_CLICK_S * box_clicks)


def write_points_csv(path, points_rc: np.ndarray) -> Path:
    """Write clicks (N,2) row/col as `<stem>_points.csv` (header x,y), atomically. Returns the path."""
    path = Path(path)
    with atomic_write(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["x", "y"])
        for r, c in np.asarray(points_rc, np.float64).reshape(-1, 2):
            writer.writerow([repr(float(c)), repr(float(r))])
    return path


def box_of(labels: np.ndarray, cell_id: int) -> list[float]:
    """A cell's box [x0, y0, x1, y1] on pixel edges (x0 = min column − 0.5), as `cellpoint labels` draws it."""
    rows, cols = np.nonzero(labels == cell_id)
    return [float(cols.min()) - 0.5, float(rows.min()) - 0.5, float(cols.max()) + 0.5, float(rows.max()) + 0.5]


def box_cells(boxes: list[list[float]], points_rc: np.ndarray, point_is_cell: np.ndarray,
              predicted: np.ndarray | None = None, predicted_boxes: dict | None = None,
              seed: int = 0) -> list[dict]:
    """The cells of `<stem>_boxpoints.json`: for each box [x0,y0,x1,y1] the clicks inside it with their
    labels (1 cell, 0 background). A box that is still a predicted cell's (predicted_boxes: {id: box} of
    the `predicted` label image) also gets AUTO_CLICKS clicks spread over it, labelled by that cell's
    predicted mask: accepting a prediction accepts its outline. Boxes without any click are left out."""
    rng = np.random.default_rng(seed)
    points = np.asarray(points_rc, np.float64).reshape(-1, 2)
    labels = np.asarray(point_is_cell).astype(np.int64).reshape(-1)
    by_box = {tuple(np.round(b, 3)): cid for cid, b in (predicted_boxes or {}).items()}
    cells = []
    for box in boxes:
        x0, y0, x1, y1 = box
        inside = (points[:, 1] >= x0) & (points[:, 1] <= x1) & (points[:, 0] >= y0) & (points[:, 0] <= y1)
        xy = points[inside][:, ::-1].tolist()
        marks = labels[inside].tolist()
        cell_id = by_box.get(tuple(np.round(box, 3)))
        if cell_id is not None and predicted is not None:
            extra = np.stack([rng.uniform(x0, x1, AUTO_CLICKS), rng.uniform(y0, y1, AUTO_CLICKS)], 1)
            pix = np.clip(np.round(extra).astype(int), 0, np.array(predicted.shape[::-1]) - 1)
            xy += extra.tolist()
            marks += (predicted[pix[:, 1], pix[:, 0]] == cell_id).astype(int).tolist()
        if xy:
            cells.append({"id": len(cells) + 1, "box": [float(v) for v in box], "points": xy, "point_labels": marks})
    return cells


def write_boxpoints_json(path, shape: tuple[int, int], cells: list[dict]) -> Path:
    """Write `<stem>_boxpoints.json` ({height, width, n_points, cells}), atomically. Returns the path."""
    path = Path(path)
    n_points = max((len(c["points"]) for c in cells), default=1)
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps({"height": int(shape[0]), "width": int(shape[1]), "n_points": n_points,
                                   "cells": cells}) + "\n")
    return path


def write_record(path, record: dict) -> Path:
    """Write `<stem>_corrections.json` (clicks, deletions, boxes, seconds, model, image), atomically."""
    path = Path(path)
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(record, indent=1) + "\n")
    return path

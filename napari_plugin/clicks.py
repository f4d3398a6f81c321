"""Corrections as clicks, without napari: one click per predicted cell, what the user changed, what it cost,
and the label files `cellpoint train` reads (`<stem>_points.csv`, `<stem>_boxpoints.json`,
`<stem>_corrections.json`).

Coordinates: napari's (row, col) data coordinates in; files hold x = column, y = row, pixel centres at
integer coordinates (as `cellpoint labels` writes them); boxes [x0, y0, x1, y1] lie on pixel edges
(x0 = min column − 0.5). Costs per Point2Mask's table 1: a click 1 s, a box 7 s + 0.9 s per click in it; a
deletion 0.5 s; an accepted prediction nothing."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from cellpoint.runtime.image_io import atomic_write
from cellpoint.runtime.labels import interior_points

CLICK_S, DELETE_S, BOX_S, BOX_CLICK_S = 1.0, 0.5, 7.0, 0.9
AUTO_CLICKS = 6  # clicks an accepted predicted cell's box gets from its predicted mask (free)
DECIMALS = 3     # coordinates equal to this many decimals are the same point (or box)


# ------------------------------------------------------------------------------------------- predicted

def predicted_clicks(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One click per predicted cell, inside it: the pixel farthest from its border
    (`runtime.labels.interior_points`). labels: (H,W) ints. Returns ids int64 (N,) and points float64 (N,2)
    row/col."""
    ids, rc = interior_points(labels)
    return ids, rc.astype(np.float64)


def cell_boxes(labels: np.ndarray) -> dict[int, list[float]]:
    """Each cell's box {id: [x0, y0, x1, y1]} (px) on pixel edges (x0 = min column − 0.5), as `cellpoint
    labels` draws them, in ascending id order. labels: (H,W) ints, 0 background."""
    rows, cols = np.nonzero(labels)
    ids = np.asarray(labels)[rows, cols].astype(np.int64)
    unique, index = np.unique(ids, return_inverse=True)
    lo = np.full((len(unique), 2), np.iinfo(np.int64).max)
    hi = np.full((len(unique), 2), -1)
    rc = np.stack([rows, cols], 1).astype(np.int64)
    np.minimum.at(lo, index, rc)
    np.maximum.at(hi, index, rc)
    return {int(i): [float(a[1]) - 0.5, float(a[0]) - 0.5, float(b[1]) + 0.5, float(b[0]) + 0.5]
            for i, a, b in zip(unique, lo, hi)}


def point_keys(points_rc: np.ndarray) -> list[tuple[float, float]]:
    """Each (row, col) point of (N,2) as a hashable key, rounded to DECIMALS (napari may store a point
    in float32)."""
    return [(round(float(r), DECIMALS), round(float(c), DECIMALS))
            for r, c in np.asarray(points_rc, np.float64).reshape(-1, 2)]


def box_key(box) -> tuple[float, ...]:
    """A box [x0, y0, x1, y1] as a hashable key, rounded to DECIMALS."""
    return tuple(round(float(v), DECIMALS) for v in box)


def predicted_cell_of(points_rc: np.ndarray, predicted_ids: np.ndarray, predicted_rc: np.ndarray) -> np.ndarray:
    """For each click of (N,2) row/col, the predicted cell it is the click of (its id, when it is still
    where Predict put it), else 0 (a click the user added or moved). Returns int64 (N,)."""
    of = dict(zip(point_keys(predicted_rc), (int(i) for i in predicted_ids)))
    return np.array([of.get(k, 0) for k in point_keys(points_rc)], np.int64)


# --------------------------------------------------------------------------------------------- counts

def correction_counts(predicted: np.ndarray, current: np.ndarray) -> tuple[int, int]:
    """(added, deleted): points of `current` not among `predicted`, and predicted ones no longer there.
    Both (N,2) row/col; a moved point counts as one deletion and one click."""
    before, after = set(point_keys(predicted)), set(point_keys(current))
    return len(after - before), len(before - after)


def inside_box(points_rc: np.ndarray, box) -> np.ndarray:
    """Which (row, col) points of (N,2) lie in a box [x0, y0, x1, y1] (edges included). Returns bool (N,)."""
    p = np.asarray(points_rc, np.float64).reshape(-1, 2)
    x0, y0, x1, y1 = box
    return (p[:, 1] >= x0) & (p[:, 1] <= x1) & (p[:, 0] >= y0) & (p[:, 0] <= y1)


def box_correction_counts(predicted_boxes: dict[int, list[float]], current_boxes: list[list[float]],
                          predicted_ids: np.ndarray, predicted_rc: np.ndarray, current_rc: np.ndarray) -> dict:
    """The edits of a box + clicks correction. predicted_boxes {cell id: [x0,y0,x1,y1]} and the
    predicted clicks (ids (N,), (N,2) row/col) as Predict made them; current_boxes and current_rc (M,2) as
    they are now. A deleted box is one deletion (its click goes with it for free); a predicted click
    deleted from a box that is still there is another. Returns {"clicks_added", "deleted", "boxes_drawn",
    "box_clicks"}: box_clicks are the added clicks that lie in a drawn box (part of clicks_added)."""
    now = {box_key(b) for b in current_boxes}
    gone = {int(i) for i, b in predicted_boxes.items() if box_key(b) not in now}
    before = {box_key(b) for b in predicted_boxes.values()}
    drawn = [b for b in current_boxes if box_key(b) not in before]
    current_keys = set(point_keys(current_rc))
    lost_clicks = sum(1 for i, k in zip(predicted_ids, point_keys(predicted_rc))
                      if k not in current_keys and int(i) not in gone)
    added = np.asarray(current_rc, np.float64).reshape(-1, 2)[predicted_cell_of(current_rc, predicted_ids,
                                                                                 predicted_rc) == 0]
    in_drawn = np.zeros(len(added), bool)
    for b in drawn:
        in_drawn |= inside_box(added, b)
    return {"clicks_added": len(added), "deleted": len(gone) + lost_clicks, "boxes_drawn": len(drawn),
            "box_clicks": int(in_drawn.sum())}


def annotation_seconds(added: int, deleted: int, boxes_drawn: int = 0, box_clicks: int = 0) -> float:
    """The estimated annotation time (s) of a correction: clicks added (box_clicks of them in drawn boxes,
    counted at the box rate), deletions and boxes drawn."""
    return (CLICK_S * (added - box_clicks) + DELETE_S * deleted + BOX_S * boxes_drawn
            + BOX_CLICK_S * box_clicks)


# ---------------------------------------------------------------------------------------------- cells

def inside_image(points_rc: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Which (row, col) points of (N,2) lie on an image of `shape` (H, W): on a pixel, whose centres are at
    integers. Returns bool (N,)."""
    p = np.asarray(points_rc, np.float64).reshape(-1, 2)
    return (p[:, 0] >= -0.5) & (p[:, 0] < shape[0] - 0.5) & (p[:, 1] >= -0.5) & (p[:, 1] < shape[1] - 0.5)


def clip_box(box, shape: tuple[int, int]) -> list[float] | None:
    """A box [x0, y0, x1, y1] cut to the image of `shape` (H, W) (its edges at −0.5 and W−0.5, H−0.5); None
    when nothing of it is left."""
    x0, y0 = max(float(box[0]), -0.5), max(float(box[1]), -0.5)
    x1, y1 = min(float(box[2]), shape[1] - 0.5), min(float(box[3]), shape[0] - 0.5)
    return [x0, y0, x1, y1] if x1 > x0 and y1 > y0 else None


def _pixel(points_rc: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The pixel (row, col) int64 (N,2) under each (row, col) point (a half rounds up), kept on the image."""
    pix = np.floor(np.asarray(points_rc, np.float64).reshape(-1, 2) + 0.5).astype(np.int64)
    return np.clip(pix, 0, np.array(shape[:2]) - 1)


def box_cells(boxes: list[list[float]], points_rc: np.ndarray, point_is_cell: np.ndarray,
              predicted: np.ndarray, predicted_boxes: dict[int, list[float]], point_cell: np.ndarray,
              seed: int = 0) -> list[dict]:
    """The cells of `<stem>_boxpoints.json`: each box [x0,y0,x1,y1] with the clicks in it, labelled 1 (on
    this box's cell) or 0 (not).

    boxes: the boxes now; points_rc (N,2) row/col the clicks now, point_is_cell bool (N,) their `label`
    feature (False = a background click), point_cell int (N,) the predicted cell each click is the
    unmoved click of (0 = a user click; `predicted_cell_of`); predicted (H,W) ints and predicted_boxes
    {id: box} what Predict made.

    In a box still as predicted (cell k): a background click is 0; a predicted click is 1 where the
    predicted mask is k; a user's cell click 1 on k's mask or on predicted background outside every drawn
    box (the user adding to k), else 0 (another cell's). The box also gets AUTO_CLICKS clicks uniform
    over it, labelled by k's mask: accepting a cell accepts its outline. In a drawn box: a predicted click
    of a cell whose box is still there is 0 (that cell's), every other click is what its label says. Boxes without a click are left out (training needs one). Returns dicts id (1..), box,
    points [[x, y], ...], point_labels [1|0, ...]."""
    rng = np.random.default_rng(seed)
    points = np.asarray(points_rc, np.float64).reshape(-1, 2)
    is_cell = np.asarray(point_is_cell, bool).reshape(-1)
    cell_of = np.asarray(point_cell, np.int64).reshape(-1)
    under = predicted[tuple(_pixel(points, predicted.shape).T)] if len(points) else np.zeros(0, np.int64)
    by_box = {box_key(b): int(i) for i, b in predicted_boxes.items()}
    drawn = [b for b in boxes if box_key(b) not in by_box]
    kept = {by_box[box_key(b)] for b in boxes if box_key(b) in by_box}
    in_drawn = np.zeros(len(points), bool)
    for b in drawn:
        in_drawn |= inside_box(points, b)
    cells = []
    for box in boxes:
        inside = inside_box(points, box)
        k = by_box.get(box_key(box), 0)
        if k:
            user = cell_of == 0
            label = is_cell & ((under == k) | (user & (under == 0) & ~in_drawn))
        else:
            label = is_cell & ~np.isin(cell_of, list(kept))
        xy = points[inside][:, ::-1].tolist()
        marks = label[inside].astype(int).tolist()
        if k:
            x0, y0, x1, y1 = box
            extra = np.stack([rng.uniform(y0, y1, AUTO_CLICKS), rng.uniform(x0, x1, AUTO_CLICKS)], 1)
            xy += extra[:, ::-1].tolist()
            pix = np.clip(_pixel(extra, predicted.shape), [y0 + 0.5, x0 + 0.5], [y1 - 0.5, x1 - 0.5]).astype(int)
            marks += (predicted[tuple(pix.T)] == k).astype(int).tolist()  # an edge point: the edge pixel's
        if xy:
            cells.append({"id": len(cells) + 1, "box": [float(v) for v in box], "points": xy, "point_labels": marks})
    return cells


# ---------------------------------------------------------------------------------------------- files

def write_points_csv(path, points_rc: np.ndarray) -> Path:
    """Write clicks (N,2) row/col as `<stem>_points.csv` (header x,y; x = column, y = row), atomically.
    Returns the path."""
    path = Path(path)
    with atomic_write(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["x", "y"])
        for r, c in np.asarray(points_rc, np.float64).reshape(-1, 2):
            writer.writerow([repr(float(c)), repr(float(r))])
    return path


def write_boxpoints_json(path, shape: tuple[int, int], cells: list[dict]) -> Path:
    """Write `<stem>_boxpoints.json` ({height, width, n_points: the most clicks of a cell, cells}),
    atomically. Returns the path."""
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

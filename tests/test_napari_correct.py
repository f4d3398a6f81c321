"""napari's "Correct cells" widget and its counting and file functions: predicted cells become one click each,
edits are counted with their annotation time, and Save writes files `cellpoint train` reads.

The counting/file tests need no Qt; the widget tests use napari's `make_napari_viewer` (the `viewer` fixture
of conftest.py) and skip, saying why, where a viewer cannot start."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("cellpoint.napari", reason="cellpoint.napari is not installed (pip install -e .)")

REPO = Path(__file__).resolve().parents[1]
NUCLEI = REPO / "model_cards" / "objectness-nuclei" / "sample2_input.png"
PHASE = REPO / "model_cards" / "point2mask-cells-phase" / "sample1_input.tif"


def test_counts_and_seconds_of_edits():
    from cellpoint.napari.clicks import annotation_seconds, correction_counts
    predicted = np.array([[1.0, 1.0], [5.0, 5.0], [9.0, 2.0]])
    current = np.array([[1.0, 1.0], [20.0, 3.0], [21.0, 4.0], [22.0, 5.0]])
    assert correction_counts(predicted, current) == (3, 2)
    assert annotation_seconds(3, 2) == 4.0
    assert annotation_seconds(2, 1, boxes_drawn=1, box_clicks=2) == pytest.approx(0.5 + 7 + 1.8)


def test_predicted_clicks_lie_inside_their_cells_even_concave_ones():
    from cellpoint.napari.clicks import predicted_clicks
    labels = np.zeros((40, 40), np.int32)
    labels[5:35, 5:12] = 1
    labels[5:12, 5:35] = 1                      # an L: its centroid lies outside it
    labels[20:30, 20:30] = 2
    ids, points = predicted_clicks(labels)
    assert list(ids) == [1, 2]
    for cell, (r, c) in zip(ids, points.astype(int)):
        assert labels[r, c] == cell


def test_box_cells_keep_accepted_outlines_and_drawn_boxes_clicks():
    from cellpoint.napari.clicks import AUTO_CLICKS, box_cells
    labels = np.zeros((30, 30), np.int32)
    labels[2:10, 2:10] = 1
    boxes = {1: [1.5, 1.5, 9.5, 9.5]}
    cells = box_cells([boxes[1], [14.5, 14.5, 25.5, 25.5]], np.array([[5.0, 5.0], [20.0, 20.0], [16.0, 24.0]]),
                      np.array([True, True, False]), labels, boxes)
    assert len(cells) == 2
    assert len(cells[0]["points"]) == 1 + AUTO_CLICKS and all(v in (0, 1) for v in cells[0]["point_labels"])
    assert cells[1]["points"] == [[20.0, 20.0], [24.0, 16.0]] and cells[1]["point_labels"] == [1, 0]


def _widget(viewer):
    from cellpoint.napari.correct import CorrectWidget
    widget = CorrectWidget(viewer)
    viewer.window.add_dock_widget(widget)
    return widget


def test_correct_predict_edit_and_save_clicks(viewer, tmp_path):
    from cellpoint.runtime import Segmenter
    from cellpoint.runtime.image_io import read_image
    from cellpoint.training.annotations import read_points
    image = read_image(NUCLEI)
    layer = viewer.add_image(image, name="nuclei")
    widget = _widget(viewer)
    widget.image.value = layer
    points = widget.predict()
    labels = Segmenter("objectness-nuclei").segment(image).labels
    assert len(points.data) == labels.max() > 5
    rc = np.asarray(points.data).astype(int)
    assert sorted(labels[rc[:, 0], rc[:, 1]].tolist()) == list(range(1, labels.max() + 1))   # one in each cell
    points.selected_data = {0, 1}
    points.remove_selected()
    for r, c in ((3.0, 4.0), (10.0, 200.0), (250.0, 7.0)):
        points.add([r, c])
    assert widget.counts() == {"clicks_added": 3, "deleted": 2, "boxes_drawn": 0, "annotation_seconds": 4.0}
    assert "3 clicks, 2 deleted" in widget.counter.value and "4 s" in widget.counter.value
    written = widget.save(tmp_path)
    xy, _ = read_points(tmp_path / "nuclei_points.csv")
    np.testing.assert_allclose(xy, np.asarray(points.data)[:, ::-1])
    assert len(xy) == labels.max() + 1
    record = json.loads((tmp_path / "nuclei_corrections.json").read_text())
    assert record["annotation_seconds"] == 4.0 and record["model"] == "objectness-nuclei"
    assert {p.name for p in written} == {"nuclei_points.csv", "nuclei_corrections.json"}


def test_correct_with_boxes_for_a_point2mask_package(viewer, tmp_path):
    from cellpoint.runtime.image_io import read_image
    from cellpoint.training.methods.point2mask.data import box_points_arrays
    image = read_image(PHASE)[:256, :256]
    layer = viewer.add_image(image, name="phase")
    widget = _widget(viewer)
    widget.image.value = layer
    widget.model.value = "point2mask-cells-phase"
    points = widget.predict()
    boxes = viewer.layers["phase boxes"]
    n = len(boxes.data)
    assert n == len(points.data) > 3
    boxes.selected_data = {0}
    boxes.remove_selected()
    boxes.add_rectangles(np.array([[200.0, 200.0], [240.0, 240.0]]))
    points.add([220.0, 220.0])
    points.add([236.0, 204.0])
    counts = widget.counts()
    assert (counts["boxes_drawn"], counts["deleted"]) == (1, 1)
    assert counts["annotation_seconds"] == pytest.approx(7 + 2 * 0.9 + 0.5)
    widget.save(tmp_path)
    data = json.loads((tmp_path / "phase_boxpoints.json").read_text())
    boxes_xy, pts, marks, ids = box_points_arrays(data["cells"])
    assert len(ids) == n and data["height"] == 256
    assert [200.0, 200.0, 240.0, 240.0] in boxes_xy.tolist()

"""napari's "Correct cells" widget and its counting and file functions: predicted cells become one click each,
edits are counted with their annotation time, and Save writes files `cellpoint train` reads.

The counting/file tests need no Qt; the widget tests use napari's `make_napari_viewer` (the `viewer` fixture
of conftest.py) and skip, saying why, where a viewer cannot start."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import add_plugin_widget

pytest.importorskip("cellpoint.napari", reason="cellpoint.napari is not installed (pip install -e .)")

REPO = Path(__file__).resolve().parents[1]
NUCLEI = REPO / "model_cards" / "objectness-nuclei" / "sample2_input.png"
PHASE = REPO / "model_cards" / "point2mask-cells-phase" / "sample1_input.tif"


# ------------------------------------------------------------------------------------- without Qt

def test_counts_and_seconds_of_edits():
    from cellpoint.napari.clicks import annotation_seconds, correction_counts
    predicted = np.array([[1.0, 1.0], [5.0, 5.0], [9.0, 2.0]])
    current = np.array([[1.0, 1.0], [20.0, 3.0], [21.0, 4.0], [22.0, 5.0]], np.float32)
    assert correction_counts(predicted, current) == (3, 2)
    assert correction_counts(predicted, predicted) == (0, 0)  # accepted predictions cost nothing
    assert annotation_seconds(3, 2) == 4.0
    assert annotation_seconds(2, 1, boxes_drawn=1, box_clicks=2) == pytest.approx(0.5 + 7 + 1.8)


def test_box_edits_count_a_deleted_box_once_and_clicks_in_drawn_boxes_at_the_box_rate():
    from cellpoint.napari.clicks import annotation_seconds, box_correction_counts
    boxes = {1: [0.5, 0.5, 9.5, 9.5], 2: [20.5, 0.5, 29.5, 9.5], 3: [40.5, 0.5, 49.5, 9.5]}
    ids, clicks = np.array([1, 2, 3]), np.array([[5.0, 5.0], [5.0, 25.0], [5.0, 45.0]])
    drawn = [60.5, 0.5, 69.5, 9.5]
    now_boxes = [boxes[1], boxes[3], drawn]                 # box 2 deleted (its click with it)
    now = np.array([[5.0, 5.0], [5.0, 25.0],                 # click 3 deleted from a kept box; 2 left on
                    [3.0, 62.0], [7.0, 66.0], [30.0, 30.0]])  # two clicks in the drawn box, one elsewhere
    counts = box_correction_counts(boxes, now_boxes, ids, clicks, now)
    assert counts == {"clicks_added": 3, "deleted": 2, "boxes_drawn": 1, "box_clicks": 2}
    assert annotation_seconds(3, 2, 1, 2) == pytest.approx(1 + 2 * 0.5 + 7 + 2 * 0.9)


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


def test_box_cells_label_each_click_for_its_own_box():
    from cellpoint.napari.clicks import AUTO_CLICKS, box_cells, cell_boxes, predicted_cell_of, predicted_clicks
    labels = np.zeros((40, 40), np.int32)
    labels[8:16, 8:16] = 2
    labels[2:10, 2:10] = 1                      # cell 2 is an L under cell 1: their boxes overlap
    ids, predicted = predicted_clicks(labels)
    boxes = cell_boxes(labels)
    assert boxes == {1: [1.5, 1.5, 9.5, 9.5], 2: [7.5, 7.5, 15.5, 15.5]}
    weak_labels = pytest.importorskip("cellpoint.training.weak_labels")
    assert [c["box"] for c in weak_labels.box_points_from_labels(labels, 1)] == list(boxes.values())  # its convention
    drawn, empty = [19.5, 19.5, 27.5, 27.5], [30.5, 30.5, 38.5, 38.5]
    user = np.array([[9.0, 9.0], [22.0, 22.0], [26.0, 20.0]])   # on cell 1 in both boxes; two in the drawn box
    points = np.concatenate([predicted, user])
    is_cell = np.array([True, True, True, True, False])         # the last a background click
    cell_of = predicted_cell_of(points, ids, predicted)
    np.testing.assert_array_equal(cell_of, [1, 2, 0, 0, 0])
    cells = box_cells([boxes[1], boxes[2], drawn, empty], points, is_cell, labels, boxes, cell_of)
    assert [c["id"] for c in cells] == [1, 2, 3]                 # the empty box is left out
    first, second, third = cells
    assert first["points"][:2] == [predicted[0][::-1].tolist(), [9.0, 9.0]] and first["point_labels"][:2] == [1, 1]
    assert second["points"][:2] == [predicted[1][::-1].tolist(), [9.0, 9.0]] and second["point_labels"][:2] == [1, 0]
    for cell, k in ((first, 1), (second, 2)):                    # accepted outlines: clicks labelled by the mask
        assert len(cell["points"]) == 2 + AUTO_CLICKS
        for (x, y), mark in zip(cell["points"][2:], cell["point_labels"][2:]):
            x0, y0, x1, y1 = cell["box"]
            assert x0 <= x <= x1 and y0 <= y <= y1
            r, c = int(np.clip(np.floor(y + 0.5), y0 + 0.5, y1 - 0.5)), int(np.clip(np.floor(x + 0.5), x0 + 0.5, x1 - 0.5))
            assert mark == int(labels[r, c] == k)
    assert third == {"id": 3, "box": drawn, "points": [[22.0, 22.0], [20.0, 26.0]], "point_labels": [1, 0]}

    redrawn = [7.5, 7.5, 16.5, 16.5]   # box 2 deleted and drawn again: its predicted click is this cell's
    cells = box_cells([boxes[1], redrawn], points, is_cell, labels, boxes, cell_of)
    assert cells[1]["points"] == [predicted[1][::-1].tolist(), [9.0, 9.0]] and cells[1]["point_labels"] == [1, 1]


def test_clicks_off_the_image_and_boxes_beyond_it():
    from cellpoint.napari.clicks import clip_box, inside_image
    points = np.array([[0.0, 0.0], [-0.6, 3.0], [9.4, 19.4], [9.5, 3.0], [3.0, 19.6]])
    np.testing.assert_array_equal(inside_image(points, (10, 20)), [True, False, True, False, False])
    assert clip_box([-4.0, 2.5, 30.0, 7.5], (10, 20)) == [-0.5, 2.5, 19.5, 7.5]
    assert clip_box([25.0, 2.5, 30.0, 7.5], (10, 20)) is None


def test_written_files_read_back(tmp_path):
    from cellpoint.napari.clicks import write_boxpoints_json, write_points_csv
    from cellpoint.training.annotations import read_points
    from cellpoint.training.methods.point2mask.data import box_points_arrays
    write_points_csv(tmp_path / "a_points.csv", np.array([[1.0, 2.0], [3.5, 4.0]]))
    xy, labels = read_points(tmp_path / "a_points.csv")
    np.testing.assert_array_equal(xy, [[2.0, 1.0], [4.0, 3.5]])
    assert labels is None
    cells = [{"id": 1, "box": [0.5, 0.5, 4.5, 4.5], "points": [[1.0, 1.0]], "point_labels": [1]},
             {"id": 2, "box": [5.5, 0.5, 9.5, 4.5], "points": [[6.0, 1.0], [9.0, 4.0]], "point_labels": [1, 0]}]
    data = json.loads(write_boxpoints_json(tmp_path / "a_boxpoints.json", (10, 12), cells).read_text())
    assert (data["height"], data["width"], data["n_points"]) == (10, 12, 2)
    boxes, points, point_labels, ids = box_points_arrays(data["cells"])
    assert boxes.shape == (2, 4) and points.shape == (2, 2, 2) and point_labels.tolist() == [[1, -1], [1, 0]]


# -------------------------------------------------------------------------------------------- viewer

def test_correct_predict_edit_and_save_clicks(viewer, tmp_path):
    from cellpoint.runtime import Segmenter
    from cellpoint.runtime.image_io import read_image
    image = read_image(NUCLEI)
    widget = add_plugin_widget(viewer, "Correct cells")
    assert widget.predict() is None and widget.save(tmp_path) == []           # no image, no prediction: refused
    layer = viewer.add_image(image, name="nuclei", scale=(0.5, 0.5), translate=(10.0, 20.0))
    assert widget.image.value is layer
    points = widget.predict()
    assert points.name == "nuclei clicks" and "nuclei predicted" in viewer.layers
    assert "nuclei boxes" not in viewer.layers and widget.click_label.native.isHidden()
    assert widget.label_button.native.isHidden()
    np.testing.assert_array_equal(points.scale, layer.scale)                   # data coordinates = the image's
    np.testing.assert_array_equal(points.translate, layer.translate)
    with Segmenter("objectness-nuclei") as segmenter:
        labels = segmenter.segment(image).labels
    assert len(points.data) == labels.max() > 5
    rc = np.asarray(points.data).astype(int)
    assert sorted(labels[rc[:, 0], rc[:, 1]].tolist()) == list(range(1, labels.max() + 1))   # one in each cell
    assert "0 clicks, 0 deletions" in widget.counter.value and "0.0 s" in widget.counter.value

    points.selected_data = {0, 1}
    points.remove_selected()
    for r, c in ((3.0, 4.0), (10.0, 200.0), (250.0, 7.0)):
        points.add([r, c])
    assert widget.counts() == {"clicks_added": 3, "deleted": 2, "boxes_drawn": 0, "box_clicks": 0,
                               "annotation_seconds": 4.0}
    assert "3 clicks, 2 deletions" in widget.counter.value and "4.0 s" in widget.counter.value

    assert widget.save() == []                                                  # no folder chosen
    written = widget.save(tmp_path)
    assert [p.name for p in written] == ["nuclei_points.csv", "nuclei_corrections.json"]
    with open(tmp_path / "nuclei_points.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["x", "y"] and len(rows) - 1 == labels.max() + 1
    xy = np.array(rows[1:], np.float64)
    np.testing.assert_allclose(xy, np.asarray(points.data)[:, ::-1])            # x = column, y = row
    read_points = pytest.importorskip("cellpoint.training.annotations").read_points
    np.testing.assert_allclose(read_points(tmp_path / "nuclei_points.csv")[0], xy)
    record = json.loads((tmp_path / "nuclei_corrections.json").read_text())
    assert record == {"clicks_added": 3, "deleted": 2, "boxes_drawn": 0, "box_clicks": 0, "annotation_seconds": 4.0,
                      "model": "objectness-nuclei", "image": "nuclei"}


def test_correct_with_boxes_for_a_point2mask_package(viewer, tmp_path):
    import tifffile
    from cellpoint.runtime.image_io import read_image
    box_points_arrays = pytest.importorskip("cellpoint.training.methods.point2mask.data").box_points_arrays
    tifffile.imwrite(tmp_path / "phase_crop.tif", read_image(PHASE)[:256, :256])
    [layer] = viewer.open(str(tmp_path / "phase_crop.tif"), plugin="napari")   # a layer with a source file
    widget = add_plugin_widget(viewer, "Correct cells")
    widget.image.value = layer
    widget.model.value = "point2mask-cells-phase"
    points = widget.predict()
    boxes = viewer.layers[f"{layer.name} boxes"]
    n = len(boxes.data)
    assert n == len(points.data) > 3 and not widget.click_label.native.isHidden()  # (the window is hidden)
    for (r, c), corners in zip(points.data, boxes.data):                       # each click in its own box
        assert corners[:, 0].min() <= r <= corners[:, 0].max() and corners[:, 1].min() <= c <= corners[:, 1].max()

    boxes.selected_data = {0}
    boxes.remove_selected()
    boxes.add_rectangles(np.array([[200.0, 200.0], [240.0, 240.0]]))
    points.add([220.0, 220.0])
    widget.click_label.value = "background"                                    # for the clicks to come
    points.add([236.0, 204.0])
    assert list(points.features["label"][-2:]) == ["cell", "background"]
    np.testing.assert_array_equal(points.face_color[-2:, :3], [[1, 1, 0], [1, 0, 1]])   # yellow, magenta
    points.selected_data = {0, 1}
    widget.click_label.value = "cell"
    assert widget.label_selected() == 2 and list(points.features["label"][-2:]) == ["cell", "background"]
    points.selected_data = {len(points.data) - 1}
    assert widget.label_selected() == 1 and points.features["label"].iloc[-1] == "cell"
    widget.click_label.value = "background"
    assert widget.label_selected() == 1 and points.features["label"].iloc[-1] == "background"
    counts = widget.counts()
    assert counts == {"clicks_added": 2, "deleted": 1, "boxes_drawn": 1, "box_clicks": 2,
                      "annotation_seconds": pytest.approx(7 + 2 * 0.9 + 0.5)}
    assert "1 boxes drawn" in widget.counter.value and "9.3 s" in widget.counter.value

    written = widget.save(tmp_path / "clicks")
    assert [p.name for p in written] == ["phase_crop_boxpoints.json", "phase_crop_corrections.json"]
    data = json.loads(written[0].read_text())
    boxes_xy, pts, marks, ids = box_points_arrays(data["cells"])
    assert len(ids) == n and (data["height"], data["width"]) == (256, 256)
    assert (marks >= 0).sum(1).min() >= 1                                      # every cell has a click
    [drawn] = [c for c in data["cells"] if c["box"] == [200.0, 200.0, 240.0, 240.0]]
    assert drawn["points"] == [[220.0, 220.0], [204.0, 236.0]] and drawn["point_labels"] == [1, 0]
    record = json.loads(written[1].read_text())
    assert record["model"] == "point2mask-cells-phase" and record["image"] == "phase_crop"
    assert record["annotation_seconds"] == pytest.approx(9.3)

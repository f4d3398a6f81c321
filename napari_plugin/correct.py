"""The "Correct cells" dock widget: a model's cells as editable clicks, saved as training labels.

Predict runs the chosen package on the chosen Image layer and adds "<image> clicks", a Points layer with one
point inside each predicted cell (and the predicted cells as a faint Labels layer). The user deletes the
points on false cells and adds points on missed ones; a point's feature `label` (cell / background) marks
a background click. For a box + clicks package (Point2Mask) it also adds "<image> boxes", a Shapes layer
with each predicted cell's box: delete a false cell's box, draw a box around a missed cell and click in
it. The counter shows the edits and their estimated annotation time (`clicks`); Save writes
`<stem>_points.csv` (or `<stem>_boxpoints.json`) and `<stem>_corrections.json` into the chosen folder, for
`cellpoint finetune` / `cellpoint train --images DIR --points DIR` (the images folder must hold the image
under the same stem)."""
from __future__ import annotations

from pathlib import Path

import napari
import numpy as np
from magicgui.widgets import ComboBox, Container, FileEdit, Label, PushButton
from napari.layers import Image, Points, Shapes
from napari.utils.notifications import show_error, show_info

from cellpoint.napari import clicks
from cellpoint.napari.widget import FOLDER_CHOICE, current_plane
from cellpoint.runtime import CellpointError, Segmenter, list_models
from cellpoint.runtime.package import DEFAULT_MODEL

BOX_METHODS = ("point2mask",)  # methods whose packages train from a box + clicks per cell


class CorrectWidget(Container):
    """Dock widget: image layer, model, Predict, the counter, the folder to save to, Save.

    `predict()` returns the Points layer it made (None when refused, with a notification); `counts()` the
    edits so far; `save()` the files written. napari makes it with the viewer (`napari_viewer`)."""

    def __init__(self, napari_viewer: napari.viewer.Viewer):
        self.viewer = napari_viewer
        self.image = ComboBox(label="image", choices=self._image_choices, nullable=True,
                              tooltip="The Image layer to correct (the plane shown, for a stack)")
        bundled = [m["name"] for m in list_models()]
        self.model = ComboBox(label="model", choices=bundled + [FOLDER_CHOICE],
                              value=DEFAULT_MODEL if DEFAULT_MODEL in bundled else FOLDER_CHOICE)
        self.folder = FileEdit(label="package", mode="d", visible=False)
        self.predict_button = PushButton(text="Predict")
        self.counter = Label(value="no prediction yet")
        self.out = FileEdit(label="save to", mode="d", tooltip="Folder of the label files (e.g. my_clicks/)")
        self.save_button = PushButton(text="Save")
        super().__init__(widgets=[self.image, self.model, self.folder, self.predict_button, self.counter, self.out,
                                  self.save_button])
        self.model.changed.connect(lambda value: setattr(self.folder, "visible", value == FOLDER_CHOICE))
        self.predict_button.changed.connect(lambda _=None: self.predict())
        self.save_button.changed.connect(lambda _=None: self.save())
        napari_viewer.layers.events.inserted.connect(lambda _=None: self.image.reset_choices())
        napari_viewer.layers.events.removed.connect(lambda _=None: self.image.reset_choices())
        self.state: dict | None = None  # the prediction being corrected (see predict)

    def _image_choices(self, _widget=None) -> list[tuple[str, Image]]:
        return [(layer.name, layer) for layer in self.viewer.layers if isinstance(layer, Image)]

    def model_key(self) -> str:
        return str(Path(self.folder.value).expanduser()) if self.model.value == FOLDER_CHOICE else str(self.model.value)

    # ------------------------------------------------------------------------------------------ predict

    def predict(self) -> Points | None:
        """Segment the chosen layer and show its cells as clicks (and boxes); see the module."""
        layer = self.image.value
        if layer is None:
            show_info("cellpoint: open an image first; there is no Image layer to correct")
            return None
        try:
            segmenter = Segmenter(self.model_key())
            result = segmenter.segment(current_plane(layer, self.viewer))
        except CellpointError as error:
            show_error(f"cellpoint: {error}")
            return None
        labels = result.labels
        ids, points = clicks.predicted_clicks(labels)
        boxed = segmenter.package.card.method in BOX_METHODS
        place = {"scale": layer.scale[-2:], "translate": layer.translate[-2:]}
        self._replace(f"{layer.name} predicted", lambda name: self.viewer.add_labels(
            labels, name=name, opacity=0.25, **place))
        point_layer = self._replace(f"{layer.name} clicks", lambda name: self.viewer.add_points(
            points, name=name, size=max(3, labels.shape[0] // 120), features={"label": ["cell"] * len(points),
                                                                                "cell": ids},
            feature_defaults={"label": "cell", "cell": 0}, face_color="yellow", **place))
        boxes = {int(i): clicks.box_of(labels, int(i)) for i in ids} if boxed else {}
        if boxed:
            self._replace(f"{layer.name} boxes", lambda name: self.viewer.add_shapes(
                [_rectangle(b) for b in boxes.values()], shape_type="rectangle", name=name, edge_color="cyan",
                face_color="transparent", edge_width=1, **place))
        self.state = {"image": layer.name, "source": _source(layer), "shape": labels.shape, "labels": labels,
                      "points": points, "boxes": boxes, "model": self.model_key(), "boxed": boxed}
        point_layer.events.data.connect(lambda _=None: self._show_counts())
        if boxed:
            self.viewer.layers[f"{layer.name} boxes"].events.data.connect(lambda _=None: self._show_counts())
        self._show_counts()
        return point_layer

    def _replace(self, name: str, add):
        if name in self.viewer.layers:
            self.viewer.layers.remove(name)
        return add(name)

    # ------------------------------------------------------------------------------------------- counts

    def current_boxes(self) -> list[list[float]]:
        """The boxes layer's rectangles as [x0, y0, x1, y1] (data coordinates)."""
        layer = self.viewer.layers[f"{self.state['image']} boxes"]
        return [[float(d[:, 1].min()), float(d[:, 0].min()), float(d[:, 1].max()), float(d[:, 0].max())]
                for d in layer.data]

    def counts(self) -> dict:
        """The edits so far: clicks_added, deleted (points, or boxes for a box + clicks package), boxes_drawn,
        annotation_seconds."""
        if self.state is None:
            return {}
        points = np.asarray(self.viewer.layers[f"{self.state['image']} clicks"].data, np.float64).reshape(-1, 2)
        added, deleted = clicks.correction_counts(self.state["points"], points)
        drawn = box_clicks = 0
        if self.state["boxed"]:
            before = {tuple(np.round(b, 3)) for b in self.state["boxes"].values()}
            now = self.current_boxes()
            new = [b for b in now if tuple(np.round(b, 3)) not in before]
            drawn, deleted = len(new), len(before - {tuple(np.round(b, 3)) for b in now})
            predicted = clicks._key(self.state["points"])
            fresh = [p for p in points if (round(float(p[0]), 3), round(float(p[1]), 3)) not in predicted]
            box_clicks = sum(1 for p in fresh if any(_inside(p, b) for b in new))
        return {"clicks_added": added, "deleted": deleted, "boxes_drawn": drawn,
                "annotation_seconds": clicks.annotation_seconds(added, deleted, drawn, box_clicks)}

    def _show_counts(self) -> None:
        c = self.counts()
        text = f"{c['clicks_added']} clicks, {c['deleted']} deleted"
        if self.state["boxed"]:
            text += f", {c['boxes_drawn']} boxes drawn"
        self.counter.value = f"{text}: ~{c['annotation_seconds']:.0f} s of annotation"

    # --------------------------------------------------------------------------------------------- save

    def save(self, folder=None) -> list[Path]:
        """Write the corrected labels of the current prediction into `folder` (default: the widget's "save
        to"); returns the files written ([] when refused, with a notification)."""
        if self.state is None:
            show_info("cellpoint: press Predict first; there is nothing to save")
            return []
        folder = Path(folder or self.out.value).expanduser()
        folder.mkdir(parents=True, exist_ok=True)
        stem = self.state["source"] or self.state["image"]
        layer = self.viewer.layers[f"{self.state['image']} clicks"]
        points = np.asarray(layer.data, np.float64).reshape(-1, 2)
        is_cell = np.asarray(layer.features["label"]) != "background"
        written = []
        if self.state["boxed"]:
            cells = clicks.box_cells(self.current_boxes(), points, is_cell, self.state["labels"], self.state["boxes"])
            written.append(clicks.write_boxpoints_json(folder / f"{stem}_boxpoints.json", self.state["shape"], cells))
        else:
            written.append(clicks.write_points_csv(folder / f"{stem}_points.csv", points[is_cell]))
        record = {**self.counts(), "model": self.state["model"], "image": stem}
        written.append(clicks.write_record(folder / f"{stem}_corrections.json", record))
        show_info(f"cellpoint: wrote {', '.join(p.name for p in written)} to {folder}")
        return written


def _inside(point_rc, box: list[float]) -> bool:
    """Whether a (row, col) point lies in a box [x0, y0, x1, y1]."""
    return box[0] <= point_rc[1] <= box[2] and box[1] <= point_rc[0] <= box[3]


def _rectangle(box: list[float]) -> np.ndarray:
    """[x0, y0, x1, y1] → napari's rectangle corners (4,2) row/col."""
    x0, y0, x1, y1 = box
    return np.array([[y0, x0], [y0, x1], [y1, x1], [y1, x0]])


def _source(layer: Image) -> str | None:
    """The stem of the file the layer was opened from, if any."""
    path = getattr(layer.source, "path", None)
    return Path(path).stem if path else None

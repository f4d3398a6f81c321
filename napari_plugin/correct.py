"""The "Correct cells" dock widget: a model's cells as editable clicks, saved as training labels.

Predict runs the chosen package on the chosen Image layer and adds "<image> clicks", a Points layer with one
point inside each predicted cell (and the predicted cells as a faint "<image> predicted" Labels layer). The
user deletes the points on false cells and adds points on missed ones. For a box + clicks package
(Point2Mask) it also adds "<image> boxes", a Shapes layer with each predicted cell's box: delete a false
cell's box, draw a box around a missed cell and click in it; a click's feature `label` (cell / background,
set by "new clicks are" for the clicks to come and by "label selected" for the selected ones) marks
background clicks. The counter shows the
edits and their estimated annotation time (`clicks`); Save writes `<stem>_points.csv` (or
`<stem>_boxpoints.json`) and `<stem>_corrections.json` into the chosen folder, for `cellpoint finetune` /
`cellpoint train --images DIR --points DIR` (the images folder must hold the image under the same stem)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import napari
import numpy as np
from magicgui.widgets import ComboBox, Container, FileEdit, Label, PushButton
from napari.layers import Image, Points, Shapes
from napari.utils.notifications import show_error, show_info

from cellpoint.napari import clicks
from cellpoint.napari.widget import current_plane, follow_image_layers, image_choices, model_fields, package_key
from cellpoint.runtime import CellpointError, Segmenter

BOX_LABELS = "box-points"  # a package trained from this label kind is corrected with boxes + clicks
CELL, BACKGROUND = "cell", "background"  # the values of the clicks' `label` feature
COLOURS = {CELL: "yellow", BACKGROUND: "magenta"}


@dataclass
class Prediction:
    """What Predict made, to compare the layers with: the image's layer name and file stem, the predicted
    labels (H,W) ints, one click per cell (ids int64 (N,), points float64 (N,2) row/col), the cells'
    boxes {id: [x0,y0,x1,y1]} (box + clicks packages only), the package and the layers made."""
    image: str
    stem: str
    labels: np.ndarray
    ids: np.ndarray
    points: np.ndarray
    model: str
    clicks_layer: Points
    boxes_layer: Shapes | None = None
    boxes: dict[int, list[float]] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int]:
        return self.labels.shape[:2]


class LayerGone(CellpointError):
    """A layer the correction lives in was removed from the viewer."""


class CorrectWidget(Container):
    """Dock widget: image layer, model, Predict, the clicks' label (box + clicks packages), the counter, the
    folder to save to, Save.

    `predict()` returns the Points layer it made (None when refused, with a notification); `counts()` the
    edits so far; `save()` the files written. napari makes it with the viewer (`napari_viewer`)."""

    def __init__(self, napari_viewer: napari.viewer.Viewer):
        self.viewer = napari_viewer
        self.image = ComboBox(label="image", choices=lambda _=None: image_choices(self.viewer), nullable=True,
                              tooltip="The Image layer to correct (the plane shown, for a stack)")
        self.model, self.folder = model_fields()
        self.predict_button = PushButton(text="Predict")
        self.click_label = ComboBox(label="new clicks are", choices=[CELL, BACKGROUND], value=CELL, visible=False,
                                    tooltip="Clicks on the cell in their box, or on background (box + clicks)")
        self.label_button = PushButton(text="label selected", visible=False,
                                       tooltip="Give the selected clicks the label of 'new clicks are'")
        self.counter = Label(value="no prediction yet")
        self.out = FileEdit(label="save to", mode="d", tooltip="Folder of the label files (e.g. my_clicks/)")
        self.save_button = PushButton(text="Save")
        super().__init__(widgets=[self.image, self.model, self.folder, self.predict_button, self.click_label,
                                  self.label_button, self.counter, self.out, self.save_button])
        self.prediction: Prediction | None = None
        self._segmenters: dict[str, Segmenter] = {}
        self.predict_button.changed.connect(lambda _=None: self.predict())
        self.save_button.changed.connect(lambda _=None: self.save())
        self.click_label.changed.connect(self._on_click_label)
        self.label_button.changed.connect(lambda _=None: self.label_selected())
        follow_image_layers(napari_viewer, self.image)

    def model_key(self) -> str:
        """The chosen package: a bundled name, or the folder's path."""
        return package_key(self.model, self.folder)

    # ------------------------------------------------------------------------------------------ predict

    def predict(self) -> Points | None:
        """Segment the chosen layer and show its cells as clicks (and boxes); see the module."""
        layer = self.image.value
        if layer is None:
            show_error("cellpoint: open an image first; there is no Image layer to correct")
            return None
        model = self.model_key()
        try:
            if model not in self._segmenters:
                self._segmenters[model] = Segmenter(model)
            segmenter = self._segmenters[model]
            labels = segmenter.segment(current_plane(layer, self.viewer)).labels
        except CellpointError as error:
            show_error(f"cellpoint: {error}")
            return None
        ids, points = clicks.predicted_clicks(labels)
        boxed = segmenter.package.card.label_kind == BOX_LABELS
        place = {"scale": layer.scale[-2:], "translate": layer.translate[-2:]}
        self._replace(f"{layer.name} predicted", lambda name: self.viewer.add_labels(
            labels, name=name, opacity=0.25, **place))
        boxes = clicks.cell_boxes(labels) if boxed else {}
        boxes_layer = self._replace(f"{layer.name} boxes", lambda name: self.viewer.add_shapes(
            [_rectangle(b) for b in boxes.values()], shape_type="rectangle", name=name, edge_color="cyan",
            face_color="transparent", edge_width=1, **place) if boxed else None)
        clicks_layer = self._replace(f"{layer.name} clicks", lambda name: self.viewer.add_points(
            points, name=name, size=max(3, labels.shape[0] // 120),
            features={"label": [CELL] * len(points), "cell": ids},
            feature_defaults={"label": self.click_label.value if boxed else CELL, "cell": 0},
            face_color="label", face_color_cycle=COLOURS, **place))
        self.prediction = Prediction(image=layer.name, stem=_stem(layer), labels=labels, ids=ids, points=points,
                                     model=model, clicks_layer=clicks_layer, boxes_layer=boxes_layer, boxes=boxes)
        self.click_label.visible = self.label_button.visible = boxed
        for edited in (clicks_layer, boxes_layer):
            if edited is not None:
                edited.events.data.connect(lambda _=None: self._show_counts())
        self._show_counts()
        return clicks_layer

    def _replace(self, name: str, add):
        """Remove the layer `name` if there is one and add it again with `add(name)` (which may add nothing,
        returning None); returns what `add` returns."""
        if name in self.viewer.layers:
            self.viewer.layers.remove(name)
        return add(name)

    def _on_click_label(self, value: str) -> None:
        """The label of the clicks to come."""
        if self.prediction is not None and self.prediction.clicks_layer in self.viewer.layers:
            self.prediction.clicks_layer.feature_defaults = {"label": value, "cell": 0}

    def label_selected(self) -> int:
        """Give the selected clicks the label "new clicks are" shows; returns how many were selected."""
        if self.prediction is None or self.prediction.clicks_layer not in self.viewer.layers:
            show_error("cellpoint: press Predict first; there are no clicks to label")
            return 0
        layer = self.prediction.clicks_layer
        selected = sorted(layer.selected_data)
        if selected:
            layer.features.loc[selected, "label"] = self.click_label.value
            layer.refresh_colors()
        return len(selected)

    # ------------------------------------------------------------------------------------------- counts

    def current(self) -> tuple[np.ndarray, np.ndarray, list[list[float]]]:
        """The correction as it is now: clicks float64 (N,2) row/col, their `label` is cell bool (N,), and
        the boxes [x0, y0, x1, y1] (box + clicks packages; axis-aligned extent of each shape, data
        coordinates). LayerGone when a layer was removed."""
        p = self.prediction
        for layer in (p.clicks_layer, p.boxes_layer):
            if layer is not None and layer not in self.viewer.layers:
                raise LayerGone(f"the layer {layer.name!r} was removed; press Predict again")
        points = np.asarray(p.clicks_layer.data, np.float64).reshape(-1, 2)
        is_cell = np.asarray(p.clicks_layer.features["label"]) != BACKGROUND
        boxes = [] if p.boxes_layer is None else [
            [float(d[:, -1].min()), float(d[:, -2].min()), float(d[:, -1].max()), float(d[:, -2].max())]
            for d in p.boxes_layer.data]
        return points, is_cell, boxes

    def counts(self) -> dict:
        """The edits so far: clicks_added, deleted (points; boxes for a box + clicks package, with the
        clicks taken from kept boxes), boxes_drawn, box_clicks (added clicks in drawn boxes),
        annotation_seconds; {} before Predict. LayerGone when a layer was removed."""
        p = self.prediction
        if p is None:
            return {}
        points, _, boxes = self.current()
        if p.boxes_layer is None:
            added, deleted = clicks.correction_counts(p.points, points)
            edits = {"clicks_added": added, "deleted": deleted, "boxes_drawn": 0, "box_clicks": 0}
        else:
            edits = clicks.box_correction_counts(p.boxes, boxes, p.ids, p.points, points)
        seconds = clicks.annotation_seconds(edits["clicks_added"], edits["deleted"], edits["boxes_drawn"],
                                            edits["box_clicks"])
        return {**edits, "annotation_seconds": round(seconds, 3)}

    def _show_counts(self) -> None:
        try:
            c = self.counts()
        except LayerGone as error:
            self.counter.value = str(error)
            return
        text = f"{c['clicks_added']} clicks, {c['deleted']} deletions"
        if self.prediction.boxes_layer is not None:
            text += f", {c['boxes_drawn']} boxes drawn"
        self.counter.value = f"{text}: {c['annotation_seconds']:.1f} s of annotation"

    # --------------------------------------------------------------------------------------------- save

    def save(self, folder=None) -> list[Path]:
        """Write the corrected labels of the current prediction into `folder` (default: the widget's "save
        to"); returns the files written ([] when refused, with a notification)."""
        p = self.prediction
        if p is None:
            show_error("cellpoint: press Predict first; there is nothing to save yet")
            return []
        folder = folder if folder is not None else self.out.value
        if folder is None or str(folder) in ("", "."):
            show_error("cellpoint: choose the folder to save to ('save to')")
            return []
        folder = Path(folder).expanduser()
        try:
            points, is_cell, boxes = self.current()
            counts = self.counts()
        except LayerGone as error:
            show_error(f"cellpoint: {error}")
            return []
        on_image = clicks.inside_image(points, p.shape)
        points, is_cell = points[on_image], is_cell[on_image]
        notes = [f"{int((~on_image).sum())} clicks off the image left out"] if not on_image.all() else []
        if p.boxes_layer is None:
            labels_file = clicks.write_points_csv(folder / f"{p.stem}_points.csv", points[is_cell])
        else:
            boxes = [b for b in (clicks.clip_box(b, p.shape) for b in boxes) if b is not None]
            cell_of = clicks.predicted_cell_of(points, p.ids, p.points)
            cells = clicks.box_cells(boxes, points, is_cell, p.labels, p.boxes, cell_of)
            if len(cells) < len(boxes):
                notes.append(f"{len(boxes) - len(cells)} boxes without a click left out")
            labels_file = clicks.write_boxpoints_json(folder / f"{p.stem}_boxpoints.json", p.shape, cells)
        record = clicks.write_record(folder / f"{p.stem}_corrections.json",
                                     {**counts, "model": p.model, "image": p.stem})
        show_info(f"cellpoint: wrote {labels_file.name} and {record.name} to {folder}"
                  + (f" ({'; '.join(notes)})" if notes else ""))
        return [labels_file, record]


def _rectangle(box: list[float]) -> np.ndarray:
    """[x0, y0, x1, y1] → napari's rectangle corners float64 (4,2) row/col."""
    x0, y0, x1, y1 = box
    return np.array([[y0, x0], [y0, x1], [y1, x1], [y1, x0]], np.float64)


def _stem(layer: Image) -> str:
    """The stem of the file the layer was opened from, else the layer's name."""
    path = getattr(layer.source, "path", None)
    return Path(path).stem if path else layer.name

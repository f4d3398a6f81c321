"""The "Segment cells" dock widget: segments the chosen Image layer with a cellpoint model package and adds
the cells as a Labels layer named "<image> cells" whose features are the instance table.

The model is a bundled package (by name, `cellpoint models`) or a package folder; the diameter is the
cells' diameter in the image (px), 0 for the package's own choice (its scale model's estimate where it has
one). Segmentation runs in a worker thread unless "in background" is unticked; loaded packages are kept
for the next run.
"""
from __future__ import annotations

import threading
from pathlib import Path

import napari
import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, FloatSpinBox, PushButton
from napari.layers import Image, Labels
from napari.qt.threading import FunctionWorker, create_worker
from napari.utils.notifications import show_error, show_info

from cellpoint.runtime import CellpointError, SegmentationResult, Segmenter, list_models
from cellpoint.runtime.package import DEFAULT_MODEL

FOLDER_CHOICE = "package folder…"
"""The model choice that uses the folder field instead of a bundled package."""


def current_plane(layer: Image, viewer: napari.viewer.Viewer) -> np.ndarray:
    """The 2-D image of `layer` the viewer shows: (H,W), or (H,W,3|4) for an RGB layer; the first (full
    resolution) level of a multiscale layer; the current plane of a stack (by the viewer's dims point)."""
    data = layer.data[0] if layer.multiscale else layer.data
    leading = data.ndim - 2 - (1 if layer.rgb else 0)
    if leading > 0:
        position = np.asarray(layer.world_to_data(viewer.dims.point))[:leading]
        index = tuple(int(np.clip(round(float(p)), 0, n - 1)) for p, n in zip(position, data.shape))
        data = data[index]
    return np.asarray(data)


def image_choices(viewer: napari.viewer.Viewer) -> list[tuple[str, Image]]:
    """The viewer's Image layers as ComboBox choices (name, layer), in layer-list order."""
    return [(layer.name, layer) for layer in viewer.layers if isinstance(layer, Image)]


def follow_image_layers(viewer: napari.viewer.Viewer, combo: ComboBox) -> None:
    """Keep `combo` (choices from `image_choices`) in step with the viewer: its choices follow the layer list
    and it takes the Image layer the user selects."""
    def layers_changed(_event=None) -> None:
        combo.reset_choices()
        if isinstance(viewer.layers.selection.active, Image):
            combo.value = viewer.layers.selection.active

    def on_active(event) -> None:
        if isinstance(event.value, Image):
            combo.value = event.value

    for event in (viewer.layers.events.inserted, viewer.layers.events.removed, viewer.layers.events.reordered):
        event.connect(layers_changed)
    viewer.layers.selection.events.active.connect(on_active)
    layers_changed()


def model_fields() -> tuple[ComboBox, FileEdit]:
    """The model fields every cellpoint widget has: a ComboBox of the bundled packages (default
    DEFAULT_MODEL) plus FOLDER_CHOICE, and the package-folder field shown only with FOLDER_CHOICE."""
    bundled = [m["name"] for m in list_models()]
    model = ComboBox(label="model", choices=bundled + [FOLDER_CHOICE],
                     value=DEFAULT_MODEL if DEFAULT_MODEL in bundled else FOLDER_CHOICE,
                     tooltip="A bundled model package, or a package folder")
    folder = FileEdit(label="folder", mode="d", visible=model.value == FOLDER_CHOICE,
                      tooltip="A cellpoint model package folder (with card.json)")
    model.changed.connect(lambda value: setattr(folder, "visible", value == FOLDER_CHOICE))
    return model, folder


def package_key(model: ComboBox, folder: FileEdit) -> str:
    """The package `model_fields` choose: a bundled name, or the folder's path."""
    if model.value == FOLDER_CHOICE:
        return str(Path(folder.value).expanduser())
    return str(model.value)


def cell_features(result: SegmentationResult) -> dict[str, np.ndarray]:
    """The instance table as Labels features: its columns, led by `index` (the label value of each row,
    how napari matches rows to labels)."""
    return {"index": np.asarray(result.table["id"], np.int64), **result.table}


class SegmentWidget(Container):
    """Dock widget: image layer, model (bundled name or folder), diameter, run.

    `run()` segments the chosen layer: with `background` ticked it starts and returns a napari worker (the
    layer is added when it returns), else it returns the Labels layer. `segmenter(model)` loads or reuses a
    package. napari makes it with the viewer (`napari_viewer`)."""

    def __init__(self, napari_viewer: napari.viewer.Viewer):
        self.viewer = napari_viewer
        self.image = ComboBox(label="image", choices=lambda _=None: image_choices(self.viewer), nullable=True,
                              tooltip="The Image layer to segment (the plane shown, for a stack)")
        self.model, self.folder = model_fields()
        self.diameter = FloatSpinBox(label="diameter (px)", value=0.0, min=0.0, max=100_000.0, step=1.0,
                                     tooltip="The cells' typical diameter in this image; 0 = automatic")
        self.background = CheckBox(text="in background", value=True,
                                   tooltip="Segment in a worker thread (the viewer stays responsive)")
        self.button = PushButton(text="Segment")
        super().__init__(widgets=[self.image, self.model, self.folder, self.diameter, self.background,
                                  self.button])
        self.worker: FunctionWorker | None = None
        self._segmenters: dict[str, Segmenter] = {}
        self._lock = threading.Lock()
        self.button.changed.connect(self._on_button)
        follow_image_layers(napari_viewer, self.image)

    def model_key(self) -> str:
        """The chosen package: a bundled name, or the folder's path."""
        return package_key(self.model, self.folder)

    # ------------------------------------------------------------------------------------------- run

    def segmenter(self, model: str) -> Segmenter:
        """The Segmenter of `model` (a bundled name or a folder), loaded once and kept; PackageError when
        the package cannot be loaded."""
        with self._lock:
            if model not in self._segmenters:
                self._segmenters[model] = Segmenter(model)
            return self._segmenters[model]

    def _segment(self, model: str, image: np.ndarray, diameter: float | None) -> SegmentationResult:
        return self.segmenter(model).segment(image, diameter=diameter)

    def _on_button(self, _value=None) -> None:
        self.run()

    def run(self) -> Labels | FunctionWorker | None:
        """Segment the chosen layer (see the class). None when there is no image layer or (run here) the
        package or image is refused; the reason is shown as a notification."""
        layer = self.image.value
        if layer is None:
            show_info("cellpoint: open an image first; there is no Image layer to segment")
            return None
        model, diameter = self.model_key(), (float(self.diameter.value) or None)
        image = current_plane(layer, self.viewer)
        if not self.background.value:
            try:
                result = self._segment(model, image, diameter)
            except CellpointError as error:
                show_error(f"cellpoint: {error}")
                return None
            return self.show_result(layer, result)
        worker = create_worker(self._segment, model, image, diameter, _start_thread=False)
        worker.returned.connect(lambda result: self.show_result(layer, result))
        worker.errored.connect(self._failed)
        worker.finished.connect(self._finished)
        self.button.enabled = False
        self.worker = worker
        worker.start()
        return worker

    def _failed(self, error: Exception) -> None:
        show_error(f"cellpoint: {error}" if isinstance(error, CellpointError)
                   else f"cellpoint: {type(error).__name__}: {error}")

    def _finished(self) -> None:
        self.button.enabled = True

    def show_result(self, layer: Image, result: SegmentationResult) -> Labels:
        """Add the cells of `layer` as the Labels layer "<layer> cells" (replacing its data and features
        when it exists), placed where the image is; returns it."""
        name = f"{layer.name} cells"
        features = cell_features(result)
        metadata = {"cellpoint": {"image": layer.name, "model": result.model, "diameter": result.diameter,
                                  "diameter_source": result.diameter_source, "conversion": result.conversion}}
        existing = self.viewer.layers[name] if name in self.viewer.layers else None
        if isinstance(existing, Labels):
            existing.data = result.labels
            existing.features = features
            existing.metadata.update(metadata)
            out = existing
        else:
            out = self.viewer.add_labels(result.labels, name=name, features=features, metadata=metadata,
                                         scale=layer.scale[-2:], translate=layer.translate[-2:])
        show_info(f"cellpoint: {int(result.labels.max())} cells in {layer.name} ({result.model}, diameter "
                  f"{result.diameter:.1f} px, {result.diameter_source})")
        return out

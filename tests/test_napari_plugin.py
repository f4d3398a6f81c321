"""The napari plugin (`cellpoint.napari`, the `napari` extra): its reader opens a `cellpoint segment` output
folder (labels + instance table as features), its widget segments an Image layer into a Labels layer, and
its manifest is what napari loads.

Reader tests need neither napari nor Qt. The viewer tests use napari's own `make_napari_viewer` fixture
(pytest-qt) with Qt's offscreen platform; napari draws with OpenGL, which the offscreen platform only has
through an X server, so without $DISPLAY the tests start Xvfb when it is installed (apt-get install xvfb).
They skip, saying why, when napari, pytest-qt or a Qt viewer cannot start."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import synthetic_nuclei

pytest.importorskip("cellpoint.napari", reason="cellpoint.napari is not installed (pyproject maps napari_plugin/ to "
                    "it; reinstall with pip install -e .)")

REPO = Path(__file__).resolve().parents[1]
MANIFEST = REPO / "napari_plugin" / "napari.yaml"
SAMPLE = REPO / "model_cards" / "objectness-nuclei" / "sample2_input.png"



# --------------------------------------------------------------------------------------------- reader

@pytest.fixture(scope="module")
def output_folder(tmp_path_factory) -> Path:
    """A real `cellpoint segment` output folder: two synthetic images, labels + tables + overlays."""
    import tifffile
    from cellpoint.runtime.cli import main
    images = tmp_path_factory.mktemp("images")
    for k in range(2):
        tifffile.imwrite(images / f"img{k}.tif", synthetic_nuclei(seed=k)[0])
    out = tmp_path_factory.mktemp("out")
    result = CliRunner().invoke(main, ["segment", str(images), "--out", str(out), "--diameter", "18", "--overlay",
                                       "--device", "cpu"])
    assert result.exit_code == 0, result.output
    return out


def test_reader_claims_output_folders_and_label_files_only(output_folder, tmp_path):
    from cellpoint.napari.reader import get_reader, read_outputs
    assert get_reader(str(output_folder)) is read_outputs
    assert get_reader(str(output_folder / "img0_labels.tif")) is read_outputs
    assert get_reader([str(output_folder / "img0_labels.tif"), str(output_folder / "img1_labels.tif")]) is read_outputs
    assert get_reader(str(output_folder / "img0_overlay.png")) is None
    assert get_reader(str(output_folder / "img0_instances.csv")) is None
    assert get_reader(str(tmp_path)) is None  # an empty folder
    assert get_reader(str(tmp_path / "missing")) is None


def test_reader_gives_labels_with_the_instance_table_as_features(output_folder):
    import tifffile
    from cellpoint.napari.reader import read_outputs, read_table
    layers = read_outputs(str(output_folder))
    assert [kwargs["name"] for _, kwargs, _ in layers] == ["img0", "img1"]
    for data, kwargs, kind in layers:
        stem = kwargs["name"]
        assert kind == "labels"
        np.testing.assert_array_equal(data, tifffile.imread(output_folder / f"{stem}_labels.tif"))
        features = kwargs["features"]
        table = read_table(output_folder / f"{stem}_instances.csv")
        assert list(features) == ["index"] + list(table)
        assert features["id"].dtype == np.int64 and features["area"].dtype == np.int64
        assert features["centroid_y"].dtype == np.float64
        ids = np.unique(data[data > 0])
        np.testing.assert_array_equal(features["index"], ids)  # one row per cell, matched by label value
        np.testing.assert_array_equal(features["area"], [np.count_nonzero(data == i) for i in ids])
        assert len(ids) >= 4  # the synthetic images have 6 nuclei


def test_reader_without_a_table_gives_labels_alone(tmp_path):
    from cellpoint.napari.reader import read_outputs
    from cellpoint.runtime.image_io import write_labels_tif
    labels = np.zeros((32, 32), np.uint16)
    labels[4:10, 4:10] = 1
    write_labels_tif(tmp_path / "a_labels.tif", labels)
    [(data, kwargs, kind)] = read_outputs(str(tmp_path))
    assert kind == "labels" and "features" not in kwargs
    np.testing.assert_array_equal(data, labels)


def test_table_columns_are_read_with_their_types(tmp_path):
    from cellpoint.napari.reader import read_table
    (tmp_path / "t.csv").write_text("id,area,centroid_y,area_um2,note\n1,10,33,,a\n2,12,4.5,1.5,b\n")
    table = read_table(tmp_path / "t.csv")
    assert [table[c].dtype.kind for c in table] == ["i", "i", "f", "f", "U"]
    np.testing.assert_array_equal(table["area_um2"], [np.nan, 1.5])


def test_the_plugin_imports_neither_training_export_nor_torch():
    code = ("import sys, cellpoint.napari.reader, cellpoint.napari\n"
            "bad = [m for m in sys.modules\n"
            "       if m == 'torch' or m.startswith(('cellpoint.training', 'cellpoint.export'))]\n"
            "print(bad); sys.exit(1 if bad else 0)")
    if _have("napari") and _have("magicgui"):
        code = "import cellpoint.napari.widget\n" + code
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_manifest_names_the_plugin_contributions():
    npe2 = pytest.importorskip("npe2", reason="npe2 (napari's plugin engine) is not installed")
    manifest = npe2.PluginManifest.from_file(MANIFEST)
    assert manifest.name == "cellpoint"
    commands = {c.id: c.python_name for c in manifest.contributions.commands}
    assert commands == {"cellpoint.segment_widget": "cellpoint.napari.widget:SegmentWidget",
                        "cellpoint.correct_widget": "cellpoint.napari.correct:CorrectWidget",
                        "cellpoint.get_reader": "cellpoint.napari.reader:get_reader"}
    assert [w.display_name for w in manifest.contributions.widgets] == ["Segment cells", "Correct cells"]
    [reader] = manifest.contributions.readers
    assert reader.accepts_directories and reader.filename_patterns == ["*_labels.tif"]


# --------------------------------------------------------------------------------------------- viewer

def _have(module: str) -> bool:
    import importlib.util
    return importlib.util.find_spec(module) is not None


@pytest.fixture(scope="module")
def nuclei() -> np.ndarray:
    from cellpoint.runtime.image_io import read_image
    return read_image(SAMPLE)  # 256×256 fluorescence nuclei (stored as gray RGBA, read as (H,W))


@pytest.fixture(scope="module")
def expected(nuclei):
    """What the runtime itself makes of the sample at diameter 0 (automatic) and 20."""
    from cellpoint.runtime import Segmenter
    with Segmenter("objectness-nuclei") as seg:
        return {None: seg.segment(nuclei), 20.0: seg.segment(nuclei, diameter=20.0)}


def _add_widget(viewer):
    """The plugin's dock widget as napari makes it from the manifest (registered here when the package was
    installed without the entry point)."""
    import npe2
    manager = npe2.PluginManager.instance()
    try:
        manager.get_manifest("cellpoint")
    except KeyError:
        manager.register(npe2.PluginManifest.from_file(MANIFEST))
    _, widget = viewer.window.add_plugin_dock_widget("cellpoint", "Segment cells")
    return widget


def test_widget_segments_the_selected_image_into_a_labels_layer(viewer, nuclei, expected):
    from napari.layers import Labels
    viewer.add_image(np.zeros((64, 64), np.float32), name="other")
    viewer.add_image(nuclei, name="nuclei")  # added last: the selected layer
    widget = _add_widget(viewer)
    assert widget.image.value is viewer.layers["nuclei"]
    assert widget.model.value == "objectness-nuclei"
    widget.background.value = False
    layer = widget.run()
    assert isinstance(layer, Labels) and layer.name == "nuclei cells" and layer in viewer.layers
    np.testing.assert_array_equal(layer.data, expected[None].labels)
    assert layer.data.max() >= 8
    features = layer.features
    assert list(features.columns[:2]) == ["index", "id"]
    np.testing.assert_array_equal(features["index"], expected[None].table["id"])
    np.testing.assert_allclose(features["area"], expected[None].table["area"])
    assert layer.metadata["cellpoint"]["model"] == "objectness-nuclei"

    widget.diameter.value = 20  # a second run replaces the layer's data (layers reach plugins through proxies)
    assert widget.run().name == "nuclei cells"
    assert [layer.name for layer in viewer.layers] == ["other", "nuclei", "nuclei cells"]
    layer = viewer.layers["nuclei cells"]
    np.testing.assert_array_equal(layer.data, expected[20.0].labels)
    assert layer.metadata["cellpoint"]["diameter"] == expected[20.0].diameter


def test_widget_runs_in_a_worker_and_takes_rgb_layers_and_package_folders(viewer, nuclei, expected, request):
    rgb = np.repeat(nuclei[..., None], 3, axis=2)  # luminance of equal channels: the same image
    viewer.add_image(rgb, name="colour", rgb=True)
    widget = _add_widget(viewer)
    widget.model.value = "package folder…"
    assert not widget.folder.native.isHidden()  # the folder field shows (the viewer window itself is hidden)
    widget.folder.value = REPO / "model_cards" / "objectness-nuclei"
    qtbot = request.getfixturevalue("qtbot")
    worker = widget.run()
    assert worker is not None and not widget.button.enabled
    qtbot.waitUntil(lambda: "colour cells" in viewer.layers and widget.button.enabled, timeout=60_000)
    np.testing.assert_array_equal(viewer.layers["colour cells"].data, expected[None].labels)


def test_widget_reports_an_unusable_package_without_adding_a_layer(viewer, nuclei, tmp_path):
    viewer.add_image(nuclei, name="nuclei")
    widget = _add_widget(viewer)
    widget.background.value = False
    widget.model.value = "package folder…"
    widget.folder.value = tmp_path  # no card.json
    assert widget.run() is None
    assert [layer.name for layer in viewer.layers] == ["nuclei"]


def test_napari_opens_an_output_folder_with_the_plugin_reader(viewer, output_folder):
    import npe2
    manager = npe2.PluginManager.instance()
    try:
        manager.get_manifest("cellpoint")
    except KeyError:
        manager.register(npe2.PluginManifest.from_file(MANIFEST))
    layers = viewer.open(str(output_folder), plugin="cellpoint")
    assert [layer.name for layer in layers] == ["img0", "img1"]
    assert {type(layer).__name__ for layer in layers} == {"Labels"}
    assert "area" in layers[0].features and len(layers[0].features) == len(np.unique(layers[0].data)) - 1

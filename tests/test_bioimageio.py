"""The bioimage.io export (`cellpoint export --bioimageio OUT --package NAME`, `cellpoint.export.bioimageio`):
the description of a package's network validates with bioimageio.spec (and passes bioimageio.core's test,
which reruns the weights on the test input, where bioimageio.core is installed), its test tensors reproduce
with onnxruntime, and it says what it holds: the network's maps, the card's licence, the method's paper, the
training data. Skipped where bioimageio.spec is not installed (pip install 'cellpoint[bioimageio]')."""
from __future__ import annotations

import importlib.util
import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from click.testing import CliRunner

pytest.importorskip("bioimageio.spec", reason="bioimageio.spec is not installed (pip install 'cellpoint[bioimageio]')")

from bioimageio.spec import load_description  # noqa: E402

from cellpoint.export.bioimageio import (DESCRIPTION_FILE, METHOD_PAPERS, apply_preprocessing,  # noqa: E402
                                         build_description, documentation, export_bioimageio, non_commercial_data,
                                         preprocessing_steps, sample_tile)
from cellpoint.runtime.cli import main  # noqa: E402
from cellpoint.runtime.package import list_models, load_package  # noqa: E402

HAVE_CORE = importlib.util.find_spec("bioimageio.core") is not None


@pytest.fixture(scope="module")
def described(tmp_path_factory) -> Path:
    """`cellpoint export --bioimageio OUT --package objectness-nuclei`, as a user runs it."""
    out = tmp_path_factory.mktemp("bioimageio") / "objectness"
    result = CliRunner().invoke(main, ["export", "--bioimageio", str(out), "--package", "objectness-nuclei",
                                       "--author", "A. Author", "--author", "B. Author"])
    assert result.exit_code == 0, result.output
    assert f"wrote the bioimage.io description {out / DESCRIPTION_FILE}" in result.output
    return out


def test_the_description_validates_with_bioimageio_spec(described):
    description = load_description(described / DESCRIPTION_FILE, perform_io_checks=True)
    summary = description.validation_summary
    assert summary.status in ("valid-format", "passed"), summary.format()
    assert type(description).__name__ == "ModelDescr" and description.type == "model"
    assert str(description.format_version).startswith("0.5")
    assert not [d for d in summary.details if d.status == "failed"]


@pytest.mark.skipif(not HAVE_CORE, reason="bioimageio.core is not installed (it reruns the weights on the test input)")
def test_bioimageio_core_reruns_the_network_and_passes(described):
    from bioimageio.core import test_description
    summary = test_description(described / DESCRIPTION_FILE)
    assert summary.status == "passed", summary.format()


def test_the_test_tensors_reproduce_with_onnxruntime(described):
    description = load_description(described / DESCRIPTION_FILE, perform_io_checks=False)
    [tensor] = description.inputs
    steps = [{"id": step.id, "kwargs": step.kwargs.model_dump()} for step in tensor.preprocessing
             if step.id != "ensure_dtype"]  # the spec's own float32 casts around the steps
    assert [s["id"] for s in steps] == ["scale_range", "clip"]
    x = np.load(described / "test_input.npy")
    session = ort.InferenceSession(str(described / "model.onnx"), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].name == str(tensor.id)
    outputs = dict(zip([o.name for o in session.get_outputs()],
                       session.run(None, {str(tensor.id): apply_preprocessing(x, steps)})))
    for out in description.outputs:
        expected = np.load(described / f"test_{out.id}.npy")
        np.testing.assert_allclose(outputs[str(out.id)], expected, rtol=1e-4, atol=1e-5)


def test_the_described_preprocessing_is_close_to_cellpoints_own():
    from cellpoint.runtime.normalize import normalize
    package = load_package("objectness-nuclei")
    tile = sample_tile(package)
    theirs = apply_preprocessing(tile, preprocessing_steps(package))[0]
    ours = normalize(tile[0], package.card.inputs[0].preprocessing)
    assert np.abs(theirs - ours).mean() < 0.01


def test_the_description_says_what_it_holds(described):
    content = (described / DESCRIPTION_FILE).read_text()
    description = load_description(described / DESCRIPTION_FILE, perform_io_checks=False)
    card = json.loads((described / "card.json").read_text())
    assert str(description.license) == "MIT" and card["license"].startswith("MIT")
    assert [a.name for a in description.authors] == ["A. Author", "B. Author"]
    [cite] = description.cite
    assert str(cite.doi) == METHOD_PAPERS["objectness"]["doi"] and cite.text == card["method_reference"]
    assert [str(o.id) for o in description.outputs] == [o["name"] for o in card["outputs"]]
    assert description.weights.onnx.sha256 == card["weights"]["sha256"]
    assert description.training_data.name == "objectness-nuclei training data"
    assert "dsb2018_bbbc038" in description.training_data.description
    assert "2018 Data Science Bowl" in content
    docs = (described / "README.md").read_text()
    assert "network** only" in docs and "`maps_and_seeds`" in docs and "cellpoint segment" in docs
    assert (described / "cover.png").is_file()


def test_strided_outputs_and_zip_files(tmp_path):
    written = export_bioimageio("lacss-nuclei", tmp_path / "lacss.zip")
    assert written.path == tmp_path / "lacss.zip" and written.status in ("valid-format", "passed")
    with zipfile.ZipFile(written.path) as archive:
        assert {DESCRIPTION_FILE, "model.onnx", "test_input.npy", "test_score.npy", "cover.png",
                "README.md", "card.json"} <= set(archive.namelist())
    description = load_description(written.path, perform_io_checks=True)
    assert description.validation_summary.status in ("valid-format", "passed")
    axes = {str(o.id): o.axes for o in description.outputs}
    assert [a.scale for a in axes["score"][2:]] == [4, 4] and [a.halo for a in axes["score"][2:]] == [8, 8]
    assert [a.scale for a in axes["features"][2:]] == [1, 1]
    with zipfile.ZipFile(written.path) as archive:
        with archive.open("test_input.npy") as f:
            x = np.load(f)
        with archive.open("test_score.npy") as f:
            assert np.load(f).shape[2:] == (x.shape[2] // 4, x.shape[3] // 4)


def test_every_bundled_method_has_a_paper_to_cite():
    methods = {load_package(m["name"]).card.method for m in list_models()}
    assert methods <= set(METHOD_PAPERS)


def test_non_commercial_training_data_is_named(tmp_path):
    folder = tmp_path / "livecell-package"
    shutil.copytree(load_package("objectness-nuclei").path, folder)
    card = json.loads((folder / "card.json").read_text())
    card["training_data"].append({"dataset": "livecell", "split": "train", "labels": "points",
                                  "licence": "CC BY-NC 4.0 (LIVECell; non-commercial)"})
    (folder / "card.json").write_text(json.dumps(card))
    package = load_package(folder)
    assert non_commercial_data(package) == ["livecell"]
    shapes = {"foreground": (1, 1, 256, 256), "centers": (1, 1, 256, 256)}
    content = build_description(package, shapes, ("A. Author",), None)
    assert "non-commercial" in content["description"] and "livecell" in content["description"]
    assert "CC BY-NC 4.0" in content["training_data"]["description"]
    assert "**Non-commercial data:**" in documentation(package, preprocessing_steps(package), shapes)


def test_the_command_explains_what_it_needs():
    result = CliRunner().invoke(main, ["export"])
    assert result.exit_code == 2 and "--bioimageio OUT --package" in result.output
    result = CliRunner().invoke(main, ["export", "--bioimageio", "x", "--package", "no-such-model"])
    assert result.exit_code == 1 and "no-such-model" in result.output


def test_a_checkpoint_is_exported_and_described_in_one_command(tiny_checkpoint, tmp_path):
    import tifffile
    from conftest import synthetic_nuclei
    tifffile.imwrite(tmp_path / "sample.tif", synthetic_nuclei(seed=1)[0])
    result = CliRunner().invoke(main, ["export", str(tiny_checkpoint), "--out", str(tmp_path / "tiny"), "--sample",
                                       str(tmp_path / "sample.tif"), "--bioimageio", str(tmp_path / "bio")])
    assert result.exit_code == 0, result.output
    description = load_description(tmp_path / "bio" / DESCRIPTION_FILE, perform_io_checks=True)
    assert description.validation_summary.status in ("valid-format", "passed"), description.validation_summary.format()
    assert description.weights.onnx.sha256 == load_package(tmp_path / "tiny").card.weights.sha256
    assert np.load(tmp_path / "bio" / "test_input.npy").shape[2:] == (128, 128)  # 96×128 px padded to the minimum

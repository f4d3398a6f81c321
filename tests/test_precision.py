"""Precision variants of a package's main graph: int8 (static quantisation) and fp16 made by
`cellpoint.export.precision`, listed in the card under checksums, close to fp32, chosen by the runtime."""
import json
import shutil

import numpy as np
import pytest

from cellpoint.runtime.errors import OptionError, PackageError
from cellpoint.runtime.package import load_package
from cellpoint.runtime.providers import choose_precision

from conftest import synthetic_nuclei

CALIBRATION = [(synthetic_nuclei(seed=s)[0], 18.0) for s in range(2, 6)]  # (image, its cells' diameter px)


def _copy(package, tmp_path, name="pkg"):
    copy = tmp_path / name
    shutil.copytree(package, copy)
    return copy


@pytest.fixture(scope="module")
def variant_package(tiny_package, tmp_path_factory):
    """The tiny package with an int8 variant (calibrated on synthetic nuclei) and an fp16 one, unmeasured."""
    from cellpoint.export.precision import add_variant
    folder = _copy(tiny_package, tmp_path_factory.mktemp("variants"))
    add_variant(folder, "int8", CALIBRATION, unmeasured=True, tiles=8, tile=64, log=lambda *_: None)
    add_variant(folder, "fp16", CALIBRATION, unmeasured=True, tiles=8, tile=64, log=lambda *_: None)
    return folder


def _outputs(path, x):
    import onnxruntime as ort
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"image": x})


def test_variant_graphs_give_outputs_close_to_fp32(variant_package):
    """On a synthetic image the calibration never saw, prepared as the runtime prepares it. The outputs are
    probability maps in [0, 1], so differences are absolute. fp16: float16 keeps 11 significant bits
    (relative step 2^-11 ≈ 5e-4 per operation; measured 1.5e-4 here), so 2e-3 leaves room for other CPUs'
    kernels. int8: the output map itself is rounded to 1/255 ≈ 0.004 of its calibrated range and every
    quantised activation before it to 1/255 of its own (measured 0.004 here, one step); 0.02 (five steps)
    allows other CPUs' int8 kernels (without VNNI, uint8×int8 products may saturate) while a wrong scale, a
    lost channel or a miscalibrated range (errors of order 0.1–1) fails."""
    from cellpoint.runtime.segmenter import Segmenter
    package = load_package(variant_package)
    seg = Segmenter(variant_package, precision="fp32")
    image, _ = seg._model_channels(synthetic_nuclei(shape=(128, 160), seed=11)[0], None)
    x = seg._network_input(image, 18.0)[0][None]
    want = _outputs(package.onnx_path, x)
    for precision, tolerance in (("fp16", 2e-3), ("int8", 0.02)):
        got = _outputs(package.main_graph_path(precision), x)
        assert [g.dtype for g in got] == [np.float32] * len(want)
        worst = max(float(np.abs(g - w).max()) for g, w in zip(got, want))
        assert worst <= tolerance, (precision, worst)
        assert package.card.variants[precision].parity_max_rel_diff <= tolerance


def test_the_card_lists_each_variant_with_its_checksum_and_how_it_was_made(variant_package):
    import onnx
    from cellpoint.runtime.package import sha256_file
    card = load_package(variant_package).card
    assert set(card.variants) == {"int8", "fp16"}
    for precision, variant in card.variants.items():
        assert variant.source == f"model.{precision}.onnx"
        assert variant.sha256 == sha256_file(variant_package / variant.source)
        assert variant.metrics == {} and variant.f1_50_loss is None      # added unmeasured
    int8 = card.variants["int8"].conversion
    assert int8["format"] == "QDQ" and int8["per_channel"] and int8["calibration_tiles"] == 8
    quantised = onnx.load(str(variant_package / "model.int8.onnx"))
    assert {"QuantizeLinear", "DequantizeLinear"} <= {n.op_type for n in quantised.graph.node}
    assert any(t.data_type == onnx.TensorProto.INT8 for t in quantised.graph.initializer)
    half = onnx.load(str(variant_package / "model.fp16.onnx"))
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in half.graph.initializer)
    assert all(v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
               for v in list(half.graph.input) + list(half.graph.output))
    readme = (variant_package / "README.md").read_text()
    assert "## Precision variants" in readme and "model.int8.onnx" in readme


def test_a_changed_variant_file_fails_its_checksum(variant_package, tmp_path):
    copy = _copy(variant_package, tmp_path)
    with open(copy / "model.int8.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(PackageError) as error:
        load_package(copy)
    assert "variants.int8.sha256" in str(error.value) and "model.int8.onnx" in str(error.value)


def test_a_missing_variant_file_or_unknown_precision_in_the_card_is_refused(variant_package, tmp_path):
    copy = _copy(variant_package, tmp_path)
    (copy / "model.fp16.onnx").unlink()
    with pytest.raises(PackageError, match="variants.fp16.source"):
        load_package(copy)
    copy = _copy(variant_package, tmp_path, "other")
    card = json.loads((copy / "card.json").read_text())
    card["variants"]["int4"] = card["variants"].pop("int8")
    (copy / "card.json").write_text(json.dumps(card))
    with pytest.raises(PackageError, match="variants"):
        load_package(copy)


def test_the_runtime_picks_the_precision(variant_package, tiny_package):
    from cellpoint.runtime.segmenter import Segmenter
    assert Segmenter(variant_package, device="cpu").precision == "int8"          # auto on the CPU
    for precision in ("fp32", "int8", "fp16"):
        seg = Segmenter(variant_package, device="cpu", precision=precision)
        assert seg.precision == precision
        labels, _ = seg.segment(synthetic_nuclei(seed=12)[0], diameter=18.0)
        assert labels.shape == (96, 128)
    assert Segmenter(tiny_package).precision == "fp32"                             # no variants: fp32
    # on a GPU, "auto" takes fp16 when the package ships it, never int8
    gpu = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert choose_precision("auto", ("fp32", "fp16", "int8"), gpu) == "fp16"
    assert choose_precision("auto", ("fp32", "int8"), gpu) == "fp32"
    assert choose_precision("auto", ("fp32", "fp16"), ["CPUExecutionProvider"]) == "fp32"


def test_asking_for_a_missing_or_unknown_precision_is_a_clear_error(tiny_package):
    from cellpoint.runtime.segmenter import Segmenter
    with pytest.raises(PackageError) as error:
        Segmenter(tiny_package, precision="int8")
    assert "tiny-nuclei" in str(error.value) and "no int8 variant" in str(error.value) and "fp32" in str(error.value)
    with pytest.raises(OptionError, match="int4"):
        Segmenter(tiny_package, precision="int4")


def test_no_variants_leaves_results_unchanged(tiny_package):
    from cellpoint.runtime.segmenter import Segmenter
    image = synthetic_nuclei(seed=13)[0]
    default = Segmenter(tiny_package).segment(image, diameter=18.0).labels
    fp32 = Segmenter(tiny_package, precision="fp32").segment(image, diameter=18.0).labels
    assert np.array_equal(default, fp32)


def _fake_metrics(f1_by_precision):
    """A stand-in for training.validate.diameter_metrics: F1@0.5 by the segmenter's precision."""
    def measure(segmenter, specs, log=print):
        return {spec: {"f1_50": f1_by_precision[segmenter.precision], "AP": 0.5} for spec in specs}
    return measure


def test_a_variant_that_loses_too_much_is_refused_and_the_package_left_unchanged(tiny_package, tmp_path,
                                                                                  monkeypatch):
    import cellpoint.training.validate as validate
    from cellpoint.export.precision import VariantRejected, add_variant
    folder = _copy(tiny_package, tmp_path)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    monkeypatch.setattr(validate, "diameter_metrics", _fake_metrics({"fp32": 0.900, "fp16": 0.894}))
    with pytest.raises(VariantRejected, match="loses 0.0060"):
        add_variant(folder, "fp16", eval_specs=["synthetic"], log=lambda *_: None)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert not folder.with_name(folder.name + ".partial").exists()


def test_a_measured_variant_within_the_loss_ships_with_its_figures(tiny_package, tmp_path, monkeypatch):
    import cellpoint.training.validate as validate
    from cellpoint.export.precision import add_variant
    folder = _copy(tiny_package, tmp_path)
    monkeypatch.setattr(validate, "diameter_metrics", _fake_metrics({"fp32": 0.900, "fp16": 0.896}))
    entry = add_variant(folder, "fp16", eval_specs=["synthetic"], log=lambda *_: None)
    card = load_package(folder).card
    assert entry["f1_50_loss"] == pytest.approx(0.004)
    assert card.variants["fp16"].metrics["synthetic"]["f1_50"] == 0.896
    assert card.metrics["synthetic"]["f1_50"] == 0.900                   # fp32's figure, from the same run


def test_a_variant_is_only_made_with_a_val_measurement_or_explicitly_unmeasured(tiny_package):
    from cellpoint.export.precision import add_variant
    with pytest.raises(ValueError, match="--eval"):
        add_variant(tiny_package, "int8", CALIBRATION)
    with pytest.raises(ValueError, match="precision"):
        add_variant(tiny_package, "int4", CALIBRATION, unmeasured=True)


def test_export_precision_needs_eval(tiny_checkpoint, tmp_path):
    from click.testing import CliRunner
    from cellpoint.export.cli import export
    result = CliRunner().invoke(export, [str(tiny_checkpoint), "--out", str(tmp_path / "x"), "--precision", "int8"])
    assert result.exit_code != 0 and "--eval" in result.output and not (tmp_path / "x").exists()


def test_changing_the_network_input_drops_the_variants(variant_package, tmp_path):
    from cellpoint.export.normalisation import set_normalisation
    copy = _copy(variant_package, tmp_path)
    card = set_normalisation(copy, "percentile_robust")
    assert "variants" not in card and not (copy / "model.int8.onnx").exists()
    assert load_package(copy).precisions == ("fp32",)

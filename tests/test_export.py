"""Export: ONNX parity with torch, the card, and checksum protection."""
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from cellpoint.export.onnx_export import ParityError, check_parity, export_main_graph  # noqa: E402
from cellpoint.runtime.package import PackageError, load_package, sha256_file  # noqa: E402
from cellpoint.training.checkpoint import load_checkpoint  # noqa: E402
from cellpoint.training.methods import get_method  # noqa: E402


def export_network(checkpoint: dict, path):
    """The checkpoint's main graph written to `path`; returns the traced module."""
    plan = get_method(checkpoint["method"]).export(checkpoint, None)
    export_main_graph(plan, checkpoint["model"]["in_channels"], path)
    return plan.module


def test_package_has_weights_card_readme_and_sample(tiny_package):
    card = json.loads((tiny_package / "card.json").read_text())
    assert card["weights"]["sha256"] == sha256_file(tiny_package / "model.onnx")
    assert card["method"] == "objectness" and card["label_kind"] == "points"
    assert card["decoder"]["name"] == "maps_and_seeds"
    assert card["inputs"][0]["channels"] == 1 and card["object_diameter_px"] == 18.0
    assert card["weights"]["parity_max_rel_diff"] < 1e-4
    for sample in card["samples"]:
        assert (tiny_package / sample["input"]).is_file() and (tiny_package / sample["output"]).is_file()
    assert "tiny test model" in (tiny_package / "README.md").read_text()


def test_onnx_matches_torch_on_other_sizes_and_batches(tiny_checkpoint, tmp_path):
    module = export_network(load_checkpoint(tiny_checkpoint), tmp_path / "m.onnx")
    x = np.random.default_rng(0).random((2, 1, 50, 77), dtype=np.float32)  # odd sizes, batch of 2
    assert check_parity(module, tmp_path / "m.onnx", x) < 1e-4


def test_parity_check_fails_loudly_when_graphs_differ(tiny_checkpoint, tmp_path):
    module = export_network(load_checkpoint(tiny_checkpoint), tmp_path / "m.onnx")
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.5)
    with pytest.raises(ParityError, match="disagree"):
        check_parity(module, tmp_path / "m.onnx", np.ones((1, 1, 32, 32), np.float32))


def test_tampered_weights_fail_the_checksum(tiny_package, tmp_path):
    import shutil
    copy = tmp_path / "pkg"
    shutil.copytree(tiny_package, copy)
    data = bytearray((copy / "model.onnx").read_bytes())
    data[-10] ^= 0xFF
    (copy / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(PackageError, match="checksum"):
        load_package(copy)


def test_decoder_parameters_can_be_set_at_export(tiny_checkpoint, tmp_path):
    from click.testing import CliRunner
    from cellpoint.export.cli import export
    out = tmp_path / "pkg"
    ok = CliRunner().invoke(export, [str(tiny_checkpoint), "--out", str(out), "--decoder-param", "foreground_threshold=0.2"])
    assert ok.exit_code == 0, ok.output
    assert json.loads((out / "card.json").read_text())["decoder"]["params"]["foreground_threshold"] == 0.2
    shared = CliRunner().invoke(export, [str(tiny_checkpoint), "--out", str(tmp_path / "o"),
                                         "--decoder-param", "outline_contrast=0.3"])
    assert shared.exit_code == 0, shared.output
    assert json.loads((tmp_path / "o" / "card.json").read_text())["postprocess"]["outline_contrast"] == 0.3
    bad = CliRunner().invoke(export, [str(tiny_checkpoint), "--out", str(tmp_path / "x"), "--decoder-param", "nope=1"])
    assert bad.exit_code != 0 and "nope" in bad.output and not (tmp_path / "x").exists()


def test_refine_diameter_at_export_becomes_the_packages_default(tiny_checkpoint, tmp_path):
    from click.testing import CliRunner
    from cellpoint.export.cli import export
    from cellpoint.runtime import Segmenter
    plain, refined = tmp_path / "plain", tmp_path / "refined"
    assert CliRunner().invoke(export, [str(tiny_checkpoint), "--out", str(plain)]).exit_code == 0
    ok = CliRunner().invoke(export, [str(tiny_checkpoint), "--out", str(refined), "--refine-diameter"])
    assert ok.exit_code == 0, ok.output
    assert not Segmenter(plain).refines_diameter and Segmenter(refined).refines_diameter
    assert "segmented again at the median size" in (refined / "README.md").read_text()

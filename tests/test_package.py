"""The package contract: card.json is checked once, at load, and every failure names the package and field."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from cellpoint.runtime.card import CARD_FORMAT, Card, card_schema
from cellpoint.runtime.decoders import BUILT_IN
from cellpoint.runtime.errors import PackageError
from cellpoint.runtime.package import bundled_dir, list_models, load_package

REQUIRED = [f.encode_name for f in msgspec.structs.fields(Card) if f.required]
SCHEMA_FILE = Path(__file__).resolve().parents[1] / "runtime" / "card.schema.json"


def _copy(package: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "pkg"
    shutil.copytree(package, copy)
    return copy


def _edit_card(folder: Path, edit) -> None:
    card = json.loads((folder / "card.json").read_text())
    edit(card)
    (folder / "card.json").write_text(json.dumps(card))


@pytest.mark.parametrize("field", REQUIRED)
def test_a_card_missing_a_required_field_is_refused_naming_package_and_field(tiny_package, tmp_path, field):
    copy = _copy(tiny_package, tmp_path)
    _edit_card(copy, lambda card: card.pop(field))
    with pytest.raises(PackageError) as error:
        load_package(copy)
    message = str(error.value)
    assert str(copy) in message and f"`{field}`" in message and "\n" not in message


@pytest.mark.parametrize("edit, words", [
    (lambda c: c["decoder"]["params"].update(bogus=1), ["decoder.params", "bogus"]),
    (lambda c: c["decoder"]["params"].update(center_threshold="high"), ["decoder.params.center_threshold"]),
    (lambda c: c["decoder"].update(name="no_such_decoder"), ["decoder.name", "no_such_decoder"]),
    (lambda c: c.update(extra_field=1), ["extra_field"]),
    (lambda c: c["inputs"][0]["preprocessing"].update(kind="zscore"), ["inputs[0].preprocessing.kind"]),
    (lambda c: c.update(object_diameter_px=-3), ["object_diameter_px"]),
    (lambda c: c["weights"].update(sha256="abc"), ["weights.sha256"]),
    (lambda c: c.update(format="cellpoint-card/9"), ["format", "cellpoint-card/9"]),
])
def test_invalid_cards_are_refused_naming_the_field(tiny_package, tmp_path, edit, words):
    copy = _copy(tiny_package, tmp_path)
    _edit_card(copy, edit)
    with pytest.raises(PackageError) as error:
        load_package(copy)
    assert str(copy) in str(error.value) and all(w in str(error.value) for w in words), str(error.value)


@pytest.mark.parametrize("source", ["../../model.onnx", "/etc/passwd", "sub/../../model.onnx", "..\\model.onnx"])
def test_files_outside_the_package_folder_are_refused(tiny_package, tmp_path, source):
    copy = _copy(tiny_package, tmp_path)
    shutil.copy(copy / "model.onnx", tmp_path / "model.onnx")
    _edit_card(copy, lambda card: card["weights"].update(source=source))
    with pytest.raises(PackageError, match="weights.source"):
        load_package(copy)


def test_a_symlink_leading_out_of_the_package_is_refused(tiny_package, tmp_path):
    copy = _copy(tiny_package, tmp_path)
    outside = tmp_path / "elsewhere.onnx"
    shutil.move(copy / "model.onnx", outside)
    (copy / "model.onnx").symlink_to(outside)
    with pytest.raises(PackageError, match="leads out of the package"):
        load_package(copy)


def test_missing_referenced_files_are_refused(tiny_package, tmp_path):
    copy = _copy(tiny_package, tmp_path)
    (copy / "sample1_labels.tif").unlink()
    with pytest.raises(PackageError, match=r"samples\[0\].output: file sample1_labels.tif is missing"):
        load_package(copy)


def test_a_changed_asset_fails_its_checksum(tmp_path):
    copy = _copy(bundled_dir() / "shape-nuclei", tmp_path)
    weights = json.loads((copy / "shape_mlp.json").read_text())
    weights["fc3"]["bias"][0] += 1.0
    (copy / "shape_mlp.json").write_text(json.dumps(weights))
    with pytest.raises(PackageError, match="shape_mlp.json: checksum mismatch"):
        load_package(copy)


def _as_v1(card: dict) -> dict:
    """The cellpoint-card/1 layout of a /2 card (decoder parameters flat, "file" for graphs)."""
    old = dict(card, format="cellpoint-card/1")
    old["decoder"] = {"name": card["decoder"]["name"], **card["decoder"]["params"],
                      **{k: v for k, v in card.get("postprocess", {}).items() if v is not None}}
    old["weights"] = {("parity_max_abs_diff" if k == "parity_max_rel_diff" else k): v
                      for k, v in card["weights"].items()}
    old["graphs"] = {r: {("file" if k == "source" else k): v for k, v in g.items()} for r, g in card["graphs"].items()}
    for key in ("postprocess", "assets"):
        old.pop(key, None)
    return old


def test_version_1_cards_load_by_migration_and_upgrade_in_place(tmp_path):
    from cellpoint.export.upgrade import upgrade_package
    copy = _copy(bundled_dir() / "shape-nuclei", tmp_path)
    current = load_package(copy)
    card = json.loads((copy / "card.json").read_text())
    old = _as_v1(card)
    old["decoder"]["shape_mlp"] = json.loads((copy / "shape_mlp.json").read_text())
    old["decoder"]["decode_at"] = "image"        # keys /1 cards carried that no decoder reads are dropped
    (copy / "shape_mlp.json").unlink()
    old.pop("assets", None)
    (copy / "card.json").write_text(json.dumps(old))
    migrated = load_package(copy)
    assert migrated.card == current.card.__class__(**{**msgspec.structs.asdict(current.card), "assets": {}})
    assert migrated.params == current.params and migrated.assets == current.assets
    assert upgrade_package(copy) and json.loads((copy / "card.json").read_text())["format"] == CARD_FORMAT
    assert load_package(copy).assets == current.assets
    assert not upgrade_package(copy)             # already current


def test_the_committed_json_schema_is_the_generated_one_and_bundled_cards_follow_it():
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(json.dumps(card_schema({d.name: d for d in BUILT_IN})))
    assert json.loads(SCHEMA_FILE.read_text()) == schema, ("runtime/card.schema.json is stale: python -c "
                                                           "'from cellpoint.export.card import write_card_schema; "
                                                           "write_card_schema()'")
    for model in list_models():
        jsonschema.validate(json.loads((Path(model["path"]) / "card.json").read_text()), schema)


def test_segment_reports_a_bad_card_in_one_line_and_fails(tiny_package, tmp_path):
    copy = _copy(tiny_package, tmp_path)
    _edit_card(copy, lambda card: card.pop("weights"))
    image = tmp_path / "a.tif"
    shutil.copy(next(copy.glob("sample1_input*")), image)
    result = subprocess.run([sys.executable, "-m", "cellpoint.runtime.cli", "segment", str(image), "--model",
                             str(copy), "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and str(copy) in lines[0] and "`weights`" in lines[0], result.stderr

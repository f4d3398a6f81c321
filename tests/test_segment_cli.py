"""`cellpoint segment` and `cellpoint models`: outputs, skipping, bad input, COCO results."""
import json

import numpy as np
import tifffile
from click.testing import CliRunner

from cellpoint.runtime.cli.models import models
from cellpoint.runtime.cli.segment import expand_inputs, segment
from conftest import synthetic_nuclei


def _inputs(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for k in range(2):
        tifffile.imwrite(folder / f"img{k}.tif", synthetic_nuclei(seed=k)[0])
    (folder / "broken.tif").write_bytes(b"not a tiff at all")
    tifffile.imwrite(folder / "nan.tif", np.full((32, 32), np.nan, np.float32))
    return folder


def test_segment_writes_outputs_and_reports_bad_files(tiny_package, tmp_path):
    folder = _inputs(tmp_path)
    out = tmp_path / "out"
    result = CliRunner().invoke(segment, [str(folder), "--model", str(tiny_package), "--out", str(out),
                                          "--overlay", "--coco", str(out / "results.json")])
    assert result.exit_code == 1                      # two files failed...
    assert "broken.tif" in result.output and "nan.tif" in result.output.lower()
    for k in range(2):                                # ...and the others were still written
        labels = tifffile.imread(out / f"img{k}_labels.tif")
        assert labels.shape == (96, 128) and labels.dtype == np.uint16
        assert (out / f"img{k}_overlay.png").is_file() and (out / f"img{k}_instances.csv").is_file()
    results = json.loads((out / "results.json").read_text())
    assert all({"image_id", "segmentation", "score", "bbox"} <= set(r) for r in results)
    assert not list(out.glob("*.tmp*")) and [p.name for p in out.glob(".*")] == [".cellpoint"]  # nothing half-written left


def test_segment_skips_existing_outputs_unless_overwrite(tiny_package, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    tifffile.imwrite(folder / "a.tif", synthetic_nuclei()[0])
    out = tmp_path / "out"
    args = [str(folder / "a.tif"), "--model", str(tiny_package), "--out", str(out)]
    assert CliRunner().invoke(segment, args).exit_code == 0
    marker = out / "a_labels.tif"
    before = marker.stat().st_mtime_ns
    again = CliRunner().invoke(segment, args)
    assert "skipped 1" in again.output and marker.stat().st_mtime_ns == before
    assert "segmented 1" in CliRunner().invoke(segment, args + ["--overwrite"]).output


def test_unknown_model_is_a_clear_error(tmp_path):
    tifffile.imwrite(tmp_path / "a.tif", np.zeros((32, 32), np.uint8))
    result = CliRunner().invoke(segment, [str(tmp_path), "--model", "no-such-model", "--out", str(tmp_path / "out")])
    assert result.exit_code == 3 and "no-such-model" in result.output


def test_expand_inputs_takes_files_folders_and_globs_but_not_our_outputs(tmp_path):
    for name in ("a.tif", "b.png", "a_labels.tif", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in expand_inputs((str(tmp_path),))] == ["a.tif", "b.png"]
    assert [p.name for p in expand_inputs((str(tmp_path / "*.png"),))] == ["b.png"]


def test_models_lists_bundled_packages():
    result = CliRunner().invoke(models)
    assert result.exit_code == 0


def test_coco_results_of_segment_are_scored_by_evaluate_via_file_names(tiny_package, tmp_path):
    from cellpoint.runtime.coco_results import labels_to_coco_results
    from cellpoint.training.cli.evaluate import evaluate
    folder = tmp_path / "in"
    folder.mkdir()
    images, annotations = [], []
    for k, seed in enumerate((3, 4)):
        image, labels, _ = synthetic_nuclei(seed=seed)
        tifffile.imwrite(folder / f"img{k}.tif", image)
        images.append({"id": 10 + k, "file_name": f"img{k}.tif", "height": 96, "width": 128})
        for r in labels_to_coco_results(labels, 10 + k):
            annotations.append(dict(r, id=len(annotations) + 1, iscrowd=0))
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps({"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "cell"}]}))
    results = tmp_path / "results.json"
    assert CliRunner().invoke(segment, [str(folder), "--model", str(tiny_package), "--out", str(tmp_path / "o"),
                                        "--coco", str(results)]).exit_code == 0
    assert {r["image_id"] for r in json.loads(results.read_text())} <= {1, 2}   # input order, not GT ids
    scored = CliRunner().invoke(evaluate, ["--gt", str(gt), "--pred", str(results), "--json"])
    assert scored.exit_code == 0, scored.output
    assert json.loads(scored.output)["n_gt"] == len(annotations)


def _z_stack(tmp_path, name="stack.tif"):
    """A 2-plane ImageJ z-stack of synthetic nuclei in its own folder."""
    folder = tmp_path / "in"
    folder.mkdir(exist_ok=True)
    stack = np.stack([synthetic_nuclei(seed=5)[0], synthetic_nuclei(seed=6)[0]])
    tifffile.imwrite(folder / name, stack, imagej=True, metadata={"axes": "ZYX"})
    return folder / name


def test_planes_segments_each_plane_of_a_stack(tiny_package, tmp_path):
    stack = _z_stack(tmp_path)
    tifffile.imwrite(stack.parent / "flat.tif", synthetic_nuclei(seed=7)[0])  # an ordinary image alongside
    out = tmp_path / "out"
    args = [str(stack.parent), "--model", str(tiny_package), "--out", str(out), "--planes", "--overlay",
            "--coco", str(out / "results.json")]
    result = CliRunner().invoke(segment, args)
    assert result.exit_code == 0, result.output
    assert "segmented 3" in result.output
    for stem in ("stack_z0", "stack_z1", "flat"):
        assert tifffile.imread(out / f"{stem}_labels.tif").shape == (96, 128)
        assert (out / f"{stem}_instances.csv").is_file() and (out / f"{stem}_overlay.png").is_file()
    assert not (out / "stack_labels.tif").exists()
    results = json.loads((out / "results.json").read_text())
    planes = {(r["file_name"], r.get("plane"), r["image_id"]) for r in results}
    assert {(name, plane) for name, plane, _ in planes} <= {("flat.tif", None), ("stack.tif", "z0"),
                                                             ("stack.tif", "z1")}
    assert len({image_id for *_, image_id in planes}) == len({(n, p) for n, p, _ in planes})  # one id per plane
    again = CliRunner().invoke(segment, args[:-2])  # without --coco: both planes' outputs exist
    assert again.exit_code == 0 and "skipped 3" in again.output


def test_stack_without_planes_fails_with_one_line_and_the_batch_goes_on(tiny_package, tmp_path):
    stack = _z_stack(tmp_path)
    tifffile.imwrite(stack.parent / "flat.tif", synthetic_nuclei(seed=7)[0])
    out = tmp_path / "out"
    result = CliRunner().invoke(segment, [str(stack.parent), "--model", str(tiny_package), "--out", str(out)])
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]  # stderr and stdout
    assert len(errors) == 1 and "stack.tif" in errors[0] and "--planes" in errors[0]
    assert "z-stack of 2 planes" in errors[0]
    assert (out / "flat_labels.tif").is_file() and not list(out.glob("stack*"))
    assert "segmented 1" in result.output and "failed 1" in result.output

"""The bad-input and fault matrix of `cellpoint segment`, each case run through the command in a subprocess
(tests/fault_cli.py injects the faults): the exit code, one line naming the file or option and the reason,
no traceback, and the other inputs' outputs present and identical to a clean run.

Exit codes: 0 all done, 1 some inputs failed, 2 bad option, 3 unusable model package, 4 output not
writable. Uses the bundled objectness-nuclei package on small synthetic images (about 40 s in all)."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

from conftest import synthetic_nuclei

DRIVER = Path(__file__).parent / "fault_cli.py"
GOOD = ("a", "b", "c")


def run(args, fault="none", timeout=120) -> subprocess.CompletedProcess:
    """`cellpoint <args>` in a subprocess, with `fault` injected (see fault_cli.py)."""
    return subprocess.run([sys.executable, str(DRIVER), fault, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


def error_lines(result) -> list[str]:
    """The lines of stderr that report an error (ours: 'error: ...'; click's: 'Error: ...')."""
    return [line for line in result.stderr.splitlines() if line.lower().startswith("error:")]


def assert_clean_failure(result, code: int, *needles: str) -> None:
    """Exit `code`, no traceback, exactly one error line, and it contains every needle."""
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == code, (result.returncode, result.stderr)
    lines = error_lines(result)
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def outputs_of(out: Path, stem: str) -> tuple[np.ndarray, str]:
    """An image's label image and instance table."""
    return tifffile.imread(out / f"{stem}_labels.tif"), (out / f"{stem}_instances.csv").read_text()


def assert_same_outputs(out: Path, reference: Path, stems=GOOD) -> None:
    for stem in stems:
        labels, table = outputs_of(out, stem)
        ref_labels, ref_table = outputs_of(reference, stem)
        assert np.array_equal(labels, ref_labels) and table == ref_table, stem


def no_temp_files(out: Path) -> bool:
    return not [p for p in out.rglob("*") if ".tmp" in p.name]


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """A folder of three good images (a, b: 16-bit TIFF; c: 8-bit PNG) of synthetic nuclei."""
    import cv2
    folder = tmp_path_factory.mktemp("images")
    for seed, stem in enumerate(GOOD):
        image = synthetic_nuclei(shape=(96, 128), seed=seed)[0]
        if stem == "c":
            cv2.imwrite(str(folder / "c.png"), np.clip(image, 0, 255).astype(np.uint8))
        else:
            tifffile.imwrite(folder / f"{stem}.tif", (image * 100).astype(np.uint16))
    return folder


@pytest.fixture(scope="module")
def reference(images, tmp_path_factory) -> Path:
    """The outputs of a clean run over `images`."""
    out = tmp_path_factory.mktemp("reference")
    result = run(["segment", images, "--out", out])
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    return out


def copy_images(images: Path, to: Path, copies: int = 1) -> Path:
    to.mkdir()
    for path in images.iterdir():
        shutil.copy(path, to / path.name)
        for k in range(1, copies):
            shutil.copy(path, to / f"{path.stem}{k}{path.suffix}")
    return to


# ---------------------------------------------------------------------------------- a clean run

def test_clean_run_reports_progress_in_a_log_and_writes_a_run_report(reference):
    report = json.loads((reference / "cellpoint_run.json").read_text())
    assert report["status"] == "done" and report["exit_code"] == 0
    assert report["counts"] == {"segmented": 3, "skipped": 0, "failed": 0}
    assert report["model"]["name"] == "objectness-nuclei" and len(report["model"]["sha256"]) == 64
    assert [Path(i["input"]).stem for i in report["images"]] == list(GOOD)
    assert report["versions"]["onnxruntime"] and report["options"]["tile"] == 768
    table = (reference / "cellpoint_images.csv").read_text().splitlines()
    assert len(table) == 4 and table[0].startswith("image,plane,cells")
    assert no_temp_files(reference)


def test_progress_lines_when_stderr_is_not_a_terminal(images, tmp_path):
    result = run(["segment", images, "--out", tmp_path / "out"])
    assert result.returncode == 0
    assert "progress: 3/3 images (0 failed)" in result.stderr and "img/s" in result.stderr


# ---------------------------------------------------------------------------------- bad inputs

def test_bad_inputs_fail_one_line_each_and_the_batch_goes_on(images, reference, tmp_path):
    folder = copy_images(images, tmp_path / "in")
    (folder / "empty.tif").write_bytes(b"")
    (folder / "truncated.png").write_bytes((folder / "c.png").read_bytes()[:60])
    (folder / "fake.tif").write_text("not an image")
    tifffile.imwrite(folder / "nan.tif", np.full((32, 32), np.nan, np.float32))
    tifffile.imwrite(folder / "pixel.tif", np.zeros((1, 1), np.uint8))
    tifffile.imwrite(folder / "stack.tif", np.zeros((3, 32, 32), np.uint8))  # numpy's z-stack, saved as it is
    out = tmp_path / "out"
    result = run(["segment", folder, folder / "missing.tif", "--out", out])
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    bad = {"empty.tif": "file is empty (0 bytes)", "truncated.png": "cannot decode", "fake.tif": "cannot read TIFF",
           "nan.tif": "NaN", "pixel.tif": "too small", "stack.tif": "--planes", "missing.tif": "not found"}
    lines = error_lines(result)
    assert len(lines) == len(bad), result.stderr
    for name, reason in bad.items():
        [line] = [line for line in lines if name in line]
        assert reason in line, line
    assert_same_outputs(out, reference)
    assert json.loads((out / "cellpoint_run.json").read_text())["counts"]["failed"] == len(bad)


# ---------------------------------------------------------------------------------- options

@pytest.mark.parametrize("option, value, needle", [
    ("--diameter", "0", "--diameter"), ("--diameter", "-5", "--diameter"), ("--diameter", "inf", "--diameter"),
    ("--diameter", "nan", "--diameter"), ("--diameter", "1e9", "outside"), ("--diameter", "1e-9", "outside"),
    ("--diameter", "abc", "--diameter"), ("--pixel-size", "0", "--pixel-size"),
    ("--pixel-size", "-1", "--pixel-size"), ("--pixel-size", "inf", "--pixel-size"),
    ("--tile", "0", "--tile"), ("--tile", "1", "--tile"), ("--tile", "64", "at least 128"),
    ("--channels", "a", "--channels"), ("--channels", "-1", "--channels"), ("--channels", "0,,1", "--channels"),
    ("--device", "tpu", "--device"),
])
def test_bad_options_are_usage_errors_before_any_work(images, tmp_path, option, value, needle):
    out = tmp_path / "out"
    result = run(["segment", images, "--out", out, option, value])
    assert_clean_failure(result, 2, needle)
    assert not out.exists()


def test_no_inputs_is_a_usage_error(tmp_path):
    (tmp_path / "empty").mkdir()
    assert_clean_failure(run(["segment", tmp_path / "empty", "--out", tmp_path / "out"]), 2, "no input images")


# ---------------------------------------------------------------------------------- the model package

def test_unknown_or_corrupt_package_is_exit_3(images, tmp_path):
    from cellpoint.runtime.package import bundled_dir
    assert_clean_failure(run(["segment", images, "--out", tmp_path / "o1", "--model", "no-such-model"]), 3,
                         "no-such-model")
    package = tmp_path / "pkg"
    shutil.copytree(bundled_dir() / "objectness-nuclei", package)
    onnx = package / "model.onnx"
    data = bytearray(onnx.read_bytes())
    data[len(data) // 2] ^= 0xFF
    onnx.write_bytes(bytes(data))
    assert_clean_failure(run(["segment", images, "--out", tmp_path / "o2", "--model", package]), 3,
                         "model.onnx", "checksum")


def test_a_card_missing_any_required_field_is_exit_3_naming_it(images, tmp_path):
    from cellpoint.runtime.package import bundled_dir
    package = tmp_path / "pkg"
    shutil.copytree(bundled_dir() / "objectness-nuclei", package)
    card = json.loads((package / "card.json").read_text())
    required = ["format", "name", "method", "label_kind", "weights", "inputs", "outputs", "object_diameter_px",
                "tiling", "decoder"]
    for field in required:
        broken = {k: v for k, v in card.items() if k != field}
        (package / "card.json").write_text(json.dumps(broken))
        result = run(["segment", images, "--out", tmp_path / "out", "--model", package])
        assert_clean_failure(result, 3, "card.json", field)
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------- the output folder

def test_unwritable_output_folder_is_exit_4_before_any_image(images, tmp_path):
    out = tmp_path / "readonly"
    out.mkdir()
    result = run(["segment", images, "--out", out], fault=f"unwritable:{out}")
    assert_clean_failure(result, 4, str(out), "Permission denied")
    assert not list(out.iterdir())


def test_full_disk_stops_at_once_keeping_what_was_finished_and_a_rerun_completes(images, reference, tmp_path):
    out = tmp_path / "out"
    result = run(["segment", images, "--out", out], fault="enospc-from:b_labels.tif")
    assert_clean_failure(result, 4, "b_labels.tif", "No space left on device")
    assert_same_outputs(out, reference, stems=("a",))
    assert not (out / "b_labels.tif").exists() and not (out / "c_labels.tif").exists()
    assert no_temp_files(out)
    again = run(["segment", images, "--out", out])
    assert again.returncode == 0, again.stderr
    assert "segmented 2, skipped 1" in again.stdout
    assert_same_outputs(out, reference)


def test_killed_mid_image_then_rerun_redoes_the_partial_image(images, reference, tmp_path):
    out = tmp_path / "out"
    killed = run(["segment", images, "--out", out], fault="kill-after:b_labels.tif")
    assert killed.returncode == -9
    assert (out / "b_labels.tif").exists() and not (out / "b_instances.csv").exists()
    (out / ".b_instances.0badc0de.tmp.csv").write_text("half")  # as a kill in the middle of a write leaves
    again = run(["segment", images, "--out", out])
    assert again.returncode == 0 and "Traceback" not in again.stderr, again.stderr
    assert "segmented 2, skipped 1" in again.stdout  # b (partial) and c; a was complete
    assert_same_outputs(out, reference)
    assert no_temp_files(out)


def test_a_deleted_table_is_made_again_by_a_rerun(images, reference, tmp_path):
    out = tmp_path / "out"
    assert run(["segment", images, "--out", out]).returncode == 0
    (out / "b_instances.csv").unlink()
    again = run(["segment", images, "--out", out])
    assert again.returncode == 0 and "segmented 1, skipped 2" in again.stdout, again.stdout
    assert_same_outputs(out, reference)


def test_outputs_and_temp_files_are_never_inputs(images, reference, tmp_path):
    folder = copy_images(images, tmp_path / "in")
    first = run(["segment", folder, "--out", folder, "--overlay"])
    assert first.returncode == 0, first.stderr
    (folder / ".a_labels.0badc0de.tmp.tif").write_bytes((folder / "a_labels.tif").read_bytes())
    again = run(["segment", folder, "--out", folder, "--overlay", "--overwrite"])
    assert again.returncode == 0 and "segmented 3," in again.stdout, again.stdout
    assert "3 image(s)" in again.stderr
    assert_same_outputs(folder, reference)


def test_two_runs_on_one_folder_segment_each_image_once(images, reference, tmp_path):
    folder = copy_images(images, tmp_path / "in", copies=3)  # 9 images
    out = tmp_path / "out"
    command = [sys.executable, str(DRIVER), "none", "segment", str(folder), "--out", str(out)]
    runs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [r.communicate(timeout=120) for r in runs]
    assert all(r.returncode == 0 for r in runs), results
    segmented = sum(line.count(" cells, diameter ") for _, err in results for line in err.splitlines())
    assert segmented == 9, results
    assert_same_outputs(out, reference)
    assert len((out / "cellpoint_images.csv").read_text().splitlines()) == 1 + 9


def test_workers_give_the_outputs_of_a_sequential_run(images, reference, tmp_path):
    folder = copy_images(images, tmp_path / "in", copies=3)
    out = tmp_path / "out"
    result = run(["segment", folder, "--out", out, "--workers", "3"])
    assert result.returncode == 0 and "segmented 9," in result.stdout, result.stderr
    assert_same_outputs(out, reference)
    for stem in GOOD:
        for k in (1, 2):
            assert np.array_equal(outputs_of(out, f"{stem}{k}")[0], outputs_of(reference, stem)[0])
    report = json.loads((out / "cellpoint_run.json").read_text())
    assert report["counts"]["segmented"] == 9 and report["options"]["workers"] == 3


def test_a_dask_local_cluster_gives_the_outputs_of_a_local_run(images, reference, tmp_path):
    pytest.importorskip("distributed", reason="Dask's distributed is not installed (pip install 'cellpoint[dask]')")
    out = tmp_path / "out"
    result = run(["segment", images, "--out", out, "--dask", "local:2"], timeout=180)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert "segmented 3," in result.stdout
    assert_same_outputs(out, reference)
    report = json.loads((out / "cellpoint_run.json").read_text())
    assert report["counts"]["segmented"] == 3 and report["options"]["dask"] == "local:2"
    again = run(["segment", images, "--out", out, "--dask", "local:2"], timeout=180)
    assert again.returncode == 0 and "skipped 3" in again.stdout, again.stderr[-3000:]

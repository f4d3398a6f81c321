"""benchmarks/generalise.py: its pure helpers on synthetic arrays, and one small run on real data."""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, synthetic_nuclei

pytest.importorskip("pycocotools")  # the benchmark scores with the training extra's evaluation
sys.path.insert(0, str(REPO / "benchmarks"))
import generalise  # noqa: E402


@pytest.mark.parametrize("factor", [0.25, 0.5, 2.0, 3.0])
def test_resize_keeps_every_instance_and_scales_the_diameter(factor):
    image, labels, _ = synthetic_nuclei(shape=(200, 240), n=12, radius=10)
    image = image.astype(np.uint16)
    resized, resized_labels = generalise.resize_pair(image, labels, factor)
    assert resized.shape == resized_labels.shape == (round(200 * factor), round(240 * factor))
    assert resized.dtype == np.uint16 and resized_labels.dtype == np.uint32
    assert np.array_equal(np.unique(resized_labels), np.arange(13))  # 12 cells, numbered 1..12
    ratio = generalise.true_diameter(resized_labels) / generalise.true_diameter(labels)
    assert ratio == pytest.approx(factor, rel=0.05)


def test_resize_keeps_a_cell_too_small_for_the_shrunk_grid():
    labels = np.zeros((64, 64), np.uint32)
    labels[10:30, 10:30] = 1
    labels[41, 41] = 2  # one pixel: nearest neighbour at ×0.25 would drop it
    _, small = generalise.resize_pair(np.zeros((64, 64), np.uint8), labels, 0.25)
    assert small.shape == (16, 16)
    assert np.array_equal(np.unique(small), [0, 1, 2])
    assert np.argwhere(small == 2).tolist() == [[10, 10]]


def test_true_diameter_and_density():
    labels = np.zeros((100, 100), np.uint32)
    labels[:10, :10] = 1            # 100 px
    labels[50:70, 50:70] = 2        # 400 px
    labels[80:90, 0:40] = 3         # 400 px
    assert generalise.true_diameter(labels) == pytest.approx(2 * math.sqrt(400 / math.pi))
    assert generalise.cell_density(labels) == pytest.approx(3.0)  # 3 cells per 10,000 px²
    assert math.isnan(generalise.true_diameter(np.zeros((5, 5), np.uint32)))


def test_diameter_error_is_symmetric_in_log_space():
    assert generalise.diameter_error_pct([20, 10, 30], [10, 20, 30]) == pytest.approx(100.0)
    assert generalise.diameter_error_pct([11, 9.09], [10, 10]) == pytest.approx(10.0, abs=0.05)
    assert math.isnan(generalise.diameter_error_pct([np.nan], [10]))


def test_to_16bit_scales_8bit_and_float_and_keeps_16bit():
    eight = np.array([[10, 20], [30, 110]], np.uint8)
    assert generalise.to_16bit(eight).tolist() == [[0, 410], [819, 4095]]
    floats = np.array([[-1.0, 1.0]], np.float32)
    assert generalise.to_16bit(floats).tolist() == [[0, 4095]]
    sixteen = np.array([[5, 60000]], np.uint16)
    assert generalise.to_16bit(sixteen).tolist() == [[5, 60000]]
    assert generalise.to_16bit(np.full((3, 3), 7, np.uint8)).max() == 0


@pytest.mark.parametrize("shape", [(256, 256), (520, 696), (100, 300, 3)])
def test_hot_pixels_hit_the_stated_fraction(shape):
    image = generalise.to_16bit(np.random.default_rng(1).random(shape))
    hot = generalise.add_hot_pixels(image, 0.003, np.random.default_rng(0))
    hit = (hot == 65535).reshape(shape[0], shape[1], -1).all(axis=2)
    assert hit.sum() == round(0.003 * shape[0] * shape[1])
    assert np.array_equal(hot[~hit], image[~hit])  # the rest unchanged
    again = generalise.add_hot_pixels(image, 0.003, np.random.default_rng(0))
    assert np.array_equal(hot, again)  # seeded


@pytest.mark.parametrize("shape", [(256, 256), (520, 696), (1030, 1349)])
def test_patch_covers_the_stated_fraction_as_one_square(shape):
    image = generalise.to_16bit(np.random.default_rng(1).random(shape))
    patched = generalise.add_patch(image, 0.005, np.random.default_rng(0))
    rows, cols = np.nonzero(patched == 65535)
    side = round(math.sqrt(0.005 * shape[0] * shape[1]))
    assert rows.max() - rows.min() + 1 == cols.max() - cols.min() + 1 == side  # a square
    assert rows.size == side * side
    assert rows.size / image.size == pytest.approx(0.005, rel=0.05)


def test_bins():
    assert [generalise.diameter_bin(d) for d in (3, 14.9, 15, 29.9, 30, 59.9, 60, 250)] == \
        ["<15 px", "<15 px", "15–30 px", "15–30 px", "30–60 px", "30–60 px", "≥60 px", "≥60 px"]
    assert [generalise.diameter_bin(d, (45.0,)) for d in (30, 44.9, 45, 70)] == ["<45 px", "<45 px", "≥45 px", "≥45 px"]
    assert [generalise.density_bin(d) for d in (0, 4.99, 5, 14.9, 15, 80)] == \
        ["<5", "<5", "5–15", "5–15", "≥15", "≥15"]
    labels = np.zeros((100, 100), np.uint32)
    for k in range(8):  # 8 cells of 5x5 px in 10,000 px²: 8 cells / 10,000 px², ~5.6 px across
        labels[10 * k:10 * k + 5, :5] = k + 1
    assert generalise.density_bin(generalise.cell_density(labels)) == "5–15"
    assert generalise.diameter_bin(generalise.true_diameter(labels)) == "<15 px"


def test_parse_sections():
    assert generalise.parse_sections("all") == list(generalise.SECTIONS)
    assert generalise.parse_sections("sweep,diameter") == ["diameter", "sweep"]
    with pytest.raises(ValueError):
        generalise.parse_sections("diameter,speed")


def test_smoke_run_on_two_coelho_images(shared_data, tmp_path):
    md = generalise.main(["--package", "objectness-nuclei", "--dataset", "coelho2009_u2os_nih3t3",
                          "--sections", "diameter", "--max-images", "2", "--name", "smoke", "--out", str(tmp_path)])
    assert md == tmp_path / "generalise_smoke.md"
    text = md.read_text()
    assert "python benchmarks/generalise.py --package objectness-nuclei" in text.splitlines()[3]
    results = json.loads((tmp_path / "generalise_smoke.json").read_text())
    runs = results["datasets"]["coelho2009_u2os_nih3t3"]["diameter"]
    metrics = [m for m in runs.values() if isinstance(m, dict)]
    assert len(metrics) == 3
    for m in metrics:
        assert m["n_images"] == 2 and m["n_gt"] > 0 and 0 <= m["f1_50"] <= 1
        assert len(m["images"]) == 2
    oracle = next(m for k, m in runs.items() if "oracle" in k)
    assert oracle["f1_50"] > 0.5  # told the cells' size, the bundled nuclei model finds them


def test_summary_row_compares_no_diameter_with_the_oracle():
    import generalise_summary
    run = {"n_images": 3, "f1_50": 0.8, "AP": 0.4, "diameter_error_pct": 12.0}
    results = {"package": "pkg", "datasets": {"set:kind": {"diameter": {
        generalise_summary.NO_DIAMETER: run, "data set diameter (20 px)": dict(run, f1_50=0.7),
        generalise_summary.ORACLE: dict(run, f1_50=0.85)}}, "other": {"sweep": {}}}}
    [row] = generalise_summary.rows(results)
    assert row == "| pkg | set:kind | 3 | **0.800** / 0.400 | 0.700 | 0.850 | -0.050 | 12% |"

"""Images segmented block by block: the same cells as the whole-image run, none cut or doubled at a border;
large files read by regions and written as tiled label TIFFs."""
import numpy as np
import pytest
import tifffile
from click.testing import CliRunner

from cellpoint.runtime import Segmenter
from cellpoint.runtime import blockwise
from cellpoint.runtime.blockwise import _merge, core_blocks, segment_blockwise, thumbnail
from conftest import synthetic_nuclei


def best_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """For each cell of label image `a`, its best IoU with a cell of `b`."""
    a, b = a.astype(np.int64), b.astype(np.int64)
    both = (a > 0) & (b > 0)
    pairs, overlap = np.unique(np.stack([a[both], b[both]]), axis=1, return_counts=True)
    area_a, area_b = np.bincount(a.ravel()), np.bincount(b.ravel())
    iou = overlap / (area_a[pairs[0]] + area_b[pairs[1]] - overlap)
    best = np.zeros(int(a.max()) + 1)
    np.maximum.at(best, pairs[0], iou)
    return best[1:]


@pytest.fixture(scope="module")
def segmenter():
    return Segmenter("objectness-nuclei")


def test_blocks_give_the_cells_of_the_whole_image(segmenter):
    image = synthetic_nuclei(shape=(700, 900), n=300, radius=9, seed=3)[0]
    whole = segmenter.segment(image, diameter=18, refine_diameter=False).labels
    labels = np.zeros(image.shape, np.uint32)
    rows, blocks = [], []
    found = segment_blockwise(segmenter, image, labels, diameter=18, block=256, on_rows=rows.append,
                              on_block=lambda done, total: blocks.append((done, total)))
    assert found.blocks == len(blocks) == blocks[-1][1] > 9  # many borders to cross
    assert found.cells == labels.max() == whole.max() == 300
    assert (best_iou(whole, labels) >= 0.95).mean() >= 0.99 and (best_iou(labels, whole) >= 0.95).mean() >= 0.99
    ids = np.concatenate([r["id"] for r in rows])
    assert sorted(ids) == list(range(1, 301))  # each cell once: none doubled, none lost
    area = np.concatenate([r["area"] for r in rows])
    assert np.array_equal(area[np.argsort(ids)], np.bincount(labels.ravel())[1:])


def test_merge_drops_a_cell_an_earlier_block_wrote_and_keeps_only_anchored_ones():
    region = np.zeros((10, 10), np.uint32)
    region[2:5, 2:5] = 7                                  # written by an earlier block
    labels = np.zeros((10, 10), np.int32)
    labels[2:5, 2:6] = 1                                  # the same cell, seen again (9 of 12 px taken)
    labels[6:9, 6:9] = 2                                  # a new cell
    labels[0:2, 7:10] = 3                                 # not anchored in this block's core
    table = {"id": np.array([1, 2, 3]), "score": np.array([0.5, 0.9, 0.7], np.float32)}
    rows, next_id = _merge(labels, table, np.array([True, True, False]), region, 8, (100, 200))
    assert next_id == 9 and list(rows["id"]) == [8] and rows["score"][0] == np.float32(0.9)
    assert (region == 8).sum() == 9 and (region == 7).sum() == 9 and not (region[0:2, 7:10]).any()
    assert (rows["bbox_y0"][0], rows["bbox_x0"][0], rows["bbox_y1"][0], rows["bbox_x1"][0]) == (106, 206, 109, 209)
    assert rows["centroid_y"][0] == 107.0


def test_core_blocks_tile_the_image_and_the_thumbnail_is_strided():
    blocks = core_blocks(5, 7, 3)
    covered = np.zeros((5, 7), int)
    for y0, y1, x0, x1 in blocks:
        covered[y0:y1, x0:x1] += 1
    assert (covered == 1).all() and len(blocks) == 6
    image = np.arange(100 * 60).reshape(100, 60)
    assert np.array_equal(thumbnail(image, side=25), image[::4, ::4])


def test_the_api_segments_a_large_array_by_blocks(segmenter, monkeypatch):
    monkeypatch.setattr(blockwise, "LARGE_PIXELS", 300 * 300)
    import cellpoint.runtime.segmenter as module
    monkeypatch.setattr(module, "LARGE_PIXELS", 300 * 300)
    image = synthetic_nuclei(shape=(400, 500), n=60, radius=9, seed=4)[0]
    result = segmenter.segment(image, diameter=18)
    assert result.labels.dtype == np.uint32 and result.labels.max() == 60 == len(result.table["id"])
    assert result.diameter_source.startswith("given")


def test_the_cli_reads_a_large_tiled_tiff_by_blocks_into_a_tiled_label_tiff(tmp_path, monkeypatch):
    from cellpoint.runtime.cli.segment import segment
    monkeypatch.setattr(blockwise, "LARGE_PIXELS", 300 * 300)
    image = synthetic_nuclei(shape=(600, 700), n=120, radius=9, seed=5)[0]
    tifffile.imwrite(tmp_path / "big.tif", (image * 50).astype(np.uint16), tile=(256, 256), compression="zlib")
    tifffile.imwrite(tmp_path / "small.tif", (image[:200, :200] * 50).astype(np.uint16))
    out = tmp_path / "out"
    result = CliRunner().invoke(segment, [str(tmp_path), "--out", str(out), "--diameter", "18"])
    assert result.exit_code == 0, result.output
    with tifffile.TiffFile(out / "big_labels.tif") as tif:
        assert tif.pages[0].is_tiled and tif.pages[0].shape == (600, 700)
        labels = tif.asarray()
    table = (out / "big_instances.csv").read_text().splitlines()
    assert labels.max() == 120 == len(table) - 1 and table[0].startswith("id,area,centroid_y")
    assert "blocks" in result.output or "120 cells" in result.output
    assert not (out / ".cellpoint" / "work" / "big.labels.zarr").exists()
    again = CliRunner().invoke(segment, [str(tmp_path), "--out", str(out), "--diameter", "18"])
    assert "skipped 2" in again.output  # recorded as done like any image



def test_with_dask_a_large_tiff_runs_its_blocks_on_the_cluster_with_the_labels_of_a_local_run(tmp_path, monkeypatch):
    pytest.importorskip("distributed", reason="Dask's distributed is not installed (pip install 'cellpoint[dask]')")
    from cellpoint.runtime.cli.segment import segment
    monkeypatch.setattr(blockwise, "LARGE_PIXELS", 300 * 300)
    image = synthetic_nuclei(shape=(600, 700), n=120, radius=9, seed=5)[0]
    tifffile.imwrite(tmp_path / "big.tif", (image * 50).astype(np.uint16), tile=(256, 256), compression="zlib")
    from cellpoint.runtime.cli import dask_batch
    runners = []
    real_runner = dask_batch.dask_block_runner
    monkeypatch.setattr(dask_batch, "dask_block_runner", lambda *a, **k: runners.append(a) or real_runner(*a, **k))
    options = ["--diameter", "18", "--precision", "fp32"]
    local = CliRunner().invoke(segment, [str(tmp_path), "--out", str(tmp_path / "local")] + options)
    spread = CliRunner().invoke(segment, [str(tmp_path), "--out", str(tmp_path / "dask"), "--dask", "local:2"] + options)
    assert local.exit_code == 0 and spread.exit_code == 0, spread.output
    assert len(runners) == 1  # the slide's blocks went to the cluster
    assert np.array_equal(tifffile.imread(tmp_path / "dask" / "big_labels.tif"),
                          tifffile.imread(tmp_path / "local" / "big_labels.tif"))
    assert (tmp_path / "dask" / "big_instances.csv").read_text() == (tmp_path / "local" / "big_instances.csv").read_text()


MEMORY_TEST = """
import importlib, resource, sys, time
import numpy as np, tifffile
from cellpoint.runtime import Segmenter
package, image, out, cap_mb = sys.argv[1:5]
segmenter = Segmenter(package, threads=2)
cli = importlib.import_module("cellpoint.runtime.cli.segment")
cli.load_segmenter = lambda *args: segmenter  # loaded before the cap: onnxruntime's own start-up is not the test
segmenter.segment(np.random.default_rng(0).random((1100, 1100)).astype(np.float32), diameter=18)  # its arena too
status = open("/proc/self/status").read()
vm = int(status.split("VmSize:")[1].split()[0]) * 1024
resource.setrlimit(resource.RLIMIT_AS, (vm + int(cap_mb) * 2**20,) * 2)
try:
    cli.segment.main([image, "--out", out, "--diameter", "18"], standalone_mode=False)
except SystemExit as exit:
    sys.exit(exit.code)
"""


@pytest.mark.timeout(300)
def test_a_tiled_image_larger_than_the_memory_cap_is_segmented_by_blocks(tiny_package, tmp_path):
    """An 8,192² 16-bit tiled TIFF (134 MB of pixels, 268 MB as the float32 the network needs; its label
    image 268 MB as uint32) under an address-space cap of 300 MB above what the loaded model uses — less
    than the whole-image path needs for the float32 image and its labels alone (536 MB): the block path
    reads, segments and writes it. (The cap was 250 MB; aligning blocks to the network's grid left the
    numpy peak (213 MB) and the peak RSS as they were, but moved address-space reservations past 250.)"""
    import os
    import subprocess
    import sys
    side, tile = 8192, 512
    tiles = (np.full((tile, tile), 1000 + k % 7, np.uint16) for k in range((side // tile) ** 2))
    tifffile.imwrite(tmp_path / "slide.tif", tiles, shape=(side, side), dtype=np.uint16, tile=(tile, tile),
                     compression="zlib", bigtiff=True)
    out = tmp_path / "out"
    # RLIMIT_AS caps address space, not memory: glibc's per-thread malloc arenas reserve 64 MB each, so
    # keep them few, as the cap would otherwise measure the number of threads
    env = dict(os.environ, MALLOC_ARENA_MAX="2")
    result = subprocess.run([sys.executable, "-c", MEMORY_TEST, str(tiny_package), str(tmp_path / "slide.tif"),
                             str(out), "300"], capture_output=True, text=True, timeout=280, env=env)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-2000:]
    with tifffile.TiffFile(out / "slide_labels.tif") as tif:
        assert tif.pages[0].shape == (side, side) and tif.pages[0].is_tiled


@pytest.mark.parametrize("stride", [1, 4, 16])
@pytest.mark.parametrize("diameter", [3.5, 9.0, 18.0, 24.0, 27.97, 61.3, 250.0, 1500.0])
def test_the_block_grid_maps_to_whole_network_pixels(diameter, stride):
    used, grid = blockwise.aligned_diameter(24.0, diameter, stride)
    network_px = grid * 24.0 / used   # network px per grid step
    assert abs(network_px - round(network_px)) < 1e-6 and round(network_px) % stride == 0
    assert abs(used / diameter - 1) < 0.016
    assert grid & (grid - 1) == 0 and grid >= 16


def test_blocks_run_as_dask_tasks_give_the_labels_of_a_local_run():
    """A slide's blocks spread over a LocalCluster of two worker processes, merged here: the same labels."""
    pytest.importorskip("distributed", reason="Dask's distributed is not installed (pip install 'cellpoint[dask]')")
    from distributed import Client, LocalCluster
    from cellpoint.runtime.cli.dask_batch import _segmenter, dask_block_runner
    settings = {"model": "objectness-nuclei", "device": "cpu", "tile": 768, "precision": "fp32"}
    image = synthetic_nuclei(shape=(700, 900), n=300, radius=9, seed=3)[0]
    local = np.zeros(image.shape, np.uint32)
    segment_blockwise(_segmenter(**settings), image, local, diameter=18, block=256)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        spread = np.zeros(image.shape, np.uint32)
        found = segment_blockwise(_segmenter(**settings), image, spread, diameter=18, block=256,
                                  run_blocks=dask_block_runner(client, settings, in_flight=3))

        def models_loaded():
            from cellpoint.runtime.cli import dask_batch
            return len(dask_batch._SEGMENTERS)
        ran_on = client.run(models_loaded)
    assert found.blocks > 9 and np.array_equal(spread, local) and found.cells == local.max() == 300
    assert sum(ran_on.values()) == 2  # each worker loaded the package once and ran blocks

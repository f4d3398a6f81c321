"""WSISPDR end to end: training step, export of both graphs, windowed guided backpropagation, and the
runtime decoding a package with torch blocked."""
import json
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from cellpoint.runtime.decoders.detection_response import data_image, paste_windows, windowed_contributions
from cellpoint.runtime.labels import resize_labels

torch = pytest.importorskip("torch")
from cellpoint.training.methods.wsispdr.config import WsispdrConfig  # noqa: E402
from cellpoint.training.methods.wsispdr.guided_backprop import GuidedBackprop  # noqa: E402
from cellpoint.training.methods.wsispdr.network import DetectionUNet  # noqa: E402
from cellpoint.training.methods.wsispdr.train import prepare_example, train  # noqa: E402


def _gb_numpy(net):
    module = GuidedBackprop(net.eval())

    def run(images, regions):
        with torch.no_grad():
            return module(torch.from_numpy(images), torch.from_numpy(regions)).numpy()
    return run


def test_windowed_contributions_equal_whole_image_ones_away_from_the_window_edge():
    torch.manual_seed(0)
    net = DetectionUNet(1, (4, 8)).eval()              # receptive field radius < 16 px
    image = np.random.default_rng(0).random((1, 96, 128)).astype(np.float32)
    regions = np.zeros((96, 128), np.int32)
    regions[40:43, 50:53] = 1
    regions[4:6, 120:123] = 2                           # near the border: gets a padded window
    values = np.where(regions == 2, 0.5, 1.0).astype(np.float32)
    windows, origins = windowed_contributions(_gb_numpy(net), image, regions, values, window=64, batch=2,
                                              multiple=2)
    assert windows.shape == (2, 1, 64, 64) and origins.tolist() == [[8, 18], [-28, 88]]  # on the even grid, centred
    seeds = np.stack([np.where(regions == u, values, 0) for u in (1, 2)])[:, None].astype(np.float32)
    whole = _gb_numpy(net)(image[None], seeds).sum(axis=1)
    windowed = paste_windows(windows[:, 0], origins, (96, 128))
    np.testing.assert_allclose(windowed[0], whole[0], atol=1e-5 * np.abs(whole[0]).max())
    assert np.abs(windowed[1]).max() > 0


def test_data_terms():
    flat = np.full((20, 20), 0.3, np.float32)
    flat[:, 10:] = np.random.default_rng(0).random((20, 10)).astype(np.float32)
    texture = data_image(flat, "texture")
    assert texture[:, :5].max() == 0 and texture[:, 13:].mean() > 0.3
    np.testing.assert_allclose(data_image(flat, "inverted"), 1 - flat)
    with pytest.raises(ValueError, match="data term"):
        data_image(flat, "colour")


def test_resize_labels_is_nearest_and_keeps_ids():
    lab = np.array([[0, 1], [2, 3]], np.uint32)
    big = resize_labels(lab, (4, 6))
    assert big.dtype == np.uint32 and big.shape == (4, 6)
    assert (big[:2, :3] == 0).all() and (big[2:, 3:] == 3).all()


@pytest.fixture(scope="module")
def wsispdr_package(tmp_path_factory):
    from click.testing import CliRunner
    import tifffile
    from conftest import synthetic_nuclei
    from cellpoint.export.cli import export
    cfg = WsispdrConfig(steps=3, batch=2, crop=64, widths=(4, 8, 16), diameter=18.0, data_term="intensity")
    image, _, centres = synthetic_nuclei(seed=3)
    ckpt = train([prepare_example(image, centres, 18.0, cfg)], cfg, log=lambda *_: None)
    root = tmp_path_factory.mktemp("wsispdr")
    torch.save(ckpt, root / "w.pt")
    tifffile.imwrite(root / "sample.tif", image)
    out = root / "tiny-wsispdr"
    result = CliRunner().invoke(export, [str(root / "w.pt"), "--out", str(out), "--sample", str(root / "sample.tif")])
    assert result.exit_code == 0, result.output
    return out


def test_package_carries_the_guided_backprop_graph_with_its_checksum(wsispdr_package, tmp_path):
    from cellpoint.runtime.package import PackageError, load_package
    card = json.loads((wsispdr_package / "card.json").read_text())
    graph = card["graphs"]["contributions"]
    assert (wsispdr_package / graph["source"]).is_file() and graph["parity_max_rel_diff"] < 1e-4
    assert card["decoder"]["name"] == "detection_response"
    copy = tmp_path / "pkg"
    shutil.copytree(wsispdr_package, copy)
    with open(copy / graph["source"], "ab") as f:
        f.write(b"\0")
    with pytest.raises(PackageError, match="checksum"):
        load_package(copy)


def test_runtime_decodes_with_torch_blocked(wsispdr_package):
    code = textwrap.dedent(f"""
        import sys; sys.modules['torch'] = None
        import numpy as np
        from cellpoint.runtime import Segmenter
        seg = Segmenter(r"{wsispdr_package}")
        seg = seg.with_decoder_params(detection_threshold=-1e9)   # one region: the whole image
        labels, table = seg.segment(np.random.default_rng(0).random((70, 90)).astype(np.float32))
        assert labels.shape == (70, 90) and labels.dtype == np.uint32
        assert len(table["detection_score"]) == len(table["id"]) == labels.max()
        assert not [m for m in sys.modules if m.startswith("cellpoint.training")]
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr


# ------------------------------------------------------------------------------- the method's spec

def test_spec_needs_points_and_cell_diameter_for_a_folder_and_describes_its_labels(tmp_path):
    import click
    from cellpoint.training.methods import TrainRequest, get_method
    spec = get_method("wsispdr")
    with pytest.raises(click.UsageError, match="wsispdr with --images needs --points and --cell-diameter"):
        spec.configure(TrainRequest(images_dir=tmp_path, points_dir=tmp_path))
    request = TrainRequest(images_dir=tmp_path, points_dir=tmp_path, cell_diameter=18.0, steps=7,
                           options={"data_term": "texture"})
    run = spec.configure(request)
    assert (run.config.steps, run.config.batch, run.config.lr, run.config.diameter, run.config.data_term) == \
        (7, 8, 1e-3, 32.0, "texture")
    assert run.label_kind == "points" and spec.labels(request, run, True) == "points"
    dog = TrainRequest(datasets=("x",), placement="nuclei-dog")
    run = spec.configure(dog)
    assert run.label_kind == "nuclei-dog"
    assert spec.labels(dog, run, False) == spec.labels(dog, run, True) == "machine-made locations"


def test_spec_jobs_skip_folder_images_without_a_points_file(tmp_path, capsys):
    import tifffile
    from cellpoint.training.methods import TrainRequest, get_method
    spec = get_method("wsispdr")
    images, points = tmp_path / "images", tmp_path / "points"
    images.mkdir(), points.mkdir()
    for stem in ("a", "b"):
        tifffile.imwrite(images / f"{stem}.tif", np.zeros((40, 40), np.uint8))
    (points / "a_points.csv").write_text("x,y\n10,12\n30,20\n")
    request = TrainRequest(images_dir=images, points_dir=points, cell_diameter=16.0)
    run = spec.configure(request)
    jobs = spec.jobs(request, run)
    assert [(j[0], j[1][0].name, j[4]) for j in jobs] == [("user", "a.tif", 16.0)]
    assert "skipped b.tif" in capsys.readouterr().err
    example = spec.prepare(jobs[0])
    assert example["image"].shape == (80, 80) and example["likelihood"].shape == (80, 80)
    assert example["likelihood"][24, 20] == pytest.approx(example["likelihood"].max())  # click (x 10, y 12) ×2

"""Canonical shape method: the MLP's structure, the transform constraint, the count loss, rendering,
the containment merge, the runtime decoder, and export parity with torch blocked at run time."""
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from cellpoint.runtime.candidates import (candidates_from_patches, containment_merge, overlap_counts,
                                          paste_candidates)
from cellpoint.runtime.decoders.canonical_shape import (CanonicalShapeParams, decode_canonical_shape,
                                                        shape_log_prob, support_radius)
from cellpoint.runtime.decoding import DecodeContext
from cellpoint.training.methods.canonical_shape.config import INSTANCES_PER_CELL, ShapeParams, ShapeTrainConfig
from cellpoint.training.targets import diameter_from_mask_and_count

torch = pytest.importorskip("torch")
from cellpoint.training.methods.canonical_shape.loss import count_loss, crop_count  # noqa: E402
from cellpoint.training.methods.canonical_shape.network import CanonicalShapeNet, ShapeMLP, mlp_weights  # noqa: E402
from cellpoint.training.methods.canonical_shape.render import render_foreground  # noqa: E402
from cellpoint.training.methods.canonical_shape.train import prepare_example, train  # noqa: E402
from cellpoint.training.methods import get_method  # noqa: E402


def _disk(shape, center_rc, radius):
    rows, cols = np.indices(shape)
    return (rows - center_rc[0]) ** 2 + (cols - center_rc[1]) ** 2 <= radius ** 2


def _disk_mlp():
    """A shape MLP that is exactly the soft unit disk p(s) = sigmoid(−4(r − 1))."""
    mlp = ShapeMLP()
    with torch.no_grad():
        mlp.fc3.weight.zero_()
        mlp.fc3.weight[0, 2] = 4.0
        mlp.fc3.bias.fill_(-4.0)
    return mlp


# ------------------------------------------------------------------------------------------- MLP

def test_shape_mlp_has_the_papers_layers_and_returns_a_log_probability():
    mlp = ShapeMLP()
    linears = [m for m in mlp.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(3, 8), (3 + 8, 4), (3 + 4, 1)]
    xy = torch.randn(5, 7, 2) * 3
    out = mlp(xy)
    assert out.shape == (5, 7) and (out <= 0).all()          # −softplus: log p(s) <= 0


def test_shape_mlp_sees_the_input_at_every_layer():
    """Zeroing the first two layers leaves the output a function of (x, y, r) through the skips."""
    mlp = ShapeMLP()
    with torch.no_grad():
        for layer in (mlp.fc1, mlp.fc2):
            layer.weight.zero_()
            layer.bias.zero_()
        mlp.fc3.weight.zero_()
        mlp.fc3.weight[0, 2] = 1.0                            # the r input of the last layer
        mlp.fc3.bias.zero_()
    xy = torch.tensor([[3.0, 4.0]])
    assert torch.allclose(mlp(xy), -torch.nn.functional.softplus(torch.tensor([5.0])), atol=1e-6)


def test_numpy_mlp_matches_torch():
    mlp = ShapeMLP(disk_init=False)
    xy = np.random.default_rng(0).normal(0, 2, (300, 2)).astype(np.float32)
    expected = mlp(torch.from_numpy(xy)).detach().numpy()
    np.testing.assert_allclose(shape_log_prob(xy, mlp_weights(mlp)), expected, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------ transform, losses

def test_transform_diagonal_is_positive_whatever_the_encoder_says():
    net = CanonicalShapeNet(1, (4, 4, 4, 4, 4))
    with torch.no_grad():
        net.encoder.transform.bias.fill_(-1e4)
    _, _, transform = net.eval()(torch.rand(1, 1, 64, 64))
    t = transform.view(1, INSTANCES_PER_CELL, 3, 4, 4)
    assert (t[:, :, 0] > 0).all() and (t[:, :, 2] > 0).all()   # l11, l22
    assert (t[:, :, 1] < 0).all()                               # l21 is free


def test_count_loss_is_the_squared_count_error_and_pushes_towards_k():
    logits = torch.zeros(2, 10, requires_grad=True)              # Σ p(z) = 5 in both images
    loss = count_loss(torch.sigmoid(logits), torch.tensor([2.0, 8.0]))
    assert loss.item() == pytest.approx(((5 - 2) ** 2 + (5 - 8) ** 2) / 2)
    loss.backward()
    assert (logits.grad[0] > 0).all() and (logits.grad[1] < 0).all()  # descent lowers image 0, raises 1


def test_rendering_is_the_max_of_presence_weighted_shapes_and_reaches_the_transform():
    net = CanonicalShapeNet(1, (4, 4, 4, 4, 4))
    net.shape = _disk_mlp()
    params = ShapeParams(render_stride=1)
    presence = torch.zeros(1, INSTANCES_PER_CELL, 2, 2)
    presence[0, 0, 0, 0] = 0.9
    offset = torch.zeros(1, 2 * INSTANCES_PER_CELL, 2, 2, requires_grad=True)
    transform = torch.ones(1, 3 * INSTANCES_PER_CELL, 2, 2)
    transform.view(1, INSTANCES_PER_CELL, 3, 2, 2)[:, :, 1] = 0    # L = I
    transform.requires_grad_(True)
    prob = render_foreground(net, (presence, offset, transform), (32, 32), params)
    with torch.no_grad():
        expected = 0.9 * torch.sigmoid(-4 * (torch.tensor(np.hypot(*np.indices((32, 32)) - 7.5) / 12.0) - 1))
    assert torch.allclose(prob[0, :16, :16], expected[:16, :16].float(), atol=1e-3)
    prob.sum().backward()
    assert offset.grad.abs().sum() > 0 and transform.grad.abs().sum() > 0


def test_diameter_and_crop_count_use_only_the_mask_and_the_count():
    fg = _disk((64, 64), (32, 32), 10)
    assert diameter_from_mask_and_count(fg, 1) == pytest.approx(20, rel=0.05)
    assert np.isnan(diameter_from_mask_and_count(fg, 0))
    crop = np.zeros((8, 8), np.float32)
    crop[0, 0], crop[3:5, 3:5], crop[7, 7] = 4, 9, 4
    assert crop_count(crop) == 2


def test_training_on_synthetic_discs_fits_the_foreground():
    from conftest import synthetic_nuclei
    cfg = ShapeTrainConfig(steps=60, batch=4, crop=64, widths=(8, 8, 16, 16, 16), optimizer="adam", lr=3e-3,
                           diameter=18.0)
    examples = [prepare_example(*synthetic_nuclei(n=6, seed=s)[:2], cfg) for s in range(3)]
    logs = []
    checkpoint = train(examples, cfg, log=logs.append)
    first, last = (float(line.split("dice ")[1].split()[0]) for line in (logs[0], logs[-1]))
    assert last < first - 0.2, logs
    shape_mlp = get_method("canonical_shape").export(checkpoint, None).assets["shape_mlp"]  # from the state dict
    assert checkpoint["decoder"]["name"] == "canonical_shape" and len(shape_mlp) == 3


# ------------------------------------------------------------------------------- candidates

def _pixels(masks):
    pixel = np.concatenate([np.flatnonzero(m) for m in masks])
    owner = np.concatenate([np.full(np.count_nonzero(m), k) for k, m in enumerate(masks)])
    return pixel.astype(np.int64), owner.astype(np.int64)


def test_containment_merge_joins_nested_masks():
    big, small = _disk((40, 40), (20, 20), 12), _disk((40, 40), (22, 22), 5)
    pixel, owner = _pixels([small, big])
    groups = containment_merge(pixel, owner, 2, 0.5)
    assert list(groups) == [1, 1]                                  # both named by the bigger one


def test_containment_merge_keeps_touching_masks_apart():
    left, right = _disk((40, 60), (20, 18), 10), _disk((40, 60), (20, 37), 10)
    assert np.count_nonzero(left & right) > 0                      # they share a few boundary pixels
    pixel, owner = _pixels([left, right])
    assert list(containment_merge(pixel, owner, 2, 0.5)) == [0, 1]


def test_overlap_counts_and_paste_resolve_by_probability():
    a, b = np.zeros((4, 4), bool), np.zeros((4, 4), bool)
    a[:, :3], b[:, 2:] = True, True
    pixel, owner = _pixels([a, b])
    i, j, count = overlap_counts(pixel, owner)
    assert (list(i), list(j), list(count)) == ([0], [1], [4])
    prob = np.where(owner == 0, 0.6, 0.9).astype(np.float32)
    labels, score = paste_candidates(pixel, owner, prob, (4, 4))
    assert (labels[:, :2] == 1).all() and (labels[:, 2:] == 2).all()
    assert score[0, 2] == pytest.approx(0.9)


def test_candidates_from_patches_clip_to_the_image():
    patch = np.full((4, 4), 0.8, np.float32)
    pixel, owner, prob = candidates_from_patches(np.array([[-2, -2, 2, 2]]), [patch], (10, 10))
    assert sorted(pixel) == [0, 1, 10, 11] and (owner == 0).all() and np.allclose(prob, 0.8)


# ------------------------------------------------------------------------------------ decoder

def _grid_maps(instances, h=4, w=4):
    """Grid maps with instances placed as (cell_row, cell_col, slot, dx, dy, l11, l21, l22, pz)."""
    i = INSTANCES_PER_CELL
    maps = {"presence": np.zeros((i, h, w), np.float32), "center_offset": np.zeros((2 * i, h, w), np.float32),
            "transform": np.tile(np.array([1, 0, 1], np.float32)[:, None, None], (i, h, w))}
    for r, c, k, dx, dy, l11, l21, l22, pz in instances:
        maps["presence"][k, r, c] = pz
        maps["center_offset"][2 * k:2 * k + 2, r, c] = dx, dy
        maps["transform"][3 * k:3 * k + 3, r, c] = l11, l21, l22
    return maps


def _decoder_params(ratio=0.5):
    return CanonicalShapeParams(stride=16, unit=12.0, presence_threshold=0.5, mask_threshold=0.5,
                                containment_merge=ratio, min_area=4)


def _decode(maps, params, pixel_scale, shape):
    """decode_canonical_shape on grid maps with the soft-unit-disk MLP as the package's "shape_mlp" asset;
    pixel_scale: image px per network px. Returns (labels, score, columns)."""
    context = DecodeContext(maps=maps, network_input=np.zeros((1, 1, 1), np.float32), image_shape=shape,
                            scale=1.0 / pixel_scale, multiple=16, run_graph=None,
                            assets={"shape_mlp": mlp_weights(_disk_mlp())})
    return decode_canonical_shape(context, params)


def test_decoder_renders_ellipses_with_their_parameters():
    # p(z) near 1 so that p(s)·p(z) >= 0.5 is the shape's own r <= 1 (to within 1%)
    maps = _grid_maps([(1, 1, 0, 0, 0, 1.0, 0.0, 1.0, 0.99),           # disk r = 12 at (23.5, 23.5)
                       (2, 3, 1, 0, 0, 2.0, 0.0, 1.0, 0.98),           # ellipse 6 px along x, 12 along y
                       (0, 3, 0, 0, 0, 1.0, 0.0, 1.0, 0.2)])           # absent
    labels, score, columns = _decode(maps, _decoder_params(), 1.0, (64, 64))
    assert labels.max() == 2
    assert labels[23, 23] == 1 and labels[39, 55] == 2 and labels[7, 55] == 0
    area = np.bincount(labels.ravel())[1:]
    assert area[0] == pytest.approx(np.pi * 12 ** 2, rel=0.1)
    assert area[1] == pytest.approx(np.pi * 6 * 12, rel=0.1)
    np.testing.assert_allclose(columns["center_x"], [23.5, 55.5])
    np.testing.assert_allclose(columns["axis_major"], [12, 12], rtol=1e-6)
    np.testing.assert_allclose(columns["axis_minor"], [12, 6], rtol=1e-6)
    assert abs(columns["orientation_deg"][1]) == pytest.approx(90)    # long axis along the rows
    np.testing.assert_allclose(columns["presence"], [0.99, 0.98])
    assert score[23, 23] > 0.5


def test_decoder_merges_a_contained_duplicate_unless_told_not_to():
    dup = [(1, 1, 0, 0, 0, 1.0, 0.0, 1.0, 0.9), (1, 1, 1, 2, 0, 2.0, 0.0, 2.0, 0.9)]  # r 12 and r 6 inside it
    merged, _, _ = _decode(_grid_maps(dup), _decoder_params(0.5), 1.0, (64, 64))
    separate, _, _ = _decode(_grid_maps(dup), _decoder_params(None), 1.0, (64, 64))
    assert merged.max() == 1 and separate.max() == 2


def test_decoder_scales_to_image_pixels():
    maps = _grid_maps([(1, 1, 0, 0, 0, 1.0, 0.0, 1.0, 0.99)])
    labels, _, columns = _decode(maps, _decoder_params(), 2.0, (128, 128))
    assert np.count_nonzero(labels) == pytest.approx(np.pi * 24 ** 2, rel=0.1)
    assert columns["center_x"][0] == pytest.approx(47.5) and columns["axis_major"][0] == pytest.approx(24)


def test_support_radius_bounds_the_shape():
    weights = mlp_weights(_disk_mlp())
    assert support_radius(weights, 0.5) == pytest.approx(1.0, abs=0.02)


# -------------------------------------------------------------------------- export and runtime

@pytest.fixture(scope="module")
def shape_package(tmp_path_factory):
    from click.testing import CliRunner
    from cellpoint.export.cli import export
    from cellpoint.training.checkpoint import save_checkpoint
    import tifffile
    from conftest import synthetic_nuclei
    cfg = ShapeTrainConfig(steps=2, batch=2, crop=64, widths=(4, 4, 8, 8, 8), diameter=18.0)
    image, labels, _ = synthetic_nuclei(seed=2)
    ckpt = train([prepare_example(image, labels, cfg)], cfg, log=lambda *_: None)
    root = tmp_path_factory.mktemp("shape")
    save_checkpoint(ckpt, root / "shape.pt")
    tifffile.imwrite(root / "sample.tif", image)
    out = root / "tiny-shape"
    result = CliRunner().invoke(export, [str(root / "shape.pt"), "--out", str(out), "--sample",
                                         str(root / "sample.tif"), "--sample-licence", "synthetic"])
    assert result.exit_code == 0, result.output
    return out


def test_shape_package_has_grid_outputs_mlp_weights_and_the_shape_figure(shape_package):
    import json
    card = json.loads((shape_package / "card.json").read_text())
    assert [o["name"] for o in card["outputs"]] == ["presence", "center_offset", "transform"]
    assert all(o["stride"] == 16 for o in card["outputs"])
    assert card["decoder"]["name"] == "canonical_shape" and card["weights"]["parity_max_rel_diff"] < 1e-4
    weights = json.loads((shape_package / card["assets"]["shape_mlp"]["source"]).read_text())
    assert sorted(weights) == ["fc1", "fc2", "fc3"]
    assert (shape_package / "canonical_shape.png").is_file()
    assert "canonical_shape.png" in (shape_package / "README.md").read_text()


def test_shape_package_runs_with_torch_blocked_on_any_size(shape_package):
    code = textwrap.dedent(f"""
        import sys; sys.modules['torch'] = None
        import numpy as np
        from cellpoint.runtime import Segmenter
        seg = Segmenter(r"{shape_package}", tile=128)
        for shape in [(50, 77), (200, 150)]:                   # odd sizes; the second one is tiled
            labels, table = seg.segment(np.random.default_rng(0).random(shape).astype(np.float32))
            assert labels.shape == shape and labels.dtype == np.uint32
            assert set(table) >= {{"center_x", "axis_major", "orientation_deg"}}
            assert len(table["id"]) == len(table["axis_major"]) == labels.max()
        assert not [m for m in sys.modules if m.startswith("cellpoint.training")]
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr

"""Point2Mask training side: RoIAlign by grid_sample, the point loss through bilinear interpolation, a
mask head learning a shape from points alone, FCOS box targets, example preparation and crops, tiny
training runs in both modes, checkpoint and export wrappers (synthetic data only)."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
from conftest import synthetic_nuclei  # noqa: E402
from cellpoint.runtime.decoders.box_masks import BoxMasksParams  # noqa: E402
from cellpoint.training.augment import rotate_xy  # noqa: E402
from cellpoint.training.methods.point2mask.config import (DEFAULT_SIZE_RANGES, MASK_INPUTS,  # noqa: E402
                                                          MASK_OUTPUT, STRIDES, LossParams, Point2MaskConfig)
from cellpoint.training.methods.point2mask.data import (box_points_arrays, collate,  # noqa: E402
                                                        diameter_from_box_points, prepare_example, sample_crop)
from cellpoint.training.methods.point2mask.loss import (box_targets, detection_loss, focal_loss,  # noqa: E402
                                                        giou_loss, level_locations, mask_targets, point2mask_loss,
                                                        point_logits, point_loss)
from cellpoint.training.methods.point2mask.network import (MaskHead, Point2MaskNet,  # noqa: E402
                                                           batched_mask_logits, detector_outputs, roi_align)
from cellpoint.training.methods.point2mask.reference import detect  # noqa: E402
from cellpoint.training.methods.point2mask.train import build_network, export_modules, train  # noqa: E402
from cellpoint.training.weak_labels import box_points_from_labels  # noqa: E402

torch.set_num_threads(1)


def _tiny_config(**kw):
    base = dict(widths=(8, 8, 16, 16), channels=8, roi_size=7, diameter=18.0, crop=64, batch=4, steps=40,
                lr=3e-3, max_rois=16, log_every=1, n_points=6)
    return Point2MaskConfig(**{**base, **kw})


def _bilinear(feat: np.ndarray, row: float, col: float) -> float:
    """Plain bilinear interpolation of a 2-D array at (row, col), indices inside the array."""
    r0, c0 = int(np.floor(row)), int(np.floor(col))
    r1, c1 = min(r0 + 1, feat.shape[0] - 1), min(c0 + 1, feat.shape[1] - 1)
    fr, fc = row - r0, col - c0
    return ((1 - fr) * (1 - fc) * feat[r0, c0] + (1 - fr) * fc * feat[r0, c1]
            + fr * (1 - fc) * feat[r1, c0] + fr * fc * feat[r1, c1])


def _examples(cfg, seeds=(0, 1, 2)):
    out = []
    for s in seeds:
        image, labels, _ = synthetic_nuclei(n=6, radius=9, seed=s)
        boxes, pts, pl, ids = box_points_arrays(box_points_from_labels(labels, cfg.n_points, np.random.default_rng(s)))
        out.append(prepare_example(image, boxes, pts, pl, labels, 18.0, cfg, ids))
    return out


# -------------------------------------------------------------------------------------- RoIAlign

def test_roi_align_samples_each_bin_centre_bilinearly_from_the_stride_4_features():
    rng = np.random.default_rng(0)
    feat = rng.normal(size=(2, 6, 7)).astype(np.float32)
    # box (3.5, 5.5)–(11.5, 13.5), 2×2 bins: centres x = 5.5, 9.5 and y = 7.5, 11.5 network px; feature
    # (i, j) sits at pixel (4i + 1.5, 4j + 1.5), so the centres are feature cols 1, 2 and rows 1.5, 2.5
    out = roi_align(torch.from_numpy(feat)[None], torch.tensor([[3.5, 5.5, 11.5, 13.5]]), 2, 4)
    assert out.shape == (1, 2, 2, 2)
    expected = np.array([[(feat[:, 1, 1] + feat[:, 2, 1]) / 2, (feat[:, 1, 2] + feat[:, 2, 2]) / 2],
                         [(feat[:, 2, 1] + feat[:, 3, 1]) / 2, (feat[:, 2, 2] + feat[:, 3, 2]) / 2]])
    np.testing.assert_allclose(out[0].numpy(), np.moveaxis(expected, -1, 0), atol=1e-5)
    # a general box, 3×3 bins, against plain bilinear interpolation
    box = np.array([2.3, 4.1, 17.9, 19.3])
    out = roi_align(torch.from_numpy(feat)[None], torch.tensor(box[None], dtype=torch.float32), 3, 4)[0].numpy()
    for i in range(3):
        for j in range(3):
            x = box[0] + (j + 0.5) * (box[2] - box[0]) / 3
            y = box[1] + (i + 0.5) * (box[3] - box[1]) / 3
            for c in range(2):
                assert out[c, i, j] == pytest.approx(_bilinear(feat[c], (y - 1.5) / 4, (x - 1.5) / 4), abs=1e-5)


def test_roi_align_of_several_boxes_keeps_their_order_and_handles_none():
    feat = torch.randn(1, 3, 8, 8)
    boxes = torch.tensor([[0.0, 0.0, 16.0, 16.0], [8.0, 4.0, 30.0, 12.0], [1.0, 2.0, 3.0, 4.0]])
    together = roi_align(feat, boxes, 5, 4)
    for k in range(3):
        assert torch.allclose(together[k], roi_align(feat, boxes[k:k + 1], 5, 4)[0])
    assert roi_align(feat, torch.zeros(0, 4), 5, 4).shape == (0, 3, 5, 5)


# -------------------------------------------------------------------------------------- point loss

def test_point_loss_gradient_reaches_the_four_logits_around_a_point_and_a_step_lowers_it():
    m = 8
    logits = torch.zeros(1, 1, m, m, requires_grad=True)
    box = torch.tensor([[10.0, 20.0, 26.0, 36.0]])                    # 16 px square: mask px = 2 network px
    # mask pixel (i, j) sits at (10 + 2j + 1, 20 + 2i + 1): the point below lies between cols 2, 3 and rows
    # 4, 5 at fractions 0.25 and 0.5
    point = torch.tensor([[[10 + 2 * 2.25 + 1, 20 + 2 * 4.5 + 1]]])
    loss = point_loss(logits, box, point, torch.tensor([[1]]))
    loss.backward()
    grad = logits.grad[0, 0]
    assert set(map(tuple, torch.nonzero(grad).tolist())) == {(4, 2), (4, 3), (5, 2), (5, 3)}
    weights = torch.tensor([[0.75 * 0.5, 0.25 * 0.5], [0.75 * 0.5, 0.25 * 0.5]])
    assert torch.allclose(grad[4:6, 2:4], -0.5 * weights, atol=1e-6)       # dBCE/dz = σ(0) − 1 = −0.5
    with torch.no_grad():
        logits -= 1.0 * logits.grad
    assert point_loss(logits, box, point, torch.tensor([[1]])) < loss


def test_the_point_losss_gradient_into_the_shared_features_is_scaled_and_the_mask_heads_is_not():
    from dataclasses import replace
    cfg = _tiny_config()
    rng = np.random.default_rng(0)
    batch = collate([sample_crop(_examples(cfg, seeds=(0,))[0], cfg, rng) for _ in range(2)], cfg, rng)
    torch.manual_seed(0)
    net = Point2MaskNet(1, cfg.widths, cfg.channels, cfg.head_convs, cfg.mask_convs, cfg.roi_size).eval()

    def grads(scale):
        net.zero_grad()
        loss, parts = point2mask_loss(net, batch, "points", params=replace(LossParams(), feature_grad=scale))
        loss.backward()
        return loss.item(), {k: v.grad.clone() for k, v in net.named_parameters() if v.grad is not None}

    loss_1, full = grads(1.0)
    loss_q, quarter = grads(0.25)
    loss_0, none = grads(0.0)
    assert loss_1 == loss_q == loss_0                                      # the forward pass is unchanged
    mask_key, trunk_key = "mask_head.out.weight", "backbone.stem.0.weight"
    assert torch.allclose(quarter[mask_key], full[mask_key]) and torch.allclose(none[mask_key], full[mask_key])
    net.zero_grad()
    levels, _ = net(batch["image"])
    sum(detection_loss(levels, batch["boxes"], batch["ignore"], DEFAULT_SIZE_RANGES)).backward()
    detection_only = net.backbone.stem[0].weight.grad
    assert torch.allclose(none[trunk_key], detection_only, atol=1e-6)    # scale 0: the point loss stays in the head
    assert torch.allclose(quarter[trunk_key] - detection_only, 0.25 * (full[trunk_key] - detection_only), atol=1e-6)


def test_point_loss_ignores_padding_and_points_outside_the_box():
    logits = torch.zeros(2, 1, 4, 4, requires_grad=True)
    boxes = torch.tensor([[0.0, 0.0, 8.0, 8.0], [0.0, 0.0, 8.0, 8.0]])
    points = torch.tensor([[[4.0, 4.0], [20.0, 4.0]], [[8.0, 8.0], [1.0, 1.0]]])   # (8, 8): on the edge, inside
    labels = torch.tensor([[1, 0], [0, -1]])
    z, inside = point_logits(logits, boxes, points)
    assert inside.tolist() == [[True, False], [True, True]]
    point_loss(logits, boxes, points, labels).backward()
    assert logits.grad[0].abs().sum() > 0 and logits.grad[1, 0, 3, 3] > 0       # edge point: the corner logit
    assert logits.grad[1, 0, 0, 0] == 0                                           # the padded point pulls nothing


def test_a_mask_head_trained_on_points_alone_learns_a_disc():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    size, m = 64, 14
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(), MaskHead(8, 2))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)

    def discs(n):
        """One image of n random discs (the features are the image itself) with their boxes and radii."""
        rows, cols = np.indices((size, size))
        image = np.zeros((size, size), np.float32)
        centres = rng.uniform(16, size - 16, (n, 2))
        radii = rng.uniform(6, 12, n)
        for (x, y), r in zip(centres, radii):
            image[(cols - x) ** 2 + (rows - y) ** 2 <= r ** 2] = 1.0
        boxes = np.concatenate([centres - radii[:, None], centres + radii[:, None]], 1)
        return torch.from_numpy(image)[None, None], torch.tensor(boxes, dtype=torch.float32), centres, radii

    for _ in range(150):
        image, boxes, centres, radii = discs(8)
        rois = boxes + torch.randn(boxes.shape) * 0.05 * (boxes[:, 2:3] - boxes[:, 0:1])
        points = rois[:, None, :2] + torch.rand(8, 6, 2) * (rois[:, None, 2:] - rois[:, None, :2])
        labels = ((points - torch.tensor(centres, dtype=torch.float32)[:, None]).norm(dim=-1)
                  <= torch.tensor(radii, dtype=torch.float32)[:, None]).long()
        loss = point_loss(model(roi_align(image, rois, m // 2, 1)), rois, points, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    image, boxes, centres, radii = discs(4)
    with torch.no_grad():
        masks = torch.sigmoid(model(roi_align(image, boxes, m // 2, 1)))[:, 0].numpy() >= 0.5
    steps = (np.arange(m) + 0.5) / m
    for mask, b, c, r in zip(masks, boxes.numpy(), centres, radii):
        x, y = b[0] + steps * (b[2] - b[0]), b[1] + steps * (b[3] - b[1])
        disc = (x[None] - c[0]) ** 2 + (y[:, None] - c[1]) ** 2 <= r ** 2
        assert (mask & disc).sum() / (mask | disc).sum() > 0.7


def test_mask_targets_resample_the_instance_into_its_box():
    labels = torch.zeros(1, 10, 12, dtype=torch.int64)
    labels[0, 2:6, 3:9] = 4
    labels[0, 6:8, 3:9] = 5
    target = mask_targets(labels, torch.tensor([0, 0]), torch.tensor([[2.5, 1.5, 8.5, 5.5], [2.5, 1.5, 8.5, 9.5]]),
                              torch.tensor([4, 4]), 4)
    assert target[0].tolist() == [[1.0] * 4] * 4                              # the box is the cell's extent
    assert target[1].tolist() == [[1.0] * 4, [1.0] * 4, [0.0] * 4, [0.0] * 4]  # lower half: cell 5, then none


# ------------------------------------------------------------------------------------- box targets

def test_box_targets_assign_each_cell_to_its_level_near_its_centre_and_the_smallest_box_wins():
    h = w = 64
    locs, strides, ranges = [], [], []
    for s, rng in zip(STRIDES, DEFAULT_SIZE_RANGES):
        loc = level_locations((h // s, w // s), s)
        locs.append(loc)
        strides.append(torch.full((len(loc),), float(s)))
        ranges.append(torch.tensor([rng]).expand(len(loc), 2))
    locs, strides, ranges = torch.cat(locs), torch.cat(strides), torch.cat(ranges)
    assert locs[1].tolist() == [5.5, 1.5] and locs[16].tolist() == [1.5, 5.5]   # row-major, centres 4j + 1.5
    small = [4.5, 4.5, 24.5, 24.5]        # 20 px: max distance ≤ 16 → stride 4
    large = [0.0, 0.0, 60.0, 50.0]        # 60 × 50: max distance 16–40 → stride 8 (around (30, 25))
    label, dist = box_targets(locs, strides, ranges, torch.tensor([small, large]), 1.5,
                                  ignore=torch.tensor([[40.0, 50.0, 44.0, 64.0]]))
    pos = label > 0
    level = torch.bucketize(torch.arange(len(locs)), torch.tensor([256, 320]), right=True)
    assert {0, 1} <= set(level[pos].tolist())
    assert (dist[pos & (level == 2)].sum(0)[[0, 2]] > 0).all()   # stride 16 also takes part of the large box
    # stride 4, small box: the locations within 6 px of (14.5, 14.5), all inside it, all positive
    small_pos = pos & (level == 0)
    expect = ((locs - 14.5).abs() < 6).all(1) & (level == 0)
    assert torch.equal(small_pos, expect)
    # their distances are to the small box (it is the smaller of the two containing them)
    l_, t_ = locs[small_pos, 0] - 4.5, locs[small_pos, 1] - 4.5
    assert torch.allclose(dist[small_pos, 0], l_) and torch.allclose(dist[small_pos, 1], t_)
    assert torch.allclose(dist[small_pos, 2], 24.5 - locs[small_pos, 0])
    # stride 8 positives belong to the large box, within 12 px of its centre (30, 25)
    big = pos & (level == 1)
    assert big.any() and ((locs[big] - torch.tensor([30.0, 25.0])).abs() < 12).all()
    assert torch.allclose(dist[big, 2] + dist[big, 0], torch.full((int(big.sum()),), 60.0))
    # the ignored sliver: its inside locations are −1 (not positives of the large box, which is elsewhere)
    ignored = label < 0
    assert ignored.any() and ((locs[ignored, 0] > 40) & (locs[ignored, 0] < 44)).all()
    assert (dist[~pos] == 0).all()


def test_giou_and_focal_losses_on_simple_cases():
    d = torch.tensor([[2.0, 2.0, 2.0, 2.0]])
    assert giou_loss(d, d).item() == pytest.approx(0.0, abs=1e-6)
    # inner 2×2 in an outer 4×4 box around the same location: IoU 1/4, enclosure = union → loss 3/4
    assert giou_loss(torch.tensor([[1.0, 1, 1, 1]]), d).item() == pytest.approx(0.75)
    logits = torch.tensor([0.0, 0.0, 5.0])
    # ignored locations count nothing; one positive normalises
    full = focal_loss(logits, torch.tensor([1.0, 0.0, -1.0]))
    assert full.item() == pytest.approx(0.25 * 0.25 * np.log(2) + 0.75 * 0.25 * np.log(2), rel=1e-5)


# --------------------------------------------------------------------------------- examples, crops

def test_prepare_example_scales_boxes_and_points_with_the_image_and_estimates_the_diameter():
    image, labels, _ = synthetic_nuclei(n=6, radius=9, seed=0)
    cells = box_points_from_labels(labels, 200, np.random.default_rng(0))
    boxes, points, point_labels, ids = box_points_arrays(cells)
    assert boxes.shape == (6, 4) and points.shape == (6, 200, 2) and ids.tolist() == [1, 2, 3, 4, 5, 6]
    true = 2 * np.sqrt(np.median(np.bincount(labels.ravel())[1:]) / np.pi)
    assert diameter_from_box_points(boxes, point_labels) == pytest.approx(true, rel=0.08)
    cfg = Point2MaskConfig(mode="full", diameter=true * 2)
    ex = prepare_example(image, boxes, points[:, :4], point_labels[:, :4], labels, None, cfg, ids)
    assert ex["scale"] == pytest.approx(2.0) and ex["image"].shape == (1, 192, 256)
    for k, i in enumerate(ids):
        rows, cols = np.nonzero(ex["labels"] == i)
        x0, y0, x1, y1 = ex["boxes"][k]
        assert x0 == pytest.approx(cols.min() - 0.5, abs=0.6) and x1 == pytest.approx(cols.max() + 0.5, abs=0.6)
        assert y0 == pytest.approx(rows.min() - 0.5, abs=0.6) and y1 == pytest.approx(rows.max() + 0.5, abs=0.6)
    np.testing.assert_allclose(ex["points"], (points[:, :4] + 0.5) * 2 - 0.5, atol=1e-4)
    weak = prepare_example(image, boxes, points, point_labels, cfg=Point2MaskConfig(diameter=true))
    assert "labels" not in weak and weak["scale"] == pytest.approx(1.0, rel=0.08)


def test_rotations_and_flips_of_points_follow_the_array():
    arr = np.zeros((7, 7))
    arr[1, 5] = 1                                        # row 1, col 5: (x, y) = (5, 1)
    for k in range(4):
        for flip in (False, True):
            out = np.rot90(arr, k)
            out = out[:, ::-1] if flip else out
            r, c = np.argwhere(out)[0]
            assert rotate_xy(np.array([5.0, 1.0]), 7, k, flip).tolist() == [c, r]


def test_crops_keep_boxes_points_and_masks_consistent_and_clip_cut_cells():
    cfg = _tiny_config(mode="full", scale_range=(1.0, 1.0), n_points=20, crop=48)
    examples = _examples(cfg)
    rng = np.random.default_rng(1)
    cut, agree = 0, []
    for _ in range(30):
        crop = sample_crop(examples[int(rng.integers(3))], cfg, rng)
        assert crop["image"].shape == (1, 48, 48) and crop["labels"].shape == (48, 48)
        assert ((crop["boxes"] >= -0.5) & (crop["boxes"] <= 47.5)).all()
        assert ((crop["boxes"][:, 2:] - crop["boxes"][:, :2]) >= cfg.min_box).all()
        for box, pts, pl, i in zip(crop["boxes"], crop["points"], crop["point_labels"], crop["ids"]):
            rows, cols = np.nonzero(crop["labels"] == i)
            extent = [cols.min() - 0.5, rows.min() - 0.5, cols.max() + 0.5, rows.max() + 0.5]
            if (box[:2] > -0.5).all() and (box[2:] < 47.5).all():
                assert box.tolist() == extent                     # a whole cell: its box is its extent
            else:                                                 # a cut cell: clipped, still holds the rest
                cut += 1
                assert (box[:2] <= extent[:2]).all() and (box[2:] >= extent[2:]).all()
            valid = pl >= 0
            assert ((pts[valid] >= box[:2]) & (pts[valid] <= box[2:])).all()
            pix = np.floor(pts[valid] + 0.5).astype(int).clip(0, 47)
            agree += list((crop["labels"][pix[:, 1], pix[:, 0]] == i) == (pl[valid] == 1))
    assert cut > 0 and len(agree) > 500
    assert np.mean(agree) > 0.99                                  # ties at pixel edges may flip a rare one


def test_collate_limits_and_jitters_the_rois_and_carries_their_points():
    cfg = _tiny_config(max_rois=5, box_jitter=0.0)
    examples = _examples(_tiny_config(mode="points"))
    rng = np.random.default_rng(0)
    crops = [sample_crop(examples[k], cfg, rng) for k in range(3)]
    batch = collate(crops, cfg, rng)
    n = sum(len(c["boxes"]) for c in crops)
    assert len(batch["rois"]) == min(5, n) and batch["roi_points"].shape == (min(5, n), 6, 2)
    for b, roi, pts in zip(batch["roi_index"].tolist(), batch["rois"], batch["roi_points"]):
        k = [j for j, box in enumerate(crops[b]["boxes"]) if np.allclose(box, roi.numpy(), atol=1e-4)]
        assert len(k) == 1 and np.allclose(crops[b]["points"][k[0]], pts.numpy())


# ------------------------------------------------------------------------------------------ training

@pytest.mark.parametrize("mode", ["points", "full"])
def test_a_tiny_training_run_lowers_the_loss_and_writes_a_complete_checkpoint(mode):
    cfg = _tiny_config(mode=mode)
    lines = []
    checkpoint = train(_examples(cfg), cfg, log=lines.append)
    losses = [float(line.split("loss ")[1].split()[0]) for line in lines]
    assert np.mean(losses[-8:]) < 0.7 * np.mean(losses[:8])
    mask_key = "point" if mode == "points" else "mask"
    assert all(f" {mask_key} " in line for line in lines)
    assert {"format", "method", "label_kind", "model", "state_dict", "diameter", "normalization", "decoder",
            "config", "train_seconds"} <= set(checkpoint)
    assert checkpoint["method"] == "point2mask"
    assert checkpoint["label_kind"] == ("box-points" if mode == "points" else "full")
    assert checkpoint["model"]["in_channels"] == 1 and checkpoint["model"]["mask_size"] == 14
    decoder = checkpoint["decoder"]
    assert decoder["name"] == "box_masks"
    params = decoder["params"]
    assert list(params["strides"]) == [4, 8, 16] and params["max_detections"] == cfg.decode.max_detections
    assert params["mask_threshold"] == 0.5 and len(checkpoint["config"]["size_ranges"]) == 3
    assert checkpoint["config"]["decode"]["nms_iou"] == cfg.decode.nms_iou
    net = build_network(checkpoint)
    assert not net.training


def test_training_can_start_from_another_checkpoints_weights(tmp_path):
    from dataclasses import replace
    cfg = _tiny_config(steps=2)
    first = train(_examples(cfg, seeds=(0,)), cfg, log=lambda *_: None)
    torch.save(first, tmp_path / "first.pt")
    resumed = train(_examples(cfg, seeds=(1,)), replace(cfg, steps=0, init_from=str(tmp_path / "first.pt")),
                               log=lambda *_: None)
    fresh = train(_examples(cfg, seeds=(1,)), replace(cfg, steps=0), log=lambda *_: None)
    for key, value in first["state_dict"].items():
        assert torch.equal(resumed["state_dict"][key], value), key
    assert not all(torch.equal(fresh["state_dict"][k], v) for k, v in first["state_dict"].items())
    wider = replace(cfg, channels=16, steps=0, init_from=str(tmp_path / "first.pt"))
    with pytest.raises(ValueError, match="not a point2mask model of the same network"):
        train(_examples(cfg, seeds=(1,)), wider, log=lambda *_: None)


def test_the_checkpoint_builds_a_card():
    from cellpoint.export.card import build_card, render_readme
    cfg = _tiny_config(steps=1)
    checkpoint = train(_examples(cfg, seeds=(0,)), cfg, log=lambda *_: None)
    from cellpoint.training.methods import get_method
    weights = {"source": "model.onnx", "sha256": "0" * 64, "opset": 17, "parity_max_rel_diff": 0.0}
    checkpoint["training_data"] = [{"dataset": "usiigaci_phase_contrast", "split": "train"}]
    card = build_card(checkpoint, "p2m", "test", weights, {}, {}, detector_outputs(), {}, [], {}, [],
                      get_method("point2mask").reference)
    assert card["architecture"]["parameters"] > 0 and card["decoder"]["name"] == checkpoint["decoder"]["name"]
    assert card["name"] == "p2m" and card["training_data"][0]["licence"].startswith("MIT")
    assert "point2mask" in render_readme(card)


# -------------------------------------------------------------------------------------------- export

def _trained_tiny():
    cfg = _tiny_config(steps=3)
    return train(_examples(cfg, seeds=(0,)), cfg, log=lambda *_: None)


def test_export_wrappers_equal_the_training_forward():
    checkpoint = _trained_tiny()
    detector, mask_graph = export_modules(checkpoint)
    net = build_network(checkpoint)
    image = torch.randn(2, 1, 48, 80)
    with torch.no_grad():
        outputs = detector(image)
        levels, features = net(image)
        assert len(outputs) == len(detector_outputs()) == 7
        for k, (score, dist) in enumerate(levels):
            s = STRIDES[k]
            assert outputs[2 * k].shape == (2, 1, 48 // s, 80 // s)
            assert torch.equal(outputs[2 * k], torch.sigmoid(score)) and torch.equal(outputs[2 * k + 1], dist)
        assert torch.equal(outputs[-1], features) and features.shape == (2, 8, 12, 20)
        boxes = torch.tensor([[3.0, 4.0, 30.0, 20.0], [50.0, 10.0, 79.5, 47.5], [-4.0, -2.0, 10.0, 9.0]])
        masks = mask_graph(features[1:2], boxes)
        train_side = batched_mask_logits(net, features, torch.tensor([1, 1, 1]), boxes)
        assert masks.shape == (3, 1, 14, 14) and torch.allclose(masks, torch.sigmoid(train_side), atol=1e-6)


def test_the_mask_graph_exports_to_onnx_with_grid_sample_and_a_dynamic_box_count(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    import warnings
    checkpoint = _trained_tiny()
    detector, mask_graph = export_modules(checkpoint)
    features = torch.randn(1, 8, 12, 16)
    boxes = torch.tensor([[3.0, 4.0, 30.0, 20.0], [20.0, 10.0, 63.5, 47.5]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(mask_graph, (features, boxes), str(tmp_path / "m.onnx"), input_names=list(MASK_INPUTS),
                          output_names=[MASK_OUTPUT], opset_version=17, dynamo=False,
                          dynamic_axes={"features": {2: "h", 3: "w"}, "boxes": {0: "n"}, "masks": {0: "n"}})
        torch.onnx.export(detector, torch.zeros(1, 1, 64, 64), str(tmp_path / "d.onnx"), input_names=["image"],
                          output_names=[o["name"] for o in detector_outputs()], opset_version=17,
                          dynamo=False, dynamic_axes={"image": {0: "b", 2: "h", 3: "w"}, **{
                              o["name"]: {0: "b", 2: f"h{o['stride']}", 3: f"w{o['stride']}"}
                              for o in detector_outputs()}})
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    feats = torch.randn(1, 8, 20, 24)
    more = torch.tensor([[1.0, 2.0, 9.0, 30.0], [40.0, 5.0, 90.0, 60.0], [-3.0, 70.0, 20.0, 79.0]])
    got = session.run(None, {"features": feats.numpy(), "boxes": more.numpy()})[0]
    with torch.no_grad():
        np.testing.assert_allclose(got, mask_graph(feats, more).numpy(), atol=1e-5)
    session = ort.InferenceSession(str(tmp_path / "d.onnx"), providers=["CPUExecutionProvider"])
    image = torch.randn(1, 1, 48, 96)
    got = session.run(None, {"image": image.numpy()})
    with torch.no_grad():
        for a, b in zip(got, detector(image)):
            np.testing.assert_allclose(a, b.numpy(), rtol=1e-4, atol=1e-4)


def test_reference_detect_keeps_the_strongest_of_overlapping_boxes():
    score = torch.zeros(1, 1, 4, 4)
    score[0, 0, 1, 1], score[0, 0, 1, 2], score[0, 0, 3, 3] = 0.9, 0.8, 0.7
    dist = torch.full((1, 4, 4, 4), 5.0)
    empty = (torch.zeros(1, 1, 2, 2), torch.ones(1, 4, 2, 2))
    boxes, scores = detect([(score, dist), empty, (torch.zeros(1, 1, 1, 1), torch.ones(1, 4, 1, 1))],
                               BoxMasksParams(score_threshold=0.5, nms_iou=0.3))
    assert scores.tolist() == pytest.approx([0.9, 0.7])
    assert boxes[0].tolist() == [0.5, 0.5, 10.5, 10.5]               # location (5.5, 5.5) ± 5; IoU 0.43 with
                                                                     # the 0.8 box one location right
    one, _ = detect([(score, dist), empty, (torch.zeros(1, 1, 1, 1), torch.ones(1, 4, 1, 1))],
                        BoxMasksParams(score_threshold=0.5, nms_iou=0.3, max_detections=1))
    assert len(one) == 1

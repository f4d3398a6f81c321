"""LACSS training side: window gather and encoding, location targets, each loss term's direction, example
preparation and crops, tiny training runs, checkpoint and export wrappers (synthetic data only)."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
from cellpoint.runtime.decoders import get_decoder  # noqa: E402
from cellpoint.runtime.decoders.location_masks import LocationMasksParams  # noqa: E402
from cellpoint.runtime.decoders.location_masks import gather_windows as numpy_gather_windows  # noqa: E402
from cellpoint.training.augment import rotate_yx  # noqa: E402
from cellpoint.training.methods.lacss import SPEC, network  # noqa: E402
from cellpoint.training.methods.lacss import loss as losses  # noqa: E402
from cellpoint.training.methods.lacss.config import LPN_STRIDE, LacssConfig  # noqa: E402
from cellpoint.training.methods.lacss.data import collate, prepare_example, sample_crop  # noqa: E402
from cellpoint.training.methods.lacss.train import build_network, train  # noqa: E402
from cellpoint.training.methods.lacss.windows import Windows, gather_windows, window_origins  # noqa: E402

torch.set_num_threads(1)


def _disk(shape, center_rc, radius):
    rows, cols = np.indices(shape)
    return (rows - center_rc[0]) ** 2 + (cols - center_rc[1]) ** 2 <= radius ** 2


def _tiny_config(**kw):
    base = dict(widths=(8, 8, 16, 16), features=8, head_width=8, aux_width=4, diameter=18.0, window=32,
                crop=64, batch=4, steps=80, lr=3e-3, log_every=10)
    return LacssConfig(**{**base, **kw})


def _descend(params, loss_fn, steps=10, lr=0.2):
    """A few Adam steps: each logit moves about `lr` along its own gradient's sign, whatever the scale."""
    opt = torch.optim.Adam(params, lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        loss_fn().backward()
        opt.step()


# --------------------------------------------------------------------------------------- windows

def test_window_gather_matches_a_hand_made_crop_with_zero_padding_and_the_encoding():
    features = torch.arange(2 * 10 * 12, dtype=torch.float32).reshape(1, 2, 10, 12) + 1
    features.requires_grad_(True)
    yx = torch.tensor([[1.4, 10.6], [2.5, 3.5]])
    windows, encoding, geometry = gather_windows(features, torch.tensor([0, 0]), yx, 6)
    assert window_origins(yx, 6).tolist() == [[-2, 8], [0, 1]]            # floor(v + 0.5): 2.5 → 3, not 2
    expected = torch.zeros(2, 6, 6)
    expected[:, 2:6, 0:4] = features[0, :, 0:4, 8:12].detach()           # rows −2, −1 and cols 12, 13 outside
    assert torch.equal(windows[0].detach(), expected)
    assert torch.equal(windows[1].detach(), features[0, :, 0:6, 1:7].detach())
    assert torch.allclose(encoding[0, 0, :, 0], (torch.arange(-2, 4) - 1.4) / 6)
    assert torch.allclose(encoding[0, 1, 0, :], (torch.arange(8, 14) - 10.6) / 6)
    assert torch.allclose(encoding[0, 0, :, 3], encoding[0, 0, :, 0])    # rows vary down, constant across
    windows.sum().backward()                                              # differentiable w.r.t. features
    coverage = np.zeros((10, 12))
    coverage[0:4, 8:12] += 1
    coverage[0:6, 1:7] += 1
    assert np.array_equal(features.grad[0, 0].numpy(), coverage)


def test_window_gather_agrees_with_the_runtime_numpy_gather():
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(3, 4, 20, 24)).astype(np.float32)
    yx = rng.uniform(-0.5, 19.5, (7, 2)) * [1, 1.2]
    bi = rng.integers(0, 3, 7)
    windows, encoding, _ = gather_windows(torch.from_numpy(feats), torch.from_numpy(bi),
                                          torch.from_numpy(yx).float(), 10)
    for k in range(7):
        w_np, e_np, _ = numpy_gather_windows(feats[bi[k]], yx[k:k + 1].astype(np.float32), 10)
        np.testing.assert_array_equal(windows[k].numpy(), w_np[0])
        np.testing.assert_allclose(encoding[k].numpy(), e_np[0], atol=1e-6)


def test_paste_sums_overlapping_windows_and_read_returns_the_sum():
    geometry = Windows.at(torch.tensor([0, 0, 1]), torch.tensor([[4.0, 4.0], [4.0, 6.0], [1.0, 1.0]]),
                          4, batch=2, height=8, width=8)
    canvas = geometry.unpad(geometry.paste(torch.ones(3, 4, 4)))
    assert canvas.shape == (2, 8, 8)
    assert canvas[0, 4, 4] == 2 and canvas[0, 4, 2] == 1 and canvas[0, 4, 7] == 1 and canvas[0, 0, 0] == 0
    assert canvas[1].sum() == 9                                           # 3×3 of the 4×4 window is inside
    assert geometry.read(geometry.paste(torch.ones(3, 4, 4)))[0, 2, 2] == 2


# ---------------------------------------------------------------------------------- location loss

def test_location_targets_mark_the_grid_cell_holding_each_location_and_its_offset():
    yx = torch.tensor([[5.0, 9.7], [-0.3, 30.2], [20.0, 20.0]])
    score, offsets, positive = losses.location_targets(torch.tensor([0, 1, 1]), yx, (2, 8, 8))
    assert positive.sum() == 3
    assert positive[0, 1, 2] and positive[1, 0, 7] and positive[1, 5, 5]     # floor((v + 0.5) / 4)
    assert torch.allclose(offsets[0, :, 1, 2], torch.tensor([5.0 - 5.5, 9.7 - 9.5]))   # centre 4i + 1.5
    assert torch.allclose(offsets[1, :, 0, 7], torch.tensor([-0.3 - 1.5, 30.2 - 29.5]))
    assert torch.allclose(offsets[1, :, 5, 5], torch.tensor([-1.5, -1.5]))
    assert score.sum() == 3 and score.shape == (2, 1, 8, 8)


def test_location_loss_raises_positive_scores_lowers_the_others_and_pulls_offsets_to_the_target():
    score = torch.zeros(1, 1, 8, 8, requires_grad=True)
    offsets = torch.zeros(1, 2, 8, 8, requires_grad=True)
    yx = torch.tensor([[5.0, 9.7]])
    l_score, l_offset = losses.location_loss(score, offsets, torch.tensor([0]), yx)
    assert l_score.item() == pytest.approx(64 * np.log(2))               # summed BCE / 1 positive
    assert l_offset.item() == pytest.approx(0.5 * 0.5 ** 2 + 0.5 * 0.2 ** 2)   # smooth-L1, β = 1
    (l_score + l_offset).backward()
    assert score.grad[0, 0, 1, 2] < 0 and (score.grad[0, 0] > 0).sum() == 63
    assert offsets.grad[0, 0, 1, 2] > 0 and offsets.grad[0, 1, 1, 2] < 0   # descent: dy → −0.5, dx → +0.2
    assert offsets.grad.abs().sum() == offsets.grad[0, :, 1, 2].abs().sum()
    empty = losses.location_loss(score, offsets, torch.zeros(0, dtype=torch.long), torch.zeros(0, 2))
    assert empty[0].item() == pytest.approx(64 * np.log(2)) and empty[1].item() == 0


# ------------------------------------------------------------------------------------ weak losses

def _mask_logits(shape, center_rc, radius, size, location, sharpness=3.0):
    """Window logits (1,P,P) of a disk in image coordinates, for the window around `location`."""
    origin = window_origins(torch.tensor([location]), size)[0].tolist()
    rows, cols = np.indices((size, size))
    d = np.hypot(rows + origin[0] - center_rc[0], cols + origin[1] - center_rc[1])
    return torch.tensor(sharpness * (radius - d) / 2, dtype=torch.float32)[None]


def _single_image_windows(locations, size, shape):
    n = len(locations)
    return Windows.at(torch.zeros(n, dtype=torch.long), torch.tensor(locations, dtype=torch.float32),
                      size, 1, *shape)


def test_spill_loss_shrinks_the_mask_outside_the_foreground_only():
    shape, size = (40, 40), 32
    fg = torch.from_numpy(_disk(shape, (20, 20), 8).astype(np.float32))[None]
    geometry = _single_image_windows([(20.0, 20.0)], size, shape)
    logits = _mask_logits(shape, (20, 20), 12, size, (20.0, 20.0)).requires_grad_(True)
    valid = geometry.gather(torch.ones(1, 1, *shape))[:, 0]
    fg_w = geometry.gather(fg[:, None])[:, 0]

    def masses():
        p = torch.sigmoid(logits.detach())
        return float((p * (1 - fg_w) * valid).sum()), float((p * fg_w).sum())
    out0, in0 = masses()
    _descend([logits], lambda: losses.spill_loss(logits, fg_w, valid))
    out1, in1 = masses()
    assert out1 < out0 - 0.1 * out0 and in1 == pytest.approx(in0)


def test_cover_loss_grows_an_under_covering_mask_over_the_foreground():
    shape, size = (40, 40), 32
    fg = torch.from_numpy(_disk(shape, (20, 20), 10).astype(np.float32))[None]
    geometry = _single_image_windows([(20.0, 20.0)], size, shape)
    logits = _mask_logits(shape, (20, 20), 5, size, (20.0, 20.0)).requires_grad_(True)
    valid = geometry.gather(torch.ones(1, 1, *shape))[:, 0]
    fg_w = geometry.gather(fg[:, None])[:, 0]
    before = float((torch.sigmoid(logits.detach()) * fg_w).sum())
    _descend([logits], lambda: losses.cover_loss(logits, geometry, fg, valid))
    assert float((torch.sigmoid(logits.detach()) * fg_w).sum()) > before + 0.1 * before


def test_window_consistency_grows_a_small_mask_over_the_foreground_and_shrinks_a_large_one():
    shape, size = (40, 40), 32
    fg = torch.from_numpy(_disk(shape, (20, 20), 8).astype(np.float32))[None]
    geometry = _single_image_windows([(20.0, 20.0)], size, shape)
    valid = geometry.gather(torch.ones(1, 1, *shape))[:, 0]
    fg_w = geometry.gather(fg[:, None])[:, 0]
    for radius in (4, 13):
        logits = _mask_logits(shape, (20, 20), radius, size, (20.0, 20.0), sharpness=1.0).requires_grad_(True)

        def masses():
            p = torch.sigmoid(logits.detach())
            return float((p * fg_w).sum()), float((p * (1 - fg_w) * valid).sum())
        in0, out0 = masses()
        _descend([logits], lambda: losses.window_consistency_loss(logits, fg_w, valid))
        in1, out1 = masses()
        assert in1 > in0 and out1 < out0, radius


def test_overlap_loss_pulls_two_overlapping_masks_apart():
    shape, size = (40, 48), 32
    locations = [(20.0, 16.0), (20.0, 30.0)]
    geometry = _single_image_windows(locations, size, shape)
    logits = torch.cat([_mask_logits(shape, loc, 10, size, loc) for loc in locations]).requires_grad_(True)
    valid = geometry.gather(torch.ones(1, 1, *shape))[:, 0]

    def overlap():
        p = torch.sigmoid(logits.detach()) * valid
        total = geometry.paste(p)
        return float(((total ** 2 - geometry.paste(p ** 2)) / 2).sum())    # Σ_u Σ_{i<j} p_i p_j
    before = overlap()
    assert before > 20
    _descend([logits], lambda: losses.overlap_loss(logits, geometry, valid))
    assert overlap() < 0.8 * before


def test_aux_agreement_moves_the_main_boundaries_towards_the_aux_ones_and_fit_trains_only_the_aux():
    shape, size = (40, 40), 32
    geometry = _single_image_windows([(20.0, 20.0)], size, shape)
    valid = geometry.gather(torch.ones(1, 1, *shape))[:, 0]
    logits = _mask_logits(shape, (20, 20), 6, size, (20.0, 20.0), sharpness=1.5).requires_grad_(True)
    ring_aux = torch.from_numpy(_disk(shape, (20, 20), 10) & ~_disk(shape, (20, 20), 8))
    ring_main = torch.from_numpy(_disk(shape, (20, 20), 7) & ~_disk(shape, (20, 20), 5))
    aux_logits = (torch.where(ring_aux, 3.0, -3.0))[None, None]

    def rings():
        b = losses.boundary_map(logits.detach(), geometry, valid)[0]
        return float(b[ring_aux].mean()), float(b[ring_main].mean())
    aux0, main0 = rings()
    _descend([logits], lambda: losses.aux_losses(aux_logits, losses.boundary_map(logits, geometry, valid))[1])
    aux1, main1 = rings()
    assert aux1 > aux0 + 0.05 and main1 < main0 - 0.05

    aux_param = torch.zeros(1, 1, *shape, requires_grad=True)
    boundary = losses.boundary_map(logits, geometry, valid)
    fit, agree = losses.aux_losses(aux_param, boundary)
    logits.grad = None
    fit.backward(retain_graph=True)
    assert logits.grad is None and aux_param.grad.abs().sum() > 0       # fit: stop-gradient on the main net
    aux_param.grad = None
    agree.backward()
    assert aux_param.grad is None and logits.grad.abs().sum() > 0       # agree: stop-gradient on the aux net


def test_aux_net_has_a_small_field_of_view():
    torch.manual_seed(0)  # torch seeds itself randomly: an unlucky draw of biases leaves every ReLU dead on zeros
    net = network.AuxNet(1, 4, 4)
    x = torch.zeros(1, 1, 33, 33, requires_grad=True)
    net(x)[0, 0, 16, 16].backward()
    rows, cols = np.nonzero(x.grad[0, 0].numpy())
    assert rows.max() - rows.min() + 1 <= 9 and cols.max() - cols.min() + 1 <= 9


# ------------------------------------------------------------------------------ examples and crops

def test_rotate_points_follows_rot90_and_flip():
    size = 7
    for k in range(4):
        for flip in (False, True):
            img = np.zeros((size, size))
            img[1, 5] = 1
            out = np.rot90(img, k)
            out = out[:, ::-1] if flip else out
            assert np.argwhere(out).tolist() == rotate_yx(np.array([[1.0, 5.0]]), size, k, flip).tolist()


def test_prepare_example_rescales_to_the_canonical_diameter_and_keeps_only_its_label_kind():
    from conftest import synthetic_nuclei
    image, labels, centres = synthetic_nuclei(n=5, radius=9, seed=1)
    cfg = LacssConfig(diameter=9.5, mode="weak")
    weak = prepare_example(image, centres.astype(float), labels > 0, cfg=cfg)
    assert weak["scale"] == pytest.approx(9.5 / weak["diameter"]) and weak["diameter"] == pytest.approx(18, rel=0.05)
    shape = (round(96 * weak["scale"]), round(128 * weak["scale"]))
    assert weak["image"].shape == (1,) + shape and weak["image"].dtype == np.float32
    assert "labels" not in weak and weak["foreground"].shape == shape
    expected = (centres + 0.5) * weak["scale"] - 0.5
    np.testing.assert_allclose(weak["locations"], expected, atol=1e-4)
    rc = np.round(weak["locations"]).astype(int)
    assert weak["foreground"][rc[:, 0], rc[:, 1]].all()

    full = prepare_example(np.stack([image, image], -1), None, labels=labels, diameter=19.0,
                           cfg=LacssConfig(diameter=9.5, mode="full"))
    assert full["image"].shape == (2, 48, 64) and "foreground" not in full
    assert sorted(full["ids"].tolist()) == [1, 2, 3, 4, 5]
    rc = np.round(full["locations"]).astype(int)
    assert (full["labels"][rc[:, 0], rc[:, 1]] == full["ids"]).all()
    with pytest.raises(ValueError):
        prepare_example(image, None, None, None, cfg=LacssConfig(mode="weak"))


def test_crops_carry_the_locations_inside_them_through_scaling_rotation_and_flips():
    rng = np.random.default_rng(0)
    image = np.zeros((1, 100, 90), np.float32)
    yx = rng.uniform(2, 85, (25, 2)).round().astype(np.float32)
    image[0, yx[:, 0].astype(int), yx[:, 1].astype(int)] = 1.0
    example = {"image": image, "locations": yx, "foreground": image[0].copy()}
    cfg = LacssConfig(crop=48, scale_range=(1.0, 1.0))
    seen = 0
    for _ in range(20):
        crop = sample_crop(example, cfg, rng)
        assert crop["image"].shape == (1, 48, 48) and crop["foreground"].shape == (48, 48)
        rc = np.round(crop["locations"]).astype(int)
        assert (crop["foreground"][rc[:, 0], rc[:, 1]] == 1).all()
        assert len(rc) == int(crop["foreground"].sum())                   # every dot in the crop, no other
        seen += len(rc)
    assert seen > 0


def test_a_batch_without_locations_trains_the_lpn_only():
    cfg = _tiny_config(mode="weak")
    crop = {"image": np.zeros((1, 64, 64), np.float32), "locations": np.zeros((0, 2), np.float32),
            "foreground": np.zeros((64, 64), np.float32)}
    batch = collate([crop, crop])
    net = network.LacssNet(1, cfg.widths, cfg.features, cfg.head_width)
    loss, parts = losses.lacss_loss(net, batch, "weak", cfg.window, aux_net=network.AuxNet(1, 4))
    assert set(parts) == {"score", "offset"} and np.isfinite(loss.item())
    loss.backward()


# --------------------------------------------------------------------------------------- training

def _synthetic_examples(cfg):
    from conftest import synthetic_nuclei
    from cellpoint.training.weak_labels import foreground_and_locations
    examples = []
    for seed in range(3):
        image, labels, _ = synthetic_nuclei(shape=(96, 96), n=7, radius=9, seed=seed)
        fg, xy = foreground_and_locations(labels)
        if cfg.mode == "weak":
            examples.append(prepare_example(image, xy[:, ::-1], foreground=fg, cfg=cfg))
        else:
            examples.append(prepare_example(image, None, labels=labels, cfg=cfg))
    return examples


def _losses(logs, key):
    return [float(line.split(f" {key} ")[1].split()[0]) for line in logs]


@pytest.mark.parametrize("mode,weak_loss", [("full", "union"), ("weak", "union"), ("weak", "window")])
def test_tiny_training_run_reduces_the_loss(mode, weak_loss):
    cfg = _tiny_config(mode=mode, aux=mode == "weak", weak_loss=weak_loss)
    logs = []
    checkpoint = train(_synthetic_examples(cfg), cfg, log=logs.append)
    loss = _losses(logs, "loss")
    assert np.mean(loss[-2:]) < 0.6 * loss[0], logs
    segment_term = {"full": "mask", "union": "cover", "window": "consistency"}["full" if mode == "full" else weak_loss]
    assert np.mean(_losses(logs, segment_term)[-2:]) < _losses(logs, segment_term)[0], logs
    assert checkpoint["method"] == "lacss"
    assert checkpoint["label_kind"] == ("full" if mode == "full" else "foreground-locations")
    assert (checkpoint["aux_state_dict"] is not None) == (mode == "weak")


# ---------------------------------------------------------------------------- checkpoint, export

@pytest.fixture(scope="module")
def tiny_checkpoint():
    cfg = _tiny_config(mode="weak", steps=3)
    return train(_synthetic_examples(cfg), cfg, log=lambda *_: None)


def test_checkpoint_has_the_shared_keys_and_rebuilds_the_network(tiny_checkpoint):
    ck = tiny_checkpoint
    for key in ("format", "method", "label_kind", "model", "state_dict", "diameter", "normalization", "decoder",
                "config", "train_seconds"):
        assert key in ck
    assert ck["model"]["in_channels"] == 1 and ck["model"]["features"] == 8 and ck["model"]["window"] == 32
    assert ck["decoder"]["name"] == "location_masks" and get_decoder(ck["decoder"]["name"]).scale == "network"
    assert set(LocationMasksParams.__struct_fields__) <= set(ck["decoder"]["params"])
    assert ck["decoder"]["params"]["window"] == 32 and ck["decoder"]["params"]["stride"] == LPN_STRIDE
    assert not any(k.startswith("aux") for k in ck["state_dict"])        # the aux net is not exported
    torch.save(ck, __import__("io").BytesIO())                          # picklable
    net = build_network(ck)
    assert not net.training
    for name, value in net.state_dict().items():
        assert torch.equal(value, ck["state_dict"][name])


def test_export_wrappers_agree_with_the_training_forward(tiny_checkpoint):
    net = build_network(tiny_checkpoint)
    plan = SPEC.export(tiny_checkpoint, np.zeros((1, 1, 64, 64), np.float32))
    features_module, instance_module = plan.module, plan.graphs["instances"].module
    assert not features_module.training and not instance_module.training
    image = torch.rand(2, 1, 64, 48)
    with torch.no_grad():
        score, offsets, features = net(image)
        e_score, e_offsets, e_features = features_module(image)
    assert e_score.shape == (2, 1, 16, 12) and e_offsets.shape == (2, 2, 16, 12) and e_features.shape == (2, 8, 64, 48)
    assert torch.allclose(e_score, torch.sigmoid(score)) and torch.equal(e_offsets, offsets)
    assert torch.equal(e_features, features)
    # the instance graph on the runtime's numpy windows == the training path's torch windows
    yx = np.array([[3.2, 40.7], [30.0, 20.5], [63.4, 0.2]])
    windows, encoding, _ = numpy_gather_windows(features[1].numpy(), yx, 32)
    with torch.no_grad():
        masks = instance_module(torch.from_numpy(windows), torch.from_numpy(encoding))
        t_windows, t_encoding, _ = gather_windows(features, torch.ones(3, dtype=torch.long),
                                                  torch.from_numpy(yx).float(), 32)
        expected = torch.sigmoid(net.instance_logits(t_windows, t_encoding))
    assert masks.shape == (3, 1, 32, 32) and torch.allclose(masks, expected, atol=1e-6)

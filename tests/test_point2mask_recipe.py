"""Point2Mask honours the training recipe (`spec.Recipe`): scale range, intensity jitter, balanced sampling,
polarity, normalisation kind (into the checkpoint and card) and val selection; wrong combinations fail with
a usage error (synthetic data only, small networks)."""
import numpy as np
import pytest
import tifffile
from click.testing import CliRunner

torch = pytest.importorskip("torch")
import click  # noqa: E402

from conftest import synthetic_nuclei  # noqa: E402
from cellpoint.training import augment  # noqa: E402
from cellpoint.training.checkpoint import load_checkpoint, normalise  # noqa: E402
from cellpoint.training.methods import Recipe, TrainRequest, get_method  # noqa: E402
import cellpoint.training.methods.point2mask.train as train_module  # noqa: E402
from cellpoint.training.methods.point2mask.config import Point2MaskConfig  # noqa: E402
from cellpoint.training.methods.point2mask.data import (box_points_arrays, prepare_example,  # noqa: E402
                                                        prepare_val_example, sample_crop)
from cellpoint.training.methods.point2mask.train import build_network, train, val_f1  # noqa: E402
from cellpoint.training.weak_labels import box_points_from_labels  # noqa: E402

torch.set_num_threads(1)
SPEC = get_method("point2mask")


def _tiny_config(**kw):
    base = dict(widths=(8, 8, 16, 16), channels=8, roi_size=7, diameter=18.0, crop=64, batch=4, steps=12,
                lr=3e-3, max_rois=16, log_every=1000, n_points=6)
    return Point2MaskConfig(**{**base, **kw})


def _example(cfg, seed, group="", image=None):
    img, labels, _ = synthetic_nuclei(n=6, radius=9, seed=seed)
    image = img if image is None else image
    boxes, pts, pl, ids = box_points_arrays(box_points_from_labels(labels, cfg.n_points, np.random.default_rng(seed)))
    return dict(prepare_example(image, boxes, pts, pl, None, 18.0, cfg, ids), group=group)


def _hot_pixels(seed=0):
    """A synthetic image with a few hot pixels, where the two normalisation kinds differ."""
    image = synthetic_nuclei(n=6, radius=9, seed=seed)[0]
    image[5, 7] = image[40, 90] = image[80, 20] = 60000.0
    return image


# ------------------------------------------------------------------------------------------- configure

def test_recipe_options_reach_the_config_and_the_defaults_are_the_methods_own():
    recipe = Recipe((0.5, 2.0), "wide", "sqrt", "bright", "percentile_robust", 250)
    cfg = SPEC.configure(TrainRequest(datasets=("usiigaci_phase_contrast",), recipe=recipe))
    assert (cfg.scale_range, cfg.intensity, cfg.balance, cfg.polarity, cfg.normalization, cfg.val_every) == \
        ((0.5, 2.0), "wide", "sqrt", "bright", "percentile_robust", 250)
    default = SPEC.configure(TrainRequest(datasets=("usiigaci_phase_contrast",)))
    assert (default.scale_range, default.intensity, default.balance, default.polarity, default.normalization,
            default.val_every) == ((0.8, 1.25), "basic", "none", "any", "percentile", 0)


@pytest.mark.parametrize("request_kw, message", [
    (dict(images_dir="imgs", points_dir="pts", recipe=Recipe(val_every=100)), "--val-every"),
    (dict(datasets=("usiigaci_phase_contrast",), recipe=Recipe(scale_range=(2.0, 0.5))), "--scale-range"),
    (dict(datasets=("usiigaci_phase_contrast",), recipe=Recipe(scale_range=(0.0, 2.0))), "--scale-range"),
])
def test_wrong_recipe_combinations_are_usage_errors(request_kw, message):
    with pytest.raises(click.UsageError, match=message):
        SPEC.configure(TrainRequest(**request_kw))


def test_train_command_refuses_val_every_without_a_data_set(tmp_path):
    from cellpoint.training.cli.train import train as train_command
    (tmp_path / "images").mkdir(), (tmp_path / "points").mkdir()
    result = CliRunner().invoke(train_command, ["--method", "point2mask", "--images", str(tmp_path / "images"),
                                                "--points", str(tmp_path / "points"), "--val-every", "10",
                                                "--out", str(tmp_path / "m.pt")])
    assert result.exit_code == 2 and "--val-every" in result.output and "--dataset" in result.output


def test_val_every_needs_val_examples():
    cfg = _tiny_config(val_every=5)
    with pytest.raises(ValueError, match="val"):
        train([_example(cfg, 0)], cfg, log=lambda *_: None)


# ------------------------------------------------------------------------------- examples and crops

def test_the_normalisation_kind_reaches_the_examples():
    image = _hot_pixels()
    plain = _example(_tiny_config(), 0, image=image)["image"]
    robust = _example(_tiny_config(normalization="percentile_robust"), 0, image=image)["image"]
    # the robust kind is the runtime's (spikes suppressed, clipped): the hot pixels do not stand out
    assert robust.max() <= 1.5 and plain.max() > 5
    expected = augment.resize(normalise(image, "percentile_robust"), robust.shape[1:])
    np.testing.assert_allclose(robust[0], expected, atol=1e-5)


def test_crops_follow_the_scale_range_and_the_intensity_kind(monkeypatch):
    cfg = _tiny_config(scale_range=(2.0, 2.0), intensity="wide")
    example = {"image": np.full((1, 32, 32), 0.5, np.float32), "boxes": np.array([[7.5, 7.5, 23.5, 23.5]], np.float32),
               "points": np.array([[[15.5, 15.5]]], np.float32), "point_labels": np.array([[1]], np.int8)}
    called = []
    monkeypatch.setitem(augment.JITTERS, "wide", lambda image, rng: called.append(image.shape) or image)
    crop = sample_crop(example, cfg, np.random.default_rng(0))
    assert called == [(1, 64, 64)]
    box = crop["boxes"][0]
    np.testing.assert_allclose(box[2:] - box[:2], [32.0, 32.0], atol=1e-4)   # 16 px at zoom 2
    np.testing.assert_array_equal(crop["image"], 0.5)                        # the spy jitter left it alone


def test_balanced_sampling_draws_the_small_group_more_often(monkeypatch):
    drawn = []
    original = train_module.sample_crop

    def spy(example, cfg, rng):
        drawn.append(example["group"])
        return original(example, cfg, rng)

    def cheap_loss(net, batch, *args):
        return sum((p * 0).sum() for p in net.parameters()), {}
    monkeypatch.setattr(train_module, "sample_crop", spy)
    monkeypatch.setattr(train_module, "point2mask_loss", cheap_loss)
    for balance, share in (("none", 0.25), ("equal", 0.5)):
        cfg = _tiny_config(steps=100, balance=balance)
        examples = [_example(cfg, s, "big") for s in range(3)] + [_example(cfg, 3, "small")]
        drawn.clear()
        train(examples, cfg, log=lambda *_: None)
        assert abs(drawn.count("small") / len(drawn) - share) < 0.08, (balance, drawn.count("small"))


# ---------------------------------------------------------------------------------- val selection

def _val_examples(cfg, seeds=(10, 11)):
    out = []
    for s in seeds:
        image, labels, _ = synthetic_nuclei(n=6, radius=9, seed=s)
        out.append(prepare_val_example(image, labels, cfg))
    return out


def test_val_examples_are_rescaled_by_their_masks_to_the_canonical_diameter():
    from cellpoint.training.targets import median_diameter_from_labels
    cfg = _tiny_config(diameter=9.0)
    image, labels, _ = synthetic_nuclei(n=6, radius=9, seed=3)   # discs about 18 px across
    ex = prepare_val_example(image, labels, cfg)
    assert ex["split"] == "val" and ex["image"].shape[0] == 1
    assert ex["image"].shape[1:] == ex["labels"].shape
    scale = 9.0 / median_diameter_from_labels(labels)
    assert 0.4 < scale < 0.6
    assert ex["image"].shape[1:] == (round(96 * scale), round(128 * scale))
    assert len(np.unique(ex["labels"])) == 7


def test_val_selection_keeps_the_best_scoring_state(monkeypatch):
    cfg = _tiny_config(steps=12, val_every=3)
    scores = iter([0.2, 0.9, 0.5, 0.1])                      # steps 3, 6, 9 and the end (12)
    states = []

    def fake_val_f1(net, examples, cfg):
        assert not net.training and len(examples) == 2
        states.append({k: v.clone() for k, v in net.state_dict().items()})
        return next(scores)
    monkeypatch.setattr(train_module, "val_f1", fake_val_f1)
    lines = []
    checkpoint = train([_example(cfg, s) for s in range(2)] + _val_examples(cfg), cfg, log=lines.append)
    assert checkpoint["selection"] == {"val_f1_50": 0.9, "step": 6}
    assert len(states) == 4 and [line for line in lines if line.startswith("val F1")][1].endswith("(best so far)")
    for key, value in states[1].items():
        assert torch.equal(checkpoint["state_dict"][key], value), key
    assert not all(torch.equal(checkpoint["state_dict"][k], v) for k, v in states[3].items())


def test_the_kept_network_scores_what_the_selection_records():
    cfg = _tiny_config(steps=8, val_every=4, normalization="percentile_robust")
    val = _val_examples(cfg)
    lines = []
    checkpoint = train([_example(cfg, s) for s in range(2)] + val, cfg, log=lines.append)
    logged = [float(line.split(": ")[1].split()[0]) for line in lines if line.startswith("val F1@0.5 at step")]
    assert len(logged) == 2 and checkpoint["selection"]["val_f1_50"] == pytest.approx(max(logged), abs=1e-4)
    assert val_f1(build_network(checkpoint), val, cfg) == pytest.approx(checkpoint["selection"]["val_f1_50"])
    assert 0.0 <= checkpoint["selection"]["val_f1_50"] <= 1.0


def test_val_f1_is_one_for_a_network_decoding_the_truth(monkeypatch):
    """The scoring side of val_f1: decoded labels equal to the masks score 1, none score 0."""
    from cellpoint.runtime.decoders import box_masks
    cfg = _tiny_config()
    val = _val_examples(cfg)
    net = build_network({"model": train_module.model_spec(cfg, 1)})
    for decoded, expected in (("truth", 1.0), ("nothing", 0.0)):
        truth = iter([ex["labels"] for ex in val])

        def fake(maps, params, run_masks, shape):
            assert set(maps) >= {"score_s4", "boxes_s16", "features"} and maps["features"].shape[1:] == \
                tuple(-(-n // 4) for n in shape)
            labels = next(truth).astype(np.uint32) if decoded == "truth" else np.zeros(shape, np.uint32)
            return labels, np.zeros(shape, np.float32), {}
        monkeypatch.setattr(box_masks, "decode_box_masks", fake)
        assert val_f1(net, val, cfg) == pytest.approx(expected)


# ------------------------------------------------------------------------ checkpoint, card, end to end

def _user_folder(tmp_path, bright_background=False):
    from cellpoint.training.annotations import write_json
    images, points = tmp_path / "images", tmp_path / "points"
    images.mkdir(), points.mkdir()
    for s in range(2):
        image, labels, _ = synthetic_nuclei(n=6, radius=9, seed=s)
        if bright_background:
            image = 300.0 - image
        tifffile.imwrite(images / f"img{s}.tif", image)
        cells = box_points_from_labels(labels, 6, np.random.default_rng(s))
        write_json(points / f"img{s}_boxpoints.json", {"height": labels.shape[0], "width": labels.shape[1],
                                                       "n_points": 6, "cells": cells}, indent=None)
    return images, points


def test_train_command_records_the_recipe_in_the_checkpoint_and_card(tmp_path):
    from cellpoint.export.card import build_card
    from cellpoint.training.cli.train import train as train_command
    from cellpoint.training.methods.point2mask.network import detector_outputs
    images, points = _user_folder(tmp_path)
    out = tmp_path / "model.pt"
    result = CliRunner().invoke(train_command, [
        "--method", "point2mask", "--images", str(images), "--points", str(points), "--out", str(out),
        "--steps", "2", "--batch", "2", "--workers", "1", "--scale-range", "0.6", "1.6", "--intensity", "wide",
        "--balance", "equal", "--polarity", "bright", "--normalization", "percentile_robust"])
    assert result.exit_code == 0, result.output
    checkpoint = load_checkpoint(out)
    assert checkpoint["normalization"]["kind"] == "percentile_robust" and checkpoint["polarity"] == "bright"
    config = checkpoint["config"]
    assert (tuple(config["scale_range"]), config["intensity"], config["balance"]) == ((0.6, 1.6), "wide", "equal")
    assert "selection" not in checkpoint
    weights = {"source": "model.onnx", "sha256": "0" * 64, "opset": 17, "parity_max_rel_diff": 0.0}
    card = build_card(checkpoint, "p2m", "test", weights, {}, {}, detector_outputs(), {}, [], {}, [],
                      SPEC.reference)
    assert card["inputs"][0]["preprocessing"]["kind"] == "percentile_robust"
    assert card["inputs"][0]["polarity"] == "bright"


def test_polarity_bright_prepares_user_images_as_the_runtime_does(tmp_path):
    images, points = _user_folder(tmp_path, bright_background=True)
    jobs = {}
    for polarity in ("any", "bright"):
        request = TrainRequest(images_dir=images, points_dir=points, recipe=Recipe(polarity=polarity))
        cfg = SPEC.configure(request)
        jobs[polarity] = SPEC.prepare(SPEC.jobs(request, cfg)[0])
    assert jobs["any"]["group"] == "user"
    # the background is bright in the file; with polarity "bright" the image is inverted as the runtime does
    assert np.median(jobs["any"]["image"]) > 0.5 > np.median(jobs["bright"]["image"])

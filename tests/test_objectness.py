"""Objectness region growing and the paper's loss terms."""
import cv2
import numpy as np
import torch

from cellpoint.training.methods.objectness.config import ObjectnessParams
from cellpoint.training.methods.objectness.loss import full_loss, point_targets, weak_loss
from cellpoint.training.methods.objectness.regions import grow_regions, objectness_targets


def two_touching_discs(noise=0.02, seed=0):
    img = np.zeros((96, 128), np.float32)
    cv2.circle(img, (45, 48), 18, 0.8, -1)
    cv2.circle(img, (80, 48), 18, 0.8, -1)
    img += np.random.default_rng(seed).normal(0, noise, img.shape).astype(np.float32)
    return img, np.array([[48, 45], [48, 80]])


def test_regions_split_touching_discs_between_the_seeds():
    img, seeds = two_touching_discs()
    _, region = grow_regions(img, seeds)
    assert region[48, 35] == 0 and region[48, 90] == 1
    # the boundary between the two regions lies near the midline x = 62.5
    row = region[48, 40:86]
    switch = 40 + int(np.argmax(row == 1))
    assert abs(switch - 62.5) <= 3


def test_objectness_is_high_inside_cells_and_low_outside():
    img, seeds = two_touching_discs()
    obj, boundary, _ = objectness_targets(img, seeds, w=50)
    disc = np.zeros(img.shape, bool)
    cv2.circle(disc.view(np.uint8), (45, 48), 14, 1, -1)
    assert obj[disc].mean() > 0.8
    assert obj[:10, :10].max() < 0.2          # background far from the cells
    assert boundary.any() and not boundary[48, 45]


def test_cumulative_distance_grows_across_an_edge():
    img = np.zeros((20, 40), np.float32)
    img[:, 20:] = 1.0
    dist, _ = grow_regions(img, np.array([[10, 5]]))
    assert dist[10, 19] < 0.01 and dist[10, 25] > 0.99  # one unit step costs (1-0)² = 1


def _batch(img, seeds):
    t = point_targets(img, seeds, ObjectnessParams(w=50))
    return {k: torch.from_numpy(v)[None] for k, v in t.items()}


def test_weak_loss_prefers_logits_that_agree_with_the_objectness():
    img, seeds = two_touching_discs()
    batch = _batch(img, seeds)
    obj = batch["objectness"][0]
    good = torch.stack([-(obj - 0.5) * 8, (obj - 0.5) * 8, torch.logit(batch["center"][0].clamp(1e-3, 1 - 1e-3))])[None]
    bad = torch.stack([(obj - 0.5) * 8, -(obj - 0.5) * 8, torch.full_like(obj, 0.0)])[None]
    loss_good, parts_good = weak_loss(good, batch, ObjectnessParams())
    loss_bad, parts_bad = weak_loss(bad, batch, ObjectnessParams())
    assert loss_good < loss_bad
    for term in ("point", "obj", "center"):
        assert parts_good[term] < parts_bad[term], term


def test_image_level_term_wants_a_confident_pixel_of_each_present_class():
    img, seeds = two_touching_discs()
    batch = _batch(img, seeds)
    all_background = torch.zeros(1, 3, *img.shape)
    all_background[:, 0] = 5.0
    one_cell_pixel = all_background.clone()
    one_cell_pixel[0, 1, 48, 45] = 10.0
    assert weak_loss(one_cell_pixel, batch, ObjectnessParams())[1]["img"] < \
        weak_loss(all_background, batch, ObjectnessParams())[1]["img"] - 1.0


def test_weak_loss_gradient_reaches_every_term():
    img, seeds = two_touching_discs()
    batch = _batch(img, seeds)
    logits = torch.zeros(1, 3, *img.shape, requires_grad=True)
    loss, _ = weak_loss(logits, batch, ObjectnessParams())
    loss.backward()
    assert torch.isfinite(loss) and logits.grad[:, :2].abs().sum() > 0 and logits.grad[:, 2].abs().sum() > 0


def test_background_weight_beta_penalises_cell_predictions_in_background_more():
    img, seeds = two_touching_discs()
    batch = _batch(img, seeds)
    logits = torch.zeros(1, 3, *img.shape)
    low, _ = weak_loss(logits, batch, ObjectnessParams(beta_background=1.0))
    high, _ = weak_loss(logits, batch, ObjectnessParams(beta_background=3.0))
    assert high > low


def test_full_loss_uses_the_masks():
    labels = np.zeros((32, 32), np.int32)
    labels[8:20, 8:20] = 1
    fg = torch.from_numpy((labels > 0).astype(np.float32))[None]
    center = torch.zeros_like(fg)
    right = torch.stack([-(fg[0] - 0.5) * 10, (fg[0] - 0.5) * 10, torch.full_like(fg[0], -5)])[None]
    wrong = -right
    batch = {"foreground": fg, "center": center}
    assert full_loss(right, batch, ObjectnessParams())[0] < full_loss(wrong, batch, ObjectnessParams())[0]

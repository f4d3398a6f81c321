"""Outline refinement by local contrast (runtime/outlines.py) on synthetic blurred discs."""
import cv2
import numpy as np

from cellpoint.runtime.outlines import nearest_instance, refine_outlines_by_contrast


def _disc(shape, center, radius):
    rows, cols = np.indices(shape)
    return np.hypot(rows - center[0], cols - center[1]) <= radius


def _blurred_cells(shape, cells, sigma=1.5):
    """Bright discs (intensity 1) on 0.1, blurred: a fluorescence-like image and its true label image."""
    truth = np.zeros(shape, np.uint32)
    for i, (center, radius) in enumerate(cells, start=1):
        truth[_disc(shape, center, radius)] = i
    image = np.where(truth > 0, 1.0, 0.1).astype(np.float32)
    return cv2.GaussianBlur(image, (0, 0), sigma), truth


def _iou(a, b):
    return (a & b).sum() / (a | b).sum()


def test_nearest_instance_matches_brute_force():
    labels = np.zeros((30, 40), np.uint32)
    labels[5:9, 5:9] = 1
    labels[20:24, 30:35] = 2
    zones = nearest_instance(labels, reach_px=6)
    rows, cols = np.indices(labels.shape)
    for r, c in [(12, 10), (15, 25), (2, 2), (28, 38), (14, 20)]:
        d = [np.hypot(rows[labels == i] - r, cols[labels == i] - c).min() for i in (1, 2)]
        want = 0 if min(d) > 6 else int(np.argmin(d)) + 1
        assert zones[r, c] == want, (r, c, d)
    assert (zones[labels > 0] == labels[labels > 0]).all()


def test_too_small_and_too_large_outlines_move_to_the_cells_edge():
    image, truth = _blurred_cells((80, 80), [((40, 40), 14)])
    for radius in (9, 19):
        guess = _disc(truth.shape, (40, 40), radius).astype(np.uint32)
        refined = refine_outlines_by_contrast(image, guess, diameter_px=28, contrast=0.3)
        before, after = _iou(guess == 1, truth == 1), _iou(refined == 1, truth == 1)
        assert after > 0.8 and after > before + 0.25, (radius, before, after)


def test_touching_cells_keep_their_border_and_ids():
    image, truth = _blurred_cells((60, 90), [((30, 30), 12), ((30, 54), 12)])
    guess = np.zeros_like(truth)
    guess[_disc(truth.shape, (30, 30), 8)] = 1
    guess[_disc(truth.shape, (30, 54), 8)] = 2
    refined = refine_outlines_by_contrast(image, guess, diameter_px=24, contrast=0.3)
    for i in (1, 2):
        assert _iou(refined == i, truth == i) > 0.85
    # the border stays between the cells (one tie pixel on the discs' common point may go either way)
    assert ((refined == 1) & (truth == 2)).sum() + ((refined == 2) & (truth == 1)).sum() <= 1


def test_an_instance_without_contrast_keeps_its_mask():
    image = np.full((40, 40), 0.5, np.float32)
    guess = _disc((40, 40), (20, 20), 8).astype(np.uint32)
    refined = refine_outlines_by_contrast(image, guess, diameter_px=16)
    assert (refined == guess).all()

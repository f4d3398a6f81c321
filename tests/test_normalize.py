"""Percentile normalisations: the old one unchanged, the robust one unmoved by hot pixels and saturation."""
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from cellpoint.runtime.normalize import (NORMALIZATIONS, normalize, normalize_percentile,
                                         normalize_percentile_robust, robust_percentiles, to_channels_first)


def _discs(shape=(256, 256), n=16, radius=10, seed=0):
    """A 16-bit fluorescence-like image: blurred bright discs (5000–12000) on a noisy background (~1000)."""
    rng = np.random.default_rng(seed)
    image = np.zeros(shape, np.float32)
    for _ in range(n):
        c = rng.integers(radius, np.array(shape) - radius)
        cv2.circle(image, (int(c[1]), int(c[0])), radius, float(rng.uniform(5000, 12000)), -1)
    image = cv2.GaussianBlur(image, (0, 0), 1.5) + 1000 + rng.normal(0, 60, shape)
    return np.clip(image, 0, 65535).astype(np.uint16)


def _hot_pixels(image, fraction, seed=1):
    """A copy with `fraction` of the pixels at 65535, and their mask."""
    mask = np.random.default_rng(seed).random(image.shape) < fraction
    out = image.copy()
    out[mask] = 65535
    return out, mask


def _saturated_patch(image, fraction, at=(30, 40)):
    """A copy with a square patch of `fraction` of the area at 65535, and its mask."""
    side = int(round(np.sqrt(fraction * image.size)))
    mask = np.zeros(image.shape, bool)
    mask[at[0]:at[0] + side, at[1]:at[1] + side] = True
    out = image.copy()
    out[mask] = 65535
    return out, mask


def test_normalize_percentile_is_unchanged():
    # the exact formula old packages were exported with: subsample percentiles, no clipping
    image = _discs().astype(np.float32)[None]
    sample = image[0, ::1, ::1]
    lo, hi = np.percentile(sample, [1.0, 99.8])
    assert np.array_equal(normalize_percentile(image), ((image - lo) / (hi - lo)).astype(np.float32))
    big = np.random.default_rng(0).random((1, 1100, 1030)).astype(np.float32)
    lo, hi = np.percentile(big[0, ::2, ::2], [1.0, 99.8])
    assert np.array_equal(normalize_percentile(big), ((big - lo) / (hi - lo)).astype(np.float32))
    assert normalize_percentile(np.full((1, 5, 5), 7.0)).max() == 0.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_robust_ignores_hot_pixels_and_saturated_patch(seed):
    clean = _discs(seed=seed)
    reference = normalize_percentile_robust(clean[None])[0]
    for corrupt, mask in (_hot_pixels(clean, 0.003, seed), _saturated_patch(clean, 0.005)):
        change = np.abs(normalize_percentile_robust(corrupt[None])[0] - reference)[~mask].max()
        assert change < 0.01, change
        # the old normalisation is pulled: cells lose most of their range
        old = np.abs(normalize_percentile(corrupt[None])[0] - normalize_percentile(clean[None])[0])[~mask].max()
        assert old > 0.3


def test_robust_maps_percentiles_to_0_and_1_and_clips():
    clean = _discs()
    out = normalize_percentile_robust(clean[None], clip=(-0.5, 1.5))
    assert out.dtype == np.float32 and out.shape == (1,) + clean.shape
    assert -0.5 <= out.min() and out.max() <= 1.5
    background, cells = np.median(out[0][clean < 1200]), np.median(out[0][clean > 5000])
    assert abs(background) < 0.1 and 0.4 < cells < 1.1
    corrupt, _ = _hot_pixels(clean, 0.003)
    assert normalize_percentile_robust(corrupt[None], clip=(-0.5, 1.5)).max() == 1.5  # hot pixels clipped
    assert normalize_percentile_robust(corrupt[None], clip=(0.0, 1.0)).max() == 1.0


def test_robust_keeps_large_saturated_areas_as_signal():
    # above 5 % of the image at the maximum is real signal (e.g. saturated cells), not excluded
    image = np.full((100, 100), 100, np.uint16)
    image[:, :20] = 4000  # 20 % at the maximum
    lo, hi = robust_percentiles(image)
    assert (lo, hi) == (100.0, 4000.0)
    out = normalize_percentile_robust(image[None])[0]
    assert out[0, 0] == 1.0 and out[0, 50] == 0.0


def test_robust_flat_channels_and_per_channel():
    image = np.stack([np.full((40, 50), 3.0), _discs((40, 50), n=2).astype(np.float64)])
    out = normalize_percentile_robust(image)
    assert out.shape == (2, 40, 50) and out.dtype == np.float32
    assert not out[0].any()
    assert out[1].max() > 0.5
    assert not normalize_percentile_robust(np.zeros((1, 1, 1), np.uint8)).any()  # 1 px: flat, no crash


def test_robust_on_large_images_uses_a_subsample():
    clean = _discs((1500, 1200), n=60, seed=4)
    corrupt, mask = _hot_pixels(clean, 0.003, seed=5)
    change = np.abs(normalize_percentile_robust(corrupt[None]) - normalize_percentile_robust(clean[None]))
    assert change[0][~mask].max() < 0.01


def test_normalizations_by_card_kind():
    image = _discs()[None]
    old = SimpleNamespace(kind="percentile", low=1.0, high=99.8)
    robust = SimpleNamespace(kind="percentile_robust", low=2.0, high=99.0, clip=[0.0, 1.2])  # clip as JSON gives it
    assert np.array_equal(normalize(image, old), normalize_percentile(image))
    assert np.array_equal(normalize(image, robust), normalize_percentile_robust(image, 2.0, 99.0, (0.0, 1.2)))
    assert set(NORMALIZATIONS) == {"percentile", "percentile_robust"}


def test_channel_mismatch_names_channels_option():
    assert to_channels_first(np.zeros((4, 5)), 3).shape == (3, 4, 5)
    with pytest.raises(ValueError, match=r"the model takes 1 channel\(s\), the image has 5; choose them with "
                                         r"--channels"):
        to_channels_first(np.zeros((4, 5, 5), np.uint16), 1)


def test_spikes_are_suppressed_and_clean_images_pass_unchanged():
    from cellpoint.runtime.normalize import suppress_spikes
    rng = np.random.default_rng(0)
    # cells larger than a pixel, as optics make them, and pixel noise
    blobs = cv2.GaussianBlur((rng.random((64, 64)) > 0.97).astype(np.float32), (0, 0), 2.0)
    clean = (rng.normal(100, 10, (64, 64)) + 300 * blobs / blobs.max()).astype(np.float32)
    assert suppress_spikes(clean) is not None and np.array_equal(suppress_spikes(clean), clean)
    hot = clean.copy()
    hot[10, 10] = hot[10, 11] = hot[40, 3] = 65535          # a pair and a single hot pixel
    hot[30, 30] = -60000                                    # a dead one, far below
    fixed = suppress_spikes(hot)
    assert fixed.max() < 1000 and fixed.min() > -1000
    untouched = np.ones_like(hot, bool)
    untouched[[10, 10, 40, 30], [10, 11, 3, 30]] = False
    assert np.array_equal(fixed[untouched], hot[untouched])


def test_hot_pixels_at_the_top_of_an_image_that_fills_its_bit_depth_are_suppressed():
    """Usiigaci-like: a 16-bit image whose real pixels reach 65535 (a saturated halo): hot pixels at 65535
    are no brighter than the brightest real ones, only alone; the saturated area stays as it is."""
    from cellpoint.runtime.normalize import suppress_spikes
    rng = np.random.default_rng(1)
    image = cv2.GaussianBlur(rng.normal(30000, 8000, (80, 80)).astype(np.float32), (0, 0), 1.5)
    image[50:60, 50:60] = 65535                               # a saturated halo
    image = np.clip(image, 0, 65535)
    assert np.array_equal(suppress_spikes(image), image)
    hot = image.copy()
    hot[[5, 20, 33], [7, 40, 12]] = 65535
    fixed = suppress_spikes(hot)
    assert fixed[[5, 20, 33], [7, 40, 12]].max() < 60000
    assert np.array_equal(fixed[50:60, 50:60], image[50:60, 50:60])
    untouched = np.ones_like(hot, bool)
    untouched[[5, 20, 33], [7, 40, 12]] = False
    assert np.array_equal(fixed[untouched], hot[untouched])

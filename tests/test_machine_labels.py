"""Nucleus locations from a nuclear stain (difference of Gaussians), on a synthetic image with known nuclei."""
import numpy as np

from cellpoint.training.machine_labels import difference_of_gaussians, nuclei_locations


def test_dog_finds_each_synthetic_nucleus_once_near_its_centre():
    from conftest import synthetic_nuclei
    image, labels, centres = synthetic_nuclei(shape=(128, 160), n=8, radius=7, seed=4)
    xy = nuclei_locations(image)
    assert len(xy) == 8
    found = sorted(map(tuple, np.round(xy[:, ::-1]).astype(int)))
    for c in centres:
        assert min(np.hypot(*(np.array(f) - c)) for f in found) <= 1.5
    assert len({labels[y, x] for x, y in np.round(xy).astype(int)}) == 8


def test_dog_is_positive_at_a_blob_centre_and_empty_image_gives_no_locations():
    image = np.zeros((64, 64), np.float32)
    image[28:37, 28:37] = 1.0
    assert difference_of_gaussians(image)[32, 32] > 0
    assert nuclei_locations(np.zeros((32, 32), np.float32)).shape == (0, 2)


def test_foreground_candidates_are_nested_and_the_automatic_pick_fits_the_nuclei():
    from conftest import synthetic_nuclei
    from cellpoint.training.machine_labels import choose_foreground, foreground_candidates
    image, labels, _ = synthetic_nuclei(shape=(128, 160), n=8, radius=7, seed=4)
    masks, levels = foreground_candidates(image)
    assert masks.shape == (5, 128, 160) and masks.dtype == bool and np.all(np.diff(levels) > 0)
    for low, high in zip(masks[:-1], masks[1:]):
        assert not (high & ~low).any()            # a higher threshold never adds pixels
    truth = labels > 0
    pick = masks[choose_foreground(image, masks)]
    iou = (pick & truth).sum() / (pick | truth).sum()
    assert iou > 0.8, iou


def test_location_consistency_prefers_the_candidate_that_holds_every_nucleus_and_no_extra_blob():
    from cellpoint.training.machine_labels import choose_foreground, location_consistency
    nuclei = np.zeros((64, 96), bool)
    nuclei[10:20, 10:20] = nuclei[40:50, 60:70] = True            # two nuclei with a location each
    xy = np.array([[15.0, 15.0], [65.0, 45.0]])
    too_high = nuclei.copy()
    too_high[40:50, 60:70] = False                                 # drops the dim nucleus
    too_low = nuclei.copy()
    too_low[50:64, 0:40] = True                                    # adds a background blob
    assert location_consistency(nuclei, xy) == 1.0
    assert location_consistency(too_high, xy) < 1.0 and location_consistency(too_low, xy) < 1.0
    candidates = np.stack([too_low, nuclei, too_high])
    assert choose_foreground(np.zeros((64, 96), np.float32), candidates, xy) == 1
    assert location_consistency(nuclei, np.zeros((0, 2))) == 0.0

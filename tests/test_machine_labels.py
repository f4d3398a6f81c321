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

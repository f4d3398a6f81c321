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

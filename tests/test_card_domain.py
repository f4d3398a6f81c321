"""A package's card says what it was trained on (domain) and how it does with no diameter given, measured on a
tiny data set the test makes (COCO masks of synthetic nuclei)."""
import json

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("pycocotools")

from conftest import synthetic_nuclei  # noqa: E402


@pytest.fixture
def tiny_dataset(tmp_path, monkeypatch):
    """A shared-data folder with one data set "discs": 3 train images (discs of radius 6, 9, 12) and 1 val."""
    import cv2
    from cellpoint.runtime.coco_results import labels_to_coco_results
    from cellpoint.training import datasets
    root = tmp_path / "data"
    (root / "discs" / "images").mkdir(parents=True)
    images, annotations = [], []
    for i, radius in enumerate((6, 9, 12, 9), start=1):
        image, labels, _ = synthetic_nuclei(shape=(96, 128), n=4, radius=radius, seed=i)
        cv2.imwrite(str(root / "discs" / "images" / f"{i}.png"), np.clip(image, 0, 255).astype(np.uint8))
        images.append({"id": i, "file_name": f"images/{i}.png", "height": 96, "width": 128})
        for r in labels_to_coco_results(labels, i):
            r.pop("score", None)
            annotations.append(dict(r, id=len(annotations) + 1, iscrowd=0, category_id=1))
    coco = {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "cell"}]}
    (root / "discs" / "annotations_coco.json").write_text(json.dumps(coco))
    (root / "discs" / "split.json").write_text(json.dumps({"train": [1, 2, 3], "val": [4]}))
    monkeypatch.setenv("CELLPOINT_SHARED_DATA", str(root))
    datasets._load_json.cache_clear()
    yield root
    datasets._load_json.cache_clear()


def test_domain_spans_the_train_images_cell_sizes(tiny_dataset):
    from cellpoint.training.validate import training_domain
    domain = training_domain([{"dataset": "discs", "split": "train"},
                              {"dataset": "discs", "role": "scale model"}], low=0, high=100)
    assert domain["image_kinds"] == ["discs"]
    low, high = domain["cell_diameter_px"]
    assert low == pytest.approx(13, abs=1.5) and high == pytest.approx(25, abs=1.5)
    assert training_domain([{"folder": "mine/"}]) is None


def test_no_diameter_metrics_run_the_package_as_a_user_does(tiny_dataset, tiny_package):
    from cellpoint.runtime import Segmenter
    from cellpoint.training.validate import no_diameter_metrics
    metrics = no_diameter_metrics(Segmenter(tiny_package), ["discs"])
    [(key, m)] = metrics.items()
    assert key == "discs (no diameter)"
    assert m["n_images"] == 1 and m["n_gt"] == 4 and m["diameter_px"] is None and 0 <= m["f1_50"] <= 1


def test_switching_to_robust_normalisation_remeasures_the_package(tiny_dataset, tiny_package, tmp_path):
    import shutil
    from cellpoint.export.normalisation import set_normalisation
    from cellpoint.runtime import Segmenter
    package = tmp_path / "pkg"
    shutil.copytree(tiny_package, package)
    card = set_normalisation(package, "percentile_robust", ["discs"])
    assert card["inputs"][0]["preprocessing"] == {"kind": "percentile_robust", "low": 1.0, "high": 99.8,
                                                  "clip": [-0.5, 1.5]}
    assert set(card["metrics"]) == {"discs", "discs (refined diameter)", "discs (no diameter)"}
    seg = Segmenter(package)                     # loads: checksums and samples consistent
    sample = card["samples"][0]
    from cellpoint.runtime.image_io import read_image
    labels = seg.segment(read_image(package / sample["input"])).labels
    assert int(labels.max()) == sample["instances"]
    assert not (tmp_path / "pkg.partial").exists() and not (tmp_path / "pkg.old").exists()

"""One real image of each shared data set through list_samples / load_sample."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cellpoint.training.annotations import read_label_image
from cellpoint.training.datasets import (FLUORESCENCE_NUCLEI, Sample, list_samples, load_coco, load_sample,
                                         shared_data_root)

DATASETS = ["dsb2018_bbbc038", "coelho2009_u2os_nih3t3", "usiigaci_phase_contrast",
            "neurips22_cellseg_samples", "livecell", "stardist_bundled_2d"]


def _manifest_instances(folder: Path, file_name: str) -> int | None:
    """Instance count the data set's manifest.json records for file_name (None if no manifest)."""
    path = folder / "manifest.json"
    if not path.is_file():
        return None
    for entry in json.loads(path.read_text()):
        keys = (entry.get("image"), entry.get("file"), entry.get("id"))
        if file_name in keys or Path(file_name).stem in keys:
            return entry["instances"]
    raise AssertionError(f"{file_name} missing from {path}")


@pytest.mark.parametrize("dataset", DATASETS)
def test_first_sample_loads_with_expected_shape_and_count(shared_data, dataset):
    samples = list_samples(dataset, "all", root=shared_data)
    assert samples and all(isinstance(s, Sample) and s.path.is_file() for s in samples)
    sample = samples[0]
    info = next(im for im in load_coco(dataset, shared_data)["images"] if im["id"] == sample.image_id)
    image, labels = load_sample(sample)
    assert image.dtype == np.float32 and labels.dtype == np.uint32
    assert image.shape == labels.shape == (info["height"], info["width"])
    assert np.isfinite(image).all() and image.std() > 0
    n_annotations = sum(a["image_id"] == sample.image_id for a in load_coco(dataset, shared_data)["annotations"])
    n_labels = len(np.unique(labels)) - 1
    assert n_labels == n_annotations
    expected = _manifest_instances(shared_data / dataset, sample.file_name)
    if expected is not None:
        assert n_labels == expected


def test_coco_labels_match_shipped_label_image(shared_data):
    sample = list_samples("coelho2009_u2os_nih3t3", "val", root=shared_data)[0]
    _, labels = load_sample(sample)
    shipped = read_label_image(shared_data / "coelho2009_u2os_nih3t3" / sample.file_name.replace("images/", "labels/"))
    assert np.array_equal(labels > 0, shipped > 0)
    # same partition: each painted instance maps to exactly one shipped id
    pairs = np.unique(np.stack([labels[labels > 0], shipped[labels > 0]]), axis=1)
    assert pairs.shape[1] == len(np.unique(labels)) - 1


def test_splits_and_kind_filter(shared_data):
    for dataset in ("dsb2018_bbbc038", "livecell"):
        split = json.loads((shared_data / dataset / "split.json").read_text())
        train = list_samples(dataset, "train", root=shared_data)
        val = list_samples(dataset, "val", root=shared_data)
        assert [s.image_id for s in train] == sorted(split["train"])
        assert [s.image_id for s in val] == sorted(split["val"])
        assert len(list_samples(dataset, "all", root=shared_data)) == len(train) + len(val)
    for dataset, kinds in FLUORESCENCE_NUCLEI:
        assert list_samples(dataset, "train", kinds, root=shared_data)
    gray = list_samples("dsb2018_bbbc038", "all", ["gray_dark"], root=shared_data)
    kinds = {im["id"]: im["dsb_kind"] for im in load_coco("dsb2018_bbbc038", shared_data)["images"]}
    assert gray and all(kinds[s.image_id] == "gray_dark" for s in gray)
    with pytest.raises(ValueError, match="dsb_kind"):
        list_samples("livecell", "all", ["gray_dark"], root=shared_data)
    with pytest.raises(ValueError, match="subset"):
        list_samples("livecell", "test", root=shared_data)
    with pytest.raises(FileNotFoundError, match="unknown dataset"):
        list_samples("no_such_set", root=shared_data)


def test_shared_data_root_env(tmp_path, monkeypatch, shared_data):
    monkeypatch.setenv("CELLPOINT_SHARED_DATA", str(shared_data))
    assert shared_data_root() == shared_data
    monkeypatch.setenv("CELLPOINT_SHARED_DATA", str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="CELLPOINT_SHARED_DATA"):
        shared_data_root()

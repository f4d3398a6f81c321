"""The shared evaluation/training data sets: find them, list their images, load image + instance labels.

Each set is a folder `<root>/<dataset>/` with `annotations_coco.json` (file_name relative to the folder)
and `split.json` ({"train": [image ids], "val": [image ids]}).
"""
from __future__ import annotations

import functools
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cellpoint.runtime.image_io import ImageReadError, read_image
from cellpoint.training.annotations import coco_label_image

# Fluorescence nuclei sets: (dataset, dsb_kind filter or None for all images).
FLUORESCENCE_NUCLEI = [("dsb2018_bbbc038", ["gray_dark"]), ("coelho2009_u2os_nih3t3", None)]

SUBSETS = ("train", "val", "all")


def shared_data_root() -> Path:
    """The shared data folder: $CELLPOINT_SHARED_DATA, else the first existing of <repo>/../shared/data
    and <cwd>/../shared/data. Raises FileNotFoundError saying where it looked."""
    env = os.environ.get("CELLPOINT_SHARED_DATA")
    if env:
        root = Path(env).expanduser()
        if not root.is_dir():
            raise FileNotFoundError(f"CELLPOINT_SHARED_DATA={env} is not a directory")
        return root
    repo = Path(__file__).resolve().parents[1]
    candidates = [repo.parent / "shared" / "data", Path.cwd().parent / "shared" / "data"]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("shared data folder not found; looked in "
                            + ", ".join(str(c) for c in candidates)
                            + ". Set CELLPOINT_SHARED_DATA to the folder holding the data sets.")


def shared_data_present() -> bool:
    """Whether the shared data folder (`shared_data_root`) can be found."""
    try:
        return shared_data_root().is_dir()
    except FileNotFoundError:
        return False


@dataclass(frozen=True)
class Sample:
    """One image of a shared data set. path: absolute image path; file_name: as in the COCO file."""
    dataset: str
    image_id: int
    path: Path
    file_name: str


def _dataset_dir(dataset: str, root) -> Path:
    root = Path(root) if root is not None else shared_data_root()
    folder = root / dataset
    if not (folder / "annotations_coco.json").is_file():
        known = sorted(p.name for p in root.iterdir() if (p / "annotations_coco.json").is_file()) \
            if root.is_dir() else []
        raise FileNotFoundError(f"{folder}: no annotations_coco.json; unknown dataset {dataset!r} "
                                f"(available in {root}: {', '.join(known) or 'none'})")
    return folder


@functools.lru_cache(maxsize=16)
def _load_json(path: Path) -> dict:
    with open(path) as f:
        return json.load(f)


def load_coco(dataset: str, root=None) -> dict:
    """The data set's COCO dict (cached per file; treat it as read-only)."""
    return _load_json(_dataset_dir(dataset, root) / "annotations_coco.json")


def list_samples(dataset: str, subset: str = "all", kinds: Sequence[str] | None = None,
                 root=None) -> list[Sample]:
    """Images of `dataset` in `subset` ("train", "val" or "all"), ascending image id.

    kinds: keep only images whose `dsb_kind` is listed (e.g. ["gray_dark"]); None keeps all. Raises
    ValueError for an unknown subset or when kinds is given for a set without `dsb_kind`.
    """
    if subset not in SUBSETS:
        raise ValueError(f"subset must be one of {SUBSETS}, got {subset!r}")
    folder = _dataset_dir(dataset, root)
    images = load_coco(dataset, root)["images"]
    if subset != "all":
        split = _load_json(folder / "split.json")
        wanted = set(split[subset])
        images = [im for im in images if im["id"] in wanted]
    if kinds is not None:
        if any("dsb_kind" not in im for im in images):
            raise ValueError(f"{folder}: images have no 'dsb_kind' field, cannot filter by kinds {list(kinds)}")
        images = [im for im in images if im["dsb_kind"] in set(kinds)]
    return [Sample(dataset, int(im["id"]), folder / im["file_name"], im["file_name"])
            for im in sorted(images, key=lambda im: im["id"])]


def load_sample(sample: Sample, channels: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """-> (image float32 (H,W), labels uint32 (H,W)).

    image: raw intensities (not normalised). Gray-as-RGB files read as one channel; other multi-channel
    images become the mean of their colour channels (alpha dropped), or of `channels` if given.
    labels: painted from the COCO annotations (0 = background, 1..N in annotation order, later wins).
    Raises ImageReadError if the image size disagrees with the COCO record.
    """
    image = read_image(sample.path, channels=channels)
    if image.ndim == 3:
        colour = image if channels is not None or image.shape[2] != 4 else image[:, :, :3]
        image = colour.astype(np.float32).mean(axis=2)
    image = image.astype(np.float32, copy=False)
    coco = load_coco(sample.dataset, _root_of(sample))
    labels = coco_label_image(coco, sample.image_id)
    if image.shape != labels.shape:
        raise ImageReadError(sample.path, f"image is {image.shape[1]}x{image.shape[0]} (WxH) but the "
                                          f"annotations say {labels.shape[1]}x{labels.shape[0]}")
    return image, labels


def load_training_sample(sample: Sample, polarity: str = "any") -> tuple[np.ndarray, np.ndarray]:
    """-> (image float32 (H,W), labels uint32 (H,W)) prepared as the runtime prepares an image for a
    one-channel model of this polarity (colour to luminance, alpha dropped, inverted when the polarity
    asks for it; `cellpoint.runtime.colour`), raw intensities otherwise."""
    from cellpoint.runtime.colour import to_model_channels
    image, _ = to_model_channels(read_image(sample.path), 1, polarity)
    image = np.asarray(image, np.float32)
    labels = coco_label_image(load_coco(sample.dataset, _root_of(sample)), sample.image_id)
    if image.shape != labels.shape:
        raise ImageReadError(sample.path, f"image is {image.shape[1]}x{image.shape[0]} (WxH) but the "
                                          f"annotations say {labels.shape[1]}x{labels.shape[0]}")
    return image, labels


def sample_group(sample: Sample) -> str:
    """The group a sample is balanced in: its data set family (an `_extra` set joins its original) and, for
    DSB, its image kind, e.g. "dsb2018_bbbc038:color"."""
    family = sample.dataset.removesuffix("_extra")
    kind = next((im.get("dsb_kind") for im in load_coco(sample.dataset, _root_of(sample))["images"]
                 if im["id"] == sample.image_id), None)
    return f"{family}:{kind}" if kind else family


def _root_of(sample: Sample) -> Path:
    """The data root a sample came from: its path minus file_name, minus the dataset folder."""
    folder = sample.path
    for _ in Path(sample.file_name).parts:
        folder = folder.parent
    return folder.parent


def parse_dataset_spec(spec: str) -> tuple[str, list[str] | None]:
    """"NAME[:KIND,KIND..]" (as the CLIs take it) → (name, kinds or None)."""
    name, _, kinds = spec.partition(":")
    return name, (kinds.split(",") if kinds else None)

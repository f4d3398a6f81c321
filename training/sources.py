"""Where training images and their labels come from: shared data sets' train splits, or a user's folders
(images beside label files named by the image's stem, as `cellpoint labels` writes them)."""
from __future__ import annotations

from collections import Counter
from pathlib import Path, PurePosixPath

import click
import numpy as np

from cellpoint.runtime.image_io import FOLDER_SUFFIXES, read_image
from cellpoint.training.datasets import Sample, list_samples, parse_dataset_spec


def shared_samples(datasets, subset: str = "train") -> list[tuple[str, list[str] | None, Sample]]:
    """(data set name, kinds, sample) of every image of the data set specs NAME[:KIND,..] in `subset`
    (their train splits by default), in order."""
    out = []
    for spec in datasets:
        name, kinds = parse_dataset_spec(spec)
        out += [(name, kinds, s) for s in list_samples(name, subset, kinds)]
    return out


def user_images(folder) -> list[Path]:
    """The images of a user's folder (not recursive), sorted."""
    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in FOLDER_SUFFIXES)


def label_file(folder, stem: str, suffix: str) -> Path | None:
    """`folder/<stem><suffix>` if `folder` is given and the file exists, else None."""
    if not folder:
        return None
    path = Path(folder) / f"{stem}{suffix}"
    return path if path.exists() else None


def mask_file(folder, stem: str) -> Path | None:
    """The first file `folder/<stem>*` (a label image of that image), or None."""
    if not folder:
        return None
    return next((p for p in Path(folder).glob(f"{stem}*") if p.is_file()), None)


def skip(image: Path, missing: str) -> None:
    """Tell the user an image is left out of training and why."""
    click.echo(f"skipped {image.name}: missing {missing}", err=True)


def read_gray(path) -> np.ndarray:
    """A user's training image as float (H,W): colour channels averaged."""
    image = read_image(path)
    return image.mean(-1) if image.ndim == 3 else image


def read_prepared(path, polarity: str) -> np.ndarray:
    """A user's training image as float32 (H,W), prepared as the runtime prepares it for a one-channel
    model of this polarity (colour to luminance, inverted when the polarity asks for it)."""
    from cellpoint.runtime.colour import to_model_channels
    return np.asarray(to_model_channels(read_image(path), 1, polarity)[0], np.float32)


def unique_stems(file_names: list[str]) -> list[str]:
    """Output stem per image: Path(file_name).stem, or, where stems collide (e.g. many `set*/raw.tif`),
    the whole relative path without suffix joined by '_'."""
    stems = [PurePosixPath(f.replace("\\", "/")).stem for f in file_names]
    counts = Counter(stems)
    return [stem if counts[stem] == 1 else "_".join(PurePosixPath(f.replace("\\", "/")).with_suffix("").parts)
            for stem, f in zip(stems, file_names)]

"""`cellpoint labels`: make weak labels (points, box+points, foreground+locations, foreground+count) from
full instance annotations, to simulate cheap annotation or to convert what a user has."""
from __future__ import annotations

import json
import zlib
from pathlib import Path

import click
import numpy as np

from cellpoint.runtime.image_io import write_png
from cellpoint.training.annotations import coco_label_image, read_label_image, write_json, write_points_csv
from cellpoint.training.sources import unique_stems
from cellpoint.training.weak_labels import (annotation_hours, box_points_from_labels, foreground_and_count,
                                            foreground_and_locations, points_from_labels, seconds_per_cell)

KINDS = ("points", "box-points", "foreground-locations", "foreground-count")
LABEL_SUFFIXES = {".png", ".tif", ".tiff"}


def _coco_sources(coco_path: Path, split_path: Path | None, subset: str) -> list[dict]:
    """-> [{"name", "image_id", "file_name", "load"}] for the COCO images in the chosen subset."""
    try:
        coco = json.loads(coco_path.read_text())
        images = coco["images"]
        if "annotations" not in coco:
            raise KeyError("annotations")
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise click.ClickException(f"{coco_path}: not a readable COCO file ({error})") from None
    if split_path is not None:
        try:
            wanted = set(json.loads(split_path.read_text())[subset])
        except (OSError, ValueError, KeyError) as error:
            raise click.ClickException(f"{split_path}: cannot read subset {subset!r} ({error})") from None
        images = [im for im in images if im["id"] in wanted]
    names = unique_stems([im["file_name"] for im in images])
    return [{"name": name, "image_id": im["id"], "file_name": im["file_name"],
             "load": (lambda im=im: coco_label_image(coco, im["id"]))}
            for name, im in zip(names, images)]


def _label_dir_sources(label_dir: Path) -> list[dict]:
    files = sorted(p for p in label_dir.iterdir() if p.suffix.lower() in LABEL_SUFFIXES and p.is_file())
    if not files:
        raise click.ClickException(f"{label_dir}: no label images (*.png, *.tif, *.tiff)")
    return [{"name": p.stem, "file_name": p.name, "load": (lambda p=p: read_label_image(p))} for p in files]


def _write_one(kind: str, labels: np.ndarray, out: Path, name: str, params: dict,
               rng: np.random.Generator) -> tuple[int, list[str]]:
    """Write one image's weak labels; -> (number of cells, file names written)."""
    if kind == "points":
        xy = points_from_labels(labels, params["placement"], params["jitter"], rng)
        files = [f"{name}_points.csv"]
        write_points_csv(out / files[0], xy)
        return len(xy), files
    if kind == "box-points":
        cells = box_points_from_labels(labels, params["n_points"], rng)
        files = [f"{name}_boxpoints.json"]
        write_json(out / files[0], {"height": labels.shape[0], "width": labels.shape[1],
                                    "n_points": params["n_points"], "cells": cells}, indent=None)
        return len(cells), files
    if kind == "foreground-locations":
        foreground, xy = foreground_and_locations(labels)
        files = [f"{name}_foreground.png", f"{name}_points.csv"]
        write_png(out / files[0], foreground)
        write_points_csv(out / files[1], xy)
        return len(xy), files
    foreground, count = foreground_and_count(labels)
    files = [f"{name}_foreground.png", f"{name}_count.json"]
    write_png(out / files[0], foreground)
    write_json(out / files[1], {"count": count})
    return count, files


@click.command("labels")
@click.option("--coco", "coco_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="COCO instance annotations to derive weak labels from.")
@click.option("--label-dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Alternative source: folder of instance label images (0 = background).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Output folder.")
@click.option("--kind", type=click.Choice(KINDS), help="Weak label kind to write (with --coco / --label-dir).")
@click.option("--placement", type=click.Choice(["centroid", "uniform"]), default="centroid", show_default=True,
              help="points: where in each cell the point goes.")
@click.option("--jitter", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="points: Gaussian sd in pixels (points stay inside their cell).")
@click.option("--n-points", type=click.IntRange(min=1), default=6, show_default=True,
              help="box-points: random points per box.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")
@click.option("--split", "split_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="split.json with image id lists (only with --coco).")
@click.option("--subset", type=click.Choice(["train", "val"]), default="train", show_default=True,
              help="Which list of --split to use.")
@click.option("--images", "images_dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Machine-made labels from the images themselves (with --from-nuclei and/or --foreground).")
@click.option("--from-nuclei", is_flag=True,
              help="--images: one location per nucleus, local maxima of a difference of Gaussians of the "
                   "nuclear channel -> STEM_points.csv.")
@click.option("--nuclear-channel", type=int, default=None, help="--from-nuclei: channel index [gray image].")
@click.option("--nucleus-diameter", type=click.FloatRange(min=1), default=14.0, show_default=True,
              help="--from-nuclei: typical nucleus diameter (px); the DoG σ (4.2, 5 px) scale with it / 14.")
@click.option("--foreground", is_flag=True,
              help="--images: image-level foreground of a fluorescence channel, a threshold refined by a "
                   "graph cut, at five thresholds (STEM_foreground_1..5.png, low to high) plus the chosen "
                   "one -> STEM_foreground.png.")
@click.option("--foreground-channel", type=int, default=None, help="--foreground: channel index [gray image].")
@click.option("--foreground-choice", type=click.Choice(["auto", "1", "2", "3", "4", "5"]), default="auto",
              show_default=True, help="--foreground: which of the five becomes STEM_foreground.png; auto = "
              "with --from-nuclei the one that agrees best with the nucleus locations (each location on the "
              "foreground, each foreground blob holding one), else the one whose outline lies on the "
              "strongest image edges.")
def labels(coco_path, label_dir, out_dir, kind, placement, jitter, n_points, seed, split_path, subset,
           images_dir, from_nuclei, nuclear_channel, nucleus_diameter, foreground, foreground_channel,
           foreground_choice):
    """Write weak labels of one KIND per image, plus labels_manifest.json, into OUT.

    Outputs per image stem: points -> STEM_points.csv; box-points -> STEM_boxpoints.json;
    foreground-locations -> STEM_foreground.png (0/255) + STEM_points.csv;
    foreground-count -> STEM_foreground.png + STEM_count.json. Coordinates: x = column, y = row,
    pixel centres at integers.
    """
    if images_dir is not None:
        if coco_path or label_dir or kind:
            raise click.UsageError("--images makes machine labels; it does not take --coco, --label-dir or --kind")
        if not (from_nuclei or foreground):
            raise click.UsageError("--images needs --from-nuclei and/or --foreground")
        _machine_labels(images_dir, out_dir, from_nuclei, nuclear_channel, nucleus_diameter, foreground,
                        foreground_channel, foreground_choice)
        return
    if kind is None:
        raise click.UsageError("give --kind (or --images for machine-made labels)")
    if (coco_path is None) == (label_dir is None):
        raise click.UsageError("give exactly one source: --coco FILE or --label-dir DIR")
    if split_path is not None and coco_path is None:
        raise click.UsageError("--split needs --coco (split.json lists COCO image ids)")
    if coco_path is not None:
        sources = _coco_sources(coco_path, split_path, subset)
        source = {"coco": str(coco_path.resolve()),
                  "split": str(split_path.resolve()) if split_path else None,
                  "subset": subset if split_path else "all"}
    else:
        sources = _label_dir_sources(label_dir)
        source = {"label_dir": str(label_dir.resolve())}
    if not sources:
        raise click.ClickException("no images selected")

    params = {"placement": placement, "jitter": jitter} if kind == "points" else \
        {"n_points": n_points} if kind == "box-points" else {}
    out_dir.mkdir(parents=True, exist_ok=True)
    entries, n_cells = [], 0
    for item in sources:
        # per-image generator seeded by (seed, name): an image's labels do not depend on which others are run
        rng = np.random.default_rng([seed, zlib.crc32(item["name"].encode())])
        cells, files = _write_one(kind, item["load"](), out_dir, item["name"], params, rng)
        n_cells += cells
        entry = {key: item[key] for key in ("image_id", "file_name") if key in item}
        entries.append({**entry, "stem": item["name"], "n_cells": cells, "files": files})

    hours = annotation_hours(kind, n_cells, params.get("n_points", 0))
    mask_hours = annotation_hours("mask", n_cells)
    write_json(out_dir / "labels_manifest.json", {
        "kind": kind, "seed": seed, "rng": "numpy default_rng([seed, crc32(stem)]) per image",
        "params": params, "source": source,
        "n_images": len(entries), "n_cells": n_cells,
        "annotation_hours": hours, "full_mask_hours": mask_hours, "images": entries})
    per_cell = seconds_per_cell(kind, params.get("n_points", 0))
    click.echo(f"{kind}: {len(entries)} images, {n_cells} cells, estimated annotation {hours:.2f} h "
               f"({per_cell:g} s per cell; full masks {mask_hours:.2f} h at 46 s) -> {out_dir}")


def _channel(image: np.ndarray, channel: int | None, path: Path) -> np.ndarray:
    """(H,W) plane of an image: the given channel, or the image itself when it is gray."""
    if channel is None:
        if image.ndim == 3:
            raise click.ClickException(f"{path}: has {image.shape[2]} channels; choose one "
                                       "(--nuclear-channel / --foreground-channel)")
        return image
    if image.ndim != 3 or not 0 <= channel < image.shape[2]:
        raise click.ClickException(f"{path}: no channel {channel} (shape {image.shape})")
    return image[..., channel]


def _machine_labels(images_dir: Path, out_dir: Path, from_nuclei: bool, nuclear_channel, nucleus_diameter: float,
                    foreground: bool, foreground_channel, foreground_choice: str) -> None:
    """`cellpoint labels --images`: DoG nucleus locations and/or graph-cut foreground per image; a file
    that cannot be read is reported and skipped, the others go on."""
    from cellpoint.runtime.image_io import FOLDER_SUFFIXES as IMAGE_SUFFIXES
    from cellpoint.runtime.image_io import read_image
    from cellpoint.training.machine_labels import choose_foreground, foreground_candidates, nuclei_locations
    files = sorted(p for p in images_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise click.ClickException(f"{images_dir}: no images")
    out_dir.mkdir(parents=True, exist_ok=True)
    scale = nucleus_diameter / 14.0
    entries, failed, n_cells = [], [], 0
    for path in files:
        try:
            image = read_image(path)
            entry = {"file_name": path.name, "stem": path.stem, "files": []}
            xy = None
            if from_nuclei:
                xy = nuclei_locations(_channel(image, nuclear_channel, path), 4.2 * scale, 5.0 * scale)
                write_points_csv(out_dir / f"{path.stem}_points.csv", xy)
                entry["files"].append(f"{path.stem}_points.csv")
                entry["n_cells"] = len(xy)
                n_cells += len(xy)
            if foreground:
                plane = _channel(image, foreground_channel, path)
                masks, levels = foreground_candidates(plane)
                for i, mask in enumerate(masks, 1):
                    write_png(out_dir / f"{path.stem}_foreground_{i}.png", mask.astype(np.uint8) * 255)
                pick = choose_foreground(plane, masks, xy) if foreground_choice == "auto" else int(foreground_choice) - 1
                write_png(out_dir / f"{path.stem}_foreground.png", masks[pick].astype(np.uint8) * 255)
                entry["files"] += [f"{path.stem}_foreground.png"] + [f"{path.stem}_foreground_{i}.png" for i in range(1, 6)]
                entry["foreground_choice"] = pick + 1
                entry["foreground_levels"] = [round(float(v), 4) for v in levels]
            entries.append(entry)
        except click.ClickException as error:
            failed.append(error.message)
            click.echo(f"skipped: {error.message}", err=True)
        except (OSError, ValueError) as error:  # ImageReadError names the file itself
            failed.append(str(error) if str(path) in str(error) else f"{path}: {error}")
            click.echo(f"skipped: {failed[-1]}", err=True)
    write_json(out_dir / "labels_manifest.json", {
        "kind": "machine", "from_nuclei": from_nuclei, "foreground": foreground,
        "params": {"nuclear_channel": nuclear_channel, "nucleus_diameter": nucleus_diameter,
                   "dog_sigma": [4.2 * scale, 5.0 * scale], "foreground_channel": foreground_channel,
                   "foreground_choice": foreground_choice},
        "source": {"images": str(images_dir.resolve())}, "n_images": len(entries), "n_cells": n_cells,
        "annotation_hours": 0.0, "failed": failed, "images": entries})
    click.echo(f"machine labels: {len(entries)} images" + (f", {n_cells} nucleus locations" if from_nuclei else "")
               + (f", {len(failed)} skipped" if failed else "") + f", no annotation time -> {out_dir}")
    if failed and not entries:
        raise click.ClickException("no image could be labelled")

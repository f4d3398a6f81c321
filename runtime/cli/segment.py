"""`cellpoint segment`: images in, label images, instance tables and overlays out."""
from __future__ import annotations

import glob
import json
import sys
from pathlib import Path

import click

from cellpoint.runtime.image_io import FOLDER_SUFFIXES

OUTPUT_MARKERS = ("_labels", "_overlay")  # our own outputs, never taken as inputs


def expand_inputs(paths: tuple[str, ...]) -> list[Path]:
    """Files, folders (their images, not recursive) and glob patterns → sorted unique image paths.
    A path that matches nothing is returned as is, so that it is reported as an error."""
    found: list[Path] = []
    for spec in paths:
        matches = [Path(m) for m in sorted(glob.glob(spec))] if glob.has_magic(spec) else [Path(spec)]
        for path in matches:
            if path.is_dir():
                found += sorted(p for p in path.iterdir() if p.suffix.lower() in FOLDER_SUFFIXES)
            else:
                found.append(path)
    unique = list(dict.fromkeys(found))
    return [p for p in unique if not p.stem.endswith(OUTPUT_MARKERS)]


def output_stem(path: Path, label: str) -> str:
    """The name outputs start with: the input's stem, plus `_<label>` for a plane of a stack (e.g. img_z1)."""
    return f"{path.stem}_{label}" if label else path.stem


def write_table_csv(path: Path, table: dict) -> None:
    """The instance table as CSV (one row per instance), written atomically."""
    from cellpoint.runtime.image_io import atomic_write
    columns = list(table)
    with atomic_write(path) as tmp, open(tmp, "w") as f:
        f.write(",".join(columns) + "\n")
        for row in zip(*(table[c] for c in columns)):
            f.write(",".join(f"{v:.6g}" if isinstance(v, float) else str(v) for v in
                             (x.item() for x in row)) + "\n")


IMAGES_TABLE = "cellpoint_images.csv"
"""One row per image segmented by the run: cells, the diameter used and where it came from."""


def write_rows_csv(path: Path, rows: list[dict]) -> None:
    """Rows of equal keys as CSV (a header line, then one line per row), written atomically."""
    import csv
    from cellpoint.runtime.image_io import atomic_write
    with atomic_write(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else [])
        writer.writeheader()
        writer.writerows(rows)


@click.command("segment")
@click.argument("paths", nargs=-1, required=True)
@click.option("--model", "-m", default=None, help="Bundled model name or package folder [default: objectness-nuclei].")
@click.option("--out", "-o", "out_dir", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--diameter", "-d", type=float, default=None,
              help="Typical cell diameter in your images (px). Default: from the pixel size when the model states "
              "its cells' size in µm, else estimated per image when the model has a scale model, else the model's "
              "own (see `cellpoint models`).")
@click.option("--pixel-size", type=float, default=None,
              help="µm per pixel of your images [default: read from each TIFF's OME/ImageJ metadata]; used when the "
              "model states its cells' size in µm and no --diameter is given.")
@click.option("--refine-diameter/--fixed-diameter", default=None,
              help="Measure the cells found at --diameter and segment again at their size if it differs by more "
              "than 10% (up to 2x time), or keep --diameter [default: the model's card says; `cellpoint models`].")
@click.option("--channels", default=None, help="Comma-separated channel indices to feed the model, e.g. 0 or 1,0.")
@click.option("--planes", is_flag=True,
              help="Segment each plane of a z-stack or time series (TIFF) into <stem>_<plane>_labels.tif etc., "
              "planes labelled z0, z1, ... (t0, t0z1, p0 for pages of unknown kind); without it a stack fails.")
@click.option("--coco", "coco_path", type=click.Path(dir_okay=False), default=None,
              help="Also write all instances as COCO results JSON (RLE masks, scores); segments every input.")
@click.option("--overlay", is_flag=True, help="Also write <stem>_overlay.png with outlines on the image.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--tile", type=int, default=768, show_default=True,
              help="Tile size (px, at the network scale): larger images run in overlapping tiles.")
@click.option("--overwrite", is_flag=True, help="Redo inputs whose outputs already exist.")
def segment(paths, model, out_dir, diameter, pixel_size, refine_diameter, channels, planes, coco_path, overlay,
            device, tile, overwrite):
    """Segment images (files, folders, globs) into OUT/<stem>_labels.tif and <stem>_instances.csv (with
    --planes, each plane of a stack into OUT/<stem>_<plane>_labels.tif ...)."""
    from tqdm import tqdm

    from cellpoint.runtime.coco_results import labels_to_coco_results
    from cellpoint.runtime.errors import CellpointError
    from cellpoint.runtime.image_io import (atomic_write, read_image, read_pixel_size, read_planes, write_labels_tif,
                                            write_png)
    from cellpoint.runtime.overlay import render_overlay
    from cellpoint.runtime.segmenter import Segmenter

    try:
        segmenter = Segmenter(model, device=device, tile=tile)
    except CellpointError as error:
        raise click.ClickException(str(error))
    chosen = [int(c) for c in channels.split(",")] if channels else None
    inputs = expand_inputs(paths)
    if not inputs:
        raise click.ClickException("no input images found")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    click.echo(f"model {segmenter.package.name} on {segmenter.provider}; {len(inputs)} image(s) → {out}", err=True)
    failed, done, skipped, results, image_rows = [], 0, 0, [], []
    image_id = 0  # COCO image ids: input order, one per plane of a stack; a failed read uses one
    for path in tqdm(inputs, unit="img", file=sys.stderr, disable=None):
        if (out / f"{path.stem}_labels.tif").exists() and not overwrite and coco_path is None:
            skipped += 1
            image_id += 1
            continue
        try:
            images = read_planes(path, channels=chosen) if planes else [("", read_image(path, channels=chosen))]
        except (CellpointError, ValueError) as error:  # e.g. a stack without --planes: one line, go on
            message = str(error) if str(path) in str(error) else f"{path}: {error}"
            tqdm.write(f"error: {message}", file=sys.stderr)
            failed.append(str(path))
            image_id += 1
            continue
        for label, image in images:
            image_id += 1
            stem = output_stem(path, label)
            where = f"{path} plane {label}" if label else str(path)
            labels_path = out / f"{stem}_labels.tif"
            if label and labels_path.exists() and not overwrite and coco_path is None:
                skipped += 1
                continue
            try:
                result = segmenter.segment(image, diameter=diameter, refine_diameter=refine_diameter,
                                           pixel_size=pixel_size or read_pixel_size(path))
            except (CellpointError, ValueError) as error:
                tqdm.write(f"error: {where}: {error}", file=sys.stderr)
                failed.append(where)
                continue
            labels, table = result
            tqdm.write(f"{where}: {int(labels.max())} cells, diameter {result.diameter:.1f} px "
                       f"({result.diameter_source})" + (f"; image {result.conversion}" if result.conversion else ""),
                       file=sys.stderr)
            image_rows.append({"image": str(path), "plane": label, "cells": int(labels.max()),
                               "diameter_px": round(result.diameter, 2), "diameter_source": result.diameter_source,
                               "conversion": result.conversion})
            write_rows_csv(out / IMAGES_TABLE, image_rows)
            write_labels_tif(labels_path, labels)
            write_table_csv(out / f"{stem}_instances.csv", table)
            if overlay:
                write_png(out / f"{stem}_overlay.png", render_overlay(image, labels))
            if coco_path is not None:
                scores = {int(i): float(s) for i, s in zip(table["id"], table["score"])}
                for coco in labels_to_coco_results(labels, image_id, scores):
                    coco["file_name"] = path.name
                    if label:
                        coco["plane"] = label
                    results.append(coco)
            done += 1
    if coco_path is not None:
        with atomic_write(Path(coco_path)) as tmp:
            Path(tmp).write_text(json.dumps(results))
    click.echo(f"segmented {done}, skipped {skipped} (outputs exist; --overwrite to redo), failed {len(failed)}; "
               f"outputs in {out}" + (f"; COCO results in {coco_path}" if coco_path else ""))
    if failed:
        sys.exit(1)

"""`cellpoint segment`: images in, label images, instance tables and overlays out.

Every failure ends in one line naming the file or option and the reason, and an exit code
(`runtime.cli.exits`): 0 all done, 1 some inputs failed, 2 bad option, 3 unusable model package, 4 output
not writable. An image is done when its record is written after all its outputs (`runtime.cli.completion`);
a rerun redoes the rest, and runs sharing an output folder claim images so that none is segmented twice."""
from __future__ import annotations

import glob
import json
import threading
import math
import sys
import time
from pathlib import Path

import click
import numpy as np

from cellpoint.runtime.cli import completion
from cellpoint.runtime.cli.exits import (DONE, INPUTS_FAILED, OUTPUT_UNWRITABLE, PackageUnusable, OutputUnwritable,
                                         describe_os_error)
from cellpoint.runtime.image_io import FOLDER_SUFFIXES

OUTPUT_MARKERS = ("_labels", "_overlay")  # our own outputs, never taken as inputs
IMAGES_TABLE = "cellpoint_images.csv"
"""One row per image segmented into the folder: cells, the diameter used and where it came from."""


def expand_inputs(paths: tuple[str, ...]) -> list[Path]:
    """Files, folders (their images, not recursive) and glob patterns → sorted unique image paths.
    A path that matches nothing is returned as is, so that it is reported as an error. Hidden files
    (temporary files among them) and cellpoint's own outputs (<stem>_labels, <stem>_overlay) are left out."""
    from cellpoint.runtime.lazy_io import is_zarr
    found: list[Path] = []
    for spec in paths:
        matches = [Path(m) for m in sorted(glob.glob(spec))] if glob.has_magic(spec) else [Path(spec)]
        for path in matches:
            if path.is_dir() and not is_zarr(path):
                found += sorted(p for p in path.iterdir() if p.suffix.lower() in FOLDER_SUFFIXES)
            else:
                found.append(path)
    unique = list(dict.fromkeys(found))
    return [p for p in unique if not p.stem.endswith(OUTPUT_MARKERS) and not p.name.startswith(".")]


def input_stem(path: Path) -> str:
    """An input's name without its extension(s): img.tif → img, img.ome.tif and img.ome.zarr → img."""
    stem = path.stem
    return stem[:-4] if stem.lower().endswith(".ome") else stem


def output_stem(path: Path, label: str) -> str:
    """The name outputs start with: the input's stem, plus `_<label>` for a plane of a stack (e.g. img_z1)."""
    return f"{input_stem(path)}_{label}" if label else input_stem(path)


EXTRA_OUTPUTS = {"rois": "{stem}_rois.zip", "geojson": "{stem}_cells.geojson", "ome_zarr": "{stem}.ome.zarr"}
"""The outputs for other tools (`runtime.outputs`), by the flag that asks for them: their file names."""
BLOCKWISE_EXTRAS = ("ome_zarr",)
"""The extra outputs an image on the blockwise path (`is_large`) gets; the others need it whole."""


def output_names(stem: str, overlay: bool, extras=()) -> list[str]:
    """The file names (in the output folder) one image or plane gets: labels, table, then the overlay and
    the `extras` (keys of EXTRA_OUTPUTS) asked for, in EXTRA_OUTPUTS' order."""
    return ([f"{stem}_labels.tif", f"{stem}_instances.csv"] + ([f"{stem}_overlay.png"] if overlay else [])
            + [EXTRA_OUTPUTS[k].format(stem=stem) for k in EXTRA_OUTPUTS if k in extras])


def write_table_csv(path: Path, table: dict) -> None:
    """The instance table as CSV (one row per instance), written atomically."""
    from cellpoint.runtime.image_io import atomic_write
    columns = list(table)
    with atomic_write(path) as tmp, open(tmp, "w") as f:
        f.write(",".join(columns) + "\n")
        for row in zip(*(table[c] for c in columns)):
            f.write(",".join(f"{v:.6g}" if isinstance(v, float) else str(v) for v in
                             (x.item() for x in row)) + "\n")


def write_rows_csv(path: Path, rows: list[dict]) -> None:
    """Rows as CSV (a header line of every key met, then one line per row), written atomically."""
    import csv
    from cellpoint.runtime.image_io import atomic_write
    fields = list(dict.fromkeys(k for row in rows for k in row))
    with atomic_write(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


# ------------------------------------------------------------------------------------------- options

def _positive_number(ctx, param, value):
    """click callback: a finite number > 0, or None."""
    if value is not None and (not math.isfinite(value) or value <= 0):
        raise click.BadParameter(f"must be a positive finite number, got {value}")
    return value


def _channel_list(ctx, param, value):
    """click callback: '0' or '1,0' → [0] or [1, 0]; None stays None."""
    if value is None:
        return None
    from cellpoint.runtime.errors import OptionError
    from cellpoint.runtime.limits import check_channels
    try:
        return check_channels([int(c) for c in value.split(",")])
    except ValueError as error:
        reason = str(error) if isinstance(error, OptionError) else "expected comma-separated channel indices"
        raise click.BadParameter(f"{value!r}: {reason} (e.g. 0 or 1,0)") from None


def _device(ctx, param, value):
    """click callback: a valid device string (`providers.parse_device`)."""
    from cellpoint.runtime.errors import OptionError
    from cellpoint.runtime.providers import parse_device
    try:
        parse_device(value)
    except OptionError as error:
        raise click.BadParameter(str(error)) from None
    return value


def _check_against_model(segmenter, diameter, pixel_size) -> None:
    """Options whose range depends on the model: BadParameter naming the option."""
    from cellpoint.runtime.errors import OptionError
    from cellpoint.runtime.limits import check_diameter
    try:
        if diameter is not None:
            check_diameter(diameter, segmenter.diameter)
    except OptionError as error:
        raise click.BadParameter(str(error), param_hint="'--diameter'") from None
    um = segmenter.package.card.object_diameter_um
    try:
        if pixel_size is not None and um and diameter is None:
            check_diameter(um / pixel_size, segmenter.diameter, f"the diameter from --pixel-size ({um:g} µm / "
                           f"{pixel_size:g} µm/px)")
    except OptionError as error:
        raise click.BadParameter(str(error), param_hint="'--pixel-size'") from None


def prepare_output(out: Path) -> None:
    """Create the output folder and check a file can be written there; OutputUnwritable (exit 4) if not."""
    import tempfile
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".cellpoint-probe-", dir=out)
        import os
        os.close(fd)
        os.unlink(probe)
    except OSError as error:
        raise OutputUnwritable(f"cannot write to the output folder {out}: {error.strerror or error}") from None


def load_segmenter(model, device, tile, precision="auto"):
    """The Segmenter, or PackageUnusable (exit 3) / a usage error (exit 2) naming the reason."""
    from cellpoint.runtime.errors import DeviceError, OptionError, PackageError
    from cellpoint.runtime.segmenter import Segmenter
    try:
        return Segmenter(model, device=device, tile=tile, precision=precision)
    except OptionError as error:
        raise click.BadParameter(str(error), param_hint="'--tile'") from None
    except DeviceError as error:
        raise click.BadParameter(str(error), param_hint="'--device'") from None
    except PackageError as error:
        if "variant of its main graph" in str(error):  # asked for a precision it does not ship
            raise click.BadParameter(str(error), param_hint="'--precision'") from None
        raise PackageUnusable(str(error)) from None
    except Exception as error:  # onnxruntime refusing a graph that passed the checksums
        raise PackageUnusable(f"{model or 'the default model'}: cannot be loaded: {type(error).__name__}: "
                              f"{str(error).splitlines()[0] if str(error) else ''}") from None


def duplicate_stems(inputs: list[Path]) -> dict[Path, Path]:
    """{later input: earlier input} for inputs whose stem an earlier one has (their outputs would clash)."""
    first: dict[str, Path] = {}
    clashes = {}
    for path in inputs:
        if input_stem(path) in first:
            clashes[path] = first[input_stem(path)]
        else:
            first.setdefault(input_stem(path), path)
    return clashes


# ------------------------------------------------------------------------------------------- command

@click.command("segment")
@click.argument("paths", nargs=-1, required=True)
@click.option("--model", "-m", default=None, help="Bundled model name or package folder [default: objectness-nuclei].")
@click.option("--out", "-o", "out_dir", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--diameter", "-d", type=float, default=None, callback=_positive_number,
              help="Typical cell diameter in your images (px), between the model's diameter ÷ 8 and × 64. Default: "
              "from the pixel size when the model states its cells' size in µm, else estimated per image when the "
              "model has a scale model, else the model's own (see `cellpoint models`).")
@click.option("--pixel-size", type=float, default=None, callback=_positive_number,
              help="µm per pixel of your images [default: read from each TIFF's OME/ImageJ metadata]; used when the "
              "model states its cells' size in µm and no --diameter is given.")
@click.option("--refine-diameter/--fixed-diameter", default=None,
              help="Measure the cells found at --diameter and segment again at their size if it differs by more "
              "than 10% (up to 2x time), or keep --diameter [default: the model's card says; `cellpoint models`].")
@click.option("--channels", default=None, callback=_channel_list,
              help="Comma-separated channel indices to feed the model, e.g. 0 or 1,0.")
@click.option("--planes", is_flag=True,
              help="Segment each plane of a z-stack or time series (TIFF) into <stem>_<plane>_labels.tif etc., "
              "planes labelled z0, z1, ... (t0, t0z1, p0 for pages of unknown kind); without it a stack fails.")
@click.option("--coco", "coco_path", type=click.Path(dir_okay=False), default=None,
              help="Also write all instances as COCO results JSON (RLE masks, scores); segments every input.")
@click.option("--overlay", is_flag=True, help="Also write <stem>_overlay.png with outlines on the image.")
@click.option("--rois", is_flag=True,
              help="Also write <stem>_rois.zip: one ImageJ polygon ROI per cell, named by its label (Fiji: open "
              "the zip for the ROI Manager).")
@click.option("--geojson", is_flag=True,
              help="Also write <stem>_cells.geojson: the cell outlines as QuPath detections, with label, score "
              "(and --measure's columns) as measurements (QuPath: drag it onto the image).")
@click.option("--ome-zarr", "ome_zarr", is_flag=True,
              help="Also write <stem>.ome.zarr: the image and its labels as OME-Zarr (NGFF 0.4, labels under "
              "labels/cells), scaled in µm when the pixel size is known (napari: open the folder).")
@click.option("--measure", is_flag=True,
              help="Add per-cell measurements to <stem>_instances.csv: area, perimeter and equivalent diameter "
              "(px, and µm when the pixel size is known), eccentricity, solidity, and each channel's mean, "
              "integrated and max intensity (docs/outputs.md).")
@click.option("--device", default="auto", show_default=True, callback=_device,
              help="auto (CUDA when present, else CPU), cpu, cuda[:N] or tensorrt[:N] (GPU N); a GPU that cannot "
              "start is an error, not a silent fallback to the CPU.")
@click.option("--precision", type=click.Choice(["auto", "fp32", "int8", "fp16"]), default="auto", show_default=True,
              help="The network's precision: a variant the package ships (`cellpoint models`); auto: int8 on the CPU "
              "and fp16 on a GPU when shipped, else fp32.")
@click.option("--tile", type=int, default=768, show_default=True,
              help="Tile size (px, at the network scale): larger images run in overlapping tiles; at least twice "
              "the model's tile overlap.")
@click.option("--overwrite", is_flag=True, help="Redo inputs whose outputs already exist.")
@click.option("--dask", "dask_address", default=None, metavar="ADDRESS|local:N",
              help="Spread the images over a Dask cluster (a scheduler address, or local:N for N local worker "
              "processes); each worker loads the model once; OUT must be writable by every worker. Needs "
              "pip install 'cellpoint[dask]'.")
@click.option("--workers", type=click.IntRange(min=1, max=64), default=1, show_default=True,
              help="Images in progress at once (threads sharing the model): reading, decoding and writing of one "
              "overlap the network of another. Results are the same as with 1.")
def segment(paths, model, out_dir, diameter, pixel_size, refine_diameter, channels, planes, coco_path, overlay,
            rois, geojson, ome_zarr, measure, device, precision, tile, overwrite, dask_address, workers):
    """Segment images (files, folders, globs) into OUT/<stem>_labels.tif and <stem>_instances.csv (with
    --planes, each plane of a stack into OUT/<stem>_<plane>_labels.tif ...), with OUT/cellpoint_images.csv
    (one row per image) and OUT/cellpoint_run.json (the run's report).

    Exit codes: 0 all done; 1 some inputs failed (the others are done); 2 bad option; 3 the model package
    is unusable; 4 the output cannot be written (the run stops; finished images are kept)."""
    from cellpoint.runtime.cli.report import REPORT_FILE, ReportWriter, describe_model, new_report

    if dask_address is not None and coco_path is not None:
        raise click.UsageError("--coco and --dask cannot be used together (COCO results are collected by one process)")
    if dask_address is not None and dask_address.startswith("local:") and not dask_address[6:].isdigit():
        raise click.BadParameter(f"{dask_address!r}: expected local:N (N worker processes) or an address",
                                 param_hint="'--dask'")
    inputs = expand_inputs(paths)
    if not inputs:
        raise click.UsageError("no input images found in " + ", ".join(paths))
    started = time.monotonic()
    segmenter = load_segmenter(model, device, tile, precision)
    _check_against_model(segmenter, diameter, pixel_size)
    out = Path(out_dir)
    prepare_output(out)
    options = {"model": model, "diameter": diameter, "pixel_size": pixel_size, "refine_diameter": refine_diameter,
               "channels": channels, "planes": planes, "coco": coco_path, "overlay": overlay, "rois": rois,
               "geojson": geojson, "ome_zarr": ome_zarr, "measure": measure, "device": device,
               "precision": precision, "workers": workers, "dask": dask_address,
               "tile": tile, "overwrite": overwrite}
    report = new_report(inputs, options)
    report["model"], report["provider"] = describe_model(segmenter), segmenter.provider
    report["timings"]["load_s"] = round(time.monotonic() - started, 3)
    writer = ReportWriter(out / REPORT_FILE)
    run = _Run(segmenter, out, report, writer, diameter=diameter, pixel_size=pixel_size,
               refine_diameter=refine_diameter, channels=channels, planes=planes, overlay=overlay,
               overwrite=overwrite, coco=coco_path is not None, workers=workers,
               extras=tuple(k for k, on in (("rois", rois), ("geojson", geojson), ("ome_zarr", ome_zarr)) if on),
               measure=measure)
    click.echo(f"model {segmenter.name} on {segmenter.provider}; {len(inputs)} image(s) → {out}", err=True)
    try:
        writer.write(report)
        if dask_address is None:
            run.all(inputs)
        else:
            run.on_dask(dask_address, inputs, {"model": str(segmenter.package.path), "device": device, "tile": tile,
                                               "precision": precision})
    except OutputUnwritable as error:
        run.finish("output unwritable", OUTPUT_UNWRITABLE, quiet=True)
        raise error
    except KeyboardInterrupt:
        run.finish("interrupted", 130, quiet=True)
        click.echo("interrupted; finished images are kept (rerun to go on)", err=True)
        sys.exit(130)
    if coco_path is not None:
        from cellpoint.runtime.image_io import atomic_write
        try:
            with atomic_write(Path(coco_path)) as tmp:
                Path(tmp).write_text(json.dumps(run.coco_results))
        except OSError as error:
            run.finish("output unwritable", OUTPUT_UNWRITABLE, quiet=True)
            raise OutputUnwritable(f"cannot write {describe_os_error(error)}") from None
    counts = report["counts"]
    code = INPUTS_FAILED if counts["failed"] else DONE
    run.finish("done" if code == DONE else "inputs failed", code)
    click.echo(f"segmented {counts['segmented']}, skipped {counts['skipped']} (outputs exist, or another run has "
               f"them; --overwrite to redo), failed {counts['failed']}; outputs in {out}"
               + (f"; COCO results in {coco_path}" if coco_path else ""))
    if code:
        sys.exit(code)


def is_large(path: Path) -> bool:
    """Whether an input is read and segmented block by block: a TIFF or OME-Zarr of more than
    `blockwise.LARGE_PIXELS` pixels (from its header, before reading)."""
    from cellpoint.runtime.blockwise import LARGE_PIXELS
    from cellpoint.runtime.lazy_io import declared_shape, is_zarr
    shape = declared_shape(path)
    if shape is None:
        return is_zarr(path)
    plane = sorted(shape, reverse=True)[:2]  # the two longest axes are the plane's
    return int(plane[0]) * int(plane[-1]) > LARGE_PIXELS or is_zarr(path)


class _Guarded:
    """A label store whose write errors stop the run (exit 4) rather than fail the image."""

    def __init__(self, store):
        self.store, self.shape = store, store.shape

    def __getitem__(self, key):
        return self.store[key]

    def __setitem__(self, key, value):
        try:
            self.store[key] = value
        except OSError as error:
            raise OutputUnwritable(f"cannot write the label store {describe_os_error(error)}") from None


class _StreamedTable:
    """An instance table CSV written block by block to a temporary file, renamed into place on success."""

    def __init__(self, path: Path):
        from cellpoint.runtime.image_io import atomic_write
        self._context = atomic_write(path)
        self._columns: list[str] | None = None

    def __enter__(self):
        self._file = open(self._context.__enter__(), "w")
        return self

    def write(self, rows: dict) -> None:
        try:
            if self._columns is None:
                self._columns = list(rows)
                self._file.write(",".join(self._columns) + "\n")
            for row in zip(*(rows[c] for c in self._columns)):
                self._file.write(",".join(f"{v:.6g}" if isinstance(v, float) else str(v)
                                          for v in (np.asarray(x).item() for x in row)) + "\n")
        except OSError as error:
            raise OutputUnwritable(f"cannot write {describe_os_error(error)}") from None

    def __exit__(self, *exc):
        if self._columns is None and exc[0] is None:  # no cell at all: a header still
            self._file.write("id,area,centroid_y,centroid_x,bbox_y0,bbox_x0,bbox_y1,bbox_x1,score\n")
        self._file.close()
        return self._context.__exit__(*exc)


class _Run:
    """One batch: inputs → outputs in `out`, counted in `report`. Not part of the API."""

    def __init__(self, segmenter, out: Path, report: dict, writer, *, diameter, pixel_size, refine_diameter,
                 channels, planes, overlay, overwrite, coco, workers=1, extras=(), measure=False):
        from cellpoint.runtime.cli.progress import BatchProgress
        self.segmenter, self.out, self.report, self.writer = segmenter, out, report, writer
        self.diameter, self.pixel_size, self.refine_diameter = diameter, pixel_size, refine_diameter
        self.channels, self.planes, self.overlay, self.overwrite, self.coco = channels, planes, overlay, overwrite, coco
        self.extras, self.measure = tuple(extras), measure  # EXTRA_OUTPUTS keys; measurements in the table
        self.progress = BatchProgress(len(report["inputs"]))
        self.workers = 1 if coco else max(1, workers)  # COCO ids follow the input order
        self._lock = threading.RLock()  # the report, counts and progress, shared by the workers
        self.coco_results: list[dict] = []
        self.image_id = 0  # COCO image ids: input order, one per plane of a stack; a failed read uses one
        self.run_blocks = None  # where a large image's blocks run (`blockwise.RunBlocks`); None: here

    def all(self, inputs: list[Path]) -> None:
        """Every input, one after the other, or `workers` at a time (threads: reading, decoding and writing of
        one image overlap the network of another; at most twice `workers` images are in flight)."""
        from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
        completion.remove_stale_shared_temps(self.out, [IMAGES_TABLE, "cellpoint_run.json"])
        clashes = duplicate_stems(inputs)
        if self.workers <= 1:
            for path in inputs:
                self.input(path, clashes)
            return
        pending: set = set()
        with ThreadPoolExecutor(self.workers) as pool:
            try:
                for path in inputs:
                    while len(pending) >= 2 * self.workers:
                        done, pending = wait(pending, return_when=FIRST_COMPLETED)
                        for future in done:
                            future.result()
                    pending.add(pool.submit(self.input, path, clashes))
                for future in pending:
                    future.result()
            except BaseException:
                for future in pending:
                    future.cancel()
                raise

    def on_dask(self, address: str, inputs: list[Path], model_settings: dict) -> None:
        """Every input as a task of a Dask cluster (`dask_batch`), merged into this run's report."""
        from cellpoint.runtime.cli.dask_batch import run_on_dask
        completion.remove_stale_shared_temps(self.out, [IMAGES_TABLE, "cellpoint_run.json"])
        clashes = duplicate_stems(inputs)
        for path in clashes:
            self.fail(str(path), f"has the same name as {clashes[path]} (their outputs would overwrite each "
                                 "other); rename one")
        run_settings = {"diameter": self.diameter, "pixel_size": self.pixel_size,
                        "refine_diameter": self.refine_diameter, "channels": self.channels, "planes": self.planes,
                        "overlay": self.overlay, "overwrite": self.overwrite, "extras": self.extras,
                        "measure": self.measure}

        def merge(path: Path, part: dict) -> None:
            with self._lock:
                for line in part["lines"]:
                    self.progress.message(line)
                for key in ("segmented", "skipped", "failed"):
                    self.report["counts"][key] += part["counts"][key]
                for key in ("images", "skipped", "failures"):
                    self.report[key] += part[key]
                self.progress.image_finished(failed=bool(part["counts"]["failed"]),
                                             skipped=bool(part["counts"]["skipped"]))
                self.writer.maybe_write(self.report) and self.write_images_table()
        def segment_slide(path: Path, run_blocks) -> None:
            self.run_blocks = run_blocks
            try:
                self.input(path, clashes)
            finally:
                self.run_blocks = None
        todo = [p for p in inputs if p not in clashes]
        slides = [p for p in todo if not self.planes and is_large(p)]
        run_on_dask(address, [p for p in todo if p not in slides], self.out, model_settings, run_settings, merge,
                    slides, segment_slide)

    def input(self, path: Path, clashes: dict) -> None:
        """One input, then the report and images table if they are due."""
        if path in clashes:
            self.fail(str(path), f"has the same name as {clashes[path]} (their outputs would overwrite each "
                                 "other); rename one")
            self.image_id += 1
            return
        self.one(path)
        with self._lock:
            self.writer.maybe_write(self.report) and self.write_images_table()

    def one(self, path: Path) -> None:
        """Segment one input (all its planes with --planes) unless it is done or another run has it."""
        if self.coco:  # COCO results need every image's instances from this run
            self.segment_input(path)
            return
        if not self.planes and not self.overwrite and self.is_done(input_stem(path), is_large(path)):
            self.skip(path, "done")
            return
        try:
            with completion.claim(self.out, input_stem(path)) as mine:
                if not mine:
                    self.skip(path, "another run is segmenting it")
                    return
                self.segment_input(path)
        except OSError as error:  # the claim's lock file cannot be made (the rest converts its own)
            raise OutputUnwritable(f"cannot write {describe_os_error(error)}") from None

    def names(self, stem: str, large: bool = False) -> list[str]:
        """The output file names of one image or plane (`large`: on the blockwise path: no overlay, and only
        the BLOCKWISE_EXTRAS of the extras)."""
        extras = [k for k in self.extras if k in BLOCKWISE_EXTRAS] if large else self.extras
        return output_names(stem, self.overlay and not large, extras)

    def is_done(self, stem: str, large: bool = False) -> bool:
        """Whether `stem` has all its outputs (`completion.is_done`), and with --measure a table that has the
        measurements (a table from a run without them is redone)."""
        names = self.names(stem, large)
        if not completion.is_done(self.out, stem, names):
            return False
        if not self.measure or large:
            return True
        try:
            with open(self.out / names[1]) as f:
                return "perimeter_px" in f.readline().split(",")
        except OSError:
            return False

    def segment_input(self, path: Path) -> None:
        from cellpoint.runtime.errors import CellpointError
        from cellpoint.runtime.image_io import read_image, read_planes
        if "ome_zarr" in self.extras and (self.out / f"{input_stem(path)}.ome.zarr").resolve() == path.resolve():
            with self._lock:
                self.image_id += 1
                self._fail(str(path), "its --ome-zarr output would replace it (the output folder holds the "
                                      "input); choose another --out", True)
            return
        if not self.planes and is_large(path):
            ok = self.segment_large(path)
            with self._lock:
                self.progress.image_finished(failed=not ok)
            return
        try:
            images = (read_planes(path, channels=self.channels) if self.planes
                      else [("", read_image(path, channels=self.channels))])
        except (CellpointError, ValueError, OSError, MemoryError) as error:
            self.image_id += 1
            self.fail(str(path), _reason(path, error))
            return
        segmented = failed = skipped = 0
        for label, image in images:
            self.image_id += 1
            stem = output_stem(path, label)
            names = self.names(stem)
            if self.planes and not self.overwrite and not self.coco and self.is_done(stem):
                skipped += 1
                continue
            if self.segment_plane(path, label, image, stem, names):
                segmented += 1
            else:
                failed += 1
        with self._lock:
            self.progress.image_finished(failed=bool(failed), skipped=not segmented and not failed)
            if skipped:  # planes whose outputs exist
                self.report["counts"]["skipped"] += skipped
                self.report["skipped"].append({"input": str(path), "reason": "done", "planes": skipped})

    def segment_plane(self, path: Path, label: str, image, stem: str, names: list[str]) -> bool:
        """Segment one image or plane and write its outputs; False when it failed (reported)."""
        from cellpoint.runtime.image_io import read_pixel_size
        where = f"{path} plane {label}" if label else str(path)
        begun = time.monotonic()
        pixel_size = self.pixel_size or read_pixel_size(path)
        try:
            result = self.segmenter.segment(image, diameter=self.diameter, refine_diameter=self.refine_diameter,
                                            pixel_size=pixel_size, on_tile=self.progress.tile_reporter(where))
        except MemoryError:
            self.fail(where, "out of memory (try a smaller --tile, or a larger --diameter)", count=False)
            return False
        except Exception as error:  # noqa: BLE001 - one image's failure must not stop the batch
            self.fail(where, _reason(path, error), count=False)
            return False
        labels, table = result
        if self.measure:
            try:
                table = self.measured(table, labels, image, pixel_size)
            except MemoryError:
                self.fail(where, "out of memory measuring the cells", count=False)
                return False
            except Exception as error:  # noqa: BLE001 - one image's failure must not stop the batch
                self.fail(where, f"measuring the cells: {_reason(path, error)}", count=False)
                return False
        self.progress.message(f"{where}: {int(labels.max())} cells, diameter {result.diameter:.1f} px "
                              f"({result.diameter_source})" + (f"; image {result.conversion}" if result.conversion
                                                               else ""))
        row = {"image": str(path), "plane": label, "cells": int(labels.max()),
               "diameter_px": round(result.diameter, 2), "diameter_source": result.diameter_source,
               "conversion": result.conversion, "pixel_size_um": pixel_size}
        try:
            self.write_outputs(stem, names, image, labels, table, row)
        except (ValueError, MemoryError) as error:  # an output that cannot be made of this image's cells
            self.fail(where, _reason(path, error) if isinstance(error, ValueError) else "out of memory writing "
                      "the outputs", count=False)
            return False
        if self.coco:
            self.collect_coco(path, label, labels, table)
        with self._lock:
            self.report["counts"]["segmented"] += 1
            self.report["images"].append({"input": str(path), "plane": label, "outputs": names,
                                          "cells": row["cells"], "diameter_px": row["diameter_px"],
                                          "diameter_source": row["diameter_source"],
                                          "seconds": round(time.monotonic() - begun, 3)})
        return True

    def segment_large(self, path: Path) -> bool:
        """Segment an image too large to hold (`is_large`) block by block from its file into a tiled
        label TIFF and a streamed table (no overlay, no COCO results); False when it failed (reported)."""
        from cellpoint.runtime.blockwise import segment_blockwise
        from cellpoint.runtime.image_io import read_pixel_size
        from cellpoint.runtime.lazy_io import label_store, open_lazily, remove_store, write_tiled_labels
        stem = input_stem(path)
        names = self.names(stem, large=True)
        where, begun = str(path), time.monotonic()
        refused = [what for what, on in (("an overlay", self.overlay), ("COCO results", self.coco),
                                         ("ROIs", "rois" in self.extras), ("GeoJSON", "geojson" in self.extras),
                                         ("measurements", self.measure)) if on]
        if refused:
            self.progress.message(f"{path}: too large for {', '.join(refused)}; writing labels, table"
                                  + (" and OME-Zarr" if "ome_zarr" in self.extras else "") + " only")
        pixel_size = self.pixel_size or read_pixel_size(path)
        work = self.out / completion.STATE_DIR / "work" / f"{stem}.labels.zarr"
        try:
            completion.forget(self.out, stem)
            completion.remove_stale_temps(self.out, names)
            with open_lazily(path) as lazy, _StreamedTable(self.out / names[1]) as table:
                store = _Guarded(label_store(work, lazy.array.shape[:2]))
                result = segment_blockwise(self.segmenter, lazy.array, store, diameter=self.diameter,
                                           pixel_size=pixel_size, channels=self.channels,
                                           on_block=self.progress.tile_reporter(where, "blocks"), on_rows=table.write,
                                           run_blocks=self.run_blocks)
                write_tiled_labels(self.out / names[0], store.store, result.cells)
                if "ome_zarr" in self.extras:
                    from cellpoint.runtime.outputs.ome_zarr import write_ome_zarr
                    write_ome_zarr(self.out / EXTRA_OUTPUTS["ome_zarr"].format(stem=stem), lazy.array, store.store,
                                   pixel_size=pixel_size, name=stem, channel_names=self.channel_names(lazy.array))
            row = {"image": str(path), "plane": "", "cells": result.cells, "diameter_px": round(result.diameter, 2),
                   "diameter_source": result.diameter_source, "conversion": result.conversion,
                   "pixel_size_um": pixel_size}
            completion.mark_done(self.out, stem, names, row)
        except OutputUnwritable:
            raise
        except OSError as error:
            raise OutputUnwritable(f"cannot write {describe_os_error(error)}") from None
        except MemoryError:
            self.fail(where, "out of memory (try a smaller --tile)", count=False)
            return False
        except Exception as error:  # noqa: BLE001 - one image's failure must not stop the batch
            self.fail(where, _reason(path, error), count=False)
            return False
        finally:
            remove_store(work)
        self.progress.message(f"{where}: {result.cells} cells, diameter {result.diameter:.1f} px "
                              f"({result.diameter_source}); {result.blocks} blocks")
        with self._lock:
            self.report["counts"]["segmented"] += 1
            self.report["images"].append({"input": str(path), "plane": "", "outputs": names,
                                          "cells": result.cells, "diameter_px": row["diameter_px"],
                                          "diameter_source": result.diameter_source, "blocks": result.blocks,
                                          "seconds": round(time.monotonic() - begun, 3)})
        return True

    def write_outputs(self, stem: str, names: list[str], image, labels, table, row: dict) -> None:
        """Write one image's outputs, then its record (with `row`, its line of the images table);
        OutputUnwritable (stops the run) if a write fails."""
        from cellpoint.runtime.image_io import write_labels_tif, write_png
        from cellpoint.runtime.overlay import render_overlay
        out = self.out
        try:
            completion.forget(out, stem)
            completion.remove_stale_temps(out, names)
            write_labels_tif(out / names[0], labels)
            write_table_csv(out / names[1], table)
            if self.overlay:
                write_png(out / names[2], render_overlay(image, labels))
            self.write_extras(stem, image, labels, table, row.get("pixel_size_um"))
            completion.mark_done(out, stem, names, row)
        except OSError as error:
            raise OutputUnwritable(f"cannot write {describe_os_error(error)}") from None

    def write_extras(self, stem: str, image, labels, table, pixel_size) -> None:
        """The outputs for other tools asked for (ROIs, GeoJSON, OME-Zarr; `runtime.outputs`), each
        written atomically. Their per-cell values: the table's columns but bounding box and centroid."""
        if not self.extras:
            return
        cells = {k: v for k, v in table.items() if not k.startswith(("bbox_", "centroid_"))
                 and not (k == "area" and "area_px" in table)}
        if "rois" in self.extras or "geojson" in self.extras:
            from cellpoint.runtime.polygons import instance_outlines
            outlines = instance_outlines(labels)  # {id: [outer, *holes]}
        if "rois" in self.extras:
            from cellpoint.runtime.outputs.imagej_rois import write_roi_zip
            write_roi_zip(self.out / EXTRA_OUTPUTS["rois"].format(stem=stem), outlines)
        if "geojson" in self.extras:
            from cellpoint.runtime.outputs.geojson import write_geojson
            write_geojson(self.out / EXTRA_OUTPUTS["geojson"].format(stem=stem), outlines, cells, image_name=stem,
                          pixel_size=pixel_size)
        if "ome_zarr" in self.extras:
            from cellpoint.runtime.outputs.ome_zarr import write_ome_zarr
            write_ome_zarr(self.out / EXTRA_OUTPUTS["ome_zarr"].format(stem=stem), image, labels,
                           pixel_size=pixel_size, name=stem, channel_names=self.channel_names(image),
                           properties=cells)

    def channel_names(self, image) -> list[str]:
        """Names of the channels of an image as read (c<k>: its channel k in the file, as --channels picked)."""
        n = image.shape[2] if len(image.shape) == 3 else 1
        picked = self.channels if self.channels is not None and len(self.channels) == n else range(n)
        return [f"c{k}" for k in picked]

    def measured(self, table: dict, labels, image, pixel_size) -> dict:
        """The instance table with `measure.measure_instances`' columns added (its id column and rows are the
        table's: both ascending ids)."""
        from cellpoint.runtime.measure import measure_instances
        names = [name[1:] for name in self.channel_names(image)]
        measures = measure_instances(labels, image, pixel_size, channel_names=names)
        if not np.array_equal(measures["id"], table["id"]):
            raise ValueError("measurements and the instance table list different cells")
        return {**table, **{k: v for k, v in measures.items() if k != "id"}}

    def collect_coco(self, path: Path, label: str, labels, table) -> None:
        from cellpoint.runtime.coco_results import labels_to_coco_results
        scores = {int(i): float(s) for i, s in zip(table["id"], table["score"])}
        for coco in labels_to_coco_results(labels, self.image_id, scores):
            coco["file_name"] = path.name
            if label:
                coco["plane"] = label
            self.coco_results.append(coco)

    def skip(self, path: Path, reason: str) -> None:
        with self._lock:
            self._skip(path, reason)

    def _skip(self, path: Path, reason: str) -> None:
        self.report["counts"]["skipped"] += 1
        self.report["skipped"].append({"input": str(path), "reason": reason})
        if reason != "done":
            self.progress.message(f"skipped {path}: {reason}")
        self.progress.image_finished(skipped=True)

    def fail(self, where: str, reason: str, count: bool = True) -> None:
        """Report a failed input (or plane): one line, the report's failures; `count`: also count the input
        as finished in the progress (False for a plane, counted with its input)."""
        with self._lock:
            self._fail(where, reason, count)

    def _fail(self, where: str, reason: str, count: bool) -> None:
        self.progress.message(f"error: {where}: {reason}")
        self.report["counts"]["failed"] += 1
        self.report["failures"].append({"input": where, "reason": reason})
        if count:
            self.progress.image_finished(failed=True)

    def write_images_table(self) -> None:
        try:
            write_rows_csv(self.out / IMAGES_TABLE, completion.all_rows(self.out))
        except OSError as error:
            raise OutputUnwritable(f"cannot write {describe_os_error(error)}") from None

    def finish(self, status: str, code: int, quiet: bool = False) -> None:
        """Write the images table and the final report; when `quiet`, swallow a further write error (the
        run is already ending on one)."""
        self.progress.close()
        try:
            self.write_images_table()
            self.writer.finish(self.report, status, code)
        except OutputUnwritable:
            if not quiet:
                raise


def _reason(path: Path, error: BaseException) -> str:
    """One line for an input's failure: the error's message without a repeated file name; for errors that
    are not cellpoint's own, their type too (a bug to report)."""
    from cellpoint.runtime.errors import CellpointError
    text = str(error).splitlines()[0] if str(error) else ""
    prefix = f"{path}: "
    if text.startswith(prefix):
        text = text[len(prefix):]
    if isinstance(error, (CellpointError, ValueError, OSError)):
        return text or type(error).__name__
    return f"unexpected {type(error).__name__}: {text} (please report this)"

"""Scale benchmarks of the runtime (issue "Runtime at every scale"):

    python benchmarks/scale.py --sections large --sides 2048 5120 10240 20480   # peak RSS and time vs side
    python benchmarks/scale.py --sections merge                                  # blockwise vs whole image
    python benchmarks/scale.py --sections throughput --images 200                # sequential vs --workers

1. large — a real DSB image (the bundled objectness-nuclei package's first sample) tiled up to side×side,
   written as a tiled zlib BigTIFF, segmented by `cellpoint segment FILE --out OUT` (default model, default
   settings) in a subprocess: peak RSS (the child's ru_maxrss), wall time, cells, s per Mpx.
2. merge — a 4,096² image of real content that fits in memory: the whole-image run vs the blockwise run
   (blocks of 1,024 network px) at the same diameter; the fraction of cells whose best match has IoU ≥ 0.95
   (both ways), and the rest listed.
3. throughput — a folder of real 520×704-class images (DSB's and DSB extra's 520×696 images, repeated to
   `--images`), `cellpoint segment` with --workers 1, 2 and --dask local:2 (two worker processes of one
   thread): images/s and whether the labels are identical; and the network time per image
   (onnxruntime alone on the same images at the same diameter), whose inverse is the target.

Writes benchmarks/results/scale_<section>.md (the command at the top) and .json."""
from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile

RESULTS = Path(__file__).parent / "results"


def sample_image() -> np.ndarray:
    """The default package's first bundled sample (a real DSB fluorescence image), as read."""
    from cellpoint.runtime.image_io import read_image
    from cellpoint.runtime.package import bundled_dir
    folder = bundled_dir() / "objectness-nuclei"
    card = json.loads((folder / "card.json").read_text())
    return read_image(folder / card["samples"][0]["input"])


def write_tiled(path: Path, sample: np.ndarray, side: int, tile: int = 1024) -> None:
    """`sample` repeated (mirrored to avoid seams) over side×side, written tile by tile as a tiled BigTIFF."""
    period = np.block([[sample, sample[:, ::-1]], [sample[::-1], sample[::-1, ::-1]]])
    ph, pw = period.shape

    def tiles():
        for y in range(0, side, tile):
            for x in range(0, side, tile):
                ys, xs = np.arange(y, y + tile) % ph, np.arange(x, x + tile) % pw
                yield np.ascontiguousarray(period[np.ix_(ys, xs)])
    tifffile.imwrite(path, tiles(), shape=(side, side), dtype=sample.dtype, tile=(tile, tile),
                     compression="zlib", bigtiff=True)


def run_cli(args: list[str]) -> tuple[float, int, str]:
    """Run `cellpoint <args>` in a child process: (wall seconds, that child's own peak RSS in MB, stderr)."""
    import os
    start = time.monotonic()
    with tempfile.TemporaryFile("w+") as err:
        child = subprocess.Popen([sys.executable, "-m", "cellpoint.runtime.cli", *args], stdout=subprocess.DEVNULL,
                                 stderr=err, text=True)
        _, status, usage = os.wait4(child.pid, 0)  # this child's rusage, not the maximum over all children
        child.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.monotonic() - start
        err.seek(0)
        stderr = err.read()
    if child.returncode != 0:
        raise RuntimeError(stderr[-2000:])
    return seconds, usage.ru_maxrss // 1024, stderr


def section_large(sides: list[int], work: Path) -> dict:
    sample = sample_image()
    rows = []
    for side in sides:
        path = work / f"slide_{side}.tif"
        write_tiled(path, sample, side)
        out = work / f"out_{side}"
        seconds, rss, _ = run_cli(["segment", str(path), "--out", str(out)])
        report = json.loads((out / "cellpoint_run.json").read_text())
        image = report["images"][0]
        rows.append({"side": side, "mpx": side * side / 1e6, "seconds": round(seconds, 1), "peak_rss_mb": rss,
                     "cells": image["cells"], "diameter_px": image["diameter_px"],
                     "path": "blocks" if "blocks" in image else "whole image",
                     "s_per_mpx": round(seconds / (side * side / 1e6), 3)})
        print(rows[-1], flush=True)
        path.unlink()
        shutil.rmtree(out)
    return {"rows": rows}


def best_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.astype(np.int64), b.astype(np.int64)
    both = (a > 0) & (b > 0)
    pairs, overlap = np.unique(np.stack([a[both], b[both]]), axis=1, return_counts=True)
    area_a, area_b = np.bincount(a.ravel()), np.bincount(b.ravel())
    iou = overlap / (area_a[pairs[0]] + area_b[pairs[1]] - overlap)
    best = np.zeros(int(a.max()) + 1)
    np.maximum.at(best, pairs[0], iou)
    return best[1:]


def section_merge(side: int, block: int) -> dict:
    from cellpoint.runtime import Segmenter
    from cellpoint.runtime.blockwise import segment_blockwise
    sample = sample_image()
    image = np.tile(sample, (-(-side // sample.shape[0]), -(-side // sample.shape[1])))[:side, :side]
    segmenter = Segmenter()
    estimated = segmenter.estimate_diameter(image) or segmenter.diameter
    labels = np.zeros(image.shape, np.uint32)
    start = time.monotonic()
    found = segment_blockwise(segmenter, image, labels, diameter=estimated, refine_diameter=False, block=block)
    block_s = time.monotonic() - start
    diameter = found.diameter  # the estimate moved onto the block grid (under 1 %); the whole run uses the same
    start = time.monotonic()
    whole = segmenter.segment(image, diameter=diameter, refine_diameter=False).labels
    whole_s = time.monotonic() - start
    forward, backward = best_iou(whole, labels), best_iou(labels, whole)
    return {"side": side, "block": block, "blocks": found.blocks, "diameter_px": round(diameter, 2),
            "cells_whole": int(whole.max()), "cells_blockwise": int(labels.max()),
            "whole_matched_iou95": float((forward >= 0.95).mean()),
            "blockwise_matched_iou95": float((backward >= 0.95).mean()),
            "whole_unmatched_iou50": int((forward < 0.5).sum()), "blockwise_unmatched_iou50": int((backward < 0.5).sum()),
            "whole_seconds": round(whole_s, 1), "blockwise_seconds": round(block_s, 1)}


def section_throughput(n_images: int, work: Path) -> dict:
    from cellpoint.runtime import Segmenter
    from cellpoint.runtime.image_io import read_image
    from cellpoint.training.datasets import list_samples, load_sample
    samples = [s for d in ("dsb2018_bbbc038", "dsb2018_bbbc038_extra") for s in list_samples(d, "all")
               if tuple(load_shape(s)) == (520, 696)]
    folder = work / "images"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k in range(n_images):
        image, _ = load_sample(samples[k % len(samples)])
        path = folder / f"img{k:04d}.tif"
        tifffile.imwrite(path, np.asarray(image))
        paths.append(path)
    segmenter = Segmenter()
    network = []
    for path in paths[:20]:
        image = read_image(path)
        x, _ = segmenter._network_input(segmenter.fit_channels(image)[0], segmenter.diameter)
        start = time.monotonic()
        segmenter._predict(x)
        network.append(time.monotonic() - start)
    rows = {"images": n_images, "distinct_images": min(n_images, len(samples)),
            "network_s_per_image": round(float(np.median(network)), 3)}
    reference = None
    for name, extra in (("workers_1", ["--workers", "1"]), ("workers_2", ["--workers", "2"]),
                        ("dask_local_2", ["--dask", "local:2"])):
        out = work / f"out_{name}"
        seconds, rss, _ = run_cli(["segment", str(folder), "--out", str(out), *extra])
        report = json.loads((out / "cellpoint_run.json").read_text())
        load = report["timings"]["load_s"]
        labels = {p.name: tifffile.imread(p) for p in sorted(out.glob("*_labels.tif"))}
        reference = reference or labels
        same = labels.keys() == reference.keys() and all(np.array_equal(labels[k], reference[k]) for k in labels)
        rows[name] = {"seconds": round(seconds, 1), "images_per_s": round(n_images / seconds, 2),
                      "images_per_s_after_load": round(n_images / (seconds - load), 2),
                      "peak_rss_mb_client": rss, "labels_identical_to_workers_1": bool(same)}
        print(name, rows[name], flush=True)
        shutil.rmtree(out)
    rows["target_images_per_s"] = round(1 / rows["network_s_per_image"], 2)
    return rows


def load_shape(sample) -> tuple[int, int]:
    """An image's (height, width) from its COCO entry."""
    from cellpoint.training.datasets import load_coco
    images = _coco_sizes(sample.dataset)
    return images[sample.image_id]


_SIZES: dict = {}


def _coco_sizes(dataset: str) -> dict:
    from cellpoint.training.datasets import load_coco
    if dataset not in _SIZES:
        _SIZES[dataset] = {im["id"]: (im["height"], im["width"]) for im in load_coco(dataset)["images"]}
    return _SIZES[dataset]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sections", default="large,merge,throughput")
    parser.add_argument("--sides", type=int, nargs="+", default=[2048, 5120, 10240, 20480])
    parser.add_argument("--merge-side", type=int, default=4096)
    parser.add_argument("--merge-block", type=int, default=1024)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--work", default=None, help="scratch folder (default: a temporary one)")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="cellpoint-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    command = "python benchmarks/scale.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    for section in args.sections.split(","):
        if section == "large":
            result = section_large(args.sides, work)
        elif section == "merge":
            result = section_merge(args.merge_side, args.merge_block)
        elif section == "throughput":
            result = section_throughput(args.images, work)
        else:
            raise SystemExit(f"unknown section {section!r}")
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / f"scale_{section}.json").write_text(json.dumps({"command": command, **result}, indent=1))
        (out / f"scale_{section}.md").write_text(f"# Scale: {section}\n\n```\n{command}\n```\n\n```json\n"
                                                 f"{json.dumps(result, indent=1)}\n```\n")
        print(f"wrote {out / f'scale_{section}.md'}", flush=True)


if __name__ == "__main__":
    main()

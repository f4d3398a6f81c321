"""Speed benchmark: seconds per image, per stage (read, normalise, network, per-cell graph, decode, write), median of
repeated runs, for onnxruntime (the deployed runtime) and the same network in eager PyTorch.

    python benchmarks/speed.py --package model_cards/objectness-nuclei --checkpoint runs/nuclei_points.pt
    python benchmarks/speed.py --package PKG --precision fp32 --precision int8 --diameter 24 --threads 2

Writes benchmarks/results/speed_<package>.md. Images: the package's first sample, tiled/cropped to
520×704 and 2048×2048 (real content at the density of the sample)."""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile

from cellpoint.runtime import Segmenter
from cellpoint.runtime.image_io import read_image, write_labels_tif
from cellpoint.runtime.normalize import normalize_percentile, to_channels_first
from cellpoint.runtime.tiling import predict_tiled

SIZES = [(520, 704), (2048, 2048)]


def make_image(sample: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    reps = (-(-shape[0] // sample.shape[0]), -(-shape[1] // sample.shape[1]))
    return np.tile(sample, reps)[:shape[0], :shape[1]]


def instrument(seg: Segmenter, engine) -> dict:
    """Point `seg` at `engine` (batch → {name: maps}) and wrap its stages with timers; returns the dict
    the timers add seconds to (normalise, network, per_cell: the package's per-cell graph — WSISPDR's
    contributions, LACSS's instances — if it has one)."""
    acc = {"normalise": 0.0, "network": 0.0, "per_cell": 0.0}
    seg._run = engine

    def timed(stage, fn):
        def call(*args, **kwargs):
            s = time.perf_counter()
            result = fn(*args, **kwargs)
            acc[stage] += time.perf_counter() - s
            return result
        return call

    seg._network_input = timed("normalise", seg._network_input)
    seg._predict = timed("network", seg._predict)
    for graph, session in list(seg._graphs.items()):
        class TimedSession:  # the decoders only call .run
            run = staticmethod(timed("per_cell", session.run))
        seg._graphs[graph] = TimedSession()
    return acc


def time_pipeline(seg: Segmenter, acc: dict, path: Path, out: Path, diameter: float | None = None) -> dict:
    """One end-to-end run of an instrumented segmenter; returns seconds per stage. decode is the
    segmentation time left after normalising, the main network and the per-cell graph."""
    for k in acc:
        acc[k] = 0.0
    t = {}
    s = time.perf_counter()
    image = read_image(path)
    t["read"] = time.perf_counter() - s
    s = time.perf_counter()
    labels, _ = seg.segment(image, diameter=diameter)
    segment = time.perf_counter() - s
    t.update(acc)
    t["decode"] = segment - sum(acc.values())
    s = time.perf_counter()
    write_labels_tif(out, labels)
    t["write"] = time.perf_counter() - s
    t["total"] = t["read"] + segment + t["write"]
    t["cells"] = int(labels.max())
    return t


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--package", default="model_cards/objectness-nuclei")
    parser.add_argument("--checkpoint", default=None, help="the package's checkpoint, for the PyTorch rows")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--tile", type=int, default=768, help="tile size (network px), as `cellpoint segment`")
    parser.add_argument("--precision", action="append", default=[],
                        help="onnxruntime rows for this precision of the main graph (repeatable; default: auto)")
    parser.add_argument("--diameter", type=float, default=None,
                        help="cell diameter given to segment (px): no scale estimate [default: none given]")
    parser.add_argument("--threads", type=int, default=None, help="onnxruntime intra-op threads [all cores]")
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()

    seg = Segmenter(args.package, device="cpu", tile=args.tile)
    sample_file = Path(args.package) / seg.package.card.samples[0].input
    sample = read_image(sample_file)
    engines = {}  # name: (precision, run; None = the segmenter's own session)
    for precision in args.precision or ["auto"]:
        chosen = Segmenter(args.package, device="cpu", tile=args.tile, precision=precision).precision
        engines["onnxruntime" + (f" {chosen}" if args.precision else "")] = (precision, None)
    if args.checkpoint:
        import torch
        from cellpoint.training.checkpoint import load_checkpoint
        from cellpoint.training.methods import get_method
        torch.set_num_threads(os.cpu_count() or 1)
        checkpoint = load_checkpoint(args.checkpoint)
        probe = normalize_percentile(to_channels_first(sample, checkpoint["model"]["in_channels"]))[None, :, :64, :64]
        plan = get_method(checkpoint["method"]).export(checkpoint, np.ascontiguousarray(probe))
        module, outputs = plan.module, plan.outputs

        def torch_run(batch):
            with torch.no_grad():
                result = module(torch.from_numpy(batch))
            return {o["name"]: t.numpy() for o, t in zip(outputs, result)}
        engines["PyTorch eager"] = ("fp32", torch_run)

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for shape in SIZES:
            path = Path(tmp) / f"img_{shape[0]}x{shape[1]}.tif"
            tifffile.imwrite(path, make_image(sample, shape))
            for engine, (precision, run) in engines.items():
                seg = Segmenter(args.package, device="cpu", tile=args.tile, threads=args.threads, precision=precision)
                acc = instrument(seg, run or seg._run)
                time_pipeline(seg, acc, path, Path(tmp) / "warm.tif", args.diameter)  # warm-up
                runs = [time_pipeline(seg, acc, path, Path(tmp) / "labels.tif", args.diameter)
                        for _ in range(args.repeats)]
                med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
                rows.append((f"{shape[0]}×{shape[1]}", engine, med))
                print(rows[-1][0], engine, {k: round(v, 4) for k, v in med.items()}, flush=True)

    name = Path(args.package).name
    lines = [f"# Speed: {name}", "",
             f"Median of {args.repeats} runs, seconds per image, {os.cpu_count()} CPU cores "
             f"({platform.processor() or platform.machine()}), onnxruntime CPU provider"
             + (f", {args.threads} threads" if args.threads else "")
             + (f", diameter {args.diameter:g} px given" if args.diameter else "") + ". "
             f"Command: `python benchmarks/speed.py --package {args.package}"
             + (f" --checkpoint {args.checkpoint}" if args.checkpoint else "")
             + "".join(f" --precision {p}" for p in args.precision)
             + (f" --diameter {args.diameter:g}" if args.diameter else "")
             + (f" --threads {args.threads}" if args.threads else "")
             + (f" --repeats {args.repeats}" if args.repeats != 7 else "") + "`", "",
             "| image | engine | read | normalise | network | per-cell graph (ms/cell) | decode | write | total | cells |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for size, engine, m in rows:
        contrib = (f"{m['per_cell']:.3f} ({1000 * m['per_cell'] / max(m['cells'], 1):.1f})"
                   if m["per_cell"] else "–")
        lines.append(f"| {size} | {engine} | {m['read']:.3f} | {m['normalise']:.3f} | {m['network']:.3f} | "
                     f"{contrib} | {m['decode']:.3f} | {m['write']:.3f} | **{m['total']:.3f}** | {m['cells']:.0f} |")
    lines += ["", "network: the main graph over all tiles; per-cell graph: the package's second graph, run per "
              "cell or batch of cells (WSISPDR's guided-backpropagation contributions, LACSS's instance masks; "
              "ms/cell = divided by the cells found); decode: the rest of segmentation (post-processing)."]
    Path(args.out).mkdir(parents=True, exist_ok=True)
    target = Path(args.out) / f"speed_{name}.md"
    target.write_text("\n".join(lines) + "\n")
    print(f"wrote {target}")


if __name__ == "__main__":
    main()

"""Speed of cellpoint against InstanSeg, side by side in one run, on the same images and the same CPU cores.

    python benchmarks/peers_speed.py
    python benchmarks/peers_speed.py --sizes 256x256 --repeats 1 --large-repeats 1 --out /tmp/peers_smoke

cellpoint: the default package as a user runs it, `Segmenter().segment(image)` (no diameter: it estimates and
refines). InstanSeg (`pip install --no-deps instanseg-torch==0.1.2`): its InstanSeg_UNet built by its own
`build_model_from_dict` with the hyper-parameters of its training script's defaults (layers 32-64-128-256,
batch norm, 2 coordinate + 2 sigma + 1 seed channels, pixel-classifier MLP width 5, feature engineering "0"),
one input channel (the grayscale images here; as its `single_channel_nuclei` model), random weights (its
pretrained weights are a download from GitHub, which this machine cannot reach), wrapped and scripted as its
own TorchScript export does (`InstanSeg_Torchscript` + `torch.jit.script`), then run through
`InstanSeg(...).eval_small_image(image, pixel_size=<the model's pixel size>)`: no rescaling, its own percentile
normalisation and its default postprocessing. Random weights make the postprocessing's amount of work unlike a
trained model's (the seed count is arbitrary), so InstanSeg's network time (normalise + pad + UNet, timed on its
own) is reported beside its end-to-end time; the network alone does not depend on the weights. A third
InstanSeg timing passes cellpoint's cell centres as InstanSeg's `precomputed_seeds`, so that its per-seed
postprocessing does about the amount of work a trained model's seeds would.

Images: the package's first sample, mirror-tiled to 520×704 and 2048×2048 (dtype as read). Each method is
warmed up once per image, then timed end to end: median of --repeats runs (--large-repeats for 2048²).
Writes OUT.md (command at the top) and OUT.json."""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from cellpoint.runtime import Segmenter
from machine import cpu_model  # benchmarks/machine.py (the script's folder is on sys.path)
from cellpoint.runtime.image_io import read_image

ROOT = Path(__file__).resolve().parents[1]


def mirror_tile(sample: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """`sample` repeated with alternate copies flipped (no seams), cropped to `shape`."""
    pad = [(0, max(0, shape[0] - sample.shape[0])), (0, max(0, shape[1] - sample.shape[1]))]
    pad += [(0, 0)] * (sample.ndim - 2)
    return np.pad(sample, pad, mode="symmetric")[:shape[0], :shape[1]]


INSTANSEG_CONFIG = {  # instanseg/scripts/train.py defaults, one input channel
    "model_str": "InstanSeg_UNet", "layers": (32, 64, 128, 256), "norm": "BATCH", "dim_in": 1,
    "dim_coords": 2, "n_sigma": 2, "dim_seeds": 1, "multihead": False, "cells_and_nuclei": False,
    "dropprob": 0.0, "mlp_width": 5, "feature_engineering": "0", "pixel_size": 0.5,
}


def build_instanseg(seed: int = 0):
    """InstanSeg's own model-building path with random weights; returns (InstanSeg inference object, scripted
    model, n_parameters)."""
    import contextlib
    import io

    from instanseg import InstanSeg
    from instanseg.utils.loss.instanseg_loss import InstanSeg as InstanSegMethod
    from instanseg.utils.loss.instanseg_loss import InstanSeg_Torchscript
    from instanseg.utils.model_loader import build_model_from_dict

    cfg = dict(INSTANSEG_CONFIG)
    with contextlib.redirect_stdout(io.StringIO()):
        model = build_model_from_dict(cfg, random_seed=seed)
        method = InstanSegMethod(n_sigma=cfg["n_sigma"], feature_engineering_function=cfg["feature_engineering"],
                                 dim_coords=cfg["dim_coords"], dim_seeds=cfg["dim_seeds"], device="cpu")
        model = method.initialize_pixel_classifier(model, MLP_width=cfg["mlp_width"])
    model.eval()
    n_params = sum(p.numel() for p in model.parameters())
    wrapped = InstanSeg_Torchscript(model, cells_and_nuclei=cfg["cells_and_nuclei"], pixel_size=cfg["pixel_size"],
                                    n_sigma=cfg["n_sigma"], dim_coords=cfg["dim_coords"], dim_seeds=cfg["dim_seeds"],
                                    feature_engineering_function=cfg["feature_engineering"],
                                    backbone_dim_in=cfg["dim_in"])
    with torch.jit.optimized_execution(should_optimize=True):
        scripted = torch.jit.script(wrapped)
    runner = InstanSeg(scripted, device="cpu", verbosity=0)
    return runner, scripted, n_params


def instanseg_network(scripted, image: np.ndarray) -> None:
    """InstanSeg's work before postprocessing, as eval_small_image + forward do it: float tensor, percentile
    normalisation, clamp, pad to a multiple of 16, UNet."""
    from instanseg.utils.tiling import _instanseg_padding
    from instanseg.utils.utils import percentile_normalize

    x = torch.from_numpy(image.astype(np.float32))[None, None]
    x = torch.stack([percentile_normalize(i) for i in x])
    torch.clamp_max_(x, 3)
    torch.clamp_min_(x, -2)
    x, _ = _instanseg_padding(x, extra_pad=0)
    with torch.no_grad():
        scripted.fcn(x)


def timed(fn, repeats: int) -> tuple[float, list[float], object]:
    fn()  # warm-up
    times, out = [], None
    for _ in range(repeats):
        s = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - s)
    return statistics.median(times), times, out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", default=["520x704", "2048x2048"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--large-repeats", type=int, default=3, help="repeats for images over 2 megapixels")
    parser.add_argument("--threads", type=int, default=2, help="torch threads for InstanSeg")
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/peers_speed"))
    args = parser.parse_args(argv)
    command = "python benchmarks/peers_speed.py" + ("".join(" " + a for a in (argv or sys.argv[1:])))

    torch.set_num_threads(args.threads)
    seg = Segmenter()
    package_dir = Path(seg.package.path) if hasattr(seg.package, "path") else ROOT / "model_cards/objectness-nuclei"
    sample_file = package_dir / seg.package.card.samples[0].input
    sample = read_image(sample_file)
    runner, scripted, n_params = build_instanseg()
    import instanseg
    import onnxruntime

    try:
        from importlib.metadata import version
        instanseg_version = version("instanseg-torch")
    except Exception:
        instanseg_version = getattr(instanseg, "__version__", "?")

    rows = []
    for size in args.sizes:
        h, w = (int(v) for v in size.lower().split("x"))
        image = mirror_tile(sample, (h, w))
        repeats = args.large_repeats if h * w > 2_000_000 else args.repeats
        print(f"{h}x{w} {image.dtype}: cellpoint ...", flush=True)
        cp_s, cp_times, cp_out = timed(lambda: seg.segment(image), repeats)
        cp_cells = int(len(np.unique(np.asarray(cp_out.labels))) - 1)
        print(f"  cellpoint {cp_s:.3f} s ({cp_cells} cells); InstanSeg ...", flush=True)
        is_s, is_times, is_out = timed(
            lambda: runner.eval_small_image(image, pixel_size=INSTANSEG_CONFIG["pixel_size"], return_image_tensor=False),
            repeats)
        is_cells = int(len(torch.unique(is_out)) - 1)
        net_s, net_times, _ = timed(lambda: instanseg_network(scripted, image), repeats)
        # the same call with its seeds fixed to cellpoint's cell centres: a trained model's number of seeds
        seeds = torch.from_numpy(np.stack([np.round(cp_out.table["centroid_y"]), np.round(cp_out.table["centroid_x"])],
                                          axis=1).astype(np.int64))
        sd_s, sd_times, sd_out = timed(
            lambda: runner.eval_small_image(image, pixel_size=INSTANSEG_CONFIG["pixel_size"], return_image_tensor=False,
                                            precomputed_seeds=seeds), repeats)
        sd_cells = int(len(torch.unique(sd_out)) - 1)
        print(f"  InstanSeg {is_s:.3f} s end to end ({is_cells} instances), network {net_s:.3f} s, "
              f"with {len(seeds)} given seeds {sd_s:.3f} s ({sd_cells} instances)", flush=True)
        rows.append({
            "image": f"{h}×{w}", "dtype": str(image.dtype), "repeats": repeats,
            "cellpoint_s": cp_s, "cellpoint_runs": cp_times, "cellpoint_cells": cp_cells,
            "instanseg_s": is_s, "instanseg_runs": is_times, "instanseg_instances": is_cells,
            "instanseg_network_s": net_s, "instanseg_network_runs": net_times,
            "instanseg_postprocess_s": max(0.0, is_s - net_s),
            "instanseg_seeded_s": sd_s, "instanseg_seeded_runs": sd_times, "instanseg_seeds": int(len(seeds)),
            "instanseg_seeded_instances": sd_cells,
            "ratio": is_s / cp_s, "ratio_network_only": net_s / cp_s, "ratio_seeded": sd_s / cp_s,
        })

    env = {
        "cpu": cpu_model(), "cores": os.cpu_count(), "platform": platform.platform(),
        "python": platform.python_version(), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
        "onnxruntime": onnxruntime.__version__, "instanseg_torch": instanseg_version,
        "cellpoint_package": seg.package.card.name if hasattr(seg.package.card, "name") else str(package_dir),
        "cellpoint_precision": getattr(seg, "precision", None),
        "sample": str(sample_file.relative_to(ROOT) if sample_file.is_absolute() else sample_file),
        "instanseg_model": {**INSTANSEG_CONFIG, "parameters": n_params, "weights": "random (seed 0)"},
        "date_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"command": command, "environment": env, "rows": rows}, indent=2))

    cfg = INSTANSEG_CONFIG
    lines = [
        f"`{command}`", "",
        "# Speed — cellpoint vs InstanSeg, side by side in one run", "",
        f"{env['cores']} CPU cores ({env['cpu']}), Python {env['python']}, torch {env['torch']} "
        f"({env['torch_threads']} threads), onnxruntime {env['onnxruntime']}, instanseg-torch {env['instanseg_torch']}; "
        f"{env['date_utc']}.", "",
        f"Images: `{env['sample']}` mirror-tiled; median of {args.repeats} runs ({args.large_repeats} for 2048²) "
        "after one warm-up, seconds per image end to end (image array in → labels out).", "",
        f"- cellpoint: `Segmenter().segment(image)` — default package ({env['cellpoint_package']}), default settings "
        f"(no diameter: estimated and refined), onnxruntime CPU, precision {env['cellpoint_precision']}.",
        f"- InstanSeg: `InstanSeg_UNet` (layers {'-'.join(map(str, cfg['layers']))}, {cfg['norm'].lower()} norm, "
        f"{cfg['dim_in']} input channel, {n_params:,} parameters incl. its pixel-classifier MLP) built by its own "
        "`build_model_from_dict`, **random weights**, scripted as its TorchScript export does, run by "
        f"`eval_small_image(image, pixel_size={cfg['pixel_size']})` (= the model's pixel size: no rescaling), default "
        "normalisation and postprocessing. \"network\" = its normalise + pad + UNet timed alone (independent of the "
        "weights); \"postprocess\" = end to end − network, whose amount of work depends on the (random) seeds. "
        "\"seeded\" = the same end-to-end call with `precomputed_seeds` = cellpoint's cell centres (InstanSeg's own "
        "option), so its per-seed postprocessing does a trained model's amount of work (one 64×64 window per seed).", "",
        "| image | cellpoint s | cells | InstanSeg s | network s | postprocess s | instances | InstanSeg seeded s "
        "| ratio InstanSeg / cellpoint | ratio, seeded | ratio, network only |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['image']} {r['dtype']} | {r['cellpoint_s']:.3f} | {r['cellpoint_cells']} | "
                     f"{r['instanseg_s']:.3f} | {r['instanseg_network_s']:.3f} | {r['instanseg_postprocess_s']:.3f} | "
                     f"{r['instanseg_instances']} | {r['instanseg_seeded_s']:.3f} | **{r['ratio']:.1f}×** | "
                     f"{r['ratio_seeded']:.1f}× | {r['ratio_network_only']:.1f}× |")
    lines += ["", "Target: ≥ 20× faster than InstanSeg end to end: " + ", ".join(
        f"{r['image']} {'met' if r['ratio'] >= 20 else 'not met'} ({r['ratio']:.1f}×)" for r in rows) + "."]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

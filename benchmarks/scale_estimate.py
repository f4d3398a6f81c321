"""How well a scale model estimates the cells' diameter: on val images of each data set, resized by several
factors, the median error of the estimate against each image's own diameter (from its masks: the average
cell's, 2·sqrt(foreground area / (π·count)), the quantity the model learns).

    python benchmarks/scale_estimate.py --scale-model runs/scale_v1.pt --dataset coelho2009_u2os_nih3t3 ...

Writes benchmarks/results/scale_estimate_<name>.md."""
from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from cellpoint.runtime.card import RobustPercentile
from cellpoint.runtime.normalize import normalize
from cellpoint.runtime.scale import ScaleParams, estimate_diameter
from cellpoint.training.datasets import list_samples, load_sample, parse_dataset_spec
from cellpoint.training.scale_model import build_scale_network, image_diameter, load_scale_checkpoint, predict_log_ratio

FACTORS = (0.25, 0.5, 1.0, 2.0, 3.0, 4.0)


def errors_for(net, params: ScaleParams, dataset: str, kinds, factors, max_side: int = 4096) -> dict:
    """{factor: [|log2(estimate / true)|, ...]} over the val images whose resized cells are 6–200 px."""
    def run(tiles):
        out = predict_log_ratio(net, tiles)
        return out[:, 0], out[:, 1]
    found = {f: [] for f in factors}
    for sample in list_samples(dataset, "val", kinds):
        image, labels = load_sample(sample)
        true = image_diameter(labels)
        norm = normalize(image[None], RobustPercentile())[0]
        for f in factors:
            h, w = norm.shape
            if not 6 <= true * f <= 200 or max(h, w) * f > max_side:
                continue
            size = (max(1, round(w * f)), max(1, round(h * f)))
            resized = cv2.resize(norm, size, interpolation=cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR)
            estimate = estimate_diameter(resized, run, params)
            found[f].append(np.inf if estimate is None else abs(np.log2(estimate / (true * f))))
    return found


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale-model", required=True)
    parser.add_argument("--dataset", action="append", required=True, metavar="NAME[:KIND,..]")
    parser.add_argument("--name", default=None)
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()
    checkpoint = load_scale_checkpoint(args.scale_model)
    net = build_scale_network(checkpoint)
    params = ScaleParams(canonical_px=float(checkpoint["canonical_px"]))
    name = args.name or Path(args.scale_model).stem
    lines = [f"# Diameter estimate of the scale model {name} (val images)", "",
             "Command: `python benchmarks/scale_estimate.py --scale-model " + args.scale_model + "".join(
                 f" --dataset {d}" for d in args.dataset) + "`", "",
             "Median |error| of the estimated diameter (%) against each image's own (its masks' average cell), "
             "val images resized by each factor (only where the resized cells are 6–200 px); n = images.", "",
             "| data set | " + " | ".join(f"×{f:g}" for f in FACTORS) + " |", "|---|" + "---|" * len(FACTORS)]
    for spec in args.dataset:
        errors = errors_for(net, params, *parse_dataset_spec(spec), FACTORS)
        cells = []
        for f in FACTORS:
            e = np.asarray(errors[f])
            cells.append(f"{100 * (2 ** np.median(e) - 1):.0f}% (n={e.size})" if e.size else "–")
        lines.append(f"| {spec} | " + " | ".join(cells) + " |")
        print(lines[-1], flush=True)
    out = Path(args.out) / f"scale_estimate_{name}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

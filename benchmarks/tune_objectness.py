"""Grid search of the objectness decay w per data set, as the paper tunes its objectness parameters.

Scores the objectness regions grown from each image's clicks (region where Obj > 0.5, one instance per
click) against the masks by F1 at IoU 0.5, on a subset of train images (every `--stride`-th).

    python benchmarks/tune_objectness.py

Writes benchmarks/results/tune_objectness.md; the chosen values live in training/methods/objectness/config.py."""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from cellpoint.runtime.normalize import normalize_percentile
from cellpoint.training.datasets import list_samples, load_sample, parse_dataset_spec
from cellpoint.training.evaluation import matching_metrics
from cellpoint.training.methods.objectness.regions import anisotropic_diffusion, grow_regions
from cellpoint.training.weak_labels import points_from_labels

GRID = {"dsb2018_bbbc038:gray_dark": (4, [100, 150, 200, 250, 300]),
        "coelho2009_u2os_nih3t3": (8, [60, 75, 90, 95, 100, 110, 125, 150])}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results/tune_objectness.md")
    args = parser.parse_args()
    lines = ["# Objectness decay w: F1@0.5 of the objectness regions on train images", "",
             "Command: `python benchmarks/tune_objectness.py` (Perona–Malik diffusion: the defaults of "
             "`training/methods/objectness/regions.py`)", "", "| data set | train images used | w → F1@0.5 |", "|---|---|---|"]
    for spec, (stride, ws) in GRID.items():
        name, kinds = parse_dataset_spec(spec)
        grown = []
        for sample in list_samples(name, "train", kinds)[::stride]:
            image, gt = load_sample(sample)
            clicks = np.round(points_from_labels(gt, "centroid", 0.0, np.random.default_rng(0))[:, ::-1]).astype(int)
            dist, region = grow_regions(anisotropic_diffusion(normalize_percentile(image[None])[0]), clicks)
            grown.append((dist, region, gt))
        scores = []
        for w in ws:
            preds = [np.where(np.exp(-w * d) > 0.5, r + 1, 0).astype(np.uint32) for d, r, _ in grown]
            f1 = matching_metrics([g for *_, g in grown], preds, thresholds=np.array([0.5]))["f1_50"]
            scores.append(f"{w}: {f1:.3f}")
        lines.append(f"| {spec} | {len(grown)} | " + ", ".join(scores) + " |")
        print(lines[-1], flush=True)
    Path(args.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

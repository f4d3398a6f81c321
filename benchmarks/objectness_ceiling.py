"""How good is the teacher? Scores the objectness maps grown from the val images' own clicks, taken as
instances directly (each click's region where Obj > 0.5), with the same metrics as the accuracy benchmark.

    python benchmarks/objectness_ceiling.py

A network trained on these maps inherits their errors; this measures the labels, not a model."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from cellpoint.runtime.normalize import normalize_percentile
from cellpoint.training.datasets import list_samples, load_sample, parse_dataset_spec
from cellpoint.training.evaluation import matching_metrics
from cellpoint.training.methods.objectness.regions import objectness_targets
from cellpoint.training.methods.objectness.config import OBJECTNESS_W
from cellpoint.training.weak_labels import points_from_labels

SETS = ["dsb2018_bbbc038:gray_dark", "coelho2009_u2os_nih3t3"]


def main():
    lines = ["# Objectness maps as instances (the teacher's ceiling)", "",
             "Val images; clicks at the mask centroids (as in training); instance = the click's region where "
             "Obj > 0.5, at the w used for training. Command: `python benchmarks/objectness_ceiling.py`", "",
             "| data set (val) | w | F1@0.5 | mean F1 (0.1–0.9) | mean Dice |", "|---|---|---|---|---|"]
    for spec in SETS:
        name, kinds = parse_dataset_spec(spec)
        w = OBJECTNESS_W[name]
        gts, preds = [], []
        for sample in list_samples(name, "val", kinds):
            image, gt = load_sample(sample)
            clicks = points_from_labels(gt, "centroid", 0.0, np.random.default_rng(0))[:, ::-1]
            obj, _, region = objectness_targets(normalize_percentile(image[None])[0], np.round(clicks).astype(int), w)
            gts.append(gt)
            preds.append(np.where(obj > 0.5, region + 1, 0).astype(np.uint32))
        m = matching_metrics(gts, preds)
        lines.append(f"| {spec} | {w:g} | {m['f1_50']:.3f} | {m['f1_mean']:.3f} | {m['mean_dice']:.3f} |")
        print(lines[-1], flush=True)
    out = Path("benchmarks/results/objectness_ceiling.md")
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

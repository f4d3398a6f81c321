"""How good are the labels a machine makes from the image itself (LACSS's annotation-free path)?

    python benchmarks/machine_labels.py --dataset dsb2018_bbbc038:gray_dark --dataset coelho2009_u2os_nih3t3

On each data set's train split (the images the annotation-free models train on), compares with the
human masks: the DoG nucleus locations (σ 4.2 and 5 px scaled by the data set's typical diameter / 14,
as `cellpoint train --placement nuclei-dog` makes them) — precision = share of locations inside a mask
that no earlier (stronger) location already took, recall = share of masks that received one; and the
automatically chosen graph-cut foreground — its IoU with the masks' union, for the choice by agreement
with the DoG locations (what training uses), by edge contrast (the fallback without locations), and for
the best of the five candidates (what a person picking among them, as in the paper, could reach). Writes
benchmarks/results/machine_labels.md."""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from cellpoint.training.datasets import list_samples, load_sample, parse_dataset_spec
from cellpoint.training.machine_labels import choose_foreground, foreground_candidates, nuclei_locations
from cellpoint.training.validate import dataset_diameter


def location_scores(labels: np.ndarray, xy: np.ndarray) -> tuple[int, int, int]:
    """(locations that hit a mask not yet taken, locations, masks) for xy float (K,2) strongest first."""
    rc = np.floor(np.asarray(xy, np.float64)[:, ::-1] + 0.5).astype(int)
    ids = labels[rc[:, 0].clip(0, labels.shape[0] - 1), rc[:, 1].clip(0, labels.shape[1] - 1)]
    hits = len(set(int(i) for i in ids if i > 0))
    return hits, len(xy), len(np.unique(labels[labels > 0]))


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", action="append", required=True, metavar="NAME[:KIND,..]")
    args = parser.parse_args()
    lines = ["# Machine-made labels vs the human masks (train splits)", "",
             "Command: `python benchmarks/machine_labels.py " + " ".join(f"--dataset {d}" for d in args.dataset)
             + "`", "", "| data set (train) | images | DoG locations: precision | recall | locations / masks | "
             "foreground IoU: automatic choice by the locations | by edge contrast | best of five |",
             "|---|---|---|---|---|---|---|---|"]
    for spec in args.dataset:
        name, kinds = parse_dataset_spec(spec)
        f = dataset_diameter(name, kinds) / 14.0
        hits = found = masks = 0
        by_locations, by_edges, best = [], [], []
        samples = list_samples(name, "train", kinds)
        for sample in samples:
            image, labels = load_sample(sample)
            image = image.mean(-1) if image.ndim == 3 else image
            xy = nuclei_locations(image, 4.2 * f, 5.0 * f, 0.1)
            h, n, m = location_scores(labels, xy)
            hits, found, masks = hits + h, found + n, masks + m
            candidates, _ = foreground_candidates(image)
            truth = labels > 0
            by_locations.append(iou(candidates[choose_foreground(image, candidates, xy)], truth))
            by_edges.append(iou(candidates[choose_foreground(image, candidates)], truth))
            best.append(max(iou(c, truth) for c in candidates))
        lines.append(f"| {spec} | {len(samples)} | {hits / max(found, 1):.3f} | {hits / max(masks, 1):.3f} | "
                     f"{found} / {masks} | {np.mean(by_locations):.3f} | {np.mean(by_edges):.3f} | {np.mean(best):.3f} |")
        print(lines[-1], flush=True)
    lines += ["", "Foreground IoU: mean over images."]
    out = Path("benchmarks/results/machine_labels.md")
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

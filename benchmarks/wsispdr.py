"""WSISPDR accuracy in the layout of the paper's Table 1 (detection F-measure, mean Dice), plus the COCO
mask AP / AP50 of the foundation's evaluator, on shared val splits.

    python benchmarks/wsispdr.py --package "clicks=model_cards/wsispdr-cells-phase" \
        --dataset usiigaci_phase_contrast [--name wsispdr-cells-phase]

Detection F-measure: the centroids of the detected centre regions S_u (the detection stage, before any
graph-cut) matched to GT cells; a detection is a true positive when it falls inside a GT mask that no
other detection has claimed: F = 2·TP / (detections + GT cells). Mean Dice: WSISPDR's mDice over GT
cells (evaluation.matching_metrics). Every image is segmented at the data set's typical cell diameter
(median over its train images). Writes benchmarks/results/wsispdr_<name>.md and .json."""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np

from cellpoint.runtime import Segmenter
from cellpoint.runtime.decoders.detection_response import detect_cells
from cellpoint.training.datasets import list_samples, load_coco, load_sample, parse_dataset_spec
from cellpoint.training.evaluation import evaluate, gt_label_image
from cellpoint.training.validate import dataset_diameter

COLUMNS = [("det_f", "detection F"), ("det_precision", "det. precision"), ("det_recall", "det. recall"),
           ("mean_dice", "mean Dice"), ("AP", "mask AP"), ("AP50", "AP50"), ("f1_50", "F1@0.5"),
           ("seconds_per_image", "s / image")]


def detections(segmenter: Segmenter, image: np.ndarray, diameter: float) -> np.ndarray:
    """Centroids (row, col) in image px of the centre regions the package detects. float64 (K,2)."""
    x, scale = segmenter._network_input(image, diameter)
    likelihood = segmenter._predict(x)["likelihood"][0]
    p = segmenter.decoder_params
    regions = detect_cells(likelihood, p.detection_threshold, int(p.detection_min_area))
    k = int(regions.max(initial=0))
    rows, cols = np.nonzero(regions)
    ids = regions[rows, cols]
    count = np.bincount(ids, minlength=k + 1)[1:]
    cy = np.bincount(ids, weights=rows, minlength=k + 1)[1:] / np.maximum(count, 1)
    cx = np.bincount(ids, weights=cols, minlength=k + 1)[1:] / np.maximum(count, 1)
    return (np.stack([cy, cx], 1) + 0.5) / scale - 0.5


def detection_counts(gt: np.ndarray, points_rc: np.ndarray) -> tuple[int, int, int]:
    """(true positives, detections, GT cells): a point inside a GT mask not yet claimed is a TP."""
    h, w = gt.shape
    claimed = set()
    for r, c in np.round(points_rc).astype(int):
        if 0 <= r < h and 0 <= c < w and gt[r, c] and gt[r, c] not in claimed:
            claimed.add(int(gt[r, c]))
    return len(claimed), len(points_rc), len(np.unique(gt[gt > 0]))


def measure(segmenter: Segmenter, dataset: str, kinds, diameter: float) -> dict:
    samples = list_samples(dataset, "val", kinds)
    coco = load_coco(dataset)
    preds, tp, n_det, n_gt, seconds = {}, 0, 0, 0, 0.0
    for s in samples:
        image, _ = load_sample(s)
        start = time.perf_counter()
        preds[s.image_id], _ = segmenter.segment(image, diameter=diameter)
        seconds += time.perf_counter() - start
        t, d, g = detection_counts(gt_label_image(coco, s.image_id), detections(segmenter, image, diameter))
        tp, n_det, n_gt = tp + t, n_det + d, n_gt + g
    metrics = {k: v for k, v in evaluate(coco, preds, image_ids=[s.image_id for s in samples]).items()
               if not isinstance(v, dict)}
    metrics.update({"det_f": 2 * tp / (n_det + n_gt) if n_det + n_gt else float("nan"),
                    "det_precision": tp / n_det if n_det else float("nan"),
                    "det_recall": tp / n_gt if n_gt else float("nan"),
                    "seconds_per_image": seconds / len(samples), "diameter_px": diameter})
    return metrics


def fmt(v) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--package", action="append", required=True, metavar="LABEL=DIR")
    parser.add_argument("--dataset", action="append", required=True, metavar="NAME[:KIND,..]")
    parser.add_argument("--name", default="wsispdr")
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()
    results = {}
    for spec in args.dataset:
        name, kinds = parse_dataset_spec(spec)
        diameter = round(dataset_diameter(name, kinds), 1)
        for entry in args.package:
            label, _, folder = entry.partition("=")
            m = measure(Segmenter(folder, device="cpu"), name, kinds, diameter)
            results.setdefault(spec, {})[label] = m
            print(spec, label, {k: fmt(m.get(k)) for k, _ in COLUMNS}, flush=True)
    lines = [f"# WSISPDR accuracy: {args.name}", "",
             "Val splits, segmented by each package with the runtime (onnxruntime: detection network, then "
             "guided backpropagation per detected cell, then one PyMaxflow graph-cut per cell). Command:", "",
             "```", f"python benchmarks/wsispdr.py --name {args.name} "
             + " ".join(f'--package "{p}"' for p in args.package) + " "
             + " ".join(f"--dataset {d}" for d in args.dataset), "```", "",
             "| data set (val) | training labels | diameter px | " + " | ".join(c[1] for c in COLUMNS) + " |",
             "|---|---|---|" + "---|" * len(COLUMNS)]
    for spec, by_label in results.items():
        for label, m in by_label.items():
            lines.append(f"| {spec} | {label} | {m['diameter_px']} | " + " | ".join(fmt(m.get(k)) for k, _ in COLUMNS) + " |")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"wsispdr_{args.name}.md").write_text("\n".join(lines) + "\n")
    (out / f"wsispdr_{args.name}.json").write_text(json.dumps(results, indent=1))
    print(f"wrote {out / f'wsispdr_{args.name}.md'}")


if __name__ == "__main__":
    main()

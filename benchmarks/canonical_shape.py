"""Canonical-shape ablation in the layout of the paper's Table 1: with and without the count loss (one
package each) and with and without the containment merge (+P, a decoder switch), on shared val splits.

    python benchmarks/canonical_shape.py --package "Ours=runs/shape-nocount" \
        --package "Ours + L_cnt=model_cards/shape-nuclei" \
        --dataset dsb2018_bbbc038:gray_dark --dataset coelho2009_u2os_nih3t3

Image IoU / Dice: foreground of the label image against the union of the GT masks, averaged over images.
F1@0.5 and F1_mean (IoU 0.1, 0.2, …, 1.0, the paper's) from one-to-one matching; mask AP from pycocotools
at LIVECell's settings. Every image is segmented at the data set's typical diameter (median over its
train images, from its masks; with `--start-diameter foreground-count` from the weak labels alone,
2·sqrt(foreground area / (π·count))) and, in the refined mode, again at the size of the cells found.
Writes benchmarks/results/NAME.md and .json (NAME: --name, default canonical_shape)."""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from cellpoint.runtime import Segmenter
from cellpoint.training.datasets import parse_dataset_spec
from cellpoint.training.validate import dataset_diameter, evaluate_segmenter, weak_label_diameter

COLUMNS = [("image_iou", "image IoU"), ("image_dice", "image Dice"), ("f1_50", "F1@0.5"),
           ("f1_mean_10", "F1_mean (0.1–1.0)"), ("AP", "mask AP"), ("AP50", "AP50"), ("mean_dice", "mean Dice"),
           ("n_pred", "instances"), ("n_gt", "GT instances")]


def fmt(v) -> str:
    if isinstance(v, int):
        return str(v)
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--package", action="append", required=True, metavar="LABEL=DIR")
    parser.add_argument("--dataset", action="append", required=True, metavar="NAME[:KIND,..]")
    parser.add_argument("--start-diameter", choices=["masks", "foreground-count"], default="masks",
                        help="where the data set's typical diameter comes from (median over train images)")
    parser.add_argument("--name", default="canonical_shape", help="results file stem")
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()

    results = {}
    for spec in args.dataset:
        name, kinds = parse_dataset_spec(spec)
        start = dataset_diameter if args.start_diameter == "masks" else weak_label_diameter
        diameter = round(start(name, kinds), 1)
        for refine in (False, True):
            for entry in args.package:
                label, _, folder = entry.partition("=")
                segmenter = Segmenter(folder, device="cpu")
                merge_ratio = segmenter.decoder_params.containment_merge
                for merge in (False, True):
                    variant = segmenter.with_decoder_params(containment_merge=merge_ratio if merge else None)
                    metrics = evaluate_segmenter(variant, name, kinds, "val", diameter, refine)
                    key = f"{label}{' + P' if merge else ''} | {'refined per image' if refine else 'fixed'}"
                    results.setdefault(spec, {})[key] = {k: v for k, v in metrics.items() if not isinstance(v, dict)}
                    print(spec, key, {k: fmt(results[spec][key].get(k)) for k, _ in COLUMNS}, flush=True)

    lines = ["# Canonical shape: count loss and containment merge (the paper's Table 1 layout)", "",
             "Val splits, segmented by each exported package with the runtime (onnxruntime + numpy), rendered "
             "at the image's own resolution. `+ P` = containment merge (|b ∩ m| / |m| ≥ 0.5). Command:", "",
             "```", "python benchmarks/canonical_shape.py "
             + " ".join(f'--package "{p}"' for p in args.package) + " "
             + " ".join(f"--dataset {d}" for d in args.dataset)
             + (f" --start-diameter {args.start_diameter}" if args.start_diameter != "masks" else "")
             + (f" --name {args.name}" if args.name != parser.get_default("name") else ""), "```", "",
             "| data set (val) | model | diameter mode | start diameter px | " + " | ".join(c[1] for c in COLUMNS) + " |",
             "|---|---|---|---|" + "---|" * len(COLUMNS)]
    for spec, by_label in results.items():
        for label, m in by_label.items():
            model, mode = label.split(" | ")
            lines.append(f"| {spec} | {model} | {mode} | {m['diameter_px']} | "
                         + " | ".join(fmt(m.get(k)) for k, _ in COLUMNS) + " |")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    (out / f"{args.name}.json").write_text(json.dumps(results, indent=1))
    print(f"wrote {out / (args.name + '.md')}")


if __name__ == "__main__":
    main()

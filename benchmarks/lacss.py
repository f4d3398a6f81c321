"""LACSS accuracy as in the paper: AP50, AP75, mAP (IoU 0.50:0.95) and FNR (at 0.5, and averaged over
0.50:0.95 as AFNR) on shared val splits, for packages trained with different supervision.

    python benchmarks/lacss.py --name lacss-nuclei --reference "full masks" \
        --package "full masks=runs/lacss-full" --package "weak + aux=runs/lacss-weak" \
        --dataset dsb2018_bbbc038:gray_dark --dataset coelho2009_u2os_nih3t3

Every image is segmented by the runtime at the data set's typical cell diameter (median over its train
images). "mAP vs reference" divides each row's mAP by the --reference package's on the same data set
(the issue's target: weak + aux >= 90% of full). Writes benchmarks/results/lacss_<name>.md and .json."""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

from cellpoint.runtime import Segmenter
from cellpoint.training.datasets import parse_dataset_spec
from cellpoint.training.validate import dataset_diameter, evaluate_segmenter

COLUMNS = [("AP50", "AP50"), ("AP75", "AP75"), ("AP", "mAP"), ("fnr_50", "FNR@0.5"), ("afnr", "AFNR"),
           ("f1_50", "F1@0.5"), ("mean_dice", "mean Dice"), ("seconds_per_image", "s / image")]


def fmt(v) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--package", action="append", required=True, metavar="LABEL=DIR")
    parser.add_argument("--dataset", action="append", required=True, metavar="NAME[:KIND,..]")
    parser.add_argument("--reference", default=None, help="LABEL whose mAP the others are divided by")
    parser.add_argument("--name", default="lacss")
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()
    results = {}
    for spec in args.dataset:
        name, kinds = parse_dataset_spec(spec)
        diameter = round(dataset_diameter(name, kinds), 1)
        for entry in args.package:
            label, _, folder = entry.partition("=")
            start = time.perf_counter()
            m = evaluate_segmenter(Segmenter(folder, device="cpu"), name, kinds, "val", diameter)
            m = {k: v for k, v in m.items() if not isinstance(v, dict)}
            m["seconds_per_image"] = (time.perf_counter() - start) / max(1, m["n_images"])
            results.setdefault(spec, {})[label] = m
            print(spec, label, {k: fmt(m.get(k)) for k, _ in COLUMNS}, flush=True)
    lines = [f"# LACSS accuracy: {args.name}", "",
             "Val splits, segmented by each package with the runtime (onnxruntime: location proposals and "
             "features, then the per-location instance graph). pycocotools at LIVECell's settings; FNR with "
             "one-to-one matching (AFNR: mean over IoU 0.50:0.95). Command:", "",
             "```", f"python benchmarks/lacss.py --name {args.name}"
             + (f' --reference "{args.reference}"' if args.reference else "") + " "
             + " ".join(f'--package "{p}"' for p in args.package) + " "
             + " ".join(f"--dataset {d}" for d in args.dataset), "```", "",
             "| data set (val) | training labels | diameter px | " + " | ".join(c[1] for c in COLUMNS)
             + " | mAP vs reference |", "|---|---|---|" + "---|" * (len(COLUMNS) + 1)]
    for spec, by_label in results.items():
        ref = by_label.get(args.reference, {}).get("AP") if args.reference else None
        for label, m in by_label.items():
            ratio = m["AP"] / ref if ref else float("nan")
            lines.append(f"| {spec} | {label} | {m['diameter_px']} | "
                         + " | ".join(fmt(m.get(k)) for k, _ in COLUMNS) + f" | {fmt(ratio)} |")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"lacss_{args.name}.md").write_text("\n".join(lines) + "\n")
    (out / f"lacss_{args.name}.json").write_text(json.dumps(results, indent=1))
    print(f"wrote {out / f'lacss_{args.name}.md'}")


if __name__ == "__main__":
    main()

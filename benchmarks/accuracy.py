"""Accuracy benchmark: model packages measured with the runtime on shared val splits.

    python benchmarks/accuracy.py --name objectness-nuclei \
        --package "points=model_cards/objectness-nuclei" --package "full masks=runs/objectness-nuclei-full" \
        --dataset dsb2018_bbbc038:gray_dark --dataset coelho2009_u2os_nih3t3

Each image is segmented with `diameter` = the data set's typical cell diameter (median over its train
images), as a user states the size of their cells; in the "refined" mode the runtime then measures each
image's cells and segments again at their size (`refine_diameter=True`). With `--precision P` (repeatable:
fp32, int8, fp16) each package is measured with each of those precisions of its main graph that it ships,
labelled "LABEL (P)"; without, as the runtime picks ("auto"). Writes benchmarks/results/accuracy_<name>.md
and .json."""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from cellpoint.runtime import Segmenter, load_package
from cellpoint.training.datasets import parse_dataset_spec
from cellpoint.training.validate import dataset_diameter, evaluate_segmenter

COLUMNS = [("AP", "mask AP"), ("AP50", "AP50"), ("AP75", "AP75"), ("APs", "APs"), ("APm", "APm"), ("APl", "APl"),
           ("box_AP", "box AP"), ("f1_50", "F1@0.5"), ("f1_mean", "mean F1 (0.1–0.9)"), ("mean_dice", "mean Dice"),
           ("fnr_50", "FNR@0.5"), ("afnr", "AFNR")]


def fmt(v) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True)
    parser.add_argument("--package", action="append", required=True, metavar="LABEL=DIR")
    parser.add_argument("--dataset", action="append", required=True, metavar="NAME[:KIND,..]")
    parser.add_argument("--reference", default=None, help="LABEL whose F1@0.5 the others are compared to")
    parser.add_argument("--precision", action="append", default=[], choices=["fp32", "int8", "fp16"],
                        help="measure each package with this precision of its main graph (repeatable)")
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()

    results = {}
    for spec in args.dataset:
        name, kinds = parse_dataset_spec(spec)
        diameter = round(dataset_diameter(name, kinds), 1)
        for refine in (False, True):
            for entry, precision in [(e, p) for e in args.package for p in args.precision or ["auto"]]:
                label, _, folder = entry.partition("=")
                if precision != "auto" and precision not in load_package(folder).precisions:
                    print(f"{folder} ships no {precision} variant: skipped")
                    continue
                segmenter = Segmenter(folder, device="cpu", precision=precision)
                label = label if precision == "auto" else f"{label} ({precision})"
                metrics = evaluate_segmenter(segmenter, name, kinds, "val", diameter, refine)
                key = f"{label} | {'refined per image' if refine else 'fixed'}"
                results.setdefault(spec, {})[key] = {k: v for k, v in metrics.items() if not isinstance(v, dict)}
                print(spec, key, {k: fmt(results[spec][key].get(k)) for k, _ in COLUMNS}, flush=True)

    reference = args.reference or args.package[-1].partition("=")[0]
    lines = [f"# Accuracy: {args.name}", "",
             "Val split of each data set, segmented by the exported package with the runtime (onnxruntime), "
             "scored with pycocotools at LIVECell's settings (maxDets 2000; small < 324 px² < medium < 961 px² "
             "< large) and one-to-one IoU matching. Command:", "",
             "```", "python benchmarks/accuracy.py --name " + args.name + " "
             + " ".join(f'--package "{p}"' for p in args.package) + " "
             + (f'--reference "{args.reference}" ' if args.reference else "")
             + "".join(f"--precision {p} " for p in args.precision)
             + " ".join(f"--dataset {d}" for d in args.dataset), "```", "",
             "| data set (val) | training labels | diameter | images | start diameter px | "
             + " | ".join(c[1] for c in COLUMNS) + f" | F1@0.5 / {reference} (same diameter mode) |",
             "|---|---|---|---|---|" + "---|" * (len(COLUMNS) + 1)]
    for spec, by_label in results.items():
        for label, m in by_label.items():
            ref = by_label.get(f"{reference} | {label.split(' | ')[1]}", {}).get("f1_50")
            ratio = fmt(m["f1_50"] / ref) if ref else "–"
            lines.append(f"| {spec} | {label} | {m['n_images']} | {m['diameter_px']} | "
                         + " | ".join(fmt(m.get(k)) for k, _ in COLUMNS) + f" | {ratio} |")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"accuracy_{args.name}.md").write_text("\n".join(lines) + "\n")
    (out / f"accuracy_{args.name}.json").write_text(json.dumps(results, indent=1))
    print(f"wrote {out / f'accuracy_{args.name}.md'}")


if __name__ == "__main__":
    main()

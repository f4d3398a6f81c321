"""Choose WSISPDR's decoder parameters on the TRAIN split (val stays for reporting) by grid search.

    python benchmarks/tune_wsispdr.py --package runs/wsispdr-untuned --dataset usiigaci_phase_contrast \
        --grid '{"data_term": ["texture", "inverted"], "seed_fraction": [0.5, 0.2, 0.1]}' --name usiigaci

The network runs once per image; each combination re-runs guided backpropagation and the graph-cuts on
the first --images train images, scored by mean Dice and F1@0.5. Prints every combination and appends
them to benchmarks/results/tune_wsispdr_<name>.md; pass the best with `cellpoint export --decoder-param`."""
from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

from cellpoint.runtime import Segmenter
from cellpoint.runtime.decoders.detection_response import (data_image, decode_detection_response,
                                                           windowed_contributions)
from cellpoint.runtime.labels import resize_labels
from cellpoint.training.datasets import list_samples, load_sample, parse_dataset_spec
from cellpoint.training.evaluation import matching_metrics
from cellpoint.training.validate import dataset_diameter


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--package", required=True)
    parser.add_argument("--dataset", required=True, metavar="NAME[:KIND,..]")
    parser.add_argument("--grid", required=True, help="JSON {decoder parameter: [values]}")
    parser.add_argument("--images", type=int, default=5)
    parser.add_argument("--name", required=True)
    args = parser.parse_args()
    name, kinds = parse_dataset_spec(args.dataset)
    diameter = round(dataset_diameter(name, kinds), 1)
    seg = Segmenter(args.package, device="cpu")
    multiple = int(seg.package.card.tiling.multiple)
    cache = []
    for s in list_samples(name, "train", kinds)[:args.images]:
        image, labels = load_sample(s)
        x, _ = seg._network_input(image, diameter)
        cache.append((image.shape, labels, x, seg._predict(x)["likelihood"][0]))
    grid = json.loads(args.grid)
    out = Path("benchmarks/results") / f"tune_wsispdr_{args.name}.md"
    lines = [] if out.exists() else [f"# WSISPDR decoder parameters for {args.name}, chosen on the train split", "",
                                     f"First {args.images} train images of {args.dataset}, diameter {diameter} px.", "",
                                     "| parameters | mean Dice | F1@0.5 | instances / GT |", "|---|---|---|---|"]
    for values in itertools.product(*grid.values()):
        params = seg.with_decoder_params(**dict(zip(grid, values))).decoder_params
        gts, preds = [], []
        for shape, labels, x, likelihood in cache:
            def contributions(regions, seed_values, x=x):
                return windowed_contributions(
                    lambda a, b: seg._run_graph("contributions", {"image": a, "regions": b}),
                    x, regions, seed_values, int(params.window), int(params.batch), multiple)
            pred, _, _ = decode_detection_response({"likelihood": likelihood}, params, contributions,
                                                   data_image(x[0], params.data_term))
            preds.append(resize_labels(pred, shape))
            gts.append(labels)
        m = matching_metrics(gts, preds)
        lines.append(f"| {json.dumps(dict(zip(grid, values)))} | {m['mean_dice']:.3f} | {m['f1_50']:.3f} | "
                     f"{m['n_pred']} / {m['n_gt']} |")
        print(lines[-1], flush=True)
    with open(out, "a") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

"""Choose a package's input normalisation on the TRAIN split: the package as it is (its card's percentiles)
vs the same package with `percentile_robust` (percentiles that hot pixels and saturated areas cannot pull,
clipped), each image as read from its file, no diameter, on evenly spaced train images.

    python benchmarks/normalisation_check.py --package model_cards/point2mask-cells-phase \
        --dataset usiigaci_phase_contrast --images 16

Writes benchmarks/results/normalisation_check_<package>.md."""
from __future__ import annotations

import argparse
import shlex
import shutil
import sys
import tempfile
from pathlib import Path

from cellpoint.export.normalisation import set_normalisation
from cellpoint.runtime import Segmenter
from cellpoint.runtime.image_io import read_image
from cellpoint.training.datasets import list_samples, load_coco, parse_dataset_spec
from cellpoint.training.evaluation import evaluate


def main(argv: list[str]) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--package", required=True)
    parser.add_argument("--dataset", action="append", required=True, metavar="NAME[:KIND,..]")
    parser.add_argument("--images", type=int, default=20, help="train images per data set (evenly spaced)")
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args(argv)
    package = Path(args.package)
    lines = [f"# Normalisation of {package.name}, chosen on the train split", "",
             f"Command: `python benchmarks/normalisation_check.py {shlex.join(argv)}`", "",
             "| data set (train) | images | normalisation | F1@0.5 | mask AP |", "|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        robust = Path(tmp) / package.name
        shutil.copytree(package, robust)
        set_normalisation(robust, "percentile_robust")          # samples re-made, no metrics measured
        for spec in args.dataset:
            name, kinds = parse_dataset_spec(spec)
            samples = list_samples(name, "train", kinds)
            samples = samples[:: max(1, len(samples) // args.images)][:args.images]
            for label, path in (("as in the card", package), ("percentile_robust", robust)):
                seg = Segmenter(path, device="cpu")
                preds = {s.image_id: seg.segment(read_image(s.path)).labels for s in samples}
                m = evaluate(load_coco(name), preds, image_ids=[s.image_id for s in samples])
                lines.append(f"| {spec} | {len(samples)} | {label} | {m['f1_50']:.3f} | {m['AP']:.3f} |")
                print(lines[-1], flush=True)
    out = Path(args.out) / f"normalisation_check_{package.name}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    return out


if __name__ == "__main__":
    main(sys.argv[1:])

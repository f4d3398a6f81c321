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

from compare import measure, write_table

COLUMNS = [("AP50", "AP50"), ("AP75", "AP75"), ("AP", "mAP"), ("fnr_50", "FNR@0.5"), ("afnr", "AFNR"),
           ("f1_50", "F1@0.5"), ("mean_dice", "mean Dice"), ("seconds_per_image", "s / image")]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--package", action="append", required=True, metavar="LABEL=DIR")
    parser.add_argument("--dataset", action="append", required=True, metavar="NAME[:KIND,..]")
    parser.add_argument("--reference", default=None, help="LABEL whose mAP the others are divided by")
    parser.add_argument("--name", default="lacss")
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()
    command = (f"python benchmarks/lacss.py --name {args.name}"
               + (f' --reference "{args.reference}"' if args.reference else "") + " "
               + " ".join(f'--package "{p}"' for p in args.package) + " "
               + " ".join(f"--dataset {d}" for d in args.dataset))
    preamble = ("Val splits, segmented by each package with the runtime (onnxruntime: location proposals and "
                "features, then the per-location instance graph). pycocotools at LIVECell's settings; FNR with "
                "one-to-one matching (AFNR: mean over IoU 0.50:0.95). Command:")
    write_table(args.out, f"lacss_{args.name}", f"LACSS accuracy: {args.name}", preamble, command, COLUMNS,
                measure(args.package, args.dataset), args.reference)


if __name__ == "__main__":
    main()

"""Point2Mask accuracy as in the paper's Table 2 (mask AP, AP50, AP75, APs/m/l) next to each training
label set's annotation cost, on shared val splits.

    python benchmarks/point2mask.py --name usiigaci --reference "full masks" \
        --package "full masks=runs/p2m-usiigaci-full" --package "box + 6 points=runs/p2m-usiigaci-p6" \
        --dataset usiigaci_phase_contrast

Annotation cost: Point2Mask's timing model (cellpoint.training.weak_labels.seconds_per_cell: full mask
46 s, box 7 s + 0.9 s per point, per cell), for the label kind and points per cell in each package's
card, times the cells of the data set's train split (what the package was trained on). "mAP vs
reference" divides each row's mask AP by the --reference package's (the paper: 6 points reach 99% of
full-mask AP, 1 point 96.5%). Writes benchmarks/results/point2mask_<name>.md and .json."""
from __future__ import annotations

import argparse

from compare import measure, write_table

from cellpoint.training.datasets import list_samples, load_coco
from cellpoint.training.weak_labels import seconds_per_cell

COLUMNS = [("cost", "labels (s / cell)"), ("hours", "annotation h (train)"), ("AP", "mask AP"), ("AP50", "AP50"),
           ("AP75", "AP75"), ("APs", "APs"), ("APm", "APm"), ("APl", "APl"), ("f1_50", "F1@0.5"),
           ("seconds_per_image", "s / image")]


def train_cells(dataset: str, kinds) -> int:
    """Annotated cells in the data set's train split (images filtered by kinds)."""
    ids = {s.image_id for s in list_samples(dataset, "train", kinds)}
    return sum(1 for a in load_coco(dataset)["annotations"] if a["image_id"] in ids)


def annotation_cost(seg, dataset: str, kinds) -> dict:
    """{"cost": seconds per cell (str), "hours": train-split annotation hours} from the package's card."""
    config = seg.package.card.training["config"]
    kind = "full" if config.get("mode") == "full" else seg.package.card.label_kind
    seconds = seconds_per_cell(kind, int(config.get("n_points", 0)) if kind == "box-points" else 0)
    return {"cost": f"{seconds:g}", "hours": seconds * train_cells(dataset, kinds) / 3600.0}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--package", action="append", required=True, metavar="LABEL=DIR")
    parser.add_argument("--dataset", action="append", required=True, metavar="NAME[:KIND,..]")
    parser.add_argument("--reference", default=None, help="LABEL whose mask AP the others are divided by")
    parser.add_argument("--name", default="point2mask")
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--refine-diameter", action="store_true",
                        help="segment each image again at the size of the cells found in it (default: once, at "
                        "the data set's typical diameter)")
    args = parser.parse_args()
    command = (f"python benchmarks/point2mask.py --name {args.name}"
               + (f' --reference "{args.reference}"' if args.reference else "") + " "
               + " ".join(f'--package "{p}"' for p in args.package) + " "
               + " ".join(f"--dataset {d}" for d in args.dataset)
               + (" --refine-diameter" if args.refine_diameter else ""))
    preamble = ("Val splits, segmented by each package with the runtime (onnxruntime: detector, NMS in numpy, "
                "mask head on the kept boxes). pycocotools at LIVECell's settings (maxDets 2000; small < 324 px² "
                "< medium < 961 px² < large). Annotation cost by Point2Mask's timing model. "
                + ("Diameter refined per image (the runtime's second pass at the cells' measured size). "
                   if args.refine_diameter else "") + "Command:")
    results = measure(args.package, args.dataset, extra=annotation_cost, refine_diameter=args.refine_diameter)
    write_table(args.out, f"point2mask_{args.name}", f"Point2Mask accuracy: {args.name}", preamble, command,
                COLUMNS, results, args.reference)


if __name__ == "__main__":
    main()

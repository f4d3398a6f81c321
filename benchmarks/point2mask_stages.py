"""Where a Point2Mask network loses accuracy: its detector and its mask head measured apart, on a val split.

    python benchmarks/point2mask_stages.py --name usiigaci --dataset usiigaci_phase_contrast \
        --checkpoint "full masks=runs/p2m_usiigaci_full.pt" --checkpoint "box + 6 points=runs/p2m_usiigaci_p6.pt"

For each training checkpoint (PyTorch, so run with the train extra), every val image is rescaled as the
runtime does (the data set's typical cell diameter, from its train split, to the network's) and:
- detector: the runtime's box decoding (`runtime.decoders.box_masks.detect_boxes`, the checkpoint's decoder limits,
  score threshold lowered to 0.05 so the whole precision-recall curve counts) → COCO box AP with the
  detection scores (pycocotools, LIVECell's settings);
- mask head: given the ground-truth box of every val cell, the mask it predicts (pasted as the runtime
  pastes, thresholded at the checkpoint's mask threshold) → IoU with that cell's mask, averaged over cells.
The mask AP the other benchmarks report needs both stages. Writes
benchmarks/results/point2mask_stages_<name>.md and .json."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import msgspec
import numpy as np
import torch

from cellpoint.runtime.decoders.box_masks import BoxMasksParams, detect_boxes, paste_patch
from cellpoint.training.checkpoint import load_checkpoint
from cellpoint.training.datasets import list_samples, load_coco, load_sample, parse_dataset_spec
from cellpoint.training.evaluation import coco_mask_ap
from cellpoint.training.methods.point2mask.config import MULTIPLE, STRIDES, Point2MaskConfig
from cellpoint.training.methods.point2mask.data import box_points_arrays, prepare_example
from cellpoint.training.methods.point2mask.train import build_network
from cellpoint.training.validate import dataset_diameter
from cellpoint.training.weak_labels import box_points_from_labels

DETECTION_THRESHOLD = 0.05


def _network_input(example: dict) -> torch.Tensor:
    """(C,H,W) float32 → (1,C,H',W') zero-padded to multiples of MULTIPLE."""
    image = torch.from_numpy(example["image"])[None]
    h, w = image.shape[-2:]
    pad_h, pad_w = -h % MULTIPLE, -w % MULTIPLE
    return torch.nn.functional.pad(image, (0, pad_w, 0, pad_h))


def mask_iou_on_true_boxes(net, example: dict, threshold: float) -> list[float]:
    """Per cell of a full-mode example (canonical scale): IoU of the mask predicted in its true box with its
    true mask. Cells lost in the resize (id 0) are skipped."""
    with torch.no_grad():
        _, features = net(_network_input(example))
        probs = torch.sigmoid(net.mask_logits(features, torch.from_numpy(example["boxes"]))).numpy()[:, 0]
    labels = example["labels"]
    ious = []
    for box, prob, cell in zip(example["boxes"], probs, example["ids"]):
        if cell == 0:
            continue
        (r0, c0, r1, c1), patch = paste_patch(prob, box)
        top, left = max(r0, 0), max(c0, 0)
        truth_in_box = labels[top:r1, left:c1] == cell
        predicted = patch[top - r0:top - r0 + truth_in_box.shape[0], left - c0:left - c0 + truth_in_box.shape[1]] > threshold
        inter = np.count_nonzero(predicted & truth_in_box)
        union = np.count_nonzero(predicted) + np.count_nonzero(labels == cell) - inter
        ious.append(inter / union if union else 0.0)
    return ious


def detections(net, example: dict, decoder: BoxMasksParams) -> tuple[np.ndarray, np.ndarray]:
    """The runtime's boxes for one example → (boxes float64 (D,4) x0, y0, x1, y1 in the ORIGINAL image's
    px, scores float32 (D,))."""
    with torch.no_grad():
        levels, _ = net(_network_input(example))
    maps = {}
    for stride, (score, dist) in zip(STRIDES, levels):
        maps[f"score_s{stride}"] = torch.sigmoid(score)[0].numpy()
        maps[f"boxes_s{stride}"] = dist[0].numpy()
    boxes, scores = detect_boxes(maps, msgspec.structs.replace(decoder, score_threshold=DETECTION_THRESHOLD))
    return (boxes + 0.5) / example["scale"] - 0.5, scores


def measure_stages(checkpoint: dict, dataset: str, kinds) -> dict:
    """{"box_AP", "box_AP50", "box_AP75", "mask_iou_true_boxes", "cells"} on the data set's val split."""
    net = build_network(checkpoint)
    decoder = msgspec.convert(checkpoint["decoder"]["params"], BoxMasksParams)
    cfg = Point2MaskConfig(mode="full", diameter=checkpoint["diameter"])
    diameter = dataset_diameter(dataset, kinds)
    coco = load_coco(dataset)
    samples = list_samples(dataset, "val", kinds)
    results, ious = [], []
    for sample in samples:
        image, labels = load_sample(sample)
        boxes, _, _, ids = box_points_arrays(box_points_from_labels(labels, 1))
        example = prepare_example(image, boxes, None, None, labels, diameter, cfg, ids)
        ious += mask_iou_on_true_boxes(net, example, float(decoder.mask_threshold))
        found, scores = detections(net, example, decoder)
        results += [{"image_id": sample.image_id, "category_id": 1, "score": float(s),
                     "bbox": [float(b[0] + 0.5), float(b[1] + 0.5), float(b[2] - b[0]), float(b[3] - b[1])]}
                    for b, s in zip(found, scores)]
    wanted = {s.image_id for s in samples}
    gt = dict(coco, images=[i for i in coco["images"] if i["id"] in wanted],
              annotations=[a for a in coco["annotations"] if a["image_id"] in wanted])
    box = coco_mask_ap(gt, results, "bbox")
    return {"box_AP": box["AP"], "box_AP50": box["AP50"], "box_AP75": box["AP75"],
            "mask_iou_true_boxes": float(np.mean(ious)), "cells": len(ious)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", action="append", required=True, metavar="LABEL=FILE")
    parser.add_argument("--dataset", required=True, metavar="NAME[:KIND,..]")
    parser.add_argument("--name", required=True)
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()
    name, kinds = parse_dataset_spec(args.dataset)
    rows = {}
    for entry in args.checkpoint:
        label, _, path = entry.partition("=")
        rows[label] = measure_stages(load_checkpoint(path), name, kinds)
        print(label, {k: round(v, 4) for k, v in rows[label].items()}, flush=True)
    command = (f"python benchmarks/point2mask_stages.py --name {args.name} --dataset {args.dataset} "
               + " ".join(f'--checkpoint "{c}"' for c in args.checkpoint))
    lines = [f"# Point2Mask, detector and mask head apart: {args.name}", "",
             f"Val split of {args.dataset}. Detector: COCO box AP of the runtime's box decoding with its scores "
             f"(score threshold {DETECTION_THRESHOLD}). Mask head: mean IoU of the mask predicted in each val "
             "cell's true box with the cell's mask. Command:", "", "```", command, "```", "",
             "| training labels | box AP | box AP50 | box AP75 | mask IoU in true boxes | cells |",
             "|---|---|---|---|---|---|"]
    for label, m in rows.items():
        lines.append(f"| {label} | {m['box_AP']:.3f} | {m['box_AP50']:.3f} | {m['box_AP75']:.3f} | "
                     f"{m['mask_iou_true_boxes']:.3f} | {m['cells']} |")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"point2mask_stages_{args.name}.md").write_text("\n".join(lines) + "\n")
    (out / f"point2mask_stages_{args.name}.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()

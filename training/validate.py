"""Measure a model package on a shared data set's val split with the deployed runtime."""
from __future__ import annotations

import numpy as np

from cellpoint.training.datasets import list_samples, load_coco, load_sample
from cellpoint.training.evaluation import evaluate
from cellpoint.training.targets import diameter_from_mask_and_count


def dataset_diameter(dataset: str, kinds=None) -> float:
    """Median over the train images of each image's median cell diameter (px), from the COCO areas.

    This stands for what a user knows of their own images ("cells are about 100 px across") and is
    passed to the runtime as `diameter`, as cellpose users pass theirs."""
    coco = load_coco(dataset)
    ids = {s.image_id for s in list_samples(dataset, "train", kinds)}
    areas: dict[int, list[float]] = {}
    for a in coco["annotations"]:
        if a["image_id"] in ids:
            areas.setdefault(a["image_id"], []).append(a["area"])
    return float(np.median([2 * np.sqrt(np.median(v) / np.pi) for v in areas.values()]))


def weak_label_diameter(dataset: str, kinds=None) -> float:
    """Median over the train images of 2·sqrt(foreground area / (π·cell count)) (px): the cell size that
    canonical-shape's weak labels (one foreground mask and a count per image) imply, no outline needed."""
    sizes = []
    for s in list_samples(dataset, "train", kinds):
        _, labels = load_sample(s)
        sizes.append(diameter_from_mask_and_count(labels > 0, len(np.unique(labels[labels > 0]))))
    return float(np.nanmedian(sizes))


def evaluate_segmenter(segmenter, dataset: str, kinds=None, subset: str = "val", diameter=None,
                       refine_diameter: bool | None = False) -> dict:
    """Segment every image of the subset with a runtime Segmenter and score it against the masks.

    Returns the metrics of `evaluation.evaluate` plus n_images, the diameter used and refine_diameter."""
    samples = list_samples(dataset, subset, kinds)
    preds = {}
    for s in samples:
        image, _ = load_sample(s)
        preds[s.image_id], _ = segmenter.segment(image, diameter=diameter, refine_diameter=refine_diameter)
    coco = load_coco(dataset)
    metrics = evaluate(coco, preds, image_ids=[s.image_id for s in samples])
    metrics.update({"n_images": len(samples), "diameter_px": diameter, "refine_diameter": refine_diameter})
    return metrics

"""Measure a model package on a shared data set's val split with the deployed runtime."""
from __future__ import annotations

import numpy as np

from cellpoint.runtime.image_io import read_image
from cellpoint.training.datasets import list_samples, load_coco, load_sample, sample_group
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


def diameter_metrics(segmenter, specs, log=print) -> dict:
    """{"<spec>": metrics, "<spec> (refined diameter)": metrics} of each val split at the data set's
    diameter (median over its train images), fixed and refined per image (as `load_sample` gives images)."""
    from cellpoint.training.datasets import parse_dataset_spec
    out = {}
    for spec in specs:
        dataset, kinds = parse_dataset_spec(spec)
        diameter = round(dataset_diameter(dataset, kinds), 1)
        log(f"measuring {spec} val (diameter {diameter} px) ...")
        for refine, key in ((False, spec), (True, f"{spec} (refined diameter)")):
            full = evaluate_segmenter(segmenter, dataset, kinds, "val", diameter, refine)
            out[key] = {k: v for k, v in full.items() if not isinstance(v, dict)}
    return out


def no_diameter_metrics(segmenter, specs) -> dict:
    """{"<spec> (no diameter)": metrics} of the package run as a user runs it: each val image of each data set
    spec ("name[:kind,..]") as read from its file, no diameter, the package's defaults."""
    from cellpoint.training.datasets import parse_dataset_spec
    out = {}
    for spec in specs:
        dataset, kinds = parse_dataset_spec(spec)
        full = evaluate_segmenter(segmenter, dataset, kinds, "val", None, None, as_read=True)
        out[f"{spec} (no diameter)"] = {k: v for k, v in full.items() if not isinstance(v, dict)}
    return out


def training_domain(training_data: list[dict], low: float = 5, high: float = 95) -> dict | None:
    """The card's `domain` of a package trained on `training_data` (card entries; those with a "dataset" and
    no "role" count): {"image_kinds": sorted group names (`sample_group`), "cell_diameter_px": [the `low`th,
    the `high`th percentile of the train images' median cell diameter (px, from the COCO areas)], "note"}.
    None when no entry names a shared data set."""
    kinds_seen, diameters = set(), []
    for entry in training_data:
        if entry.get("role") or not entry.get("dataset"):
            continue
        coco = load_coco(entry["dataset"])
        areas: dict[int, list[float]] = {}
        for a in coco["annotations"]:
            areas.setdefault(a["image_id"], []).append(a["area"])
        for sample in list_samples(entry["dataset"], entry.get("split", "train"), entry.get("kinds")):
            kinds_seen.add(sample_group(sample))
            if areas.get(sample.image_id):
                diameters.append(2 * np.sqrt(np.median(areas[sample.image_id]) / np.pi))
    if not kinds_seen:
        return None
    lo, hi = (round(float(v), 1) for v in np.percentile(diameters, [low, high]))
    return {"image_kinds": sorted(kinds_seen), "cell_diameter_px": [lo, hi],
            "note": f"cell diameter: {low:g}th–{high:g}th percentile of the {len(diameters)} train images' median"}


def weak_label_diameter(dataset: str, kinds=None) -> float:
    """Median over the train images of 2·sqrt(foreground area / (π·cell count)) (px): the cell size that
    canonical-shape's weak labels (one foreground mask and a count per image) imply, no outline needed."""
    sizes = []
    for s in list_samples(dataset, "train", kinds):
        _, labels = load_sample(s)
        sizes.append(diameter_from_mask_and_count(labels > 0, len(np.unique(labels[labels > 0]))))
    return float(np.nanmedian(sizes))


def evaluate_segmenter(segmenter, dataset: str, kinds=None, subset: str = "val", diameter=None,
                       refine_diameter: bool | None = False, as_read: bool = False) -> dict:
    """Segment every image of the subset with a runtime Segmenter and score it against the masks.

    as_read: each image passed as read from its file (its dtype and channels, as a user passes it)
    instead of `load_sample`'s one float channel. Returns the metrics of `evaluation.evaluate` plus
    n_images, the diameter used and refine_diameter."""
    samples = list_samples(dataset, subset, kinds)
    preds = {}
    for s in samples:
        image = read_image(s.path) if as_read else load_sample(s)[0]
        preds[s.image_id], _ = segmenter.segment(image, diameter=diameter, refine_diameter=refine_diameter)
    coco = load_coco(dataset)
    metrics = evaluate(coco, preds, image_ids=[s.image_id for s in samples])
    metrics.update({"n_images": len(samples), "diameter_px": diameter, "refine_diameter": refine_diameter})
    return metrics

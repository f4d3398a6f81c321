"""Generalisation benchmark: how a model package behaves on images "as a user brings them".

    python benchmarks/generalise.py --package objectness-nuclei \
        --dataset dsb2018_bbbc038:gray_dark --dataset coelho2009_u2os_nih3t3 --name objectness-nuclei-before

Every image is the val image file as read from disk (`read_image`: the file's dtype and channels, as a user
would pass it to `Segmenter.segment`), scored against its COCO masks. Sections (`--sections`):

1. diameter — the package run (a) as a user runs it: no diameter, default settings; (b) at the data set's
   diameter (median over its train images), refinement as the package's default; (c) at each image's own
   true diameter (median equivalent-circle diameter of its GT cells; an oracle, no refinement).
2. sweep — val images resized by each factor (cells kept), segmented with no diameter; only factor×image
   pairs whose resized cells are 6–200 px and whose longer side is at most 4096 px.
3. subkinds — (DSB and Usiigaci) the plain run's F1 per bin of the images' own cell diameter and density.
4. robustness — each image as 16-bit: clean; 0.3 % hot pixels (65535); one saturated square patch covering
   0.5 % of the image. Segmented with no diameter; GT unchanged.

F1@0.5: one-to-one matching pooled over the images of a subset (`evaluation.evaluate`, as
`validate.evaluate_segmenter`); mask AP: pycocotools at LIVECell's settings, every instance scored 1.0 (as
`evaluate_segmenter`). Diameter error: 100·(exp(median over images of |ln(used / true)|) − 1) %, `used` being
the diameter (image px) of the segmenter's final pass (`SegmentationResult.diameter`).

Writes <out>/generalise_<name>.md (the command at the top) and .json (all numbers, per image too)."""
from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from cellpoint.runtime import Segmenter
from cellpoint.runtime.coco_results import labels_to_coco_results
from cellpoint.runtime.image_io import read_image
from cellpoint.runtime.labels import relabel_sequential, resize_labels
from cellpoint.training.annotations import coco_label_image
from cellpoint.training.datasets import list_samples, load_coco, parse_dataset_spec
from cellpoint.training.evaluation import evaluate, matching_metrics
from cellpoint.training.validate import dataset_diameter

SECTIONS = ("diameter", "sweep", "subkinds", "robustness")
FACTORS = (0.25, 0.5, 1.0, 2.0, 3.0, 4.0)
DIAMETER_RANGE = (6.0, 200.0)       # px: resized cells outside it are left out of the sweep
MAX_SIDE = 4096                     # px: longest side of a resized image
# px: per data set family, the edges of its cell-diameter bins (DSB: <15, 15–30, 30–60, ≥60; Usiigaci: the
# issue's "cells under 45 px")
DIAMETER_EDGES = {"dsb2018_bbbc038": (15.0, 30.0, 60.0), "usiigaci_phase_contrast": (45.0,)}
DENSITY_EDGES = (5.0, 15.0)         # cells per 10,000 px²: bins <5, 5–15, ≥15
DENSITY_BINS = ("<5", "5–15", "≥15")
MIN_BIN_CELLS = 50                  # bins with fewer GT cells are marked
FULL_SCALE = 4095                   # 8-bit and float images are scaled to 0..FULL_SCALE (12 bits in 16)
SATURATED = 65535
HOT_FRACTION = 0.003                # of the pixels
PATCH_FRACTION = 0.005              # of the image area
SUBKIND_SETS = tuple(DIAMETER_EDGES) + tuple(f"{name}_extra" for name in DIAMETER_EDGES)


# ------------------------------------------------------------------------------------------ pure helpers

def instance_areas(labels: np.ndarray) -> np.ndarray:
    """Pixel count of each instance of a (H,W) integer label image (0 = background): int64 (n,)."""
    counts = np.bincount(np.asarray(labels).ravel().astype(np.int64))
    return counts[1:][counts[1:] > 0]


def true_diameter(labels: np.ndarray) -> float:
    """Median equivalent-circle diameter 2·sqrt(area/π) (px) of the instances of (H,W) labels; NaN if none."""
    areas = instance_areas(labels)
    return float(2 * np.sqrt(np.median(areas) / np.pi)) if areas.size else float("nan")


def cell_density(labels: np.ndarray) -> float:
    """Instances per 10,000 px² of a (H,W) label image."""
    return 1e4 * instance_areas(labels).size / labels.size


def resize_pair(image: np.ndarray, labels: np.ndarray, factor: float) -> tuple[np.ndarray, np.ndarray]:
    """An image (H,W) or (H,W,C) and its labels (H,W) resized by `factor` to (round(H·f), round(W·f)).

    The image: cv2.resize, INTER_AREA when shrinking, INTER_LINEAR when enlarging (dtype kept). The labels:
    nearest neighbour (pixel centres aligned); an instance that no pixel samples any more (a small cell
    shrunk) gets the pixel under its scaled centroid, so every instance stays; then renumbered 1..N in the
    original order. Returns (image, labels uint32)."""
    h, w = labels.shape
    size = (max(1, round(h * factor)), max(1, round(w * factor)))
    if factor == 1:
        return image, relabel_sequential(labels)
    interpolation = cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(image, (size[1], size[0]), interpolation=interpolation)
    out = resize_labels(labels, size)
    lost = np.setdiff1d(np.unique(labels[labels > 0]), np.unique(out[out > 0]))
    if lost.size:
        rows, cols = np.nonzero(np.isin(labels, lost))
        ids = labels[rows, cols].astype(np.int64)
        n = np.bincount(ids)[lost]
        cy = np.bincount(ids, weights=rows)[lost] / n  # centroids (image px)
        cx = np.bincount(ids, weights=cols)[lost] / n
        r = np.clip(((cy + 0.5) * size[0] / h).astype(int), 0, size[0] - 1)
        c = np.clip(((cx + 0.5) * size[1] / w).astype(int), 0, size[1] - 1)
        out[r, c] = lost
    return resized, relabel_sequential(out)


def diameter_error_pct(used, true) -> float:
    """Typical relative error (%) of diameters: 100·(exp(median |ln(used/true)|) − 1) over the pairs
    (used, true: (n,) px) whose both values are finite and positive; NaN for none."""
    used, true = np.asarray(used, float), np.asarray(true, float)
    ok = np.isfinite(used) & np.isfinite(true) & (used > 0) & (true > 0)
    if not ok.any():
        return float("nan")
    return float(100 * (np.exp(np.median(np.abs(np.log(used[ok] / true[ok])))) - 1))


def to_16bit(image: np.ndarray) -> np.ndarray:
    """An image as uint16: a 16-bit integer image is kept (clipped to 0..65535); any other (8-bit, float,
    32-bit) has its range min..max scaled to 0..4095. Shape (H,W) or (H,W,C) kept."""
    image = np.asarray(image)
    if image.dtype.kind in "ui" and image.dtype.itemsize == 2:
        return np.clip(image, 0, SATURATED).astype(np.uint16)
    x = image.astype(np.float64)
    low, high = float(x.min()), float(x.max())
    scaled = (x - low) / (high - low) * FULL_SCALE if high > low else np.zeros_like(x)
    return np.round(scaled).astype(np.uint16)


def add_hot_pixels(image: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """A copy of a uint16 image (H,W) or (H,W,C) with round(fraction·H·W) distinct pixels, at random
    positions, set to 65535 in every channel."""
    out = image.copy()
    h, w = image.shape[:2]
    flat = rng.choice(h * w, size=round(fraction * h * w), replace=False)
    out[flat // w, flat % w] = SATURATED
    return out


def add_patch(image: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """A copy of a uint16 image (H,W) or (H,W,C) with one square patch of side round(sqrt(fraction·H·W))
    px (at most the shorter side) set to 65535, at a random place inside the image."""
    out = image.copy()
    h, w = image.shape[:2]
    side = max(1, min(h, w, round(math.sqrt(fraction * h * w))))
    y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    out[y:y + side, x:x + side] = SATURATED
    return out


def bin_index(value: float, edges) -> int:
    """Index of the bin of `value` between ascending `edges`: 0 below edges[0], i for edges[i-1] ≤ value <
    edges[i], len(edges) at or above the last."""
    return int(np.searchsorted(np.asarray(edges, float), value, side="right"))


def diameter_bins(edges) -> tuple[str, ...]:
    """Bin names of ascending diameter edges (px), e.g. (15, 30) → ("<15 px", "15–30 px", "≥30 px")."""
    inner = [f"{a:g}–{b:g} px" for a, b in zip(edges[:-1], edges[1:])]
    return (f"<{edges[0]:g} px", *inner, f"≥{edges[-1]:g} px")


def diameter_bin(diameter: float, edges=DIAMETER_EDGES["dsb2018_bbbc038"]) -> str:
    """The bin name of an image's median cell diameter (px) between `edges` (default DSB's: <15, 15–30,
    30–60, ≥60 px)."""
    return diameter_bins(edges)[bin_index(diameter, edges)]


def density_bin(density: float) -> str:
    """The bin name of an image's cell density (cells per 10,000 px²): <5, 5–15, ≥15."""
    return DENSITY_BINS[bin_index(density, DENSITY_EDGES)]


# ------------------------------------------------------------------------------------------------ scoring

def labels_to_coco(gt: list[np.ndarray]) -> dict:
    """A COCO dict (image ids 1..n) of GT label images (H,W), one annotation per instance."""
    images, annotations = [], []
    for i, labels in enumerate(gt, 1):
        images.append({"id": i, "height": int(labels.shape[0]), "width": int(labels.shape[1])})
        for r in labels_to_coco_results(labels, i):
            r.pop("score", None)
            annotations.append(dict(r, id=len(annotations) + 1, iscrowd=0))
    return {"images": images, "annotations": annotations, "categories": [{"id": 1}]}


def summary(metrics: dict) -> dict:
    """The numbers this report keeps of an `evaluate` result."""
    keys = ("f1_50", "AP", "AP50", "AP75", "precision_50", "recall_50", "n_gt", "n_pred", "n_images")
    return {k: metrics[k] for k in keys if k in metrics}


def score_coco(coco: dict, preds: dict, image_ids: list) -> dict:
    """F1@0.5, mask AP and counts of predicted label images {image_id: (H,W)} against a COCO dict."""
    if not image_ids:
        return {"n_images": 0, "n_gt": 0, "n_pred": 0, "f1_50": float("nan"), "AP": float("nan")}
    return summary(evaluate(coco, preds, image_ids=list(image_ids)))


def score_labels(gt: list[np.ndarray], pred: list[np.ndarray]) -> dict:
    """F1@0.5, mask AP and counts of predicted label images against GT label images (paired, (H,W))."""
    return score_coco(labels_to_coco(gt), dict(enumerate(pred, 1)), list(range(1, len(gt) + 1)))


def image_f1(gt: np.ndarray, pred: np.ndarray) -> float:
    """F1@0.5 of one image (one-to-one matching)."""
    return matching_metrics([gt], [pred], thresholds=[0.5])["f1_50"]


# ---------------------------------------------------------------------------------------------- the runs

def load_val(name: str, kinds, max_images: int | None) -> list[dict]:
    """The val images of a data set (first `max_images` by id): dicts with id, image (as read from the
    file: (H,W) or (H,W,C), the file's dtype), labels (uint32 (H,W), from the COCO masks), true_px."""
    coco = load_coco(name)
    items = []
    for sample in list_samples(name, "val", kinds)[:max_images]:
        labels = coco_label_image(coco, sample.image_id)
        items.append({"id": sample.image_id, "image": read_image(sample.path), "labels": labels,
                      "true_px": true_diameter(labels)})
    return items


def run(seg: Segmenter, image: np.ndarray, tag: str, **kwargs):
    """seg.segment(image, **kwargs) with one progress line; returns the SegmentationResult."""
    start = time.perf_counter()
    result = seg.segment(image, **kwargs)
    print(f"  {tag}: {image.shape[1]}x{image.shape[0]}, {len(result.table['id'])} cells, "
          f"diameter {result.diameter:.1f} px, {time.perf_counter() - start:.1f} s", flush=True)
    return result


def plain_results(seg: Segmenter, spec: str, items: list[dict], cache: dict) -> dict:
    """{image id: SegmentationResult} of `segment(image)` with no diameter and default settings (cached
    per spec, as the diameter, sweep and subkinds sections share it)."""
    if spec not in cache:
        print(f"{spec}: as a user runs it (no diameter)", flush=True)
        cache[spec] = {it["id"]: run(seg, it["image"], f"image {it['id']}") for it in items}
    return cache[spec]


def per_image(items: list[dict], results: dict) -> list[dict]:
    """Per-image numbers of a run: id, true and used diameter (px), GT and predicted cells, F1@0.5."""
    return [{"id": it["id"], "true_px": it["true_px"], "used_px": float(results[it["id"]].diameter),
             "n_gt": int(instance_areas(it["labels"]).size), "n_pred": int(len(results[it["id"]].table["id"])),
             "f1_50": image_f1(it["labels"], results[it["id"]].labels)} for it in items]


def section_diameter(seg: Segmenter, spec: str, items: list[dict], cache: dict) -> dict:
    """Section 1: {run name: metrics + diameter_error_pct + images} for the user's, the data set's and
    the oracle's diameter."""
    name, kinds = parse_dataset_spec(spec)
    coco, ids = load_coco(name), [it["id"] for it in items]
    set_px = round(dataset_diameter(name, kinds), 1)
    runs = {"as a user runs it (no diameter)": plain_results(seg, spec, items, cache)}
    print(f"{spec}: data set diameter {set_px} px", flush=True)
    runs[f"data set diameter ({set_px} px)"] = {
        it["id"]: run(seg, it["image"], f"image {it['id']}", diameter=set_px) for it in items}
    print(f"{spec}: each image's true diameter (oracle)", flush=True)
    runs["each image's true diameter (oracle)"] = {
        it["id"]: run(seg, it["image"], f"image {it['id']}",
                      diameter=round(it["true_px"], 1) if np.isfinite(it["true_px"]) else None,
                      refine_diameter=False) for it in items}
    out = {}
    for label, results in runs.items():
        m = score_coco(coco, {i: r.labels for i, r in results.items()}, ids)
        rows = per_image(items, results)
        m["diameter_error_pct"] = diameter_error_pct([r["used_px"] for r in rows], [r["true_px"] for r in rows])
        m["median_used_px"] = float(np.median([r["used_px"] for r in rows]))
        m["images"] = rows
        out[label] = m
        print(f"{spec} | {label}: F1@0.5 {fmt(m['f1_50'])}, AP {fmt(m['AP'])}, "
              f"diameter error {fmt_pct(m['diameter_error_pct'])}", flush=True)
    out["dataset_diameter_px"] = set_px
    return out


def section_sweep(seg: Segmenter, spec: str, items: list[dict], factors, cache: dict) -> dict:
    """Section 2: {factor: metrics} of the images resized by each factor, segmented with no diameter;
    each row also has the F1@0.5 of the same images at ×1 and the pairs skipped (with why)."""
    plain = plain_results(seg, spec, items, cache) if 1.0 in factors else {}
    at_one = {}  # image id -> (labels, predicted labels) at ×1
    rows = {}
    for f in sorted(factors, key=lambda f: (f != 1.0, f)):  # ×1 first: the others are compared with it
        print(f"{spec}: sweep ×{f:g}", flush=True)
        gt, pred, used, true, ids, skipped = [], [], [], [], [], []
        for it in items:
            h, w = it["labels"].shape
            if max(h, w) * f > MAX_SIDE:
                skipped.append({"id": it["id"], "reason": f"longer side > {MAX_SIDE} px",
                                "detail": f"{round(w * f)}x{round(h * f)}"})
                continue
            image, labels = resize_pair(it["image"], it["labels"], f)
            d = true_diameter(labels)
            if not DIAMETER_RANGE[0] <= d <= DIAMETER_RANGE[1]:
                low = not d >= DIAMETER_RANGE[0]
                skipped.append({"id": it["id"], "detail": f"{d:.1f} px",
                                "reason": f"cells < {DIAMETER_RANGE[0]:g} px" if low
                                else f"cells > {DIAMETER_RANGE[1]:g} px"})
                continue
            result = plain[it["id"]] if f == 1.0 else run(seg, image, f"image {it['id']} ×{f:g}")
            if f == 1.0:
                at_one[it["id"]] = (labels, result.labels)
            gt.append(labels)
            pred.append(result.labels)
            used.append(float(result.diameter))
            true.append(d)
            ids.append(it["id"])
        m = score_labels(gt, pred)
        same = [at_one[i] for i in ids if i in at_one]
        m["f1_50_x1_same_images"] = (matching_metrics([g for g, _ in same], [p for _, p in same],
                                                      thresholds=[0.5])["f1_50"]
                                     if same and len(same) == len(ids) else float("nan"))
        m["diameter_error_pct"] = diameter_error_pct(used, true)
        m["median_true_px"] = float(np.median(true)) if true else float("nan")
        m["images"] = [{"id": i, "true_px": t, "used_px": u} for i, t, u in zip(ids, true, used)]
        m["skipped"] = skipped
        rows[f] = m
        print(f"{spec} | ×{f:g}: {len(ids)} images, F1@0.5 {fmt(m['f1_50'])}, "
              f"diameter error {fmt_pct(m['diameter_error_pct'])}, {len(skipped)} skipped", flush=True)
    return {f"{f:g}": rows[f] for f in sorted(rows)}


def section_subkinds(seg: Segmenter, spec: str, items: list[dict], cache: dict) -> dict:
    """Section 3: {"diameter": {bin: metrics}, "density": {bin: metrics}} of the plain run's predictions,
    the images binned by their own median cell diameter and by cell density."""
    name, _ = parse_dataset_spec(spec)
    coco = load_coco(name)
    plain = plain_results(seg, spec, items, cache)
    preds = {i: r.labels for i, r in plain.items()}
    edges = DIAMETER_EDGES[name.removesuffix("_extra")]
    out = {}
    for binning, bins, of in (("diameter", diameter_bins(edges), lambda it: diameter_bin(it["true_px"], edges)),
                              ("density", DENSITY_BINS, lambda it: density_bin(cell_density(it["labels"])))):
        out[binning] = {}
        for b in bins:
            ids = [it["id"] for it in items if np.isfinite(it["true_px"]) and of(it) == b]
            m = score_coco(coco, preds, ids)
            m["image_ids"] = ids
            m["few_cells"] = m["n_gt"] < MIN_BIN_CELLS
            out[binning][b] = m
            print(f"{spec} | {binning} {b}: {len(ids)} images, {m['n_gt']} cells, F1@0.5 {fmt(m['f1_50'])}",
                  flush=True)
    return out


def section_robustness(seg: Segmenter, spec: str, items: list[dict], seed: int) -> dict:
    """Section 4: {condition: metrics (+ delta_f1_50 vs clean)} of the 16-bit images, clean, with hot
    pixels and with a saturated patch, segmented with no diameter; randomness seeded by (seed, image id)."""
    name, _ = parse_dataset_spec(spec)
    coco, ids = load_coco(name), [it["id"] for it in items]
    conditions = {
        "clean (16-bit)": lambda im, rng: im,
        f"hot pixels ({100 * HOT_FRACTION:g} % at 65535)": lambda im, rng: add_hot_pixels(im, HOT_FRACTION, rng),
        f"saturated patch ({100 * PATCH_FRACTION:g} % of the area)": lambda im, rng: add_patch(im, PATCH_FRACTION,
                                                                                              rng),
    }
    out = {}
    for label, corrupt in conditions.items():
        print(f"{spec}: robustness, {label}", flush=True)
        results = {}
        for it in items:
            rng = np.random.default_rng([seed, it["id"]])
            results[it["id"]] = run(seg, corrupt(to_16bit(it["image"]), rng), f"image {it['id']}")
        m = score_coco(coco, {i: r.labels for i, r in results.items()}, ids)
        m["images"] = per_image(items, results)
        m["diameter_error_pct"] = diameter_error_pct([r["used_px"] for r in m["images"]],
                                                     [r["true_px"] for r in m["images"]])
        out[label] = m
    clean = next(iter(out.values()))["f1_50"]
    for label, m in out.items():
        m["delta_f1_50"] = m["f1_50"] - clean
        print(f"{spec} | {label}: F1@0.5 {fmt(m['f1_50'])} ({m['delta_f1_50']:+.3f})", flush=True)
    return out


# ----------------------------------------------------------------------------------------------- report

def fmt(v) -> str:
    """A number to 3 decimals; '–' for None or NaN."""
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"


def fmt_pct(v) -> str:
    """A percentage to 0 decimals; '–' for None or NaN."""
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.0f}%"


def report(results: dict, command: str, package: str, factors) -> list[str]:
    """The markdown report (lines) of `results` ({"datasets": {spec: {section: ...}}})."""
    data = results["datasets"]
    lines = [f"# Generalisation: {results['name']}", "", "```", command, "```", "",
             f"Package `{package}` run by the runtime (onnxruntime, CPU) on each data set's val split, each image "
             "as read from its file (the file's dtype and channels), as a user would pass it. F1@0.5: one-to-one "
             "matching pooled over the images; mask AP: pycocotools at LIVECell's settings, every instance "
             "scored 1.0. Diameter error: 100·(exp(median over images of |ln(used/true)|) − 1), `used` = the "
             "diameter of the segmenter's final pass, `true` = the image's median equivalent-circle diameter "
             "of its GT cells. Written by `benchmarks/generalise.py`; all numbers, per image too, in the "
             ".json beside this file.", ""]
    if any("diameter" in s for s in data.values()):
        lines += ["## 1. Diameter: as a user runs it vs told the cells' size", "",
                  "(a) no diameter, default settings; (b) the data set's diameter (median over its train images), "
                  "refinement as the package's default; (c) each image's true diameter, no refinement (an oracle).",
                  "", "| data set (val) | run | images | GT cells | predicted | F1@0.5 | mask AP | AP50 | "
                  "median diameter used px | diameter error |", "|---|---|---|---|---|---|---|---|---|---|"]
        for spec, sec in data.items():
            for label, m in sec.get("diameter", {}).items():
                if isinstance(m, dict):
                    err = "(given)" if "oracle" in label else fmt_pct(m["diameter_error_pct"])
                    lines.append(f"| {spec} | {label} | {m['n_images']} | {m['n_gt']} | {m['n_pred']} | "
                                 f"**{fmt(m['f1_50'])}** | {fmt(m['AP'])} | {fmt(m.get('AP50'))} | "
                                 f"{m['median_used_px']:.1f} | {err} |")
        lines.append("")
    if any("sweep" in s for s in data.values()):
        lines += ["## 2. Scale sweep: val images resized, no diameter", "",
                  f"Factors {', '.join(f'×{f:g}' for f in factors)}; image: INTER_AREA when shrinking, "
                  "INTER_LINEAR when enlarging; labels: nearest neighbour, every cell kept. Only factor×image "
                  f"pairs whose resized median cell diameter is {DIAMETER_RANGE[0]:g}–{DIAMETER_RANGE[1]:g} px "
                  f"and whose longer side is ≤ {MAX_SIDE} px. \"F1@0.5 ×1, same images\": the same images "
                  "unresized, for reference.", "",
                  "| data set (val) | factor | images used | skipped | median true diameter px | F1@0.5 | "
                  "mask AP | F1@0.5 ×1, same images | F1@0.5 ×1, all | diameter error |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        notes = []
        for spec, sec in data.items():
            rows = sec.get("sweep", {})
            one = rows.get("1", {}).get("f1_50")
            for f, m in rows.items():
                lines.append(f"| {spec} | ×{f} | {m['n_images']} | {len(m['skipped'])} | "
                             f"{fmt_num(m['median_true_px'])} | **{fmt(m['f1_50'])}** | {fmt(m['AP'])} | "
                             f"{fmt(m['f1_50_x1_same_images'])} | {fmt(one)} | {fmt_pct(m['diameter_error_pct'])} |")
                notes += [f"{spec} ×{f}: {note}" for note in skipped_notes(m["skipped"])]
        lines.append("")
        if notes:
            lines += ["Skipped pairs:", ""] + [f"- {n}" for n in notes] + [""]
    if any("subkinds" in s for s in data.values()):
        lines += ["## 3. Sub-kinds: by the images' own cell size and density (no diameter)", "",
                  "Val images binned by their median GT cell diameter and by GT cells per 10,000 px²; F1@0.5 "
                  f"pooled over each bin's images. Bins with fewer than {MIN_BIN_CELLS} GT cells are marked.", "",
                  "| data set (val) | binned by | bin | images | GT cells | predicted | F1@0.5 | mask AP | note |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for spec, sec in data.items():
            for binning, bins in sec.get("subkinds", {}).items():
                unit = "median cell diameter" if binning == "diameter" else "cells / 10,000 px²"
                for b, m in bins.items():
                    note = ("no image" if not m["n_images"] else
                            f"< {MIN_BIN_CELLS} GT cells" if m["few_cells"] else "")
                    lines.append(f"| {spec} | {unit} | {b} | {m['n_images']} | {m['n_gt']} | {m['n_pred']} | "
                                 f"{fmt(m['f1_50'])} | {fmt(m['AP'])} | {note} |")
        lines.append("")
    if any("robustness" in s for s in data.values()):
        lines += ["## 4. Robustness: 16-bit images with hot pixels or a saturated patch (no diameter)", "",
                  f"Each image as uint16 (8-bit and float images scaled from their range to 0..{FULL_SCALE}; "
                  f"16-bit kept), then: clean; {100 * HOT_FRACTION:g} % of the pixels set to {SATURATED} at "
                  f"random places; one square patch covering {100 * PATCH_FRACTION:g} % of the image set to "
                  f"{SATURATED} at a random place (seeded per image). GT unchanged.", "",
                  "| data set (val) | condition | images | predicted | F1@0.5 | ΔF1@0.5 vs clean | mask AP | "
                  "diameter error |", "|---|---|---|---|---|---|---|---|"]
        for spec, sec in data.items():
            for label, m in sec.get("robustness", {}).items():
                lines.append(f"| {spec} | {label} | {m['n_images']} | {m['n_pred']} | **{fmt(m['f1_50'])}** | "
                             f"{m['delta_f1_50']:+.3f} | {fmt(m['AP'])} | {fmt_pct(m['diameter_error_pct'])} |")
        lines.append("")
    return lines


def skipped_notes(skipped: list[dict]) -> list[str]:
    """One line per reason of a sweep row's skipped images ({"id", "reason", "detail"}), with their ids."""
    groups: dict[str, list[str]] = {}
    for s in skipped:
        groups.setdefault(s["reason"], []).append(f"{s['id']} ({s['detail']})")
    return [f"{len(v)} skipped, {reason}: " + ", ".join(v) for reason, v in groups.items()]


def fmt_num(v) -> str:
    """A number to 1 decimal; '–' for NaN."""
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.1f}"


def parse_sections(text: str) -> list[str]:
    """"all" or a comma list of SECTIONS → the list, in report order. Raises ValueError for an unknown one."""
    wanted = SECTIONS if text == "all" else [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in wanted if s not in SECTIONS]
    if unknown:
        raise ValueError(f"unknown section(s) {unknown}; choose from {', '.join(SECTIONS)} or all")
    return [s for s in SECTIONS if s in wanted]


def main(argv: list[str] | None = None) -> Path:
    """Run the benchmark; returns the path of the markdown report."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--package", required=True, help="package folder or bundled package name")
    parser.add_argument("--dataset", action="append", required=True, metavar="NAME[:KIND,..]")
    parser.add_argument("--name", default=None, help="report stem (default: the package's name)")
    parser.add_argument("--sections", default="all", help="all, or a comma list of " + ",".join(SECTIONS))
    parser.add_argument("--max-images", type=int, default=None, help="val images per data set (default: all)")
    parser.add_argument("--factors", type=float, nargs="+", default=list(FACTORS))
    parser.add_argument("--seed", type=int, default=0, help="seed of the robustness corruptions")
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args(argv)
    try:
        sections = parse_sections(args.sections)
    except ValueError as error:
        parser.error(str(error))

    seg = Segmenter(args.package, device="cpu")
    name = args.name or seg.name
    command = "python benchmarks/generalise.py " + shlex.join(argv)
    results = {"name": name, "package": seg.name, "package_arg": args.package, "command": command,
               "sections": sections, "factors": args.factors, "seed": args.seed,
               "refines_diameter_by_default": seg.refines_diameter, "model_diameter_px": seg.diameter,
               "datasets": {}}
    cache: dict = {}
    start = time.perf_counter()
    for spec in args.dataset:
        dataset, kinds = parse_dataset_spec(spec)
        items = load_val(dataset, kinds, args.max_images)
        print(f"{spec}: {len(items)} val images", flush=True)
        sec: dict = {"n_images": len(items)}
        if "diameter" in sections:
            sec["diameter"] = section_diameter(seg, spec, items, cache)
        if "sweep" in sections:
            sec["sweep"] = section_sweep(seg, spec, items, args.factors, cache)
        if "subkinds" in sections and dataset in SUBKIND_SETS:
            sec["subkinds"] = section_subkinds(seg, spec, items, cache)
        if "robustness" in sections:
            sec["robustness"] = section_robustness(seg, spec, items, args.seed)
        results["datasets"][spec] = sec
        cache.pop(spec, None)
    results["seconds"] = time.perf_counter() - start

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    md = out / f"generalise_{name}.md"
    md.write_text("\n".join(report(results, command, args.package, args.factors)) + "\n")
    (out / f"generalise_{name}.json").write_text(json.dumps(results, indent=1, default=_json_default))
    print(f"wrote {md} ({results['seconds']:.0f} s)", flush=True)
    return md


def _json_default(value):
    """numpy scalars and arrays as plain JSON values."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


if __name__ == "__main__":
    main()

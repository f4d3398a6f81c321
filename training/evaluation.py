"""Benchmark metrics for instance segmentation: COCO mask/box AP with LIVECell's settings, and
one-to-one matching metrics (F1 over IoU thresholds, FNR/AFNR as in LACSS, mean Dice as in WSISPDR).

GT is a COCO dataset dict (images, annotations, categories); predictions are label images or a COCO
results list.
"""
from __future__ import annotations

import contextlib
import copy
import io

import numpy as np
import pycocotools.mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from cellpoint.runtime.coco_results import decode_rle_counts, labels_to_coco_results

# LIVECell's COCO settings: up to 2000 detections per image; small < 18^2 px, large > 31^2 px.
MAX_DETS = [100, 500, 2000]
AREA_RANGES = [[0, 1e10], [0, 324], [324, 961], [961, 1e10]]
AREA_LABELS = ["all", "small", "medium", "large"]
DEFAULT_THRESHOLDS = np.arange(0.1, 1.0, 0.1).round(2)
AFNR_THRESHOLDS = np.arange(0.5, 1.0, 0.05).round(2)
SHAPE_THRESHOLDS = np.arange(0.1, 1.01, 0.1).round(2)  # canonical shape's mean F1: IoU 0.1, 0.2, ..., 1.0

_AP_KEYS = ["AP", "AP50", "AP75", "APs", "APm", "APl"]


# --------------------------------------------------------------------------------------------- COCO AP

class _SparseMatchCOCOeval(COCOeval):
    """COCOeval whose per-image greedy matching visits, for each detection, only the GT instances it
    overlaps with IoU >= the lowest threshold. Same matches as pycocotools (the skipped pairs can never
    match), but dense images with thousands of cells no longer cost T x D x G Python steps."""

    def evaluateImg(self, imgId, catId, aRng, maxDet):  # noqa: N802, N803 (pycocotools' names)
        p = self.params
        if p.useCats:
            gts, dts = self._gts[imgId, catId], self._dts[imgId, catId]
        else:
            gts = [g for c in p.catIds for g in self._gts[imgId, c]]
            dts = [d for c in p.catIds for d in self._dts[imgId, c]]
        if not gts and not dts:
            return None

        outside = [bool(g["ignore"]) or g["area"] < aRng[0] or g["area"] > aRng[1] for g in gts]
        gt_order = np.argsort(np.array(outside, dtype=int), kind="mergesort")  # ignored GT last
        dt_order = np.argsort([-d["score"] for d in dts], kind="mergesort")[:maxDet]
        gts = [gts[i] for i in gt_order]
        dts = [dts[i] for i in dt_order]
        gt_ignore = np.array(outside, dtype=int)[gt_order]
        crowd = np.array([bool(g["iscrowd"]) for g in gts], dtype=bool)
        gt_ids = [g["id"] for g in gts]
        dt_ids = [d["id"] for d in dts]

        n_thr, n_gt, n_dt = len(p.iouThrs), len(gts), len(dts)
        gt_match = np.zeros((n_thr, n_gt))
        dt_match = np.zeros((n_thr, n_dt))
        dt_ignore = np.zeros((n_thr, n_dt), dtype=bool)
        ious = np.asarray(self.ious[imgId, catId])
        if ious.size and n_gt and n_dt:
            # computeIoU sorted the detections the same way, so row i is dts[i].
            ious = ious[:n_dt][:, gt_order]
            floors = np.minimum(p.iouThrs, 1 - 1e-10)
            cand_dt, cand_gt = np.nonzero(ious >= floors.min())
            bounds = np.searchsorted(cand_dt, np.arange(n_dt + 1))
            for t, floor in enumerate(floors):
                for d in range(n_dt):
                    best, best_iou = -1, floor
                    for g in cand_gt[bounds[d]:bounds[d + 1]]:
                        if gt_match[t, g] > 0 and not crowd[g]:
                            continue
                        if best > -1 and gt_ignore[best] == 0 and gt_ignore[g] == 1:
                            break  # already on a regular GT; the rest are ignored ones
                        if ious[d, g] < best_iou:
                            continue
                        best, best_iou = g, ious[d, g]
                    if best > -1:
                        dt_ignore[t, d] = bool(gt_ignore[best])
                        dt_match[t, d] = gt_ids[best]
                        gt_match[t, best] = dt_ids[d]
        dt_outside = np.array([d["area"] < aRng[0] or d["area"] > aRng[1] for d in dts], dtype=bool)
        dt_ignore |= (dt_match == 0) & dt_outside[None, :]
        return {
            "image_id": imgId, "category_id": catId, "aRng": aRng, "maxDet": maxDet,
            "dtIds": dt_ids, "gtIds": gt_ids, "dtMatches": dt_match, "gtMatches": gt_match,
            "dtScores": [d["score"] for d in dts], "gtIgnore": gt_ignore, "dtIgnore": dt_ignore,
        }


def run_cocoeval(gt: dict, results: list[dict], iou_type: str = "segm") -> COCOeval:
    """Run COCOeval with LIVECell's parameters on every image of `gt`; returns it evaluated and accumulated.

    gt: COCO dataset dict (its images define the evaluated set; missing iscrowd/area/bbox are filled in).
    results: COCO results list (segmentation as RLE for "segm", bbox for "bbox"); results on images not in
        gt are dropped. iou_type: "segm" or "bbox".
    Read AP from `.eval["precision"]` [T, R, K, A, M] with M indexing MAX_DETS (see coco_mask_ap).
    """
    if iou_type not in ("segm", "bbox"):
        raise ValueError(f"iou_type must be 'segm' or 'bbox', got {iou_type!r}")
    gt = _complete_gt(gt)
    image_ids = {img["id"] for img in gt["images"]}
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        results = [_prepare_result(r, iou_type) for r in results if r["image_id"] in image_ids]
        if results:
            coco_dt = coco_gt.loadRes(results)
        else:
            coco_dt = COCO()
            coco_dt.dataset = {"images": gt["images"], "categories": gt["categories"], "annotations": []}
            coco_dt.createIndex()
        evaluator = _SparseMatchCOCOeval(coco_gt, coco_dt, iouType=iou_type)
        evaluator.params.imgIds = sorted(image_ids)
        evaluator.params.maxDets = list(MAX_DETS)
        evaluator.params.areaRng = [list(r) for r in AREA_RANGES]
        evaluator.params.areaRngLbl = list(AREA_LABELS)
        evaluator.evaluate()
        evaluator.accumulate()
    return evaluator


def coco_mask_ap(gt: dict, results: list[dict], iou_type: str = "segm") -> dict:
    """COCO AP with LIVECell's settings, read at maxDets=2000 (not summarize()'s maxDets=100).

    gt: COCO dataset dict (the caller restricts it to the images to score); results: COCO results list.
    Returns floats {AP (IoU .50:.95), AP50, AP75, APs, APm, APl}; 0.0 when there are GT instances but no
    detections, NaN when no GT instance falls in that area range (pycocotools' -1).
    """
    if not gt.get("images"):
        return {key: float("nan") for key in _AP_KEYS}
    evaluator = run_cocoeval(gt, results, iou_type)
    precision, thresholds = evaluator.eval["precision"], evaluator.params.iouThrs
    return {
        "AP": _mean_precision(precision, thresholds),
        "AP50": _mean_precision(precision, thresholds, iou=0.5),
        "AP75": _mean_precision(precision, thresholds, iou=0.75),
        "APs": _mean_precision(precision, thresholds, area_index=1),
        "APm": _mean_precision(precision, thresholds, area_index=2),
        "APl": _mean_precision(precision, thresholds, area_index=3),
    }


def _mean_precision(precision: np.ndarray, thresholds: np.ndarray, iou: float | None = None,
                    area_index: int = 0, maxdet_index: int = -1) -> float:
    """Mean of COCOeval's precision [T, R, K, A, M] over valid (> -1) entries; NaN if none."""
    selected = precision if iou is None else precision[np.isclose(thresholds, iou)]
    selected = selected[..., area_index, maxdet_index]
    valid = selected[selected > -1]
    return float(valid.mean()) if valid.size else float("nan")


def _complete_gt(gt: dict) -> dict:
    """Copy of a COCO dict with what COCOeval needs: categories, annotation ids 1..n (pycocotools treats
    id 0 as "unmatched"), iscrowd, area and bbox."""
    images = {img["id"]: img for img in gt["images"]}
    annotations = []
    for k, ann in enumerate(a for a in gt.get("annotations", []) if a["image_id"] in images):
        ann = dict(ann, id=k + 1)
        ann.setdefault("iscrowd", 0)
        if "area" not in ann or "bbox" not in ann:
            img = images[ann["image_id"]]
            rle = to_compressed_rle(ann["segmentation"], img["height"], img["width"])
            ann.setdefault("area", float(mask_utils.area(rle)))
            ann.setdefault("bbox", mask_utils.toBbox(rle).tolist())
        annotations.append(ann)
    categories = gt.get("categories") or [{"id": c} for c in sorted({a["category_id"] for a in annotations}
                                                                     or {1})]
    return {"images": [dict(img) for img in gt["images"]], "categories": copy.deepcopy(categories),
            "annotations": annotations}


def _prepare_result(result: dict, iou_type: str) -> dict:
    """Copy of one result ready for loadRes (which mutates what it is given)."""
    result = dict(result)
    if iou_type == "segm":
        # With a bbox present loadRes sets area = box area, which would misfile masks into small/medium/large.
        result.pop("bbox", None)
    elif "bbox" not in result:
        result["bbox"] = mask_utils.toBbox(result["segmentation"]).tolist()
    return result


# ------------------------------------------------------------------------------------ label images

def to_compressed_rle(segmentation, height: int, width: int) -> dict:
    """COCO segmentation (polygon list, uncompressed RLE or compressed RLE) -> one compressed RLE dict."""
    if isinstance(segmentation, list):
        if not segmentation:
            return mask_utils.encode(np.zeros((height, width), dtype=np.uint8, order="F"))
        return mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    if isinstance(segmentation.get("counts"), list):
        return mask_utils.frPyObjects(segmentation, height, width)
    return segmentation


def paint_rles(rles: list[dict], height: int, width: int) -> np.ndarray:
    """Label image from masks: pixels of rles[k] get label k + 1, later masks overwrite earlier ones.

    rles: compressed RLE dicts of size (height, width). Returns uint32 (height, width).
    """
    flat = np.zeros(height * width, dtype=np.uint32)  # column-major, like RLE
    for k, rle in enumerate(rles):
        counts = decode_rle_counts(rle["counts"])
        if counts.sum() != height * width:
            raise ValueError(f"RLE of size {rle.get('size')} does not match image {height}x{width}")
        ends = np.cumsum(counts)
        starts, lengths = (ends - counts)[1::2], counts[1::2]
        offsets = np.cumsum(lengths) - lengths
        flat[np.repeat(starts - offsets, lengths) + np.arange(lengths.sum())] = k + 1
    return np.ascontiguousarray(flat.reshape(width, height).T)


def gt_label_image(coco: dict, image_id: int) -> np.ndarray:
    """Label image of one COCO image's annotations.

    coco: COCO dataset dict; segmentations may be polygons, uncompressed or compressed RLE.
    Returns uint32 (H, W): the k-th annotation of the image (in list order) has label k (1-based); later
    annotations overwrite earlier ones where they overlap.
    """
    image = next((img for img in coco["images"] if img["id"] == image_id), None)
    if image is None:
        raise KeyError(f"image id {image_id} not in the COCO images")
    height, width = image["height"], image["width"]
    rles = [to_compressed_rle(a["segmentation"], height, width)
            for a in coco.get("annotations", []) if a["image_id"] == image_id]
    return paint_rles(rles, height, width)


def results_label_image(results: list[dict], height: int, width: int, score_threshold: float = 0.0) -> np.ndarray:
    """Label image from COCO results of one image: results with score >= score_threshold are painted in
    ascending score order, so the higher score wins overlaps. Returns uint32 (height, width)."""
    kept = sorted((r for r in results if r.get("score", 1.0) >= score_threshold),
                  key=lambda r: r.get("score", 1.0))
    return paint_rles([to_compressed_rle(r["segmentation"], height, width) for r in kept], height, width)


# ---------------------------------------------------------------------------------------- matching

def _compact_labels(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(H, W) labels -> (ids (n,), flat index per pixel (0 background, k for ids[k-1]), areas (n,))."""
    flat = np.asarray(labels).ravel()
    foreground = flat > 0
    values = flat[foreground]
    index = np.zeros(flat.size, dtype=np.int64)
    if values.size == 0:
        return np.zeros(0, dtype=np.int64), index, np.zeros(0, dtype=np.int64)
    largest = int(values.max())
    if largest <= 4 * flat.size + 1024:  # a lookup table is cheaper than sorting
        areas_by_id = np.bincount(values.astype(np.int64), minlength=largest + 1)
        ids = np.flatnonzero(areas_by_id)
        lookup = np.zeros(largest + 1, dtype=np.int64)
        lookup[ids] = np.arange(1, ids.size + 1)
        index[foreground] = lookup[values]
        return ids, index, areas_by_id[ids]
    ids, inverse, areas = np.unique(values, return_inverse=True, return_counts=True)
    index[foreground] = inverse.ravel() + 1
    return ids, index, areas


def _overlaps(gt_labels: np.ndarray, pred_labels: np.ndarray) -> dict:
    """Sparse joint histogram of two label images of the same shape.

    Returns gt_ids, pred_ids, gt_area, pred_area (per instance) and, for every overlapping pair,
    pair_gt / pair_pred (row / column indices into the id arrays) and pair_inter (pixels in common).
    """
    if np.shape(gt_labels) != np.shape(pred_labels):
        raise ValueError(f"label images differ in shape: {np.shape(gt_labels)} vs {np.shape(pred_labels)}")
    gt_ids, gt_index, gt_area = _compact_labels(gt_labels)
    pred_ids, pred_index, pred_area = _compact_labels(pred_labels)
    both = (gt_index > 0) & (pred_index > 0)
    key = (gt_index[both] - 1) * max(pred_ids.size, 1) + (pred_index[both] - 1)
    pair_key, pair_inter = np.unique(key, return_counts=True)
    return {"gt_ids": gt_ids, "pred_ids": pred_ids, "gt_area": gt_area, "pred_area": pred_area,
            "pair_gt": pair_key // max(pred_ids.size, 1), "pair_pred": pair_key % max(pred_ids.size, 1),
            "pair_inter": pair_inter}


def _pair_iou(ov: dict) -> np.ndarray:
    inter = ov["pair_inter"]
    return inter / (ov["gt_area"][ov["pair_gt"]] + ov["pred_area"][ov["pair_pred"]] - inter)


def match_instances(gt_labels: np.ndarray, pred_labels: np.ndarray) -> np.ndarray:
    """IoU of every GT instance with every predicted instance.

    gt_labels, pred_labels: (H, W) integer label images (0 = background).
    Returns float64 (n_gt, n_pred); rows follow the sorted positive GT ids, columns the sorted positive
    predicted ids.
    """
    ov = _overlaps(gt_labels, pred_labels)
    iou = np.zeros((ov["gt_ids"].size, ov["pred_ids"].size))
    iou[ov["pair_gt"], ov["pair_pred"]] = _pair_iou(ov)
    return iou


def _one_to_one(rows: np.ndarray, cols: np.ndarray, weight: np.ndarray, most_pairs_first: bool) -> np.ndarray:
    """Maximum-weight one-to-one matching over the given candidate pairs (a sparse bipartite graph).

    rows, cols, weight: (n,) candidate pairs, weight in (0, 1]. With most_pairs_first the number of matched
    pairs is maximised first and the total weight breaks ties (stardist's rule); otherwise total weight only.
    Returns the indices (into the pair arrays) of the chosen pairs. Solved per connected component, so
    a large sparse image costs little.
    """
    if rows.size == 0:
        return np.zeros(0, dtype=np.int64)
    _, row_node = np.unique(rows, return_inverse=True)
    _, col_node = np.unique(cols, return_inverse=True)
    n_row = int(row_node.max()) + 1
    n_nodes = n_row + int(col_node.max()) + 1
    graph = coo_matrix((np.ones(rows.size), (row_node, n_row + col_node)), shape=(n_nodes, n_nodes))
    _, component = connected_components(graph, directed=False)
    pair_component = component[row_node]
    order = np.argsort(pair_component, kind="stable")
    sizes = np.bincount(pair_component)
    chosen = [order[np.cumsum(sizes)[sizes == 1] - 1]]  # isolated pairs match trivially
    bounds = np.r_[0, np.cumsum(sizes)]
    for c in np.flatnonzero(sizes > 1):
        members = order[bounds[c]:bounds[c + 1]]
        r_local, r_node = np.unique(row_node[members], return_inverse=True)
        c_local, c_node = np.unique(col_node[members], return_inverse=True)
        gain = np.zeros((r_local.size, c_local.size))
        w = weight[members]
        if most_pairs_first:
            # Each pair is worth 1 plus at most 1/2 in total, so one more pair always beats more weight.
            w = 1.0 + w / (2 * min(r_local.size, c_local.size))
        gain[r_node, c_node] = w
        pair_at = np.full(gain.shape, -1)
        pair_at[r_node, c_node] = members
        r_sel, c_sel = linear_sum_assignment(gain, maximize=True)
        picked = pair_at[r_sel, c_sel]
        chosen.append(picked[picked >= 0])
    return np.concatenate(chosen)


def _safe_ratio(numerator: float, denominator: float) -> float:
    return float(numerator / denominator) if denominator > 0 else 0.0


def matching_metrics(gt_list: list[np.ndarray], pred_list: list[np.ndarray],
                     thresholds=DEFAULT_THRESHOLDS) -> dict:
    """Detection-style metrics from one-to-one matching, pooled over images.

    gt_list, pred_list: paired (H, W) integer label images (0 = background).
    thresholds: IoU thresholds for f1_by_iou / f1_mean.
    At each threshold t, instances are matched one-to-one within each image among pairs with IoU >= t,
    maximising the number of matches and then their total IoU (stardist's rule). Matched pairs are TP,
    unmatched predictions FP, unmatched GT FN; precision = TP/(TP+FP), recall = TP/(TP+FN),
    F1 = 2TP/(2TP+FP+FN), each 0.0 when its denominator is 0.
    FNR_t = 1 - TP_t / n_gt (LACSS), fnr_50 at t=0.5 and afnr its mean over t = 0.50, 0.55, ..., 0.95.
    mean_dice (WSISPDR's mDice = 1/M sum_u 2tp_u / (2tp_u + fn_u + fp_u)): every GT cell u is assigned at
    most one prediction by a one-to-one matching that maximises the total Dice over overlapping pairs
    (any overlap allowed); tp_u / fn_u / fp_u are the pixels of the pair's intersection / GT only /
    prediction only, an unassigned GT cell scores 0, and M is the number of GT cells (so unmatched
    predictions do not lower it). NaN when there is no GT cell.
    f1_mean_10: the mean F1 over IoU 0.1, 0.2, ..., 1.0 (the canonical-shape paper's F1_mean).
    image_iou, image_dice: foreground (label > 0) IoU and Dice of each image, averaged over images (an
    image with no foreground in either scores 1).
    Returns f1_50, f1_mean, f1_by_iou {t: F1}, f1_mean_10, precision_50, recall_50, fnr_50, afnr,
    mean_dice, image_iou, image_dice, n_gt, n_pred.
    """
    if len(gt_list) != len(pred_list):
        raise ValueError(f"{len(gt_list)} GT label images but {len(pred_list)} predictions")
    thresholds = [round(float(t), 2) for t in np.atleast_1d(thresholds)]
    all_thresholds = sorted(set(thresholds) | {0.5} | {round(float(t), 2) for t in AFNR_THRESHOLDS}
                            | {round(float(t), 2) for t in SHAPE_THRESHOLDS})
    tp = dict.fromkeys(all_thresholds, 0)
    n_gt = n_pred = 0
    dice_sum = 0.0
    image_iou, image_dice = [], []
    for gt_labels, pred_labels in zip(gt_list, pred_list):
        g, p = np.asarray(gt_labels) > 0, np.asarray(pred_labels) > 0
        inter, union, total = np.count_nonzero(g & p), np.count_nonzero(g | p), np.count_nonzero(g) + np.count_nonzero(p)
        image_iou.append(inter / union if union else 1.0)
        image_dice.append(2 * inter / total if total else 1.0)
        ov = _overlaps(gt_labels, pred_labels)
        n_gt += ov["gt_ids"].size
        n_pred += ov["pred_ids"].size
        iou = _pair_iou(ov)
        for t in all_thresholds:
            ok = iou >= t
            tp[t] += _one_to_one(ov["pair_gt"][ok], ov["pair_pred"][ok], iou[ok], most_pairs_first=True).size
        dice = 2 * ov["pair_inter"] / (ov["gt_area"][ov["pair_gt"]] + ov["pred_area"][ov["pair_pred"]])
        dice_sum += float(dice[_one_to_one(ov["pair_gt"], ov["pair_pred"], dice, most_pairs_first=False)].sum())

    def f1(t):
        return _safe_ratio(2 * tp[t], n_gt + n_pred)  # 2TP + FP + FN = n_gt + n_pred

    fnr = {t: 1.0 - _safe_ratio(tp[t], n_gt) for t in all_thresholds}
    f1_by_iou = {t: f1(t) for t in thresholds}
    return {
        "f1_50": f1(0.5),
        "f1_mean": float(np.mean(list(f1_by_iou.values()))),
        "f1_by_iou": f1_by_iou,
        "f1_mean_10": float(np.mean([f1(round(float(t), 2)) for t in SHAPE_THRESHOLDS])),
        "precision_50": _safe_ratio(tp[0.5], n_pred),
        "recall_50": _safe_ratio(tp[0.5], n_gt),
        "fnr_50": fnr[0.5],
        "afnr": float(np.mean([fnr[round(float(t), 2)] for t in AFNR_THRESHOLDS])),
        "mean_dice": dice_sum / n_gt if n_gt else float("nan"),
        "image_iou": float(np.mean(image_iou)) if image_iou else float("nan"),
        "image_dice": float(np.mean(image_dice)) if image_dice else float("nan"),
        "n_gt": int(n_gt),
        "n_pred": int(n_pred),
    }


# -------------------------------------------------------------------------------------- everything

def evaluate(gt: dict, preds, image_ids=None, scores: dict | None = None, score_threshold: float = 0.0) -> dict:
    """Mask AP, box AP (keys prefixed box_) and matching metrics of predictions against COCO GT.

    gt: COCO dataset dict. preds: {image_id: (H, W) label image} (a missing image counts as an empty
        prediction) or a COCO results list. image_ids: images to score (default: all of gt's, in order).
    scores: for label images, optional {image_id: {instance id: score}} (default 1.0) used for AP.
    score_threshold: predictions scoring below it are left out of the matching metrics (not of AP); for a
        results list the kept masks are painted highest score on top.
    Returns a flat dict of floats/ints plus f1_by_iou, with n_images.
    """
    images = {img["id"]: img for img in gt["images"]}
    image_ids = list(images) if image_ids is None else list(image_ids)
    missing = [i for i in image_ids if i not in images]
    if missing:
        raise KeyError(f"image ids not in the GT: {missing[:10]}")
    wanted = set(image_ids)
    sub_gt = dict(gt, images=[images[i] for i in image_ids],
                  annotations=[a for a in gt.get("annotations", []) if a["image_id"] in wanted])

    scores = scores or {}
    pred_labels, results = [], []
    if isinstance(preds, dict):
        for i in image_ids:
            shape = (images[i]["height"], images[i]["width"])
            labels = preds.get(i)
            labels = np.zeros(shape, dtype=np.uint32) if labels is None else np.asarray(labels)
            if labels.shape != shape:
                raise ValueError(f"prediction for image {i} has shape {labels.shape}, GT image is {shape}")
            image_scores = scores.get(i, {})
            results += labels_to_coco_results(labels, i, scores=image_scores)
            low = [k for k, s in image_scores.items() if s < score_threshold]
            if low:
                labels = np.where(np.isin(labels, low), 0, labels)
            pred_labels.append(labels)
    else:
        results = [r for r in preds if r["image_id"] in wanted]
        by_image = {i: [] for i in image_ids}
        for r in results:
            by_image[r["image_id"]].append(r)
        for i in image_ids:
            pred_labels.append(results_label_image(by_image[i], images[i]["height"], images[i]["width"],
                                                   score_threshold))

    metrics = dict(coco_mask_ap(sub_gt, results, "segm"))
    metrics.update({f"box_{k}": v for k, v in coco_mask_ap(sub_gt, results, "bbox").items()})
    gt_labels = [gt_label_image(sub_gt, i) for i in image_ids]
    metrics.update(matching_metrics(gt_labels, pred_labels))
    metrics["n_images"] = len(image_ids)
    return metrics


def format_table(metrics: dict) -> str:
    """Fixed-width text table of an `evaluate` result (sections whose keys are absent are skipped)."""
    def cell(value):
        if isinstance(value, (int, np.integer)):
            return f"{value:>8d}"
        return f"{'n/a':>8}" if value is None or np.isnan(value) else f"{value:>8.4f}"

    def section(title, keys, labels):
        present = [(k, lab) for k, lab in zip(keys, labels) if k in metrics]
        if not present:
            return []
        return [title, "  " + "".join(f"{lab:>8}" for _, lab in present),
                "  " + "".join(cell(metrics[k]) for k, _ in present), ""]

    lines = []
    lines += section("Mask AP (COCO, IoU .50:.95, maxDets 2000; s < 18^2 px < m < 31^2 px < l)",
                     _AP_KEYS, _AP_KEYS)
    lines += section("Box AP", [f"box_{k}" for k in _AP_KEYS], _AP_KEYS)
    lines += section("Matching at IoU 0.5 (one-to-one)",
                     ["f1_50", "precision_50", "recall_50", "fnr_50", "afnr", "f1_mean", "mean_dice"],
                     ["F1", "prec", "recall", "FNR", "AFNR", "F1 mean", "mDice"])
    by_iou = metrics.get("f1_by_iou")
    if by_iou:
        lines += ["F1 by IoU threshold",
                  "  " + "".join(f"{float(t):>8.2f}" for t in by_iou),
                  "  " + "".join(cell(v) for v in by_iou.values()), ""]
    lines += section("Counts", ["n_images", "n_gt", "n_pred"], ["images", "GT", "pred"])
    return "\n".join(lines).rstrip() + "\n"

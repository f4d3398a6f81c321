"""Benchmark metrics: COCO AP with LIVECell settings, one-to-one matching metrics, and the evaluate CLI."""
import contextlib
import io
import json

import numpy as np
import pycocotools.mask as mask_utils
import pytest
import tifffile
from click.testing import CliRunner
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from cellpoint.runtime.coco_results import decode_rle_counts, encode_rle, labels_to_coco_results
from cellpoint.training.cli.evaluate import evaluate as evaluate_command
from cellpoint.training.evaluation import (AREA_LABELS, AREA_RANGES, MAX_DETS, _one_to_one, coco_mask_ap,
                                           evaluate, format_table, gt_label_image, match_instances,
                                           matching_metrics, run_cocoeval)


def _coco_gt(label_images: dict, file_names: dict | None = None) -> dict:
    """COCO GT dict from {image_id: label image}, one annotation (RLE) per instance."""
    images, annotations = [], []
    for image_id, labels in label_images.items():
        height, width = labels.shape
        name = (file_names or {}).get(image_id, f"img{image_id}.tif")
        images.append({"id": image_id, "file_name": name, "height": height, "width": width})
        for result in labels_to_coco_results(labels, image_id):
            annotations.append({**result, "id": len(annotations) + 1, "iscrowd": 0})
    return {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "cell"}]}


def _squares(shape, boxes) -> np.ndarray:
    """Label image with instance k + 1 filling boxes[k] = (row0, row1, col0, col1) (exclusive ends)."""
    labels = np.zeros(shape, dtype=np.int32)
    for k, (r0, r1, c0, c1) in enumerate(boxes):
        labels[r0:r1, c0:c1] = k + 1
    return labels


def _grid(n, size, step) -> np.ndarray:
    return _squares((n * step, n * step), [(step * i, step * i + size, step * j, step * j + size)
                                           for i in range(n) for j in range(n)])


# ------------------------------------------------------------------------------------------ COCO AP

def test_dense_image_needs_maxdets_2000():
    labels = _grid(34, 5, 6)  # 1156 cells of 25 px in one image
    gt = _coco_gt({1: labels})
    results = labels_to_coco_results(labels, 1)
    ap = coco_mask_ap(gt, results)
    assert ap["AP"] == ap["AP50"] == ap["AP75"] == ap["APs"] == 1.0
    assert np.isnan(ap["APm"]) and np.isnan(ap["APl"])  # no medium/large GT
    assert coco_mask_ap(gt, results, iou_type="bbox")["AP"] == 1.0

    evaluator = run_cocoeval(gt, results)
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator.summarize()
    # summarize()'s first line is AP at maxDets=100: only 100 of 1156 cells can be found.
    assert evaluator.stats[0] < 0.1


def test_hand_computed_ap_with_false_positive_and_image_without_gt():
    gt_labels = _squares((30, 30), [(2, 8, 2, 8), (15, 25, 15, 25)])
    gt = _coco_gt({1: gt_labels, 2: np.zeros((30, 30), dtype=np.int32)})
    hit = labels_to_coco_results(_squares((30, 30), [(2, 8, 2, 8)]), 1, scores={1: 0.9})
    miss = labels_to_coco_results(_squares((30, 30), [(0, 1, 28, 30)]), 1, scores={1: 0.8})
    # Ranked hit, miss: precision 1 up to recall 0.5 -> 51 of COCO's 101 recall points.
    ap = coco_mask_ap(gt, hit + miss)
    assert ap["AP"] == pytest.approx(51 / 101) and ap["AP50"] == pytest.approx(51 / 101)
    # A higher-scored detection on the image without GT comes first: precision 1/2 up to recall 0.5.
    fp_elsewhere = labels_to_coco_results(_squares((30, 30), [(10, 20, 10, 20)]), 2, scores={1: 0.95})
    assert coco_mask_ap(gt, hit + miss + fp_elsewhere)["AP50"] == pytest.approx(0.5 * 51 / 101)
    # Results on images outside gt are ignored (the caller restricts gt).
    elsewhere = labels_to_coco_results(gt_labels, 99)
    assert coco_mask_ap(gt, hit + miss + elsewhere)["AP"] == pytest.approx(51 / 101)


def test_empty_results_score_zero():
    gt = _coco_gt({1: _squares((40, 40), [(0, 10, 0, 10), (20, 40, 20, 40)])})
    ap = coco_mask_ap(gt, [])
    assert ap["AP"] == ap["AP50"] == ap["APs"] == ap["APm"] == 0.0  # 100 px and 400 px cells
    assert np.isnan(ap["APl"])
    assert np.isnan(coco_mask_ap({"images": [], "annotations": []}, [])["AP"])


def test_segm_area_ranges_use_mask_area_not_box_area():
    # An L-shaped cell: mask area 300 (small) but box area 400 (medium).
    labels = np.zeros((30, 30), dtype=np.int32)
    labels[0:20, 0:5] = 1
    labels[15:20, 5:20] = 1
    gt = _coco_gt({1: labels})
    ap = coco_mask_ap(gt, labels_to_coco_results(labels, 1))
    assert ap["APs"] == pytest.approx(1.0) and np.isnan(ap["APm"])


def test_sparse_matching_equals_pycocotools():
    rng = np.random.default_rng(5)
    boxes = []
    for _ in range(25):
        r, c = rng.integers(0, 100, 2)
        h, w = rng.integers(3, 40, 2)
        boxes.append((r, r + h, c, c + w))
    gt_labels = _squares((120, 120), boxes)
    gt = _coco_gt({1: gt_labels, 2: _grid(4, 8, 10)})
    gt["annotations"].append({"id": len(gt["annotations"]) + 1, "image_id": 1, "category_id": 1, "iscrowd": 1,
                              "segmentation": encode_rle(_squares((120, 120), [(100, 120, 0, 30)]) > 0),
                              "area": 600.0, "bbox": [0.0, 100.0, 30.0, 20.0]})
    results = []
    for image_id, labels in [(1, gt_labels), (2, _grid(4, 8, 10))]:
        shifted = np.roll(labels, tuple(rng.integers(-3, 4, 2)), axis=(0, 1))
        ids = np.unique(shifted)[1:]
        scores = {int(i): float(rng.choice([0.2, 0.5, 0.8])) for i in ids}  # ties on purpose
        results += labels_to_coco_results(shifted, image_id, scores=scores)
    results += labels_to_coco_results(_squares((120, 120), [(105, 115, 5, 25)]), 1, scores={1: 0.6})

    ours = run_cocoeval(gt, results)
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = json.loads(json.dumps(gt))
        coco_gt.createIndex()
        stock = COCOeval(coco_gt, coco_gt.loadRes([{k: v for k, v in r.items() if k != "bbox"} for r in results]),
                         iouType="segm")
        stock.params.maxDets, stock.params.areaRng, stock.params.areaRngLbl = MAX_DETS, AREA_RANGES, AREA_LABELS
        stock.evaluate()
        stock.accumulate()
    assert 0.2 < coco_mask_ap(gt, results)["AP50"] < 0.95
    np.testing.assert_array_equal(ours.eval["precision"], stock.eval["precision"])
    np.testing.assert_array_equal(ours.eval["recall"], stock.eval["recall"])


# ----------------------------------------------------------------------------------------- matching

def test_match_instances_equals_brute_force():
    rng = np.random.default_rng(2)
    gt = np.zeros((40, 50), dtype=np.int64)
    pred = np.zeros((40, 50), dtype=np.int64)
    for k in range(12):
        r, c = rng.integers(0, 35, 2)
        gt[r:r + rng.integers(2, 12), c:c + rng.integers(2, 12)] = 3 * k + 1
        r, c = rng.integers(0, 35, 2)
        pred[r:r + rng.integers(2, 12), c:c + rng.integers(2, 12)] = 10**12 + k  # huge ids: the sorting path
    iou = match_instances(gt, pred)
    gt_ids, pred_ids = np.unique(gt)[1:], np.unique(pred)[1:]
    expected = np.array([[np.sum((gt == g) & (pred == p)) / np.sum((gt == g) | (pred == p))
                          for p in pred_ids] for g in gt_ids])
    assert iou.shape == (gt_ids.size, pred_ids.size)
    np.testing.assert_allclose(iou, expected)
    assert (expected > 0).sum() >= 3  # the case really has overlaps


def test_one_to_one_counts_first_or_weight_only():
    rows, cols, weight = np.array([0, 0, 1]), np.array([0, 1, 0]), np.array([0.9, 0.2, 0.2])
    assert sorted(_one_to_one(rows, cols, weight, most_pairs_first=True).tolist()) == [1, 2]
    assert _one_to_one(rows, cols, weight, most_pairs_first=False).tolist() == [0]


def test_matching_metrics_hand_computed():
    gt = _squares((40, 60), [(2, 12, 2, 12), (2, 12, 20, 30), (25, 35, 2, 12), (25, 35, 20, 30)])
    pred = np.zeros_like(gt)
    pred[2:12, 2:12] = 7    # exact copy of GT 1
    pred[2:12, 22:32] = 8   # GT 2 shifted by 2 px: IoU 80/120 = 2/3, Dice 0.8
    pred[25:35, 45:55] = 9  # false positive; GT 3 and 4 are missed
    m = matching_metrics([gt], [pred])
    assert (m["n_gt"], m["n_pred"]) == (4, 3)
    assert m["f1_50"] == pytest.approx(4 / 7)  # TP 2, FP 1, FN 2
    assert m["precision_50"] == pytest.approx(2 / 3) and m["recall_50"] == pytest.approx(0.5)
    assert m["fnr_50"] == pytest.approx(0.5)
    # TP = 2 at IoU 0.50..0.65 (4 thresholds), 1 at 0.70..0.95 (6): FNR 0.5 x4 and 0.75 x6.
    assert m["afnr"] == pytest.approx(0.65)
    assert m["f1_by_iou"][0.6] == pytest.approx(4 / 7) and m["f1_by_iou"][0.7] == pytest.approx(2 / 7)
    assert m["f1_mean"] == pytest.approx((6 * 4 / 7 + 3 * 2 / 7) / 9)
    assert m["mean_dice"] == pytest.approx((1.0 + 0.8 + 0 + 0) / 4)

    # Pooling over images: the same pair twice gives the same rates, doubled counts.
    twice = matching_metrics([gt, gt], [pred, pred])
    assert twice["n_gt"] == 8 and twice["f1_50"] == pytest.approx(m["f1_50"])


def test_mean_dice_split_cell():
    gt = _squares((20, 40), [(0, 10, 0, 10), (0, 10, 20, 30)])
    pred = np.zeros_like(gt)
    pred[0:10, 0:6] = 1   # 60 px of GT 1: Dice 120 / 160
    pred[0:10, 6:10] = 2  # the other 40 px: Dice 80 / 140, loses the one-to-one assignment
    m = matching_metrics([gt], [pred])  # GT 2 has no prediction: Dice 0
    assert m["mean_dice"] == pytest.approx(0.75 / 2)
    assert np.isnan(matching_metrics([np.zeros((4, 4), int)], [pred[:4, :4]])["mean_dice"])


# ---------------------------------------------------------------------------------- label images

def test_gt_label_image_all_segmentation_kinds_and_overwrite_order():
    h, w = 20, 30
    polygon = [[2.0, 2.0, 12.0, 2.0, 12.0, 12.0, 2.0, 12.0]]
    second = np.zeros((h, w), dtype=bool)
    second[5:15, 8:20] = True
    uncompressed = {"size": [h, w], "counts": decode_rle_counts(encode_rle(second)["counts"]).tolist()}
    third = np.zeros((h, w), dtype=bool)
    third[0:5, 25:30] = True
    coco = {"images": [{"id": 4, "height": h, "width": w, "file_name": "x.png"}],
            "annotations": [{"image_id": 4, "segmentation": polygon},
                            {"image_id": 4, "segmentation": uncompressed},
                            {"image_id": 5, "segmentation": encode_rle(~third)},  # other image
                            {"image_id": 4, "segmentation": encode_rle(third)}]}
    labels = gt_label_image(coco, 4)
    first = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(polygon, h, w))).astype(bool)
    expected = np.zeros((h, w), dtype=np.uint32)
    for k, mask in enumerate([first, second, third]):
        expected[mask] = k + 1
    assert labels.dtype == np.uint32
    np.testing.assert_array_equal(labels, expected)
    assert labels[6, 10] == 2 and first[6, 10]  # the later annotation wins the overlap


# ------------------------------------------------------------------------------------- evaluate

def test_evaluate_label_dict_and_results_list_agree():
    gt_labels = {1: _squares((30, 40), [(0, 10, 0, 10), (12, 30, 12, 30)]), 2: _squares((20, 20), [(5, 9, 5, 9)])}
    gt = _coco_gt(gt_labels)
    pred = {1: np.roll(gt_labels[1], 1, axis=1), 2: gt_labels[2]}
    from_labels = evaluate(gt, pred)
    from_results = evaluate(gt, [r for i, lab in pred.items() for r in labels_to_coco_results(lab, i)])
    assert from_labels.pop("f1_by_iou") == pytest.approx(from_results.pop("f1_by_iou"))
    assert from_labels == pytest.approx(from_results, nan_ok=True)
    assert from_labels["n_images"] == 2 and from_labels["n_gt"] == 3
    assert from_labels["f1_50"] == 1.0 and from_labels["AP50"] == pytest.approx(1.0)
    assert from_labels["AP"] < 0.9  # the 1 px shift fails the strict IoU thresholds
    assert "box_AP" in from_labels

    only_first = evaluate(gt, {1: pred[1]}, image_ids=[2])  # image 2 has no prediction: empty
    assert only_first["n_images"] == 1 and only_first["n_pred"] == 0 and only_first["AP"] == 0.0


def test_format_table_lists_metrics():
    gt_labels = {1: _squares((30, 40), [(0, 10, 0, 10), (12, 30, 12, 30)])}
    table = format_table(evaluate(_coco_gt(gt_labels), gt_labels))
    assert "Mask AP" in table and "Box AP" in table and "mDice" in table
    assert "n/a" in table           # APs/APm have no GT here
    assert "  1.0000" in table


# ------------------------------------------------------------------------------------------- CLI

@pytest.fixture
def cli_case(tmp_path):
    gt_labels = {1: _squares((30, 40), [(0, 10, 0, 10), (12, 30, 12, 30)]), 2: _squares((20, 20), [(5, 9, 5, 9)])}
    gt = _coco_gt(gt_labels, file_names={1: "images/a.tif", 2: "images/b.png"})
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "split.json").write_text(json.dumps({"train": [2], "val": [1]}))
    pred_dir = tmp_path / "pred"
    pred_dir.mkdir()
    tifffile.imwrite(pred_dir / "a_labels.tif", gt_labels[1].astype(np.uint16))
    (pred_dir / "a_instances.csv").write_text("id,area,score\n1,100,0.9\n2,324,0.4\n")
    return tmp_path


def _run(case, *args):
    return CliRunner().invoke(evaluate_command, ["--gt", str(case / "gt.json"), *[str(a) for a in args]])


def test_cli_label_dir_json_and_missing_prediction(cli_case):
    out = cli_case / "metrics.json"
    result = _run(cli_case, "--pred", cli_case / "pred", "--json", "--out", out)
    assert result.exit_code == 0, result.output
    assert "images/b.png" in result.stderr  # no b_labels.*: warned, scored as empty
    metrics = json.loads(result.stdout)
    assert metrics == json.loads(out.read_text())
    assert (metrics["n_images"], metrics["n_gt"], metrics["n_pred"]) == (2, 3, 2)
    assert metrics["recall_50"] == pytest.approx(2 / 3) and metrics["precision_50"] == 1.0
    assert metrics["APl"] is None  # no cell above 31^2 px: NaN, written as null


def test_cli_scores_from_instance_table(cli_case):
    labels = np.zeros((30, 40), dtype=np.uint16)
    labels[0:10, 0:10], labels[12:30, 12:30] = 1, 2    # the two GT cells
    labels[0:5, 30:40], labels[25:30, 0:5] = 3, 4      # two false positives
    tifffile.imwrite(cli_case / "pred" / "a_labels.tif", labels)
    table = cli_case / "pred" / "a_instances.csv"
    args = ["--pred", cli_case / "pred", "--split", cli_case / "split.json", "--json"]
    table.unlink()
    unscored = json.loads(_run(cli_case, *args).stdout)  # all 1.0: ranked by id, both hits first
    table.write_text("id,score\n1,0.2\n2,0.3\n3,0.9\n4,0.8\n")
    scored = json.loads(_run(cli_case, *args).stdout)    # misses first: precision 1/3, then 2/4 at recall 1
    assert unscored["f1_50"] == scored["f1_50"] == pytest.approx(4 / 6)
    assert unscored["AP50"] == pytest.approx(1.0) and scored["AP50"] == pytest.approx(0.5)


def test_cli_split_subset_table_and_results_file(cli_case):
    result = _run(cli_case, "--pred", cli_case / "pred", "--split", cli_case / "split.json")  # val = image 1
    assert result.exit_code == 0, result.output
    assert "Mask AP" in result.stdout and result.stderr == ""

    results = labels_to_coco_results(_squares((20, 20), [(5, 9, 5, 9)]), 2)
    (cli_case / "results.json").write_text(json.dumps(results))
    result = _run(cli_case, "--pred", cli_case / "results.json", "--split", cli_case / "split.json",
                  "--subset", "train", "--json")
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    assert metrics["n_images"] == 1 and metrics["AP"] == pytest.approx(1.0) and metrics["f1_50"] == 1.0


def test_cli_reports_unreadable_inputs(cli_case):
    (cli_case / "pred" / "a_labels.tif").write_bytes(b"not an image")
    result = _run(cli_case, "--pred", cli_case / "pred")
    assert result.exit_code != 0 and "a_labels.tif" in result.output

    (cli_case / "bad.json").write_text("{")
    result = CliRunner().invoke(evaluate_command, ["--gt", str(cli_case / "bad.json"), "--pred", str(cli_case / "pred")])
    assert result.exit_code != 0 and "bad.json" in result.output

    result = _run(cli_case, "--pred", cli_case / "pred", "--split", cli_case / "split.json", "--subset", "test")
    assert result.exit_code != 0 and "'test'" in result.output

"""`cellpoint evaluate`: score predictions (a folder of label images or a COCO results file) against COCO GT."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import click
import numpy as np

from cellpoint.training import annotations

from cellpoint.training.evaluation import evaluate as evaluate_metrics
from cellpoint.training.evaluation import format_table

LABEL_SUFFIXES = ("_labels.tif", "_labels.tiff", "_labels.png")


def _read_json(path: Path, what: str):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as error:
        raise click.ClickException(f"cannot read {what} {path}: {error}") from error


def read_label_image(path: Path) -> np.ndarray:
    """Integer label image (H, W); a click error naming the file if it is not one."""
    try:
        return annotations.read_label_image(path)
    except (OSError, ValueError) as error:
        raise click.ClickException(str(error)) from error


def remap_by_file_name(results: list[dict], images: list[dict]) -> list[dict]:
    """Results that carry a `file_name` (as `cellpoint segment --coco` writes) get the ground truth's
    image_id of the image with that file name; others are left as they are."""
    by_name = {Path(img["file_name"]).name: img["id"] for img in images}
    out = []
    for r in results:
        if "file_name" in r and Path(r["file_name"]).name in by_name:
            r = dict(r, image_id=by_name[Path(r["file_name"]).name])
        out.append(r)
    return out


def read_scores(path: Path) -> dict[int, float]:
    """{instance id: score} from an instance table CSV with `id` and `score` columns."""
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        if rows and not {"id", "score"} <= set(rows[0]):
            raise ValueError(f"needs columns 'id' and 'score', has {sorted(rows[0])}")
        return {int(row["id"]): float(row["score"]) for row in rows}
    except (OSError, ValueError) as error:
        raise click.ClickException(f"cannot read instance table {path}: {error}") from error


def _find_label_file(pred_dir: Path, stem: str) -> Path | None:
    for suffix in LABEL_SUFFIXES:
        candidate = pred_dir / f"{stem}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def _load_label_dir(pred_dir: Path, images: list[dict]) -> tuple[dict, dict]:
    """Label images and scores per image id; missing files are warned about and left out (= empty)."""
    preds, scores = {}, {}
    for image in images:
        stem = Path(image["file_name"]).stem
        path = _find_label_file(pred_dir, stem)
        if path is None:
            click.echo(f"warning: no prediction for {image['file_name']} ({stem}_labels.tif/.tiff/.png "
                       f"in {pred_dir}); scored as empty", err=True)
            continue
        labels = read_label_image(path)
        expected = (image["height"], image["width"])
        if labels.shape != expected:
            raise click.ClickException(f"label image {path} is {labels.shape[0]}x{labels.shape[1]}, "
                                       f"GT image {image['file_name']} is {expected[0]}x{expected[1]}")
        preds[image["id"]] = labels
        table = pred_dir / f"{stem}_instances.csv"
        if table.is_file():
            scores[image["id"]] = read_scores(table)
    return preds, scores


def _subset_ids(split_path: Path | None, subset: str | None, gt: dict) -> list[int]:
    all_ids = [img["id"] for img in gt["images"]]
    if split_path is None:
        if subset is not None:
            raise click.UsageError("--subset needs --split")
        return all_ids
    split = _read_json(split_path, "split file")
    subset = subset or "val"
    if not isinstance(split, dict) or not isinstance(split.get(subset), list):
        keys = sorted(k for k, v in split.items() if isinstance(v, list)) if isinstance(split, dict) else []
        raise click.ClickException(f"split file {split_path} has no image-id list {subset!r} (has {keys})")
    if not split[subset]:
        raise click.ClickException(f"subset {subset!r} of {split_path} is empty")
    unknown = sorted(set(split[subset]) - set(all_ids))
    if unknown:
        raise click.ClickException(f"subset {subset!r} of {split_path} names image ids not in the GT: {unknown[:10]}")
    return list(split[subset])


def _jsonable(value):
    """NaN -> None (JSON has no NaN); numpy scalars -> Python; dict keys -> str."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (np.integer, int)) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return None if math.isnan(value) else float(value)
    return value


@click.command("evaluate")
@click.option("--gt", "gt_path", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="COCO annotation JSON with the ground truth.")
@click.option("--pred", "pred_path", required=True, type=click.Path(exists=True, path_type=Path),
              help="Folder of <stem>_labels.tif/.tiff/.png (optional <stem>_instances.csv with id,score), "
                   "or a COCO results JSON.")
@click.option("--split", "split_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="split.json mapping subset names to GT image ids.")
@click.option("--subset", help="Subset of --split to score (default: val).")
@click.option("--score-threshold", type=float, default=0.0, show_default=True,
              help="Leave out predictions scoring below this from the matching metrics (AP uses all).")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON instead of a table.")
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the metrics as JSON to this file.")
def evaluate(gt_path, pred_path, split_path, subset, score_threshold, as_json, out_path):
    """Score predictions against COCO ground truth: mask and box AP (LIVECell settings, maxDets 2000),
    F1 over IoU thresholds, FNR/AFNR and mean Dice."""
    gt = _read_json(gt_path, "GT file")
    if not isinstance(gt, dict) or not isinstance(gt.get("images"), list):
        raise click.ClickException(f"GT file {gt_path} is not a COCO dataset (no 'images' list)")
    image_ids = _subset_ids(split_path, subset, gt)
    wanted = set(image_ids)
    images = [img for img in gt["images"] if img["id"] in wanted]

    scores = None
    if pred_path.is_dir():
        preds, scores = _load_label_dir(pred_path, images)
    else:
        preds = _read_json(pred_path, "results file")
        if isinstance(preds, dict) and isinstance(preds.get("annotations"), list):
            preds = preds["annotations"]
        if not isinstance(preds, list):
            raise click.ClickException(f"results file {pred_path} is not a COCO results list")
        preds = remap_by_file_name(preds, gt["images"])
    try:
        metrics = evaluate_metrics(gt, preds, image_ids=image_ids, scores=scores, score_threshold=score_threshold)
    except (KeyError, ValueError, TypeError) as error:
        raise click.ClickException(f"cannot evaluate {pred_path} against {gt_path}: {error}") from error

    text = json.dumps(_jsonable(metrics), indent=2)
    if out_path is not None:
        try:
            out_path.write_text(text + "\n")
        except OSError as error:
            raise click.ClickException(f"cannot write {out_path}: {error}") from error
    click.echo(text if as_json else format_table(metrics), nl=as_json)

"""`cellpoint train`: train a map-and-seed model from clicks (or full masks, the upper bound)."""
from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import click
import numpy as np

from cellpoint.training.datasets import parse_dataset_spec

# Objectness decay w per shared data set. The paper tunes its objectness parameters against masks of a
# validation set; these come from benchmarks/tune_objectness.py (F1@0.5 of the objectness regions against
# the masks of a subset of train images). Images of other data sets use --objectness-w.
OBJECTNESS_W = {"dsb2018_bbbc038": 150.0, "coelho2009_u2os_nih3t3": 95.0}
DEFAULT_W = 100.0



def _prepare_one(job):
    """Worker: load one item and build its canonical-scale training arrays."""
    from cellpoint.training.train import prepare_example
    from cellpoint.training.weak_labels import points_from_labels
    from cellpoint.training.datasets import load_sample
    from cellpoint.runtime.image_io import read_image
    from cellpoint.training.annotations import read_points, read_label_image
    kind, item, cfg, seed = job
    if kind == "shared":
        image, labels = load_sample(item)
        xy = points_from_labels(labels, cfg.point_placement, cfg.point_jitter, np.random.default_rng(seed))
    else:
        image_path, points_path, labels_path = item
        image = read_image(image_path)
        image = image.mean(-1) if image.ndim == 3 else image
        labels = read_label_image(labels_path) if labels_path else None
        xy = read_points(points_path)[0] if points_path else None
    points_rc = None if xy is None else xy[:, ::-1]
    return prepare_example(image.astype(np.float32), points_rc, labels, cfg)


def _prepare_shape_one(job):
    """Worker: load one image with its label image and build its canonical-shape training arrays."""
    from cellpoint.training.train_shape import prepare_shape_example
    from cellpoint.training.datasets import load_sample
    from cellpoint.runtime.image_io import read_image
    from cellpoint.training.annotations import read_label_image
    kind, item, cfg, _ = job
    if kind == "shared":
        image, labels = load_sample(item)
    else:
        image_path, _, labels_path = item
        image = read_image(image_path)
        image = image.mean(-1) if image.ndim == 3 else image
        labels = read_label_image(labels_path)
    return prepare_shape_example(image.astype(np.float32), labels, cfg)


def _prepare_wsispdr_one(job):
    """Worker: load one image with its clicks (derived from masks for shared data) at the canonical scale."""
    from cellpoint.training.train_wsispdr import prepare_wsispdr_example
    from cellpoint.training.weak_labels import points_from_labels
    from cellpoint.training.datasets import load_sample
    from cellpoint.runtime.image_io import read_image
    from cellpoint.training.annotations import read_points
    kind, item, cfg, seed, cell_diameter, placement, jitter = job
    if kind == "shared":
        image, labels = load_sample(item)
        if placement == "nuclei-dog":  # no human label: locations from the nuclear stain itself
            from cellpoint.training.machine_labels import nuclei_locations
            f = cell_diameter / 14.0
            xy = nuclei_locations(image, 4.2 * f, 5.0 * f, 0.1)
        else:
            xy = points_from_labels(labels, placement, jitter, np.random.default_rng(seed))
    else:
        image_path, points_path, _ = item
        image = read_image(image_path)
        image = image.mean(-1) if image.ndim == 3 else image
        xy = read_points(points_path)[0]
    return prepare_wsispdr_example(image.astype(np.float32), xy[:, ::-1], cell_diameter, cfg)


def _prepare_lacss_one(job):
    """Worker: one image with its locations and foreground (weak) or masks (full) at the canonical scale.

    Shared data: locations are the masks' centroids (or, with placement nuclei-dog, DoG maxima of the
    stain: no human label); the foreground is the masks' union or, with fg_source "machine", the
    automatic pick of `machine_labels.foreground_candidates` (no human label)."""
    from cellpoint.training.train_lacss import prepare_lacss_example
    from cellpoint.training.weak_labels import points_from_labels
    from cellpoint.training.datasets import load_sample
    from cellpoint.runtime.image_io import read_image
    from cellpoint.training.annotations import read_points, read_label_image
    kind, item, cfg, seed, cell_diameter, placement, fg_source = job
    if kind == "shared":
        image, labels = load_sample(item)
        image = image.mean(-1) if image.ndim == 3 else image
        if placement == "nuclei-dog":
            from cellpoint.training.machine_labels import nuclei_locations
            f = cell_diameter / 14.0
            xy = nuclei_locations(image, 4.2 * f, 5.0 * f, 0.1)
        else:
            xy = points_from_labels(labels, placement, 0.0, np.random.default_rng(seed))
        if fg_source == "machine":
            from cellpoint.training.machine_labels import choose_foreground, foreground_candidates
            masks, _ = foreground_candidates(image)
            foreground = masks[choose_foreground(image, masks, xy if placement == "nuclei-dog" else None)]
        else:
            foreground = labels > 0
    else:
        image_path, points_path, fg_path, labels_path = item
        image = read_image(image_path)
        image = image.mean(-1) if image.ndim == 3 else image
        xy = read_points(points_path)[0] if points_path else None
        labels = read_label_image(labels_path) if labels_path else None
        foreground = read_label_image(fg_path) > 0 if fg_path else None
    locations = None if xy is None else xy[:, ::-1]
    if cfg.mode == "full":
        return prepare_lacss_example(image.astype(np.float32), locations, None, labels, cell_diameter, cfg)
    return prepare_lacss_example(image.astype(np.float32), locations, foreground, None, cell_diameter, cfg)


def _lacss_jobs(datasets, images_dir, points_dir, fg_dir, masks_dir, cfg, seed, cell_diameter, placement,
                fg_source) -> list:
    """Jobs for `_prepare_lacss_one` from shared data sets (train split) and/or a user's folders."""
    from cellpoint.training.datasets import list_samples
    from cellpoint.training.validate import dataset_diameter
    jobs = []
    for spec in datasets:
        name, kinds = parse_dataset_spec(spec)
        d = dataset_diameter(name, kinds)
        jobs += [("shared", s, cfg, seed * 100003 + s.image_id, d, placement, fg_source)
                 for s in list_samples(name, "train", kinds)]
    if images_dir:
        for image in sorted(p for p in Path(images_dir).iterdir() if p.suffix.lower() in
                            {".tif", ".tiff", ".png", ".jpg", ".jpeg"}):
            pts = Path(points_dir) / f"{image.stem}_points.csv" if points_dir else None
            fg = Path(fg_dir) / f"{image.stem}_foreground.png" if fg_dir else None
            lab = next((p for p in Path(masks_dir).glob(f"{image.stem}*") if p.is_file()), None) if masks_dir else None
            needed = [lab] if cfg.mode == "full" else [pts, fg]
            if any(p is None or not p.exists() for p in needed):
                click.echo(f"skipped {image.name}: missing " + ", ".join(
                    str(p) for p in needed if p is not None and not p.exists()) or "labels", err=True)
                continue
            jobs.append(("user", (image, pts if pts and pts.exists() else None, fg, lab), cfg, 0, cell_diameter,
                         placement, fg_source))
    return jobs


def pretraining_entries(checkpoint: dict) -> list[dict]:
    """A checkpoint's training data entries marked role "pretraining" (for one trained from its weights)."""
    return [dict(entry, role="pretraining") for entry in checkpoint.get("training_data", [])]


def _prepare_point2mask_one(job):
    """Worker: one image with a box + N clicks per cell (points mode) or its masks (full) at the canonical
    scale. Shared data: boxes and clicks derived from the masks exactly as `cellpoint labels --kind
    box-points` derives them (generator seeded by (seed, crc32(stem))); user data: the image's
    `<stem>_boxpoints.json` or its label image."""
    import json
    import zlib
    from cellpoint.training.train_point2mask import box_points_arrays, prepare_point2mask_example
    from cellpoint.training.weak_labels import box_points_from_labels
    from cellpoint.training.datasets import load_sample
    from cellpoint.runtime.image_io import read_image
    from cellpoint.training.annotations import read_label_image
    kind, item, cfg, seed, stem, cell_diameter = job
    labels = None
    if kind == "shared":
        image, labels = load_sample(item)
        rng = np.random.default_rng([seed, zlib.crc32(stem.encode())])
        cells = box_points_from_labels(labels, cfg.n_points, rng)
    else:
        image_path, boxpoints_path, labels_path = item
        image = read_image(image_path)
        if labels_path:
            labels = read_label_image(labels_path)
            cells = box_points_from_labels(labels, 1, np.random.default_rng(0))  # boxes and ids only
        else:
            cells = json.loads(Path(boxpoints_path).read_text())["cells"]
    image = image.mean(-1) if image.ndim == 3 else image
    boxes, points, point_labels, ids = box_points_arrays(cells)
    return prepare_point2mask_example(image.astype(np.float32), boxes, points, point_labels,
                                      labels if cfg.mode == "full" else None, cell_diameter, cfg, ids)


def _point2mask_jobs(datasets, images_dir, points_dir, masks_dir, cfg, seed, cell_diameter) -> list:
    """Jobs for `_prepare_point2mask_one` from shared data sets (train split) and/or a user's folders
    (`<stem>_boxpoints.json` in points_dir, or label images `<stem>*` in masks_dir for full mode)."""
    from cellpoint.training.datasets import list_samples
    from cellpoint.training.labels_cli import _unique_stems
    jobs = []
    for spec in datasets:
        name, kinds = parse_dataset_spec(spec)
        samples = list_samples(name, "train", kinds)
        stems = _unique_stems([s.file_name for s in samples])
        jobs += [("shared", s, cfg, seed, stem, cell_diameter) for s, stem in zip(samples, stems)]
    if images_dir:
        for image in sorted(p for p in Path(images_dir).iterdir() if p.suffix.lower() in
                            {".tif", ".tiff", ".png", ".jpg", ".jpeg"}):
            if cfg.mode == "full":
                lab = next((p for p in Path(masks_dir).glob(f"{image.stem}*") if p.is_file()), None)
                item, missing = (image, None, lab), None if lab else f"a label image {image.stem}* in {masks_dir}"
            else:
                box = Path(points_dir) / f"{image.stem}_boxpoints.json"
                item, missing = (image, box, None), None if box.exists() else str(box)
            if missing:
                click.echo(f"skipped {image.name}: missing {missing}", err=True)
                continue
            jobs.append(("user", item, cfg, seed, image.stem, cell_diameter))
    return jobs


def collect_jobs(datasets, images_dir, points_dir, masks_dir, cfg, w_by_set: dict, w_default: float):
    """→ list of (job, objectness w) for the worker, from shared data sets and/or user folders."""
    from dataclasses import replace
    from cellpoint.training.datasets import list_samples
    jobs = []
    for spec in datasets:
        name, kinds = parse_dataset_spec(spec)
        w = w_by_set.get(name, w_default)
        c = replace(cfg, params=replace(cfg.params, w=w))
        for s in list_samples(name, "train", kinds):
            jobs.append(("shared", s, c, cfg.seed * 100003 + s.image_id))
    if images_dir:
        c = replace(cfg, params=replace(cfg.params, w=w_default))
        for image in sorted(p for p in Path(images_dir).iterdir() if p.suffix.lower() in
                            {".tif", ".tiff", ".png", ".jpg", ".jpeg"}):
            pts = Path(points_dir) / f"{image.stem}_points.csv" if points_dir else None
            lab = next((p for p in Path(masks_dir).glob(f"{image.stem}*") if p.is_file()), None) \
                if masks_dir else None
            if (cfg.labels == "points" and not (pts and pts.exists())) or (cfg.labels == "full" and lab is None):
                click.echo(f"skip {image}: no {'points file' if cfg.labels == 'points' else 'mask'} for it",
                           err=True)
                continue
            jobs.append(("user", (image, pts if cfg.labels == "points" else None,
                                  lab if cfg.labels == "full" else None), c, 0))
    return jobs


def _prepare_all(worker, jobs: list, workers: int) -> list:
    """Run `worker` over `jobs` (in order), in `workers` processes when more than one.

    Worker processes are spawned, never forked: a fork of a process whose torch, OpenCV or onnxruntime
    thread pools are already running can deadlock in the child (seen in CI as a hung test run).
    """
    if workers <= 1 or len(jobs) <= 1:
        return [worker(job) for job in jobs]
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        return list(pool.map(worker, jobs, chunksize=max(1, len(jobs) // (4 * workers))))


@click.command("train")
@click.option("--dataset", "datasets", multiple=True, metavar="NAME[:KIND,..]",
              help="Shared data set to train on (its train split), e.g. dsb2018_bbbc038:gray_dark. Repeatable.")
@click.option("--images", "images_dir", type=click.Path(exists=True, file_okay=False),
              help="Your own folder of images (instead of or beside --dataset).")
@click.option("--points", "points_dir", type=click.Path(exists=True, file_okay=False),
              help="Folder of <stem>_points.csv click files for --images (as `cellpoint labels` writes); "
              "point2mask: of <stem>_boxpoints.json files (`cellpoint labels --kind box-points`).")
@click.option("--masks", "masks_dir", type=click.Path(exists=True, file_okay=False),
              help="Folder of label images <stem>*.tif/png for --images (full-mask mode).")
@click.option("--method", type=click.Choice(["objectness", "canonical-shape", "wsispdr", "lacss", "point2mask"]),
              default="objectness", show_default=True,
              help="objectness: from clicks (--labels points) or masks (--labels full); "
              "canonical-shape: from each image's foreground mask and cell counts (--masks or --dataset); "
              "wsispdr: from clicks (detection response + guided backpropagation + graph-cut); "
              "lacss: from a foreground mask and one location per cell (--supervision weak) or masks (full); "
              "point2mask: from a box and N clicks labelled cell/background per cell (weak) or masks (full).")
@click.option("--supervision", type=click.Choice(["weak", "full"]), default="weak", show_default=True,
              help="lacss: weak = image foreground + locations; point2mask: weak = box + N clicks per cell; "
              "full = masks (the upper bound).")
@click.option("--points-per-cell", type=click.IntRange(min=1), default=6, show_default=True,
              help="point2mask on shared data: clicks per cell, uniform in its box (edge included), labelled "
              "1 on the cell's mask, else 0 (the paper's N = 1, 2, 4, 6, 8, 10).")
@click.option("--aux/--no-aux", default=True, show_default=True,
              help="lacss only: train with the auxiliary low field-of-view boundary network.")
@click.option("--weak-loss", type=click.Choice(["union", "window"]), default="union", show_default=True,
              help="lacss weak only: union = no mask spills off the foreground and the masks' union covers it; "
              "window = each mask agrees with the foreground across its window (the authors' form; better "
              "for nuclei from human-derived labels, fails on whole cells). Both add the overlap penalty.")
@click.option("--foreground-source", type=click.Choice(["labels", "machine"]), default="labels", show_default=True,
              help="lacss on shared data: the foreground from the masks' union, or made by a machine (graph-cut "
              "threshold of the image, automatic choice). With --placement nuclei-dog: no human label at all.")
@click.option("--foreground-masks", "fg_dir", type=click.Path(exists=True, file_okay=False),
              help="lacss with --images: folder of <stem>_foreground.png (as `cellpoint labels --foreground` writes).")
@click.option("--cell-diameter", type=float, default=None,
              help="wsispdr, lacss: typical cell diameter (px) in --images [shared data sets: their median]; "
              "point2mask: in every training image [each image's own, estimated from its labels].")
@click.option("--data-term", type=click.Choice(["intensity", "inverted", "texture"]), default="intensity",
              show_default=True, help="wsispdr only: what the runtime's graph-cut reads as 'cell': bright "
              "intensity (fluorescence), dark intensity, or local texture (phase contrast).")
@click.option("--labels", type=click.Choice(["points", "full"]), default="points", show_default=True,
              help="objectness only. points: one click per cell (the method); full: masks (the upper bound).")
@click.option("--count-weight", default=1e-2, show_default=True,
              help="canonical-shape only: α of the count loss L_cnt (0 switches it off).")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Checkpoint file to write.")
@click.option("--steps", default=2500, show_default=True)
@click.option("--batch", default=None, type=int, help="Crops per step [objectness 8, canonical-shape 16, point2mask 6].")
@click.option("--lr", default=None, type=float,
              help="Learning rate [objectness 1e-3 (Adam), canonical-shape 1e-3 (Adam, one-cycle maximum)].")
@click.option("--diameter", type=float, default=None,
              help="Canonical cell diameter (px) the network sees [objectness, canonical-shape 24; wsispdr, "
              "point2mask 32].")
@click.option("--placement", type=click.Choice(["centroid", "uniform", "nuclei-dog"]), default="centroid",
              show_default=True, help="Where derived clicks fall in each cell (shared data sets); nuclei-dog "
              "(wsispdr, lacss): no human label — one location per local maximum of a difference of Gaussians of "
              "the nuclear stain (σ 4.2 and 5 px scaled by cell diameter / 14 px).")
@click.option("--jitter", default=0.0, show_default=True, help="Gaussian jitter (px) of derived clicks.")
@click.option("--objectness-w", "objectness_w", multiple=True, metavar="[DATASET=]W",
              help="Objectness decay w, for all images or for one data set (default: tuned per data set).")
@click.option("--point-grad", type=float, default=None,
              help="point2mask weak only: how strongly the point loss trains the shared backbone and pyramid "
              "(its gradient there is multiplied by this; the mask head learns at full strength). Default 1, the "
              "paper's; 0.3 helped on whole cells (usiigaci, LIVECell), not on nuclei (README).")
@click.option("--mask-convs", type=click.IntRange(min=1), default=None,
              help="point2mask only: 3×3 convs in the mask head [4, as Mask R-CNN's head; the 2 of earlier "
              "versions scored 0.02–0.04 lower mask AP on usiigaci (README)].")
@click.option("--init-from", type=click.Path(exists=True, dir_okay=False), default=None,
              help="point2mask only: start from this checkpoint's weights (a network trained before, e.g. on other "
              "data) instead of random ones; its training data are listed as pretraining in the new checkpoint.")
@click.option("--seed", default=0, show_default=True)
@click.option("--workers", default=min(2, os.cpu_count() or 1), show_default=True)
def train(datasets, images_dir, points_dir, masks_dir, method, supervision, points_per_cell, aux, weak_loss,
          foreground_source,
          fg_dir, cell_diameter, data_term, labels, count_weight, out, steps, batch, lr, diameter, placement, jitter,
          objectness_w, point_grad, mask_convs, init_from, seed, workers):
    """Train a model (objectness, WSISPDR from clicks; canonical shape from foreground masks and counts;
    LACSS from a foreground and locations; Point2Mask from a box and a few labelled clicks per cell) and
    write a checkpoint."""
    try:
        import torch
    except ImportError:
        raise click.ClickException("this command needs PyTorch: pip install torch==2.13.0 'cellpoint[train]'")
    if not datasets and not images_dir:
        raise click.UsageError("give --dataset and/or --images")
    if (init_from or point_grad is not None or mask_convs) and method != "point2mask":
        raise click.UsageError("--init-from, --point-grad and --mask-convs are for --method point2mask")
    if method == "point2mask":
        from cellpoint.training.train_point2mask import Point2MaskConfig, train_point2mask
        if images_dir and supervision == "weak" and not points_dir:
            raise click.UsageError("point2mask --supervision weak with --images needs --points (a folder of "
                                   "<stem>_boxpoints.json, as `cellpoint labels --kind box-points` writes)")
        if images_dir and supervision == "full" and not masks_dir:
            raise click.UsageError("point2mask --supervision full with --images needs --masks")
        if init_from and mask_convs is None:  # the network of the checkpoint training starts from
            start = torch.load(init_from, map_location="cpu", weights_only=False)
            mask_convs = start.get("model", {}).get("mask_convs")
        cfg = Point2MaskConfig(mode="full" if supervision == "full" else "points", n_points=points_per_cell,
                               steps=steps, batch=batch or Point2MaskConfig.batch, lr=lr or Point2MaskConfig.lr,
                               seed=seed, diameter=diameter or Point2MaskConfig.diameter, init_from=init_from or "",
                               mask_convs=mask_convs or Point2MaskConfig.mask_convs)
        if point_grad is not None:
            from dataclasses import replace
            cfg.loss = replace(cfg.loss, feature_grad=point_grad)
        jobs = _point2mask_jobs(datasets, images_dir, points_dir, masks_dir, cfg, seed, cell_diameter)
        worker, run_training = _prepare_point2mask_one, train_point2mask
    elif method == "lacss":
        from cellpoint.training.train_lacss import LacssConfig, train_lacss
        if images_dir and not cell_diameter:
            raise click.UsageError("lacss with --images needs --cell-diameter")
        if images_dir and supervision == "weak" and not (points_dir and fg_dir):
            raise click.UsageError("lacss --supervision weak with --images needs --points and --foreground-masks")
        if images_dir and supervision == "full" and not masks_dir:
            raise click.UsageError("lacss --supervision full with --images needs --masks")
        cfg = LacssConfig(mode=supervision, aux=aux and supervision == "weak", weak_loss=weak_loss,
                          steps=steps, batch=batch or 8,
                          lr=lr or 1e-3, seed=seed, diameter=diameter or LacssConfig.diameter)
        jobs = _lacss_jobs(datasets, images_dir, points_dir, fg_dir, masks_dir, cfg, seed, cell_diameter,
                           placement, foreground_source)
        worker, run_training = _prepare_lacss_one, train_lacss
    elif method == "wsispdr":
        from cellpoint.training.datasets import list_samples
        from cellpoint.training.train import TrainConfig
        from cellpoint.training.train_wsispdr import WsispdrConfig, train_wsispdr
        from cellpoint.training.validate import dataset_diameter
        if images_dir and not (points_dir and cell_diameter):
            raise click.UsageError("wsispdr with --images needs --points and --cell-diameter")
        cfg = WsispdrConfig(steps=steps, batch=batch or 8, lr=lr or 1e-3, seed=seed,
                            diameter=diameter or WsispdrConfig.diameter)
        cfg.data_term = data_term
        jobs = []
        for spec in datasets:
            name, kinds = parse_dataset_spec(spec)
            d = dataset_diameter(name, kinds)
            jobs += [("shared", s, cfg, seed * 100003 + s.image_id, d, placement, jitter)
                     for s in list_samples(name, "train", kinds)]
        if images_dir:
            user = collect_jobs([], images_dir, points_dir, None, TrainConfig(labels="points"), {}, DEFAULT_W)
            jobs += [(kind, item, cfg, 0, cell_diameter, placement, jitter) for kind, item, _, _ in user]
        worker = _prepare_wsispdr_one

        def run_training(examples, cfg, log):
            return train_wsispdr(examples, cfg, "nuclei-dog" if placement == "nuclei-dog" else "points", log)
    elif method == "canonical-shape":
        from dataclasses import replace
        from cellpoint.training.train_shape import ShapeTrainConfig, train_shape
        if images_dir and not masks_dir:
            raise click.UsageError("canonical-shape with --images needs --masks (label images; only their "
                                   "foreground and cell counts are used)")
        cfg = ShapeTrainConfig(steps=steps, batch=batch or 16, lr=lr or 1e-3, diameter=diameter or 24.0, seed=seed)
        cfg.params = replace(cfg.params, alpha=count_weight)
        from cellpoint.training.train import TrainConfig
        jobs = collect_jobs(datasets, images_dir, None, masks_dir, TrainConfig(labels="full", seed=seed), {},
                            DEFAULT_W)
        jobs = [(kind, item, cfg, s) for kind, item, _, s in jobs]
        worker, run_training = _prepare_shape_one, train_shape
    else:
        from cellpoint.training.train import TrainConfig, train as run_training
        cfg = TrainConfig(labels=labels, steps=steps, batch=batch or 8, lr=lr or 1e-3, diameter=diameter or 24.0,
                          seed=seed, point_placement=placement, point_jitter=jitter)
        jobs, worker = None, _prepare_one
    w_by_set = dict(OBJECTNESS_W)
    w_default = DEFAULT_W
    for item in objectness_w:
        name, _, value = item.rpartition("=")
        if name:
            w_by_set[name] = float(value)
        else:
            w_default = float(value)
            w_by_set = {}
    if jobs is None:
        jobs = collect_jobs(datasets, images_dir, points_dir, masks_dir, cfg, w_by_set, w_default)
    if not jobs:
        raise click.ClickException("no training images found")
    kind = {"objectness": labels, "canonical-shape": "foreground-count",
            "wsispdr": "machine-made locations" if placement == "nuclei-dog" else "points",
            "lacss": "full masks" if supervision == "full" else
            f"{'machine-made' if placement == 'nuclei-dog' else 'derived'} locations + "
            f"{'machine-made' if foreground_source == 'machine' else 'derived'} foreground",
            "point2mask": "full masks" if supervision == "full" else
            f"box + {points_per_cell} points" if datasets else "box + points"}[method]
    click.echo(f"preparing {len(jobs)} images ({method}, {kind}) ...")
    examples = _prepare_all(worker, jobs, workers)
    if "OMP_NUM_THREADS" not in os.environ:  # a caller who set it (parallel runs) keeps its choice
        torch.set_num_threads(max(1, os.cpu_count() or 1))
    checkpoint = run_training(examples, cfg, log=click.echo)
    checkpoint["training_data"] = [
        {"dataset": parse_dataset_spec(d)[0], "kinds": parse_dataset_spec(d)[1], "split": "train", "labels": kind}
        for d in datasets
    ] + ([{"folder": str(images_dir), "labels": kind if method != "point2mask" or supervision == "full"
           else "box + points (the folder's files)"}] if images_dir else [])
    if init_from:
        checkpoint["training_data"] += pretraining_entries(torch.load(init_from, map_location="cpu", weights_only=False))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    torch.save(checkpoint, tmp)
    os.replace(tmp, out)
    click.echo(f"wrote {out} ({checkpoint['train_seconds']:.0f} s of training)")

"""LACSS, location assisted cell segmentation (Shrestha, Kuang, Yu): from an image foreground and one
location per cell (--supervision weak), or from masks (full).

network.py holds the network (backbone, location proposals, instance head), the training-only aux net and
the exported wrappers; windows.py the instance head's windows; loss.py the losses; data.py the examples,
crops and batches; train.py the training. The runtime decodes its packages with the `location_masks`
decoder (location proposals, then one mask per location from the package's graph "instances")."""
from __future__ import annotations

from pathlib import Path

import click
import numpy as np

from cellpoint.training import sources
from cellpoint.training.methods.lacss.config import WEAK_LOSSES, LacssConfig, LacssRun
from cellpoint.training.methods.spec import ExportPlan, MethodSpec, TrainRequest

OPTIONS = (
    click.Option(["--aux/--no-aux"], default=True, show_default=True,
                 help="lacss only: train with the auxiliary low field-of-view boundary network."),
    click.Option(["--weak-loss"], type=click.Choice(list(WEAK_LOSSES)), default="union", show_default=True,
                 help="lacss weak only: union = no mask spills off the foreground and the masks' union covers "
                 "it; window = each mask agrees with the foreground across its window (the authors' form; better "
                 "for nuclei from human-derived labels, fails on whole cells). Both add the overlap penalty."),
    click.Option(["--foreground-source"], type=click.Choice(["labels", "machine"]), default="labels",
                 show_default=True,
                 help="lacss on shared data: the foreground from the masks' union, or made by a machine (graph-cut "
                 "threshold of the image, automatic choice). With --placement nuclei-dog: no human label at all."),
    click.Option(["--foreground-masks", "fg_dir"], type=click.Path(exists=True, file_okay=False),
                 help="lacss with --images: folder of <stem>_foreground.png (as `cellpoint labels --foreground` "
                 "writes)."),
)


def configure(request: TrainRequest) -> LacssRun:
    """The run's config; UsageError when the user's folders lack what the supervision needs."""
    options, supervision = request.options, request.supervision
    if request.images_dir and not request.cell_diameter:
        raise click.UsageError("lacss with --images needs --cell-diameter")
    if request.images_dir and supervision == "weak" and not (request.points_dir and options.get("fg_dir")):
        raise click.UsageError("lacss --supervision weak with --images needs --points and --foreground-masks")
    if request.images_dir and supervision == "full" and not request.masks_dir:
        raise click.UsageError("lacss --supervision full with --images needs --masks")
    cfg = LacssConfig(mode=supervision, aux=options.get("aux", True) and supervision == "weak",
                      weak_loss=options.get("weak_loss", LacssConfig.weak_loss),
                      steps=request.steps or LacssConfig.steps, batch=request.batch or LacssConfig.batch,
                      lr=request.lr or LacssConfig.lr, seed=request.seed,
                      diameter=request.diameter or LacssConfig.diameter)
    return LacssRun(cfg, request.placement, options.get("foreground_source", "labels"))


def jobs(request: TrainRequest, run: LacssRun) -> list:
    """("shared", sample, run, seed, the data set's cell diameter) per train image of the data sets and
    ("user", (image, points file, foreground file, mask file), run, 0, --cell-diameter) per user image
    with the labels its supervision needs (weak: points and foreground; full: a mask)."""
    from cellpoint.training.validate import dataset_diameter
    out = []
    for spec in request.datasets:
        samples = sources.shared_samples([spec])
        if samples:
            name, kinds, _ = samples[0]
            diameter = dataset_diameter(name, kinds)
            out += [("shared", s, run, run.config.seed * 100003 + s.image_id, diameter) for _, _, s in samples]
    if request.images_dir:
        fg_dir = request.options.get("fg_dir")
        for image in sources.user_images(request.images_dir):
            points = Path(request.points_dir) / f"{image.stem}_points.csv" if request.points_dir else None
            foreground = Path(fg_dir) / f"{image.stem}_foreground.png" if fg_dir else None
            mask = sources.mask_file(request.masks_dir, image.stem)
            needed = [mask] if run.config.mode == "full" else [points, foreground]
            if any(p is None or not p.exists() for p in needed):
                missing = [str(p) for p in needed if p is not None and not p.exists()]
                sources.skip(image, ", ".join(missing) or ("a mask" if run.config.mode == "full" else "labels"))
                continue
            out.append(("user", (image, points if points and points.exists() else None, foreground, mask), run, 0,
                        request.cell_diameter))
    return out


def prepare(job) -> dict:
    """Worker: one image with its locations and foreground (weak) or masks (full) at the canonical scale.

    Shared data: locations are the masks' centroids (or, with placement nuclei-dog, DoG maxima of the
    stain: no human label); the foreground is the masks' union or, with foreground source "machine", the
    automatic pick of `machine_labels.foreground_candidates` (no human label)."""
    from cellpoint.training.methods.lacss.data import prepare_example
    kind, item, run, seed, cell_diameter = job
    if kind == "shared":
        from cellpoint.training.datasets import load_sample
        image, labels = load_sample(item)
        image = image.mean(-1) if image.ndim == 3 else image
        if run.placement == "nuclei-dog":
            from cellpoint.training.machine_labels import nuclei_locations
            f = cell_diameter / 14.0
            xy = nuclei_locations(image, 4.2 * f, 5.0 * f, 0.1)
        else:
            from cellpoint.training.weak_labels import points_from_labels
            xy = points_from_labels(labels, run.placement, 0.0, np.random.default_rng(seed))
        if run.foreground_source == "machine":
            from cellpoint.training.machine_labels import choose_foreground, foreground_candidates
            masks, _ = foreground_candidates(image)
            foreground = masks[choose_foreground(image, masks, xy if run.placement == "nuclei-dog" else None)]
        else:
            foreground = labels > 0
    else:
        from cellpoint.training.annotations import read_label_image, read_points
        image_path, points_path, fg_path, labels_path = item
        image = sources.read_gray(image_path)
        xy = read_points(points_path)[0] if points_path else None
        labels = read_label_image(labels_path) if labels_path else None
        foreground = read_label_image(fg_path) > 0 if fg_path else None
    locations = None if xy is None else xy[:, ::-1]
    cfg = run.config
    if cfg.mode == "full":
        return prepare_example(image.astype(np.float32), locations, None, labels, cell_diameter, cfg)
    return prepare_example(image.astype(np.float32), locations, foreground, None, cell_diameter, cfg)


def train(examples: list[dict], run: LacssRun, log) -> dict:
    from cellpoint.training.methods.lacss.train import train as run_training
    return run_training(examples, run.config, log)


def labels(request: TrainRequest, run: LacssRun, folder: bool) -> str:
    """"full masks", or where the locations and the foreground come from (shared data sets and folder alike)."""
    return run.labels()


def build_network(checkpoint: dict):
    from cellpoint.training.methods.lacss.train import build_network as build
    return build(checkpoint)


def export(checkpoint: dict, probe: np.ndarray) -> ExportPlan:
    """The location and feature network as the main graph, and the instance head as the graph "instances"
    (its window P from the checkpoint's decoder parameters)."""
    from cellpoint.training.methods.lacss.network import OUTPUTS, ExportFeatures, instances_graph
    net = build_network(checkpoint)
    graph = instances_graph(net, checkpoint["model"]["features"], int(checkpoint["decoder"]["params"]["window"]))
    return ExportPlan(ExportFeatures(net).eval(), [dict(o) for o in OUTPUTS], graphs={"instances": graph})


SPEC = MethodSpec(
    name="lacss",
    title="from a foreground mask and one location per cell (--supervision weak) or masks (full)",
    reference=("LACSS: efficient end-to-end learning for cell segmentation with machine generated incomplete "
               "annotations (Shrestha, Kuang, Yu)"),
    label_kinds=("foreground-locations", "full"),
    decoder="location_masks",
    configure=configure,
    jobs=jobs,
    prepare=prepare,
    train=train,
    labels=labels,
    export=export,
    build_network=build_network,
    options=OPTIONS,
)

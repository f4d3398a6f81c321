"""Point2Mask (Khalid et al.): a box and N clicks labelled cell/background per cell (--supervision weak) or
masks (full) → instance masks.

network.py holds the network (backbone, pyramid, detection and mask heads, RoIAlign) and the exported
wrappers; loss.py the targets and losses; data.py the examples, crops and batches; train.py the training;
reference.py a torch decoding that checks training against the runtime. The runtime decodes its packages
with the `box_masks` decoder (boxes from the main graph, then one mask per box from the graph "masks")."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import click
import numpy as np

from cellpoint.training import sources
from cellpoint.training.methods.point2mask.config import Point2MaskConfig
from cellpoint.training.methods.spec import ExportPlan, MethodSpec, TrainRequest

OPTIONS = (
    click.Option(["--points-per-cell"], type=click.IntRange(min=1), default=6, show_default=True,
                 help="point2mask on shared data: clicks per cell, uniform in its box (edge included), labelled "
                 "1 on the cell's mask, else 0 (the paper's N = 1, 2, 4, 6, 8, 10)."),
    click.Option(["--point-grad"], type=float, default=None,
                 help="point2mask weak only: how strongly the point loss trains the shared backbone and pyramid "
                 "(its gradient there is multiplied by this; the mask head learns at full strength). Default 1, "
                 "the paper's; 0.3 helped on whole cells (usiigaci, LIVECell), not on nuclei (README)."),
    click.Option(["--mask-convs"], type=click.IntRange(min=1), default=None,
                 help="point2mask only: 3×3 convs in the mask head [4, as Mask R-CNN's head; the 2 of earlier "
                 "versions scored 0.02–0.04 lower mask AP on usiigaci (README)]."),
)


def configure(request: TrainRequest) -> Point2MaskConfig:
    """The training config, with the request's recipe (scale range, intensity jitter, balance, polarity,
    normalisation, val selection; `spec.Recipe`). UsageError when the user's folder lacks the labels the
    supervision needs, for a scale range that is not 0 < LOW <= HIGH, and for --val-every without a shared
    data set (whose val split it scores). Without --mask-convs, a run from --init-from takes the starting
    checkpoint's mask head depth."""
    options, recipe = request.options, request.recipe
    if request.images_dir and request.supervision == "weak" and not request.points_dir:
        raise click.UsageError("point2mask --supervision weak with --images needs --points (a folder of "
                               "<stem>_boxpoints.json, as `cellpoint labels --kind box-points` writes)")
    if request.images_dir and request.supervision == "full" and not request.masks_dir:
        raise click.UsageError("point2mask --supervision full with --images needs --masks")
    if recipe.scale_range is not None and not 0 < recipe.scale_range[0] <= recipe.scale_range[1]:
        raise click.UsageError(f"--scale-range {recipe.scale_range[0]:g} {recipe.scale_range[1]:g}: "
                               "needs 0 < LOW <= HIGH (e.g. 0.5 2)")
    if recipe.val_every and not request.datasets:
        raise click.UsageError("point2mask --val-every scores the network on the val splits of the --dataset "
                               "sets; give at least one --dataset (a folder of --images has no val split)")
    mask_convs = options.get("mask_convs")
    cfg = Point2MaskConfig(mode="full" if request.supervision == "full" else "points",
                           n_points=options.get("points_per_cell", Point2MaskConfig.n_points),
                           steps=request.steps or Point2MaskConfig.steps,
                           batch=request.batch or Point2MaskConfig.batch, lr=request.lr or Point2MaskConfig.lr,
                           seed=request.seed, diameter=request.diameter or Point2MaskConfig.diameter,
                           mask_convs=mask_convs or Point2MaskConfig.mask_convs,
                           scale_range=tuple(recipe.scale_range or Point2MaskConfig.scale_range),
                           intensity=recipe.intensity, balance=recipe.balance, polarity=recipe.polarity,
                           normalization=recipe.normalization, val_every=recipe.val_every)
    if options.get("point_grad") is not None:
        cfg.loss = replace(cfg.loss, feature_grad=options["point_grad"])
    return cfg


def jobs(request: TrainRequest, cfg: Point2MaskConfig) -> list:
    """("shared", sample, cfg, seed, stem, --cell-diameter) per train image of the data sets (stem as
    `cellpoint labels` names its files), with cfg.val_every ("val", sample, cfg, seed, stem, None) per val
    image of the data sets, and ("user", (image, boxpoints file, mask file), cfg, seed, stem,
    --cell-diameter) per user image with its `<stem>_boxpoints.json` (weak) or label image (full).
    UsageError when --val-every finds no val image."""
    from cellpoint.training.sources import unique_stems
    out = []
    for spec in request.datasets:
        samples = [s for _, _, s in sources.shared_samples([spec])]
        stems = unique_stems([s.file_name for s in samples])
        out += [("shared", s, cfg, request.seed, stem, request.cell_diameter) for s, stem in zip(samples, stems)]
    if cfg.val_every:
        val = [("val", s, cfg, request.seed, "", None) for _, _, s in sources.shared_samples(request.datasets, "val")]
        if not val:
            raise click.UsageError(f"--val-every: the data sets {', '.join(request.datasets)} have no val images")
        out += val
    if request.images_dir:
        for image in sources.user_images(request.images_dir):
            if cfg.mode == "full":
                mask = sources.mask_file(request.masks_dir, image.stem)
                item, missing = (image, None, mask), None if mask else \
                    f"a label image {image.stem}* in {request.masks_dir}"
            else:
                box = Path(request.points_dir) / f"{image.stem}_boxpoints.json"
                item, missing = (image, box, None), None if box.exists() else str(box)
            if missing:
                sources.skip(image, missing)
                continue
            out.append(("user", item, cfg, request.seed, image.stem, request.cell_diameter))
    return out


def prepare(job) -> dict:
    """Worker: one image with a box + N clicks per cell (points mode) or its masks (full) at the canonical
    scale, with its "group" (`datasets.sample_group`; "user" for the user's images). Shared data: boxes and
    clicks derived from the masks exactly as `cellpoint labels --kind box-points` derives them (generator
    seeded by (seed, crc32(stem))); user data: the image's `<stem>_boxpoints.json` or its label image.
    Images are read as always with polarity "any", else prepared as the runtime prepares them for that
    polarity. A val job: the image and its masks as the package would see them
    (`data.prepare_val_example`)."""
    import json
    import zlib
    from cellpoint.training.methods.point2mask.data import box_points_arrays, prepare_example, prepare_val_example
    from cellpoint.training.weak_labels import box_points_from_labels
    kind, item, cfg, seed, stem, cell_diameter = job
    labels = None
    if kind == "val":
        from cellpoint.training.datasets import load_training_sample
        return prepare_val_example(*load_training_sample(item, cfg.polarity), cfg)
    if kind == "shared":
        from cellpoint.training.datasets import load_sample, load_training_sample, sample_group
        # polarity "any" reads images exactly as training always did
        image, labels = load_sample(item) if cfg.polarity == "any" else load_training_sample(item, cfg.polarity)
        image = image.mean(-1) if image.ndim == 3 else image
        cells = box_points_from_labels(labels, cfg.n_points, np.random.default_rng([seed, zlib.crc32(stem.encode())]))
        group = sample_group(item)
    else:
        image_path, boxpoints_path, labels_path = item
        image = sources.read_gray(image_path) if cfg.polarity == "any" else sources.read_prepared(image_path,
                                                                                                  cfg.polarity)
        group = "user"
        if labels_path:
            from cellpoint.training.annotations import read_label_image
            labels = read_label_image(labels_path)
            cells = box_points_from_labels(labels, 1, np.random.default_rng(0))  # boxes and ids only
        else:
            cells = json.loads(Path(boxpoints_path).read_text())["cells"]
    boxes, points, point_labels, ids = box_points_arrays(cells)
    return dict(prepare_example(image.astype(np.float32), boxes, points, point_labels,
                                labels if cfg.mode == "full" else None, cell_diameter, cfg, ids), group=group)


def train(examples: list[dict], cfg: Point2MaskConfig, log) -> dict:
    from cellpoint.training.methods.point2mask.train import train as run
    return run(examples, cfg, log)


def labels(request: TrainRequest, cfg: Point2MaskConfig, folder: bool) -> str:
    """"full masks"; else "box + N points" for the shared data sets and "box + points (the folder's
    files)" for the user's folder ("box + points" when only a folder is given)."""
    if cfg.mode == "full":
        return "full masks"
    if folder:
        return "box + points (the folder's files)"
    return f"box + {cfg.n_points} points" if request.datasets else "box + points"


def build_network(checkpoint: dict):
    from cellpoint.training.methods.point2mask.train import build_network as build
    return build(checkpoint)


def export(checkpoint: dict, probe: np.ndarray) -> ExportPlan:
    """The detector (score and box maps per pyramid level, and the stride-4 features) as the main graph,
    and RoIAlign + mask head as the graph "masks"."""
    from cellpoint.training.methods.point2mask.network import ExportDetector, detector_outputs, masks_graph
    net = build_network(checkpoint)
    return ExportPlan(ExportDetector(net).eval(), detector_outputs(), graphs={"masks": masks_graph(net, probe)})


SPEC = MethodSpec(
    name="point2mask",
    title="from a box and N clicks labelled cell/background per cell (weak) or masks (full)",
    reference=("Point2Mask: a weakly supervised approach for cell segmentation using point annotation "
               "(Khalid, Schmeisser, Koochali, Munir, Edlund, Jackson, Trygg, Sjögren, Dengel, Ahmed)"),
    label_kinds=("box-points", "full"),
    decoder="box_masks",
    configure=configure,
    jobs=jobs,
    prepare=prepare,
    train=train,
    labels=labels,
    export=export,
    build_network=build_network,
    options=OPTIONS,
)

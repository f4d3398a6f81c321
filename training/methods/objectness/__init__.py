"""Point supervision with objectness regularisation (Li, Dey et al.): one click per cell.

regions.py grows the objectness regions from the clicks; loss.py makes the targets and holds the losses;
network.py the U-Net and its exported head; train.py the training. The runtime decodes its packages with
the `maps_and_seeds` decoder."""
from __future__ import annotations

import click
import numpy as np

from cellpoint.training import sources
from cellpoint.training.methods.objectness.config import DEFAULT_W, OBJECTNESS_W, TrainConfig, with_objectness_w
from cellpoint.training.methods.spec import ExportPlan, MethodSpec, TrainRequest

OPTIONS = (
    click.Option(["--labels"], type=click.Choice(["points", "full"]), default="points", show_default=True,
                 help="objectness: points = one click per cell (the method); full = masks (the upper bound)."),
    click.Option(["--keep-start"], type=click.FloatRange(min=0), default=None,
                 help="objectness with --init-from: weight of a loss that keeps the network's maps near the "
                 "starting network's (so clicks fix cells without redrawing the rest) [5; 0: off]."),
    click.Option(["--objectness-w", "objectness_w"], multiple=True, metavar="[DATASET=]W",
                 help="objectness: the objectness decay w, for all images or for one data set (default: tuned "
                 "per data set)."),
)


def configure(request: TrainRequest) -> TrainConfig:
    labels = "full" if request.supervision == "full" else request.options.get("labels", "points")
    recipe = request.recipe
    return TrainConfig(labels=labels, steps=request.steps or TrainConfig.steps, batch=request.batch or TrainConfig.batch,
                       lr=request.lr or TrainConfig.lr, diameter=request.diameter or TrainConfig.diameter,
                       seed=request.seed, point_placement=request.placement, point_jitter=request.jitter,
                       scale_range=tuple(recipe.scale_range or TrainConfig.scale_range), intensity=recipe.intensity,
                       balance=recipe.balance, polarity=recipe.polarity, normalization=recipe.normalization,
                       val_every=recipe.val_every, keep_start=_keep_start(request))


def _keep_start(request: TrainRequest) -> float:
    """--keep-start, or the default weight."""
    value = request.options.get("keep_start")
    return TrainConfig.keep_start if value is None else float(value)


def _decays(request: TrainRequest) -> tuple[dict, float]:
    """The objectness decay w per data set and for everything else, from --objectness-w."""
    by_set, default = dict(OBJECTNESS_W), DEFAULT_W
    for item in request.options.get("objectness_w", ()):
        name, _, value = item.rpartition("=")
        if name:
            by_set[name] = float(value)
        else:
            default, by_set = float(value), {}
    return by_set, default


def jobs(request: TrainRequest, cfg: TrainConfig) -> list:
    """("shared", sample, cfg, seed) per train image of the data sets and ("user", (image, points, mask),
    cfg, 0) per user image with its clicks (or mask in full mode); cfg carries the image's decay w."""
    by_set, default = _decays(request)
    out = [("shared", s, with_objectness_w(cfg, by_set.get(name, default)), cfg.seed * 100003 + s.image_id)
           for name, _, s in sources.shared_samples(request.datasets)]
    if cfg.val_every:
        out += [("val", s, cfg, 0) for _, _, s in sources.shared_samples(request.datasets, "val")]
    if request.images_dir:
        c = with_objectness_w(cfg, default)
        for image in sources.user_images(request.images_dir):
            points = sources.label_file(request.points_dir, image.stem, "_points.csv")
            mask = sources.mask_file(request.masks_dir, image.stem)
            if (cfg.labels == "points" and points is None) or (cfg.labels == "full" and mask is None):
                sources.skip(image, "a points file" if cfg.labels == "points" else "a mask")
                continue
            if image.stem in request.recipe.hold_out:
                if points is None:
                    raise click.UsageError(f"--hold-out {image.stem}: it has no {image.stem}_points.csv to score")
                out.append(("held_out", (image, points, None), c, 0))
                continue
            out.append(("user", (image, points if cfg.labels == "points" else None,
                                 mask if cfg.labels == "full" else None), c, 0))
    missing = set(request.recipe.hold_out) - {job[1][0].stem for job in out if job[0] == "held_out"}
    if missing:
        raise click.UsageError(f"--hold-out {', '.join(sorted(missing))}: no such image with clicks in --images")
    return out


def prepare(job) -> dict:
    """Worker: load one job's image and labels and build its canonical-scale training arrays (a val job:
    its image and masks at the canonical scale, for choosing the checkpoint)."""
    from cellpoint.training.annotations import read_label_image, read_points
    from cellpoint.training.datasets import load_sample, load_training_sample, sample_group
    from cellpoint.training.methods.objectness.train import prepare_example, prepare_val_example
    from cellpoint.training.weak_labels import points_from_labels
    kind, item, cfg, seed = job
    if kind == "val":
        return prepare_val_example(*load_training_sample(item, cfg.polarity), cfg)
    if kind == "held_out":
        from cellpoint.training.methods.objectness.train import prepare_held_out_example
        image = sources.read_gray(item[0]) if cfg.polarity == "any" else sources.read_prepared(item[0], cfg.polarity)
        return prepare_held_out_example(image.astype(np.float32), read_points(item[1])[0][:, ::-1], cfg)
    if kind == "shared":
        # the polarity "any" path reads images exactly as training always did
        image, labels = load_sample(item) if cfg.polarity == "any" else load_training_sample(item, cfg.polarity)
        xy = points_from_labels(labels, cfg.point_placement, cfg.point_jitter, np.random.default_rng(seed))
        group = sample_group(item)
    else:
        image_path, points_path, labels_path = item
        image = sources.read_gray(image_path) if cfg.polarity == "any" else sources.read_prepared(image_path,
                                                                                                  cfg.polarity)
        labels = read_label_image(labels_path) if labels_path else None
        xy = read_points(points_path)[0] if points_path else None
        group = "user"
    points_rc = None if xy is None else xy[:, ::-1]
    return dict(prepare_example(image.astype(np.float32), points_rc, labels, cfg), group=group)


def train(examples: list[dict], cfg: TrainConfig, log) -> dict:
    from cellpoint.training.methods.objectness.train import train as run
    return run(examples, cfg, log)


def build_network(checkpoint: dict):
    from cellpoint.training.methods.objectness.train import build_network as build
    return build(checkpoint)


def export(checkpoint: dict, probe: np.ndarray) -> ExportPlan:
    from cellpoint.training.methods.objectness.network import OUTPUTS, ExportHead
    return ExportPlan(ExportHead(build_network(checkpoint)).eval(), [dict(o) for o in OUTPUTS])


SPEC = MethodSpec(
    name="objectness",
    title="one click per cell (--labels points) or masks (--labels full)",
    reference=("Point-supervised segmentation with objectness regularisation "
               "(Li, Dey, Bermond, von der Emde, Curcio, Ach, Gerig)"),
    label_kinds=("points", "full"),
    decoder="maps_and_seeds",
    configure=configure,
    jobs=jobs,
    prepare=prepare,
    train=train,
    labels=lambda request, cfg, folder: cfg.labels,
    export=export,
    build_network=build_network,
    options=OPTIONS,
    holds_out=True,
)


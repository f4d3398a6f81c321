"""Canonical shape learning and transformation (Costa, Gaudio, Campilho, Cardoso, MIDL 2022): from each
image's foreground mask and cell count only.

An encoder predicts, per cell of a stride-16 grid, instances' presence p(z) and affine transforms into a
canonical frame, where one implicit shape MLP gives p(s); the rendered foreground max_i p(s_i)·p(z_i) is
trained against the mask, Σ p(z) against the count. network.py holds the networks and the exported graph,
render.py the rendering, loss.py the losses, train.py the training, figure.py the package's shape figure.
The runtime decodes its packages with the `canonical_shape` decoder, which reads the MLP's weights from the
package asset "shape_mlp"."""
from __future__ import annotations

import click
import numpy as np

from cellpoint.training import sources
from cellpoint.training.methods.canonical_shape.config import ShapeTrainConfig
from cellpoint.training.methods.spec import ExportPlan, MethodSpec, TrainRequest

LABEL_KIND = "foreground-count"

OPTIONS = (
    click.Option(["--count-weight", "count_weight"], type=float, default=1e-2, show_default=True,
                 help="canonical_shape: α of the count loss L_cnt (0 switches it off)."),
)


def configure(request: TrainRequest) -> ShapeTrainConfig:
    if request.images_dir and not request.masks_dir:
        raise click.UsageError("canonical_shape with --images needs --masks (label images; only their "
                               "foreground and cell counts are used)")
    from dataclasses import replace
    cfg = ShapeTrainConfig(steps=request.steps or ShapeTrainConfig.steps,
                           batch=request.batch or ShapeTrainConfig.batch, lr=request.lr or ShapeTrainConfig.lr,
                           diameter=request.diameter or ShapeTrainConfig.diameter, seed=request.seed)
    cfg.params = replace(cfg.params, alpha=request.options.get("count_weight", cfg.params.alpha))
    return cfg


def jobs(request: TrainRequest, cfg: ShapeTrainConfig) -> list:
    """("shared", sample, cfg) per train image of the data sets and ("user", (image, label image), cfg) per
    user image with a label image in --masks."""
    out = [("shared", s, cfg) for _, _, s in sources.shared_samples(request.datasets)]
    if request.images_dir:
        for image in sources.user_images(request.images_dir):
            mask = sources.mask_file(request.masks_dir, image.stem)
            if mask is None:
                sources.skip(image, "a mask")
                continue
            out.append(("user", (image, mask), cfg))
    return out


def prepare(job) -> dict:
    """Worker: load one image with its label image and build its canonical-scale training arrays."""
    kind, item, cfg = job
    if kind == "shared":
        from cellpoint.training.datasets import load_sample
        image, labels = load_sample(item)
    else:
        from cellpoint.training.annotations import read_label_image
        image_path, labels_path = item
        image = sources.read_gray(image_path)
        labels = read_label_image(labels_path)
    from cellpoint.training.methods.canonical_shape.train import prepare_example
    return prepare_example(image.astype(np.float32), labels, cfg)


def train(examples: list[dict], cfg: ShapeTrainConfig, log) -> dict:
    from cellpoint.training.methods.canonical_shape.train import train as run
    return run(examples, cfg, log)


def build_network(checkpoint: dict):
    from cellpoint.training.methods.canonical_shape.train import build_network as build
    return build(checkpoint)


def export(checkpoint: dict, probe: np.ndarray) -> ExportPlan:
    """The encoder graph (no further graphs), the shape MLP's weights as the asset "shape_mlp" and the
    figure of the learned shape."""
    from cellpoint.training.methods.canonical_shape.figure import CAPTION, FILE, shape_figure
    from cellpoint.training.methods.canonical_shape.network import OUTPUTS, ExportEncoder, mlp_weights
    net = build_network(checkpoint)
    weights = mlp_weights(net.shape)
    return ExportPlan(ExportEncoder(net).eval(), [dict(o) for o in OUTPUTS], assets={"shape_mlp": weights},
                      figures=[(FILE, CAPTION, shape_figure(weights))])


def restore_assets(net, assets: dict) -> None:
    """Put the package asset "shape_mlp" (`network.mlp_weights`) back into the network's shape MLP."""
    import torch
    with torch.no_grad():
        for name, values in assets["shape_mlp"].items():
            layer = getattr(net.shape, name)
            layer.weight.copy_(torch.tensor(values["weight"]))
            layer.bias.copy_(torch.tensor(values["bias"]))


SPEC = MethodSpec(
    name="canonical_shape",
    title="from each image's foreground mask and cell counts (--masks or --dataset)",
    reference=("Explainable weakly-supervised nuclei segmentation by canonical shape learning and "
               "transformation (Costa, Gaudio, Campilho, Cardoso)"),
    label_kinds=(LABEL_KIND,),
    decoder="canonical_shape",
    configure=configure,
    jobs=jobs,
    prepare=prepare,
    train=train,
    labels=lambda request, cfg, folder: LABEL_KIND,
    export=export,
    build_network=build_network,
    restore_assets=restore_assets,
    options=OPTIONS,
    aliases=("canonical-shape",),
)

"""WSISPDR, weakly supervised cell instance segmentation by propagating from detection response
(Nishimura, Ker, Bise): one click per cell.

network.py holds the detection U-Net and its exported head; guided_backprop.py the guided backpropagation
the decoder runs as a second graph; train.py the training. The runtime decodes its packages with the
`detection_response` decoder (detection, guided backpropagation per cell, one graph cut per cell)."""
from __future__ import annotations

import click
import numpy as np

from cellpoint.training import sources
from cellpoint.training.methods.spec import ExportPlan, MethodSpec, TrainRequest
from cellpoint.training.methods.wsispdr.config import WsispdrConfig, WsispdrRun

OPTIONS = (
    click.Option(["--data-term", "data_term"], type=click.Choice(["intensity", "inverted", "texture"]),
                 default="intensity", show_default=True,
                 help="wsispdr: what the runtime's graph-cut reads as 'cell': bright intensity (fluorescence), "
                 "dark intensity, or local texture (phase contrast)."),
)


def configure(request: TrainRequest) -> WsispdrRun:
    if request.images_dir and not (request.points_dir and request.cell_diameter):
        raise click.UsageError("wsispdr with --images needs --points and --cell-diameter")
    cfg = WsispdrConfig(steps=request.steps or WsispdrConfig.steps, batch=request.batch or WsispdrConfig.batch,
                        lr=request.lr or WsispdrConfig.lr, seed=request.seed,
                        diameter=request.diameter or WsispdrConfig.diameter,
                        data_term=request.options.get("data_term", WsispdrConfig.data_term))
    return WsispdrRun(cfg, request.placement, request.jitter)


def jobs(request: TrainRequest, run: WsispdrRun) -> list:
    """("shared", sample, run, seed, the data set's cell diameter) per train image of the data sets and
    ("user", (image, points file), run, 0, --cell-diameter) per user image with a points file."""
    from cellpoint.training.validate import dataset_diameter
    out = []
    for spec in request.datasets:
        samples = sources.shared_samples([spec])
        if samples:
            name, kinds, _ = samples[0]
            diameter = dataset_diameter(name, kinds)
            out += [("shared", s, run, run.config.seed * 100003 + s.image_id, diameter) for _, _, s in samples]
    if request.images_dir:
        for image in sources.user_images(request.images_dir):
            points = sources.label_file(request.points_dir, image.stem, "_points.csv")
            if points is None:
                sources.skip(image, "a points file")
                continue
            out.append(("user", (image, points), run, 0, request.cell_diameter))
    return out


def prepare(job) -> dict:
    """Worker: load one image with its locations (shared data: derived from the masks, or machine-made
    from the nuclear stain) and build its canonical-scale training arrays."""
    from cellpoint.training.methods.wsispdr.train import prepare_example
    kind, item, run, seed, cell_diameter = job
    if kind == "shared":
        from cellpoint.training.datasets import load_sample
        image, labels = load_sample(item)
        if run.machine_made:  # no human label: locations from the nuclear stain itself
            from cellpoint.training.machine_labels import nuclei_locations
            f = cell_diameter / 14.0
            xy = nuclei_locations(image, 4.2 * f, 5.0 * f, 0.1)
        else:
            from cellpoint.training.weak_labels import points_from_labels
            xy = points_from_labels(labels, run.placement, run.jitter, np.random.default_rng(seed))
    else:
        from cellpoint.training.annotations import read_points
        image_path, points_path = item
        image = sources.read_gray(image_path)
        xy = read_points(points_path)[0]
    return prepare_example(image.astype(np.float32), xy[:, ::-1], cell_diameter, run.config)


def train(examples: list[dict], run: WsispdrRun, log) -> dict:
    from cellpoint.training.methods.wsispdr.train import train as run_training
    return run_training(examples, run.config, run.label_kind, log)


def labels(request: TrainRequest, run: WsispdrRun, folder: bool) -> str:
    """"machine-made locations" with --placement nuclei-dog, else "points" (shared data sets and folder alike)."""
    return "machine-made locations" if run.machine_made else "points"


def build_network(checkpoint: dict):
    from cellpoint.training.methods.wsispdr.train import build_network as build
    return build(checkpoint)


def export(checkpoint: dict, probe: np.ndarray) -> ExportPlan:
    """The likelihood network as the main graph, and its guided backpropagation as the graph "contributions"."""
    from cellpoint.training.methods.wsispdr.guided_backprop import contributions_graph
    from cellpoint.training.methods.wsispdr.network import OUTPUTS, LikelihoodOutput
    return ExportPlan(LikelihoodOutput(build_network(checkpoint)).eval(), [dict(o) for o in OUTPUTS],
                      graphs={"contributions": contributions_graph(build_network(checkpoint), probe)})


SPEC = MethodSpec(
    name="wsispdr",
    title="from clicks (detection response + guided backpropagation + graph-cut)",
    reference=("Weakly supervised cell instance segmentation by propagating from detection response "
               "(Nishimura, Ker, Bise)"),
    label_kinds=("points", "nuclei-dog"),
    decoder="detection_response",
    configure=configure,
    jobs=jobs,
    prepare=prepare,
    train=train,
    labels=labels,
    export=export,
    build_network=build_network,
    options=OPTIONS,
)

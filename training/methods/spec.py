"""What a method is to the rest of cellpoint: a `MethodSpec`.

`cellpoint train`, `cellpoint export` and the benchmarks only talk to methods through these objects; a
method's folder holds everything else (network, loss, data preparation, training loop)."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import numpy as np


@dataclass(frozen=True)
class TrainRequest:
    """The options of `cellpoint train` every method shares, plus the chosen method's own (`options`).

    datasets: shared data set specs NAME[:KIND,..] (their train splits); images_dir/points_dir/masks_dir:
    a user's folders (None when not given). supervision: "weak" (the method's cheap label) or "full"
    (masks, the upper bound). steps, batch, lr, diameter: None = the method's default. cell_diameter:
    the cells' diameter (px) in the user's images, if stated. placement, jitter: how clicks are derived
    from shared data sets' masks. recipe: see `Recipe`. options: {option name: value} of the method's own
    options."""
    datasets: tuple[str, ...] = ()
    images_dir: Path | None = None
    points_dir: Path | None = None
    masks_dir: Path | None = None
    supervision: str = "weak"
    steps: int | None = None
    batch: int | None = None
    lr: float | None = None
    diameter: float | None = None
    cell_diameter: float | None = None
    placement: str = "centroid"
    jitter: float = 0.0
    seed: int = 0
    recipe: Recipe = field(default_factory=lambda: Recipe())
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Recipe:
    """How training makes a network that works on images nobody tuned it on (the defaults reproduce the
    training the bundled packages had before).

    scale_range: random zoom of the training crops (None: the method's own); intensity: "basic" or "wide"
    (augment.JITTERS); balance: how often each data set and image kind is drawn (sampling.BALANCES:
    "none" by its size, "equal", "sqrt" by the square root of its size); polarity: the polarity
    the network learns ("bright": images with a bright background are inverted first, as the runtime
    does; "any": images as they are); normalization: "percentile" or "percentile_robust" (the card's
    preprocessing kind); val_every: every this many steps score the network on the data sets' val splits
    and keep the best (0: keep the last); hold_out: stems of the user's images kept out of training and
    scored instead (by their clicks) to keep the best network."""
    scale_range: tuple[float, float] | None = None
    intensity: str = "basic"
    balance: str = "none"
    polarity: str = "any"
    normalization: str = "percentile"
    val_every: int = 0
    hold_out: tuple[str, ...] = ()


@dataclass(frozen=True)
class GraphExport:
    """A further ONNX graph a decoder runs: the torch module, example inputs ({name: tensor}, used for
    tracing and the parity check), the output's name, the dynamic axes, the file to write."""
    module: Any
    inputs: dict[str, Any]
    output: str
    dynamic_axes: dict[str, dict[int, str]]
    file: str


@dataclass(frozen=True)
class ExportPlan:
    """What `cellpoint export` writes for a checkpoint.

    module: the main graph, image (N,C,H,W) float32 → the outputs in order; outputs: the card's output
    entries (name, axes, stride, description); graphs: {role: GraphExport}; assets: {role: JSON-able}
    (written as <role>.json); figures: [(file name, caption, uint8 (H,W,3) RGB image)]."""
    module: Any
    outputs: list[dict]
    graphs: dict[str, GraphExport] = field(default_factory=dict)
    assets: dict[str, Any] = field(default_factory=dict)
    figures: list[tuple[str, str, np.ndarray]] = field(default_factory=list)


@dataclass(frozen=True)
class MethodSpec:
    """A training method.

    name: its id (checkpoints' and cards' "method", `cellpoint train --method`). title: one line for help.
    reference: the paper. label_kinds: the label kinds its checkpoints record. decoder: the runtime decoder
    its packages use. options: its own `cellpoint train` options (click options; names unique across
    methods).
    configure(request) → its training config (raise click.UsageError for options it cannot use).
    jobs(request, config) → picklable jobs, one per training image; prepare(job) → one training example
      (a top-level function: it runs in worker processes).
    train(examples, config, log) → a checkpoint dict (`cellpoint.training.checkpoint.make_checkpoint`).
    labels(request, config, folder) → how the labels of the shared data sets (folder False) or of the
      user's folder (True) are described in the checkpoint and card.
    export(checkpoint, probe) → ExportPlan; probe: float32 (1,C,H,W), a normalised sample image.
    build_network(checkpoint) → the trained torch network, in eval mode.
    restore_assets(network, {role: content}) → None: puts back into the network the weights its packages
      keep as JSON assets rather than in a graph (`training.package_weights`); None: there are none.
    holds_out: whether it can keep the user's images named by `Recipe.hold_out` out of training and choose
      its network by their clicks."""
    name: str
    title: str
    reference: str
    label_kinds: tuple[str, ...]
    decoder: str
    configure: Callable[[TrainRequest], Any]
    jobs: Callable[[TrainRequest, Any], list]
    prepare: Callable[[Any], dict]
    train: Callable[[list[dict], Any, Callable[[str], None]], dict]
    labels: Callable[[TrainRequest, Any, bool], str]
    export: Callable[[dict, np.ndarray], ExportPlan]
    build_network: Callable[[dict], Any]
    options: Sequence[click.Option] = ()
    restore_assets: Callable[[Any, dict], None] | None = None
    holds_out: bool = False
    aliases: tuple[str, ...] = ()

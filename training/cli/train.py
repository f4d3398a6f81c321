"""`cellpoint train`: train any registered method from shared data sets or a user's folders.

The options every method shares are declared here; each method adds its own (its spec's `options`), and
the method's spec turns them into its configuration, jobs and checkpoint."""
from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import click

from cellpoint.training.datasets import parse_dataset_spec
from cellpoint.training.methods import Recipe, TrainRequest, all_methods, get_method, method_names
from cellpoint.training.sampling import BALANCES
from cellpoint.training.start import FINETUNE_LR_FACTOR, FINETUNE_STEPS, config_of


def _prepare_all(worker, jobs: list, workers: int) -> list:
    """Run `worker` over `jobs` (in order), in `workers` processes when more than one.

    Worker processes are spawned, never forked: a fork of a process whose torch, OpenCV or onnxruntime
    thread pools are already running can deadlock in the child (seen in CI as a hung test run).
    """
    if workers <= 1 or len(jobs) <= 1:
        return [worker(job) for job in jobs]
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        return list(pool.map(worker, jobs, chunksize=max(1, len(jobs) // (4 * workers))))


def _method_choice() -> click.Choice:
    names = method_names()
    aliases = [a for spec in all_methods() for a in spec.aliases]
    return click.Choice(names + aliases)


def _own_options(ctx: click.Context, method) -> dict:
    """The chosen method's own option values; UsageError for another method's option given explicitly."""
    mine = {opt.name for opt in method.options}
    for spec in all_methods():
        for opt in spec.options:
            if opt.name not in mine and ctx.get_parameter_source(opt.name) != click.core.ParameterSource.DEFAULT:
                raise click.UsageError(f"{opt.opts[0]} is an option of --method {spec.name}, not of {method.name}")
    return {name: ctx.params[name] for name in mine}


def _training_data(request: TrainRequest, method, cfg) -> list[dict]:
    """The checkpoint's training data entries for the shared data sets and the user's folder."""
    entries = [{"dataset": name, "kinds": kinds, "split": "train", "labels": method.labels(request, cfg, False)}
               for name, kinds in map(parse_dataset_spec, request.datasets)]
    if request.images_dir:
        entries.append({"folder": str(request.images_dir), "labels": method.labels(request, cfg, True)})
    return entries


def _start(ctx: click.Context, source: str, method: str) -> dict:
    """The checkpoint that --init-from names (see `training.start.start_point`); UsageError when --method was
    given and differs, ClickException naming the source when it cannot be read."""
    from cellpoint.runtime.errors import CellpointError
    from cellpoint.training.start import start_point
    try:
        start = start_point(source)
    except (CellpointError, ValueError, OSError) as error:
        raise click.ClickException(f"--init-from {source}: {error}")
    explicit = ctx.get_parameter_source("method") != click.core.ParameterSource.DEFAULT
    if explicit and get_method(method).name != start["method"]:
        raise click.UsageError(f"--init-from {source} is a {start['method']} model, not --method {method}")
    return start


def _start_recipe(ctx: click.Context, start: dict, scale_range, intensity) -> tuple:
    """--scale-range and --intensity for a run from `start`: as given, else as the start was trained."""
    config = start.get("config", {})
    if scale_range is None and config.get("scale_range"):
        scale_range = tuple(config["scale_range"])
    if ctx.get_parameter_source("intensity") == click.core.ParameterSource.DEFAULT and config.get("intensity"):
        intensity = config["intensity"]
    return scale_range, intensity


def _common_options() -> list[click.Option]:
    """The options every method shares (the --method choice lists the registered methods)."""
    return [
        click.Option(["--dataset", "datasets"], multiple=True, metavar="NAME[:KIND,..]",
                     help="Shared data set to train on (its train split), e.g. dsb2018_bbbc038:gray_dark. Repeatable."),
        click.Option(["--images", "images_dir"], type=click.Path(exists=True, file_okay=False, path_type=Path),
                     help="Your own folder of images (instead of or beside --dataset)."),
        click.Option(["--points", "points_dir"], type=click.Path(exists=True, file_okay=False, path_type=Path),
                     help="Folder of <stem>_points.csv click files for --images (as `cellpoint labels` writes); "
                     "point2mask: of <stem>_boxpoints.json files (`cellpoint labels --kind box-points`)."),
        click.Option(["--masks", "masks_dir"], type=click.Path(exists=True, file_okay=False, path_type=Path),
                     help="Folder of label images <stem>*.tif/png for --images (full-mask mode, or where a method "
                     "reads only their foreground and counts)."),
        click.Option(["--method"], type=_method_choice(), default="objectness", show_default=True,
                     help="The training method: " + "; ".join(f"{s.name}: {s.title}" for s in all_methods()) + "."),
        click.Option(["--supervision"], type=click.Choice(["weak", "full"]), default="weak", show_default=True,
                     help="weak = the method's cheap labels; full = masks (the upper bound)."),
        click.Option(["--cell-diameter"], type=float, default=None,
                     help="Typical cell diameter (px) in --images [shared data sets: their median] (wsispdr, lacss); "
                     "point2mask: in every training image [each image's own, estimated from its labels]."),
        click.Option(["--out"], required=True, type=click.Path(dir_okay=False, path_type=Path),
                     help="Checkpoint file to write."),
        click.Option(["--steps"], default=2500, show_default=True, type=click.IntRange(min=1)),
        click.Option(["--batch"], default=None, type=click.IntRange(min=1), help="Crops per step [the method's default]."),
        click.Option(["--lr"], default=None, type=float, help="Learning rate [the method's default, 1e-3 for all]."),
        click.Option(["--diameter"], type=float, default=None,
                     help="Canonical cell diameter (px) the network sees [objectness, canonical_shape, lacss 24; "
                     "wsispdr, point2mask 32]."),
        click.Option(["--placement"], type=click.Choice(["centroid", "uniform", "nuclei-dog"]), default="centroid",
                     show_default=True, help="Where derived clicks fall in each cell (shared data sets); nuclei-dog "
                     "(wsispdr, lacss): no human label — one location per local maximum of a difference of Gaussians "
                     "of the nuclear stain (σ 4.2 and 5 px scaled by cell diameter / 14 px)."),
        click.Option(["--jitter"], default=0.0, show_default=True, help="Gaussian jitter (px) of derived clicks."),
        click.Option(["--scale-range"], type=float, nargs=2, default=None, metavar="LOW HIGH",
                     help="Random zoom of the training crops, e.g. 0.5 2 (cells from half to twice the canonical "
                     "diameter) [the method's own, about 0.7–1.4]."),
        click.Option(["--intensity"], type=click.Choice(["basic", "wide"]), default="basic", show_default=True,
                     help="Intensity augmentation: basic (gain, gamma, offset, noise) or wide (also background "
                     "ramps, blur, 8-bit quantisation, larger ranges)."),
        click.Option(["--balance"], type=click.Choice(BALANCES), default="none", show_default=True,
                     help="How often each data set and image kind (an _extra set joins its original) is drawn: "
                     "none (by its number of images), equal, sqrt (by the square root of that number)."),
        click.Option(["--polarity"], type=click.Choice(["any", "bright", "dark"]), default="any", show_default=True,
                     help="bright: the network learns bright objects on a dark background; images with a bright "
                     "background (brightfield, H&E) are inverted, in training and by the runtime."),
        click.Option(["--normalization"], type=click.Choice(["percentile", "percentile_robust"]),
                     default="percentile", show_default=True,
                     help="percentile_robust: percentiles that hot pixels and saturated areas do not pull, clipped."),
        click.Option(["--val-every"], type=click.IntRange(min=0), default=0, show_default=True,
                     help="Score the network on the data sets' val splits every N steps and keep the best "
                     "(objectness, point2mask; 0: keep the last)."),
        click.Option(["--init-from"], default=None, metavar="NAME|DIR|FILE",
                     help="Fine-tune: start from a bundled package (`cellpoint models`), a package folder or a "
                     "checkpoint, keeping its network, cell diameter, normalisation, decoder and scale model; "
                     f"[{FINETUNE_STEPS} steps at {FINETUNE_LR_FACTOR:g} × the method's learning rate]. BatchNorm statistics "
                     "stay fixed."),
        click.Option(["--minutes"], type=click.FloatRange(min=0, min_open=True), default=None,
                     help="Stop training after this many minutes (the learning rate decays over the budget)."),
        click.Option(["--hold-out", "hold_out"], multiple=True, metavar="STEM",
                     help="objectness: keep this image of --images (by file stem) out of training and keep the "
                     "network that finds its clicks best (scored every --val-every steps, 50 by default). Repeatable."),
        click.Option(["--seed"], default=0, show_default=True),
        click.Option(["--workers"], default=min(2, os.cpu_count() or 1), show_default=True),
    ]


@click.pass_context
def _train(ctx, datasets, images_dir, points_dir, masks_dir, method, supervision, cell_diameter, out, steps,
           batch, lr, diameter, placement, jitter, scale_range, intensity, balance, polarity, normalization,
           val_every, seed, workers, init_from, minutes, hold_out, **_):
    """Train a model with any method (see --method) and write a checkpoint for `cellpoint export`."""
    try:
        import torch
    except ImportError:
        raise click.ClickException("this command needs PyTorch: pip install torch==2.13.0 'cellpoint[train]'")
    if not datasets and not images_dir:
        raise click.UsageError("give --dataset and/or --images")
    if hold_out and not images_dir:
        raise click.UsageError("--hold-out names images of --images")
    start = None
    if init_from:
        start = _start(ctx, init_from, method)
        method = start["method"]
        diameter = diameter or float(start["diameter"])
        normalization = start["normalization"].get("kind", normalization)
        polarity = start.get("polarity", polarity)
        steps = steps if ctx.get_parameter_source("steps") != click.core.ParameterSource.DEFAULT else FINETUNE_STEPS
        scale_range, intensity = _start_recipe(ctx, start, scale_range, intensity)
        lr = lr or 1e-3 * FINETUNE_LR_FACTOR
    if hold_out:
        val_every = val_every or 50
    spec = get_method(method)
    if hold_out and not spec.holds_out:
        raise click.UsageError(f"--hold-out is not available for --method {spec.name}")
    request = TrainRequest(datasets=tuple(datasets), images_dir=images_dir, points_dir=points_dir,
                           masks_dir=masks_dir, supervision=supervision, steps=steps, batch=batch, lr=lr,
                           diameter=diameter, cell_diameter=cell_diameter, placement=placement, jitter=jitter,
                           seed=seed, options=_own_options(ctx, spec),
                           recipe=Recipe(tuple(scale_range) if scale_range else None, intensity, balance, polarity,
                                         normalization, val_every, tuple(hold_out)))
    cfg = spec.configure(request)
    if start is not None:
        from cellpoint.training.start import adopt_start
        adopt_start(cfg, init_from)
    if minutes:
        config_of(cfg).minutes = float(minutes)
    jobs = spec.jobs(request, cfg)
    if not jobs:
        raise click.ClickException("no training images found")
    click.echo(f"preparing {len(jobs)} images ({spec.name}, {spec.labels(request, cfg, not datasets)}) ...")
    examples = _prepare_all(spec.prepare, jobs, workers)
    if "OMP_NUM_THREADS" not in os.environ:  # a caller who set it (parallel runs) keeps its choice
        torch.set_num_threads(max(1, os.cpu_count() or 1))
    try:
        checkpoint = spec.train(examples, cfg, click.echo)
    except ValueError as error:
        raise click.ClickException(str(error))
    if start is not None:
        from cellpoint.training.start import carry_over
        checkpoint = carry_over(checkpoint, init_from)
    checkpoint["training_data"] = _training_data(request, spec, cfg) + checkpoint.get("training_data", [])
    from cellpoint.training.checkpoint import save_checkpoint
    save_checkpoint(checkpoint, out)
    click.echo(f"wrote {out} ({checkpoint['train_seconds']:.0f} s of training)")


def _command() -> click.Command:
    params = _common_options()
    seen = {p.name for p in params}
    for spec in all_methods():
        for option in spec.options:
            if option.name in seen:
                raise RuntimeError(f"method {spec.name}: option {option.name!r} is declared twice")
            seen.add(option.name)
            params.append(option)
    return click.Command("train", callback=_train, params=params, help=_train.__doc__)


train = _command()

"""`cellpoint train-scale`: train the scale model (how large are the cells?) that lets packages segment
images without a stated diameter; `cellpoint export --scale-model` adds it to a package."""
from __future__ import annotations

import os
from pathlib import Path

import click

from cellpoint.training.sources import shared_samples


def _example(sample) -> dict | None:
    """One training image: normalised as packages normalise (robust percentiles), its foreground and the
    diameter its foreground and cell count imply; None without cells."""
    import numpy as np
    from cellpoint.runtime.card import RobustPercentile
    from cellpoint.runtime.normalize import normalize
    from cellpoint.training.datasets import load_sample
    from cellpoint.training.scale_model import image_diameter
    image, labels = load_sample(sample)
    diameter = image_diameter(labels)
    if not np.isfinite(diameter):
        return None
    norm = normalize(image[None].astype(np.float32), RobustPercentile())[0]
    return {"image": norm, "foreground": labels > 0, "diameter": diameter}


@click.command("train-scale")
@click.option("--dataset", "datasets", multiple=True, required=True, metavar="NAME[:KIND,..]",
              help="Shared data set to train on (its train split); repeatable. Each data set is drawn equally often.")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Scale model file to write.")
@click.option("--steps", default=4000, show_default=True, type=click.IntRange(min=1))
@click.option("--batch", default=16, show_default=True, type=click.IntRange(min=1))
@click.option("--canonical", default=24.0, show_default=True, type=click.FloatRange(min=4),
              help="The cell diameter (px) at which the model's log2 ratio is 0.")
@click.option("--seed", default=0, show_default=True)
def train_scale(datasets, out, steps, batch, canonical, seed):
    """Train the scale model from the data sets' foreground masks and cell counts."""
    try:
        import torch
    except ImportError:
        raise click.ClickException("this command needs PyTorch: pip install torch==2.13.0 'cellpoint[train]'")
    from cellpoint.training.scale_model import ScaleConfig, train_scale as run
    groups = []
    for spec in datasets:
        examples = [e for e in (_example(s) for _, _, s in shared_samples([spec])) if e is not None]
        click.echo(f"{spec}: {len(examples)} train images")
        groups.append(examples)
    if not any(groups):
        raise click.ClickException("no training images found")
    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, os.cpu_count() or 1))
    checkpoint = run(groups, ScaleConfig(canonical=canonical, steps=steps, batch=batch, seed=seed), click.echo)
    checkpoint["training_data"] = [{"dataset": spec, "split": "train", "labels": "foreground + cell count"}
                                   for spec in datasets]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    torch.save(checkpoint, tmp)
    os.replace(tmp, out)
    click.echo(f"wrote {out} ({checkpoint['train_seconds']:.0f} s of training)")

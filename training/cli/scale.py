"""`cellpoint train-scale`: train the scale model (how large are the cells?) that lets packages segment
images without a stated diameter; `cellpoint export --scale-model` adds it to a package."""
from __future__ import annotations

import os
from pathlib import Path

import click

from cellpoint.training.sources import shared_samples


def _example(sample) -> dict | None:
    """One training image (colour as luminance, as the runtime gives it to one-channel models), normalised as
    packages normalise (robust percentiles), with its foreground, the diameter its foreground and cell count
    imply, and its group (data set family and kind); None without cells."""
    import numpy as np
    from cellpoint.training.checkpoint import normalise
    from cellpoint.training.datasets import load_training_sample, sample_group
    from cellpoint.training.scale_model import image_diameter
    image, labels = load_training_sample(sample, "any")
    diameter = image_diameter(labels)
    if not np.isfinite(diameter):
        return None
    return {"image": normalise(image, "percentile_robust"), "foreground": labels > 0, "diameter": diameter,
            "group": sample_group(sample)}


@click.command("train-scale")
@click.option("--dataset", "datasets", multiple=True, required=True, metavar="NAME[:KIND,..]",
              help="Shared data set to train on (its train split); repeatable. Each group (data set family and "
              "image kind; an _extra set joins its original) is drawn equally often.")
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
    by_group: dict[str, list] = {}
    for spec in datasets:
        for example in (_example(s) for _, _, s in shared_samples([spec])):
            if example is not None:
                by_group.setdefault(example["group"], []).append(example)
    for group, examples in by_group.items():
        click.echo(f"{group}: {len(examples)} train images")
    groups = list(by_group.values())
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

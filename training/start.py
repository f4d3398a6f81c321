"""Training that starts from earlier weights (`cellpoint train --init-from`): a checkpoint file, a package
folder or a bundled package's name.

The run keeps what the starting model was built with: its network (architecture), the cell diameter its
network sees, its normalisation and polarity, and, in the new checkpoint, its decoder parameters, its
outline refinement and its scale model. BatchNorm statistics stay fixed while fine-tuning
(`package_weights.freeze_batch_norm`): a few images make poor batch statistics, and a package's folded
BatchNorms hold none."""
from __future__ import annotations

from dataclasses import fields, is_dataclass
from functools import lru_cache
from pathlib import Path

import torch

from cellpoint.training.checkpoint import load_checkpoint
from cellpoint.training.package_weights import freeze_batch_norm, package_checkpoint

# Fine-tuning defaults (`cellpoint train --init-from` without --steps/--lr): a short schedule at a lower rate.
FINETUNE_STEPS = 400
FINETUNE_LR_FACTOR = 0.1  # × the method's own learning rate (chosen on train images, benchmarks/README.md)


def start_point(source: str) -> dict:
    """The checkpoint dict training starts from: `source` is a checkpoint file (.pt), a package folder or a
    bundled package's name. Raises CheckpointError / PackageError / PackageWeightsError naming it."""
    path = Path(source)
    return _read_start(str(source), path.stat().st_mtime_ns if path.exists() else 0)


@lru_cache(maxsize=4)
def _read_start(source: str, mtime_ns: int) -> dict:
    """`start_point`, once per file version (a method's configure and its training both ask)."""
    path = Path(source)
    if path.is_file():
        return load_checkpoint(path)
    return package_checkpoint(source)


def config_of(cfg):
    """The method's training config dataclass inside `cfg` (some methods wrap it in a run object)."""
    return cfg if hasattr(cfg, "init_from") else getattr(cfg, "config", cfg)


def adopt_start(cfg, source: str) -> None:
    """Set the training config `cfg` (a method's config, or a run object holding it as .config) to start from
    `source`: its `init_from`, and every field named like an entry of the starting network's constructor
    arguments (widths, features, ...) to that entry. ValueError if the config cannot start from weights."""
    config = config_of(cfg)
    if not is_dataclass(config) or "init_from" not in {f.name for f in fields(config)}:
        raise ValueError(f"{type(config).__name__} has no init_from: this method cannot start from weights")
    model = start_point(str(source))["model"]
    names = {f.name for f in fields(config)}
    for key, value in model.items():
        if key in names and key not in ("diameter",):
            current = getattr(config, key)
            setattr(config, key, tuple(value) if isinstance(current, tuple) else value)
    config.init_from = str(source)


def initialise(net: torch.nn.Module, cfg, log=print) -> list[dict]:
    """Load the starting weights of `cfg.init_from` (if any) into `net` and keep its BatchNorm statistics
    fixed. Returns the starting model's training data entries with role "pretraining" ([] without a start).
    ValueError when the network differs from the start's."""
    source = getattr(config_of(cfg), "init_from", "")
    if not source:
        return []
    start = start_point(str(source))
    try:
        missing, unexpected = net.load_state_dict(start["state_dict"], strict=False)
    except RuntimeError:  # a tensor of another shape
        missing, unexpected = ["(sizes differ)"], []
    if unexpected or [k for k in missing if not k.endswith("num_batches_tracked")]:
        raise ValueError(f"{source}: not a {start.get('method')} model of the same network as this run's "
                         f"({start.get('model')}; missing {missing[:3]}, unexpected {unexpected[:3]})")
    frozen = freeze_batch_norm(net)
    log(f"starting from {start.get('start', {}).get('package') or source} ({frozen} BatchNorm layers keep "
        "their statistics)")
    return [dict(entry, role="pretraining") if "role" not in entry else dict(entry)
            for entry in start.get("training_data", [])]


def carry_over(checkpoint: dict, source: str) -> dict:
    """The fine-tuned `checkpoint` with what the starting model defines beyond its weights: decoder and its
    parameters, postprocess, normalisation and polarity, outline refinement, scale model (graph, card
    entry, its training data).
    Returns a new dict."""
    start = start_point(str(source))
    out = dict(checkpoint, decoder=start["decoder"], postprocess=start.get("postprocess", {}),
               normalization=start["normalization"], polarity=start.get("polarity", "any"))
    for key in ("refine_diameter", "scale_graph"):
        if key in start:
            out[key] = start[key]
    out["start"] = start.get("start", {"checkpoint": str(source)})
    return out

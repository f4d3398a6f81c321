"""Checkpoints: what training writes and export reads. Plain data and tensors only, so loading never runs
code from the file (`torch.load(..., weights_only=True)`).

A checkpoint is a dict, format "cellpoint-checkpoint/2":
    format, method (a registered method id), label_kind, model (the network's constructor arguments),
    state_dict, diameter (px the network sees cells at), normalization (the card's preprocessing entry,
    e.g. {kind, low, high}), polarity ("any", "bright", "dark": the card's inputs[0].polarity),
    decoder ({name, params}: the runtime decoder and its parameters), postprocess ({outline_contrast}),
    config (the training configuration), train_seconds, training_data ([{dataset|folder, ...}]),
    and whatever else a method keeps (e.g. LACSS's aux_state_dict).
Format /1 (decoder parameters flat beside the decoder's name) is migrated when loaded."""
from __future__ import annotations

import os
import time
from dataclasses import asdict, is_dataclass
from pathlib import Path

import msgspec
import torch

from cellpoint.runtime.card import split_v1_decoder
from cellpoint.runtime.errors import CellpointError

CHECKPOINT_FORMAT = "cellpoint-checkpoint/2"
READABLE_FORMATS = ("cellpoint-checkpoint/1", CHECKPOINT_FORMAT)


class CheckpointError(CellpointError, ValueError):
    """A checkpoint file that cannot be read or is not a cellpoint checkpoint; the message names the file."""


def config_dict(cfg) -> dict:
    """A training configuration (dataclass, possibly holding dataclasses or msgspec structs) as plain data."""
    out = {}
    for key, value in vars(cfg).items():
        if is_dataclass(value):
            value = asdict(value)
        elif isinstance(value, msgspec.Struct):
            value = msgspec.to_builtins(value)
        out[key] = value
    return out


def preprocessing(kind: str = "percentile") -> dict:
    """The card's preprocessing entry for a normalisation kind ("percentile" or "percentile_robust"), with
    the defaults of cellpoint.runtime.card."""
    from cellpoint.runtime.card import Percentile, RobustPercentile
    entry = {"percentile": Percentile, "percentile_robust": RobustPercentile}[kind]()
    return msgspec.to_builtins(entry)


def normalise(image, kind: str = "percentile"):
    """A (H,W) or (C,H,W) image normalised as a package with preprocessing `kind` normalises it: float32,
    same shape."""
    import numpy as np
    from cellpoint.runtime.card import Preprocessing
    from cellpoint.runtime.normalize import normalize
    arr = np.asarray(image, np.float32)
    planes = arr[None] if arr.ndim == 2 else arr
    out = normalize(planes, msgspec.convert(preprocessing(kind), Preprocessing))
    return out[0] if arr.ndim == 2 else out


def make_checkpoint(method: str, label_kind: str, model: dict, net: torch.nn.Module, diameter: float,
                    decoder_name: str, decoder_params: msgspec.Struct, cfg, seconds: float,
                    normalization: str = "percentile", polarity: str = "any", **extra) -> dict:
    """The checkpoint dict of a trained network (see the module); normalization: the preprocessing kind it
    was trained with; polarity: the image polarity it learned (the card's inputs[0].polarity); `extra` adds
    method-specific entries."""
    return {
        "format": CHECKPOINT_FORMAT,
        "method": method,
        "label_kind": label_kind,
        "model": model,
        "state_dict": net.state_dict(),
        "diameter": diameter,
        "normalization": preprocessing(normalization),
        "polarity": polarity,
        "decoder": {"name": decoder_name, "params": msgspec.to_builtins(decoder_params)},
        "postprocess": {},
        "config": config_dict(cfg),
        "train_seconds": seconds,
        **extra,
    }


def save_checkpoint(checkpoint: dict, path) -> Path:
    """Write `checkpoint` to `path` atomically (a temporary file beside it, then a rename). Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}.tmp")
    try:
        torch.save(checkpoint, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load_checkpoint(path) -> dict:
    """Read a checkpoint written by `save_checkpoint` (tensors and plain data only) and migrate an older
    format. Raises CheckpointError naming the file if it cannot be read, holds anything but plain data and
    tensors, or is not a cellpoint checkpoint."""
    path = Path(path)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint file") from None
    except Exception as error:  # torch raises pickle, zip and runtime errors of many kinds
        raise CheckpointError(f"{path}: not a readable cellpoint checkpoint ({type(error).__name__}: "
                              f"{str(error).splitlines()[0] if str(error) else ''})") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") not in READABLE_FORMATS:
        found = checkpoint.get("format") if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise CheckpointError(f"{path}: not a cellpoint checkpoint (format {found!r}; this cellpoint reads "
                              f"{', '.join(READABLE_FORMATS)})")
    return migrate(checkpoint)


def migrate(checkpoint: dict) -> dict:
    """A checkpoint of any readable format → the current one (a new dict; tensors shared)."""
    if checkpoint.get("format") == CHECKPOINT_FORMAT:
        return checkpoint
    entry, postprocess, _ = split_v1_decoder(checkpoint["decoder"])  # the shape MLP lives in the state dict
    return {**checkpoint, "format": CHECKPOINT_FORMAT, "decoder": entry, "postprocess": postprocess}

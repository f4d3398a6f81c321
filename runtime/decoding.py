"""The contract between a model package and the runtime's decoders: network outputs → instances.

A decoder is a `Decoder`: its name (the card's `decoder.name`), its parameter type (a frozen
`msgspec.Struct` whose defaults are the only defaults: training writes them into cards, the runtime
validates cards against them), the scale it decodes at, the package's further graphs and assets it needs,
and one function `decode(context, params) -> Instances`. `Segmenter` runs any registered decoder without
knowing its name; the registry is `cellpoint.runtime.decoders`.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

import msgspec
import numpy as np

Scale = Literal["image", "network"]


class Instances(NamedTuple):
    """A decoder's result. labels: uint32 (h,w), 0 = background, ids 1..N consecutive. score: float32 (h,w),
    averaged over each instance for the table's `score` column. columns: extra per-instance table columns
    {name: (N,) array in label order}, positions in image px."""
    labels: np.ndarray
    score: np.ndarray
    columns: dict[str, np.ndarray]


@dataclass(frozen=True)
class DecodeContext:
    """What a decoder may read for one image.

    maps: the network's stitched outputs. For a decoder at scale "image", a dense output (card stride 1)
      is its first channel resized to the image, float32 (H,W), and a grid output (stride > 1) is
      (k,h',w') as stitched; at scale "network", every output is (k,h,w) at the network's scale.
    network_input: float32 (C,h,w), the normalised, rescaled image the network saw.
    image_shape: (H,W) of the image. scale: network px per image px.
    multiple: the network's size multiple (the card's tiling.multiple).
    run_graph(role, inputs): runs the package's further graph `role` on named float32 inputs and returns
      its first output.
    assets: the package's further data by role (e.g. canonical-shape's MLP weights)."""
    maps: Mapping[str, np.ndarray]
    network_input: np.ndarray
    image_shape: tuple[int, int]
    scale: float
    multiple: int
    run_graph: Callable[[str, Mapping[str, np.ndarray]], np.ndarray]
    assets: Mapping[str, Any] = field(default_factory=dict)

    @property
    def pixel_scale(self) -> float:
        """Image px per network px."""
        return 1.0 / self.scale


class Params(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Base of every decoder's parameter type: frozen, keyword-only, unknown fields rejected."""


@dataclass(frozen=True)
class Decoder:
    """A registered decoder.

    name: the card's `decoder.name`. params: its `Params` subclass (field defaults are the defaults).
    decode(context, params) → Instances at the network's scale (scale "network"; the runtime resizes
    them to the image) or at the image's (scale "image"). graphs / assets: the roles of the package's
    further graphs / asset files it reads (checked when a package is loaded)."""
    name: str
    params: type[Params]
    decode: Callable[[DecodeContext, Any], Instances]
    scale: Scale = "image"
    graphs: tuple[str, ...] = ()
    assets: tuple[str, ...] = ()

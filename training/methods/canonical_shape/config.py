"""The canonical-shape method's training configuration and loss parameters (plain data; no torch)."""
from __future__ import annotations

from dataclasses import dataclass, field

INSTANCES_PER_CELL = 2  # instance slots the encoder predicts per grid cell
STRIDE = 16             # network px between grid cells (the encoder's output stride)


@dataclass(frozen=True)
class ShapeParams:
    alpha: float = 1e-2          # weight of the count loss L_cnt (0 switches it off, the paper's ablation)
    render_stride: int = 4       # training renders on a grid this many px apart, then upsamples
    unit: float = 12.0           # canonical radius in network px: X = pixel / unit
    presence_bias: float = -2.0  # initial presence logit: few instances present at the start


@dataclass
class ShapeTrainConfig:
    widths: tuple = (16, 32, 64, 96, 128)
    diameter: float = 24.0                 # canonical cell diameter, px, the network sees
    crop: int = 128                        # the paper's patch size
    batch: int = 16
    steps: int = 3000
    # "adam" (default: from scratch on a CPU budget it fits in 3000 steps where the paper's SGD did not),
    # or "sgd": Nesterov momentum 0.9 (the paper's). Both follow the one-cycle schedule.
    optimizer: str = "adam"
    lr: float = 1e-3                       # the one-cycle maximum (the paper's SGD used 1e-2)
    seed: int = 0
    init_from: str = ""                    # weights to start from (`training.start`): checkpoint, package or name
    minutes: float = 0.0                   # time budget of the optimisation, minutes (0: run every step)
    scale_range: tuple = (0.8, 1.25)
    params: ShapeParams = field(default_factory=ShapeParams)

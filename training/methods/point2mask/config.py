"""Point2Mask's architecture constants, training configuration and loss parameters (plain data; no torch).

The decoder's parameters are the runtime's `BoxMasksParams` (their single declaration)."""
from __future__ import annotations

from dataclasses import dataclass, field

from cellpoint.runtime.decoders.box_masks import BoxMasksParams

STRIDES = (4, 8, 16)
"""Pyramid levels of the detection head, network px per grid step."""
FEATURE_STRIDE = 4
"""Stride of the features the mask head samples."""
MULTIPLE = 16
"""Input height and width must be multiples of this (four 2× reductions: the stem and three pools)."""
DEFAULT_SIZE_RANGES = ((0.0, 16.0), (16.0, 40.0), (40.0, 1e5))
"""Per level, [low, high) of max(l, t, r, b) in network px (cells 8–32, 32–80, > 80 px across at a
canonical diameter of 32 px). 1e5 stands for infinity (JSON-safe)."""
MASK_INPUTS = ("features", "boxes")
"""Input names of the exported mask graph."""
MASK_OUTPUT = "masks"
"""Output name of the exported mask graph."""
MODES = ("points", "full")
"""Supervision: "points" = a box and N labelled clicks per cell; "full" = instance masks."""


@dataclass(frozen=True)
class LossParams:
    """Weights and shapes of the loss terms (the score term has weight 1)."""
    box: float = 1.0
    mask: float = 1.0
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    center_radius: float = 1.5       # positives: within this many strides of a box's centre
    feature_grad: float = 1.0        # scale of the point loss's gradient into the shared features (1: as is)


@dataclass
class Point2MaskConfig:
    mode: str = "points"                   # "points" (box + N clicks) or "full" (masks, the upper bound)
    n_points: int = 6                      # clicks per cell when derived from masks (the paper's best)
    widths: tuple = (16, 32, 64, 128)      # backbone widths at strides 2, 4, 8, 16
    channels: int = 32                     # F, pyramid, detection head and mask head channels
    head_convs: int = 2
    mask_convs: int = 4                    # 3×3 convs of the mask head (Mask R-CNN's head has 4)
    roi_size: int = 14                     # S; masks are M = 2S = 28 px square
    size_ranges: tuple = DEFAULT_SIZE_RANGES
    diameter: float = 32.0                 # canonical cell diameter, px, the network sees
    crop: int = 160                        # training crop, a multiple of MULTIPLE
    batch: int = 6
    steps: int = 2000
    lr: float = 1e-3                       # AdamW, cosine decay to lr/100
    weight_decay: float = 1e-4
    seed: int = 0
    minutes: float = 0.0                   # time budget of the optimisation, minutes (0: run every step)
    scale_range: tuple = (0.8, 1.25)
    box_jitter: float = 0.05               # sd of the RoI edges' jitter, fraction of the box's size
    min_box: float = 3.0                   # px; narrower clipped boxes are ignored (see data.py)
    max_rois: int = 64                     # mask-head RoIs per step (a random subset of the boxes)
    log_every: int = 100
    init_from: str = ""                    # a point2mask checkpoint whose weights training starts from
    loss: LossParams = field(default_factory=LossParams)
    decode: BoxMasksParams = field(default_factory=BoxMasksParams)   # the package's decoder parameters
    # the training recipe (`spec.Recipe`; these defaults are the training the bundled package had)
    intensity: str = "basic"               # augment.JITTERS
    balance: str = "none"                  # sampling.BALANCES, over the examples' "group"
    polarity: str = "any"                  # "bright"/"dark": images prepared as the runtime prepares them
    normalization: str = "percentile"      # the card's preprocessing kind
    val_every: int = 0                     # keep the best of the networks scored on val this often (0: the last)

"""LACSS's training configuration and loss weights (plain data; no torch)."""
from __future__ import annotations

from dataclasses import dataclass, field

LPN_STRIDE = 4
"""Grid spacing of the score and offset maps, network px."""
MULTIPLE = 8
"""Input height and width must be multiples of this (three 2× poolings)."""
MODES = ("full", "weak")
"""Supervision: "weak" = image foreground + one location per cell; "full" = instance masks."""
WEAK_LOSSES = ("union", "window")
"""How weak mode ties the masks to the foreground (`loss.lacss_loss`)."""


@dataclass(frozen=True)
class LossWeights:
    """Weights of the loss terms (the score term has weight 1)."""
    offset: float = 1.0
    mask: float = 1.0       # full supervision
    spill: float = 1.0      # weak: mask outside the foreground
    cover: float = 1.0      # weak: foreground not covered by any mask
    overlap: float = 1.0    # weak: two masks on one pixel
    aux: float = 1.0        # both aux terms (only when the aux net trains)


@dataclass
class LacssConfig:
    mode: str = "weak"                     # "weak" (foreground + locations) or "full" (masks)
    aux: bool = True                       # train with the low field-of-view aux net (meant for weak mode)
    weak_loss: str = "union"               # WEAK_LOSSES: how masks are tied to the foreground
    widths: tuple = (16, 32, 64, 128)      # backbone widths at strides 1, 2, 4, 8
    features: int = 16                     # F, channels of the high-resolution features
    head_width: int = 16                   # channels of the instance head's 3×3 convs
    head_layers: int = 2
    aux_width: int = 8                     # aux net: channels of its 3×3 convs
    aux_layers: int = 4                    # aux net: 3×3 convs, field of view 2·layers + 1 px
    diameter: float = 24.0                 # canonical cell diameter, px, the network sees
    window: int = 48                       # P, the instance head's window (two diameters)
    crop: int = 128                        # training crop, a multiple of MULTIPLE
    batch: int = 8
    steps: int = 2500
    lr: float = 1e-3                       # Adam, cosine decay to lr/100
    seed: int = 0
    init_from: str = ""                    # weights to start from (`training.start`): checkpoint, package or name
    minutes: float = 0.0                   # time budget of the optimisation, minutes (0: run every step)
    scale_range: tuple = (0.8, 1.25)
    log_every: int = 100
    weights: LossWeights = field(default_factory=LossWeights)


@dataclass(frozen=True)
class LacssRun:
    """What `cellpoint train --method lacss` trains with: the config plus where shared data sets' labels
    come from. placement: "nuclei-dog" = locations a machine finds in the nuclear stain, else how they are
    derived from the masks; foreground_source: "labels" (the masks' union) or "machine"."""
    config: LacssConfig
    placement: str = "centroid"
    foreground_source: str = "labels"

    def labels(self) -> str:
        """How the training labels are described in the checkpoint's and card's training data."""
        if self.config.mode == "full":
            return "full masks"
        return (f"{'machine-made' if self.placement == 'nuclei-dog' else 'derived'} locations + "
                f"{'machine-made' if self.foreground_source == 'machine' else 'derived'} foreground")

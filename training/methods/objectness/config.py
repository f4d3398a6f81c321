"""The objectness method's training configuration and loss parameters (plain data; no torch)."""
from __future__ import annotations

from dataclasses import dataclass, field, replace

OUT_CHANNELS = 3  # background logit, cell logit, centre logit


@dataclass(frozen=True)
class ObjectnessParams:
    w: float = 20.0               # Obj = exp(-w·d)
    beta_background: float = 3.0  # β_bg of L_obj (β_cell = 1)
    boundary_weight: float = 0.1  # α of the generated background labels in L_point
    point_radius: int = 1         # a click labels a (2r+1)² square: survives rescaling of crops
    center_sigma: float = 2.0     # px at the model's canonical scale


# Objectness decay w per shared data set. The paper tunes its objectness parameters against masks of a
# validation set; these come from benchmarks/tune_objectness.py (F1@0.5 of the objectness regions against
# the masks of a subset of train images). Images of other data sets use --objectness-w.
OBJECTNESS_W = {"dsb2018_bbbc038": 150.0, "dsb2018_bbbc038_extra": 150.0, "coelho2009_u2os_nih3t3": 95.0}
DEFAULT_W = 100.0


@dataclass
class TrainConfig:
    labels: str = "points"                 # "points" (weak) or "full" (upper bound)
    widths: tuple = (8, 16, 32, 64, 128)
    diameter: float = 24.0                 # canonical cell diameter, px, the network sees
    crop: int = 128
    batch: int = 8
    steps: int = 2500
    lr: float = 1e-3
    seed: int = 0
    init_from: str = ""                    # weights to start from (`training.start`): checkpoint, package or name
    minutes: float = 0.0                   # time budget of the optimisation, minutes (0: run every step)
    keep_start: float = 5.0                # with init_from: weight of the loss keeping the start's maps
    point_placement: str = "centroid"
    point_jitter: float = 0.0
    scale_range: tuple = (0.7, 1.4)
    log_every: int = 200
    params: ObjectnessParams = field(default_factory=ObjectnessParams)
    intensity: str = "basic"               # augment.JITTERS
    balance: str | bool = "none"           # sampling.BALANCES (a checkpoint of before may say True/False)
    polarity: str = "any"                  # "bright": images with a bright background are inverted
    normalization: str = "percentile"      # the card's preprocessing kind
    val_every: int = 0                     # keep the best of the networks scored on val this often (0: the last)


def with_objectness_w(cfg: TrainConfig, w: float) -> TrainConfig:
    """`cfg` with the objectness decay w."""
    return replace(cfg, params=replace(cfg.params, w=w))

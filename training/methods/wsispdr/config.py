"""WSISPDR's training configuration (plain data; no torch)."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class WsispdrConfig:
    """What the checkpoint records as its training configuration."""
    widths: tuple = (16, 32, 64, 128)
    diameter: float = 32.0          # canonical cell diameter, px, the network sees
    sigma: float = 5.0              # sd (px, canonical scale) of the Gaussian peak at each centroid
    crop: int = 128
    batch: int = 8
    steps: int = 2000
    lr: float = 1e-3
    seed: int = 0
    init_from: str = ""                    # weights to start from (`training.start`): checkpoint, package or name
    minutes: float = 0.0                   # time budget of the optimisation, minutes (0: run every step)
    scale_range: tuple = (0.8, 1.25)
    data_term: str = "intensity"    # the runtime graph-cut's cell evidence: intensity | inverted | texture


@dataclass(frozen=True)
class WsispdrRun:
    """One `cellpoint train --method wsispdr` run: the training configuration plus how the locations of
    shared data sets are made (placement "centroid" | "uniform" from the masks, with `jitter` px of
    Gaussian jitter, or "nuclei-dog": machine-made from the nuclear stain). Only `config` is stored in
    the checkpoint."""
    config: WsispdrConfig = field(default_factory=WsispdrConfig)
    placement: str = "centroid"
    jitter: float = 0.0

    @property
    def machine_made(self) -> bool:
        """Whether the shared data sets' locations come from the image alone (no human label)."""
        return self.placement == "nuclei-dog"

    @property
    def label_kind(self) -> str:
        """The checkpoint's label kind: "nuclei-dog" (machine-made locations) or "points"."""
        return "nuclei-dog" if self.machine_made else "points"

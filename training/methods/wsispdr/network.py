"""WSISPDR's detection network (Nishimura, Ker, Bise): a U-Net mapping an image to a cell-position
likelihood map y (trained with MSE against Gaussian peaks), and the wrapper whose forward is the exported
main graph. Its guided backpropagation is in guided_backprop.py."""
from __future__ import annotations

import torch
from torch import nn


def _block(c_in: int, c_out: int) -> nn.Sequential:
    """Two (3x3 conv with bias, BatchNorm, ReLU) layers. ReLUs are not in place (backward hooks need that)."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(),
        nn.Conv2d(c_out, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(),
    )


class DetectionUNet(nn.Module):
    """(N, in_channels, H, W) float32 -> (N, 1, H, W) float32 likelihood map y (no final activation).

    `widths` are the channel counts per resolution, finest first; H and W must be multiples of
    2**(len(widths) - 1). Decoder level i concatenates [skip_i, up_i] along channels."""

    def __init__(self, in_channels: int = 1, widths=(16, 32, 64, 128)):
        super().__init__()
        self.widths = tuple(widths)
        self.encoder = nn.ModuleList()
        c = in_channels
        for w in self.widths:
            self.encoder.append(_block(c, w))
            c = w
        self.pool = nn.MaxPool2d(2)
        # Decoder modules are listed coarsest first, i.e. in the order the forward pass uses them.
        levels = list(reversed(range(len(self.widths) - 1)))
        self.upsample = nn.ModuleList(nn.ConvTranspose2d(self.widths[i + 1], self.widths[i], 2, stride=2)
                                      for i in levels)
        self.decoder = nn.ModuleList(_block(2 * self.widths[i], self.widths[i]) for i in levels)
        self.head = nn.Conv2d(self.widths[0], 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.encoder):
            if i:
                x = self.pool(x)
            x = block(x)
            skips.append(x)
        for up, block, skip in zip(self.upsample, self.decoder, reversed(skips[:-1])):
            x = block(torch.cat([skip, up(x)], 1))
        return self.head(x)


class LikelihoodOutput(nn.Module):
    """The exported main graph: image (N,1,H,W) float32 → (likelihood (N,1,H,W) float32,)."""

    def __init__(self, net: DetectionUNet):
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor):
        return (self.net(image),)


OUTPUTS = [{"name": "likelihood", "axes": "bcyx", "stride": 1,
            "description": "cell-position likelihood map (Gaussian peaks at cell centres, regressed)"}]

"""The objectness method's network: a compact U-Net sized for a 2-core CPU (two 3×3 conv + BatchNorm + ReLU per
block), and the wrapper whose forward is the exported graph."""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
    )


class UNet(nn.Module):
    """(N, in_channels, H, W) float32 → (N, out_channels, H, W) logits; H and W multiples of 2**(levels-1).

    `widths` are the channel counts per resolution, finest first."""

    def __init__(self, in_channels: int = 1, out_channels: int = 3, widths=(16, 32, 64, 128)):
        super().__init__()
        self.widths = tuple(widths)
        self.down = nn.ModuleList()
        c = in_channels
        for w in widths:
            self.down.append(_block(c, w))
            c = w
        self.up = nn.ModuleList(_block(widths[i + 1] + widths[i], widths[i]) for i in reversed(range(len(widths) - 1)))
        self.head = nn.Conv2d(widths[0], out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.down):
            if i:
                x = F.max_pool2d(x, 2)
            x = block(x)
            skips.append(x)
        for block, skip in zip(self.up, reversed(skips[:-1])):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], 1))
        return self.head(x)


class ExportHead(torch.nn.Module):
    """Wraps the network so the exported graph returns probabilities the runtime decodes:
    foreground = P(cell) (N,1,H,W), centers = sigmoid(centre logit) (N,1,H,W)."""

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor):
        logits = self.net(image)
        return torch.softmax(logits[:, :2], 1)[:, 1:2], torch.sigmoid(logits[:, 2:3])


OUTPUTS = [{"name": "foreground", "axes": "bcyx", "description": "P(cell) per pixel", "stride": 1},
           {"name": "centers", "axes": "bcyx", "description": "cell-centre heat map in [0,1]", "stride": 1}]
OUTPUT_NAMES = tuple(o["name"] for o in OUTPUTS)

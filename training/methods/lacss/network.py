"""LACSS's network (Shrestha, Kuang, Yu), all fully convolutional, and the wrappers whose forwards are
the exported graphs.

- backbone: an encoder/decoder over four resolutions (strides 1, 2, 4, 8; 3×3 conv + BatchNorm + ReLU,
  max-pool down; FPN-like up: 1×1 conv, bilinear upsampling, add the skip, 3×3 conv). It gives the
  stride-4 decoder features for the LPN and the stride-1 "high-resolution" features (F channels, ≥ 0)
  for the head.
- location proposal network (LPN) on the stride-4 features (LPN_STRIDE): per grid cell a score logit
  ("a location of interest lies in this cell") and the offsets (dy, dx) in network px from the grid
  cell's centre, pixel (i·4 + 1.5, j·4 + 1.5). No size is predicted.
- instance head: for one location (y, x) (float network px) it reads a P×P window of the features
  (windows.py), concatenated with the location encoding; a few 3×3 convs → one mask logit per window
  pixel.
Training only: `AuxNet`, a low field-of-view (9×9 px) edge predictor on the image."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cellpoint.runtime.decoders.location_masks import gather_windows
from cellpoint.training.methods.lacss.config import LPN_STRIDE
from cellpoint.training.methods.spec import GraphExport


def _conv_bn(c_in: int, c_out: int) -> nn.Sequential:
    """3×3 conv, BatchNorm, ReLU."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
                         nn.ReLU(inplace=True))


class Backbone(nn.Module):
    """(B,C,H,W) → (stride-4 features (B,widths[2],H/4,W/4), stride-1 features (B,F,H,W) ≥ 0).

    Encoder: widths = channels at strides 1, 2, 4, 8; one 3×3 conv block at stride 1, two at the others,
    2×2 max-pool between. Decoder (FPN-like, to fit a CPU budget): at each finer level, a 1×1 conv of the
    coarser output, bilinear 2× upsampling, plus the encoder's skip, then one 3×3 conv block; the last
    gives `features` channels."""

    def __init__(self, in_channels: int = 1, widths=(16, 32, 64, 128), features: int = 16):
        super().__init__()
        w = tuple(widths)
        if len(w) != 4:
            raise ValueError(f"LACSS backbone takes 4 widths (strides 1, 2, 4, 8), got {w}")
        self.down = nn.ModuleList([_conv_bn(in_channels, w[0]),
                                   nn.Sequential(_conv_bn(w[0], w[1]), _conv_bn(w[1], w[1])),
                                   nn.Sequential(_conv_bn(w[1], w[2]), _conv_bn(w[2], w[2])),
                                   nn.Sequential(_conv_bn(w[2], w[3]), _conv_bn(w[3], w[3]))])
        self.lateral = nn.ModuleList([nn.Conv2d(w[3], w[2], 1), nn.Conv2d(w[2], w[1], 1), nn.Conv2d(w[1], w[0], 1)])
        self.up = nn.ModuleList([_conv_bn(w[2], w[2]), _conv_bn(w[1], w[1]), _conv_bn(w[0], features)])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        skips = []
        for i, block in enumerate(self.down):
            x = block(F.max_pool2d(x, 2) if i else x)
            skips.append(x)
        outputs = []
        for lateral, block, skip in zip(self.lateral, self.up, reversed(skips[:-1])):
            x = block(skip + F.interpolate(lateral(x), size=skip.shape[-2:], mode="bilinear", align_corners=False))
            outputs.append(x)
        return outputs[0], outputs[-1]


class InstanceHead(nn.Module):
    """(windows (N,F,P,P), encoding (N,2,P,P)) → mask logits (N,1,P,P): `layers` 3×3 conv + ReLU of
    `width` channels, then a 1×1 conv. No normalisation: windows are independent of each other."""

    def __init__(self, features: int = 16, width: int = 16, layers: int = 2):
        super().__init__()
        convs, c = [], features + 2
        for _ in range(layers):
            convs += [nn.Conv2d(c, width, 3, padding=1), nn.ReLU(inplace=True)]
            c = width
        self.body = nn.Sequential(*convs)
        self.out = nn.Conv2d(c, 1, 1)

    def forward(self, windows: torch.Tensor, encoding: torch.Tensor) -> torch.Tensor:
        return self.out(self.body(torch.cat([windows, encoding], 1)))


class LacssNet(nn.Module):
    """Backbone + LPN + instance head.

    forward(image (B,C,H,W), H and W multiples of MULTIPLE) → (score logits (B,1,H/4,W/4), offsets
    (B,2,H/4,W/4) as (dy, dx) network px from the grid cell's centre, features (B,F,H,W)).
    instance_logits(windows, encoding) → (N,1,P,P) mask logits."""

    def __init__(self, in_channels: int = 1, widths=(16, 32, 64, 128), features: int = 16,
                 head_width: int = 16, head_layers: int = 2, score_bias: float = -4.0):
        super().__init__()
        self.backbone = Backbone(in_channels, widths, features)
        c = tuple(widths)[2]
        self.lpn = nn.Sequential(nn.Conv2d(c, c // 2, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(c // 2, 3, 1))
        self.head = InstanceHead(features, head_width, head_layers)
        with torch.no_grad():  # few grid cells hold a location: start the score low, the offsets near 0
            self.lpn[2].bias.copy_(torch.tensor([score_bias, 0.0, 0.0]))
            self.lpn[2].weight[1:].mul_(0.1)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        d4, features = self.backbone(image)
        lpn = self.lpn(d4)
        return lpn[:, :1], lpn[:, 1:] * LPN_STRIDE, features

    def instance_logits(self, windows: torch.Tensor, encoding: torch.Tensor) -> torch.Tensor:
        return self.head(windows, encoding)


class AuxNet(nn.Module):
    """Training-only low field-of-view boundary predictor: image (B,C,H,W) → edge logits (B,1,H,W).

    `layers` 3×3 convs (field of view 2·layers + 1 px: 9 px for 4) + ReLU, then a 1×1 conv."""

    def __init__(self, in_channels: int = 1, width: int = 8, layers: int = 4):
        super().__init__()
        convs, c = [], in_channels
        for _ in range(layers):
            convs += [nn.Conv2d(c, width, 3, padding=1), nn.ReLU(inplace=True)]
            c = width
        self.net = nn.Sequential(*convs, nn.Conv2d(c, 1, 1))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.net(image)


class ExportFeatures(nn.Module):
    """The exported main graph: image (B,C,H,W) float32 → score (B,1,H/4,W/4) probability, offsets
    (B,2,H/4,W/4) (dy, dx) network px, features (B,F,H,W)."""

    def __init__(self, net: LacssNet):
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor):
        score, offsets, features = self.net(image)
        return torch.sigmoid(score), offsets, features


class ExportInstance(nn.Module):
    """The exported instance graph: windows (N,F,P,P), encoding (N,2,P,P) → masks (N,1,P,P) probability."""

    def __init__(self, net: LacssNet):
        super().__init__()
        self.head = net.head

    def forward(self, windows: torch.Tensor, encoding: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.head(windows, encoding))


OUTPUTS = [{"name": "score", "axes": "bcyx", "stride": LPN_STRIDE,
            "description": "probability that a cell's location lies in each grid cell"},
           {"name": "offsets", "axes": "bcyx", "stride": LPN_STRIDE,
            "description": "(dy, dx) network px from each grid cell's centre to the location"},
           {"name": "features", "axes": "bcyx", "stride": 1,
            "description": "high-resolution features the instance graph reads around each location"}]
OUTPUT_NAMES = tuple(o["name"] for o in OUTPUTS)


def instances_graph(net: LacssNet, features: int, window: int) -> GraphExport:
    """The package's graph "instances" (instances.onnx) for `cellpoint export`: inputs windows (N,F,P,P)
    and encoding (N,2,P,P) float32, output masks (N,1,P,P); N dynamic.

    Its example inputs (traced, and the parity check's) are the runtime's windows (`gather_windows`) of
    random features (F, 2P, 2P) (generator seeded 0) at two locations, the second partly outside."""
    rng = np.random.default_rng(0)
    maps = rng.normal(size=(int(features), 2 * window, 2 * window)).astype(np.float32)
    windows, encoding, _ = gather_windows(maps, np.array([[window * 0.9, window * 1.1], [3.2, 2 * window - 4.7]]),
                                          window)
    dynamic = {"windows": {0: "cells"}, "encoding": {0: "cells"}, "masks": {0: "cells"}}
    return GraphExport(ExportInstance(net).eval(), {"windows": torch.from_numpy(windows),
                                                    "encoding": torch.from_numpy(encoding)},
                       "masks", dynamic, "instances.onnx")

"""Windows of the instance head, in torch (training): where each location's P×P window lies, its location
encoding, and gathering maps into windows / pasting window values back into the images, both
differentiable. The runtime's numpy twin is `cellpoint.runtime.decoders.location_masks.gather_windows`;
the two agree exactly (window pixel (i, j) = image pixel (top + i, left + j), top/left =
floor(y + 0.5) − P//2, floor(x + 0.5) − P//2, zero outside the image)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


def window_origins(yx: torch.Tensor, size: int) -> torch.Tensor:
    """Top-left pixel (row, col) of each location's window: floor(yx + 0.5) − size//2.
    yx float (N,2) network px → int64 (N,2)."""
    return torch.floor(yx + 0.5).long() - size // 2


def location_encoding(yx: torch.Tensor, size: int) -> torch.Tensor:
    """(N,2) float locations → float32 (N,2,P,P): channel 0 = (top + i − y)/P, channel 1 = (left + j − x)/P."""
    origins = window_origins(yx, size).to(torch.float64)
    steps = torch.arange(size, dtype=torch.float64, device=yx.device)
    rows = (origins[:, 0, None] + steps - yx[:, 0, None].double()) / size      # (N,P)
    cols = (origins[:, 1, None] + steps - yx[:, 1, None].double()) / size
    n = len(yx)
    return torch.stack([rows[:, :, None].expand(n, size, size), cols[:, None, :].expand(n, size, size)],
                       1).float()


@dataclass
class Windows:
    """Where N windows of size P lie in a batch of B images of (H,W): flat indices into the images
    zero-padded by `pad` on every side, shape (B, H+2·pad, W+2·pad). Lets maps be gathered into windows
    and window values be pasted (summed) back into the images, both differentiable."""
    index: torch.Tensor   # int64 (N,P,P)
    batch: int
    height: int
    width: int
    pad: int

    @classmethod
    def at(cls, batch_index: torch.Tensor, yx: torch.Tensor, size: int, batch: int, height: int, width: int):
        """Windows of `size` around locations yx (N,2) float of images batch_index (N,) int64."""
        origins = window_origins(yx, size)
        pad = 0 if len(origins) == 0 else int(max(0, -int(origins.min()),
                                                  int((origins[:, 0] + size - height).max()),
                                                  int((origins[:, 1] + size - width).max())))
        steps = torch.arange(size, device=yx.device)
        rows = origins[:, 0, None] + pad + steps                                  # (N,P)
        cols = origins[:, 1, None] + pad + steps
        hp, wp = height + 2 * pad, width + 2 * pad
        index = batch_index.long()[:, None, None] * (hp * wp) + rows[:, :, None] * wp + cols[:, None, :]
        return cls(index, batch, height, width, pad)

    def _padded_shape(self) -> tuple[int, int]:
        return self.height + 2 * self.pad, self.width + 2 * self.pad

    def gather(self, maps: torch.Tensor) -> torch.Tensor:
        """maps (B,K,H,W) → (N,K,P,P), zero outside the images."""
        k = maps.shape[1]
        flat = F.pad(maps, (self.pad,) * 4).permute(0, 2, 3, 1).reshape(-1, k)
        n, p, _ = self.index.shape
        return flat[self.index.reshape(-1)].view(n, p, p, k).permute(0, 3, 1, 2)

    def paste(self, values: torch.Tensor) -> torch.Tensor:
        """values (N,P,P) → padded canvas (B, H+2·pad, W+2·pad), each pixel the sum over windows on it."""
        hp, wp = self._padded_shape()
        canvas = values.new_zeros(self.batch * hp * wp).index_add(0, self.index.reshape(-1), values.reshape(-1))
        return canvas.view(self.batch, hp, wp)

    def read(self, canvas: torch.Tensor) -> torch.Tensor:
        """Padded canvas (B, H+2·pad, W+2·pad) → its values at every window pixel (N,P,P)."""
        return canvas.reshape(-1)[self.index]

    def unpad(self, canvas: torch.Tensor) -> torch.Tensor:
        """Padded canvas → (B,H,W)."""
        return canvas[:, self.pad:self.pad + self.height, self.pad:self.pad + self.width]


def gather_windows(features: torch.Tensor, batch_index: torch.Tensor, yx: torch.Tensor, size: int):
    """The instance head's inputs for N locations of a batch.

    features (B,F,H,W); batch_index int64 (N,); yx float (N,2) network px. Returns windows (N,F,P,P)
    (zero outside the image; differentiable w.r.t. features), encoding (N,2,P,P) and the `Windows`."""
    b, _, h, w = features.shape
    geometry = Windows.at(batch_index, yx, size, b, h, w)
    return geometry.gather(features), location_encoding(yx, size), geometry

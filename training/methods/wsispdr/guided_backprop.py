"""Guided backpropagation through WSISPDR's detection U-Net (Nishimura, Ker, Bise).

The U-Net (network.py) maps an image to a cell-position likelihood map y. For a detected cell u with centre region S_u, guided backpropagation of sum_{p in S_u} y_p to the
input gives the cell's contribution map g^0(u) (paper eq. 1-3). At every ReLU the signal passes
backwards only where both the forward activation and the backward signal are positive:
    g^l = I(f^l > 0) * I(g^{l+1} > 0) * g^{l+1}.

`GuidedBackprop` writes that backward pass as an explicit forward computation (transposed
convolutions, per-channel scales, routing masks recorded in the forward pass), so that
torch.onnx.export can trace it and onnxruntime can run it without torch. `guided_backprop_autograd`
is the reference implementation with torch autograd.

Every network op has a simple exact adjoint:
    Conv2d(3x3, pad 1)              -> conv_transpose2d with the same weight (the bias drops out)
    BatchNorm2d (eval)              -> multiply by weight / sqrt(running_var + eps) per channel
    ReLU                            -> guided rule above
    MaxPool2d(2)                    -> route to the window's maximum (first in row-major order on ties,
                                       as torch's CPU kernel does), zero elsewhere
    ConvTranspose2d(kernel 2, s 2)  -> conv2d with the same weight, stride 2
    concat([skip, up])              -> split; the skip's signal is added at the encoder block output
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cellpoint.training.methods.spec import GraphExport
from cellpoint.training.methods.wsispdr.network import DetectionUNet

# ---------------------------------------------------------------------------------------------------
# Building blocks of the explicit backward pass


def _bn_forward(bn: nn.BatchNorm2d, x: torch.Tensor) -> torch.Tensor:
    """BatchNorm with its running statistics (eval semantics, whatever the module's mode)."""
    return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)


def _bn_scale(bn: nn.BatchNorm2d) -> torch.Tensor:
    """(1, C, 1, 1): the derivative of eval-mode BatchNorm, weight / sqrt(running_var + eps)."""
    scale = torch.rsqrt(bn.running_var + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight
    return scale.reshape(1, -1, 1, 1)


def _conv_adjoint(conv: nn.Conv2d, g: torch.Tensor) -> torch.Tensor:
    """Adjoint of a stride-1 Conv2d: (K, C_out, H, W) -> (K, C_in, H, W)."""
    return F.conv_transpose2d(g, conv.weight, stride=conv.stride, padding=conv.padding)


def _conv_transpose_adjoint(up: nn.ConvTranspose2d, g: torch.Tensor) -> torch.Tensor:
    """Adjoint of ConvTranspose2d(kernel 2, stride 2): (K, C_out, 2h, 2w) -> (K, C_in, h, w)."""
    return F.conv2d(g, up.weight, stride=up.stride, padding=up.padding)


def max_pool_routing(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """2x2 max-pool of x (N, C, H, W), H and W even, and its routing mask.

    Returns (pooled (N, C, H/2, W/2), routing (N, C, H, W) float 0/1 with exactly one 1 per 2x2
    window, at the window's maximum; on ties the first in row-major order, the position torch's
    CPU autograd routes to). Built from strided slices, comparisons and pixel_shuffle, so it exports."""
    corners = [x[:, :, 0::2, 0::2], x[:, :, 0::2, 1::2], x[:, :, 1::2, 0::2], x[:, :, 1::2, 1::2]]
    pooled = torch.maximum(torch.maximum(corners[0], corners[1]), torch.maximum(corners[2], corners[3]))
    taken = corners[0] == pooled
    onehot = [taken.to(x.dtype)]
    for corner in corners[1:]:
        hit = (corner == pooled) & ~taken
        onehot.append(hit.to(x.dtype))
        taken = taken | hit
    # (N, C, 4, h, w) -> (N, 4C, h, w): channel c*4 + (2*row + col), the layout pixel_shuffle expects.
    stacked = torch.stack(onehot, dim=2).flatten(1, 2)
    return pooled, F.pixel_shuffle(stacked, 2)


def _unpool(g: torch.Tensor, routing: torch.Tensor) -> torch.Tensor:
    """Adjoint of the 2x2 max-pool: (K, C, h, w) -> (K, C, 2h, 2w), signal at the routed positions."""
    return F.interpolate(g, scale_factor=2.0, mode="nearest") * routing


def _block_forward(block: nn.Sequential, x: torch.Tensor, masks: list) -> torch.Tensor:
    """Run a conv/BN/ReLU block on (1, C, H, W), appending each ReLU's (activation > 0) mask to `masks`."""
    for layer in block:
        if isinstance(layer, nn.Conv2d):
            x = layer(x)
        elif isinstance(layer, nn.BatchNorm2d):
            x = _bn_forward(layer, x)
        elif isinstance(layer, nn.ReLU):
            x = F.relu(x)
            masks.append((x > 0).to(x.dtype))
        else:
            raise TypeError(f"no adjoint for {type(layer).__name__}")
    return x


def _block_backward(block: nn.Sequential, g: torch.Tensor, masks: list) -> torch.Tensor:
    """Guided backward pass of a block: (K, C_out, H, W) -> (K, C_in, H, W); `masks` from _block_forward."""
    relu_masks = iter(reversed(masks))
    for layer in reversed(block):
        if isinstance(layer, nn.ReLU):
            g = F.relu(g) * next(relu_masks)
        elif isinstance(layer, nn.BatchNorm2d):
            g = g * _bn_scale(layer)
        elif isinstance(layer, nn.Conv2d):
            g = _conv_adjoint(layer, g)
        else:
            raise TypeError(f"no adjoint for {type(layer).__name__}")
    return g


# ---------------------------------------------------------------------------------------------------


class GuidedBackprop(nn.Module):
    """Guided backpropagation through a DetectionUNet, written as a forward computation.

    forward(image (1, C, H, W) float32, regions (K, 1, H, W) float32) -> contributions (K, C, H, W)
    float32. regions[k] is the seed d(sum_{p in S_k} y_p)/dy, i.e. the 0/1 mask of S_k; any float
    seed is accepted (e.g. mask * y for the paper's eq. 1, which seeds with the values y_i).
    The network runs forward once; the K seeds are propagated back in one batch. BatchNorm always
    uses its running statistics (eval semantics)."""

    def __init__(self, net: DetectionUNet):
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
        net = self.net
        encoder_masks, decoder_masks, routings = self._record(image)
        g = _conv_adjoint(net.head, regions)
        skip_grads = []
        for up, block, masks in zip(reversed(net.upsample), reversed(net.decoder), reversed(decoder_masks)):
            g = _block_backward(block, g, masks)
            g_skip, g_up = torch.split(g, [g.shape[1] // 2, g.shape[1] // 2], dim=1)
            skip_grads.append(g_skip)           # finest level first
            g = _conv_transpose_adjoint(up, g_up)
        for i in reversed(range(len(net.encoder))):
            if i < len(skip_grads):
                g = g + skip_grads[i]           # block output feeds both the skip and the pool
            g = _block_backward(net.encoder[i], g, encoder_masks[i])
            if i:
                g = _unpool(g, routings[i - 1])
        return g

    def _record(self, image: torch.Tensor):
        """The forward pass: per-block ReLU masks (encoder, decoder in run order) and max-pool routings."""
        net = self.net
        encoder_masks, decoder_masks, routings, skips = [], [], [], []
        x = image
        for i, block in enumerate(net.encoder):
            if i:
                x, routing = max_pool_routing(x)
                routings.append(routing)
            encoder_masks.append([])
            x = _block_forward(block, x, encoder_masks[-1])
            skips.append(x)
        for up, block, skip in zip(net.upsample, net.decoder, reversed(skips[:-1])):
            decoder_masks.append([])
            x = _block_forward(block, torch.cat([skip, up(x)], 1), decoder_masks[-1])
        return encoder_masks, decoder_masks, routings


def _guided_relu_hook(module, grad_input, grad_output):
    """ReLU's gradient is grad_output * (activation > 0); also zero its negative part."""
    return (grad_input[0].clamp(min=0),)


def guided_backprop_autograd(net: nn.Module, image: torch.Tensor, region: torch.Tensor,
                             guided: bool = True) -> torch.Tensor:
    """Reference: d(sum(region * net(image)))/d(image) by torch autograd, with the guided rule at every
    nn.ReLU when `guided` (plain gradient otherwise).

    image (1, C, H, W) float32, region (1, H, W) or (1, 1, H, W) float -> (C, H, W) float32.
    The network is evaluated in eval mode (its mode is restored afterwards)."""
    was_training = net.training
    net.eval()
    hooks = [m.register_full_backward_hook(_guided_relu_hook)
             for m in net.modules() if isinstance(m, nn.ReLU)] if guided else []
    try:
        x = image.detach().clone().requires_grad_(True)
        y = net(x)
        (y * region.reshape(1, 1, *y.shape[-2:])).sum().backward()
        return x.grad[0].detach()
    finally:
        for h in hooks:
            h.remove()
        net.train(was_training)


def export_guided_backprop(net: DetectionUNet, path) -> Path:
    """Write GuidedBackprop(net) to `path` as ONNX (opset 17): inputs "image" (1, C, H, W) float32 and
    "regions" (K, 1, H, W) float32, output "contributions" (K, C, H, W) float32; K, H, W dynamic
    (H, W multiples of 2**(len(net.widths) - 1)). Returns the path."""
    path = Path(path)
    module = GuidedBackprop(net)  # BatchNorm uses running statistics in any mode
    step = 2 ** (len(net.widths) - 1)
    in_channels = net.encoder[0][0].in_channels
    image = torch.zeros(1, in_channels, 3 * step, 4 * step)
    regions = torch.zeros(2, 1, 3 * step, 4 * step)
    dynamic = {"image": {2: "height", 3: "width"},
               "regions": {0: "cells", 2: "height", 3: "width"},
               "contributions": {0: "cells", 2: "height", 3: "width"}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (image, regions), str(path), input_names=["image", "regions"],
                          output_names=["contributions"], dynamic_axes=dynamic,
                          opset_version=17, dynamo=False)
    return path


def contributions_graph(net: DetectionUNet, probe: np.ndarray) -> GraphExport:
    """The package's graph "contributions" (guided_backprop.onnx) for `cellpoint export`: inputs image
    (B,C,H,W) (B = 1 or K) and regions (K,1,H,W) float32, output contributions (K,C,H,W); K, H, W dynamic.

    Its example inputs (traced, and the parity check's) are the top-left crop of the probe (float32
    (1,C,H,W)) up to 128 px, cut to multiples of the network's pooling factor, with two one-pixel seeds."""
    module = GuidedBackprop(net).eval()
    step = 2 ** (len(net.widths) - 1)
    h, w = (min(probe.shape[2], 128) // step) * step, (min(probe.shape[3], 128) // step) * step
    image = np.ascontiguousarray(probe[:1, :, :h, :w], np.float32)
    regions = np.zeros((2, 1, h, w), np.float32)
    regions[0, 0, h // 3, w // 3] = regions[1, 0, 2 * h // 3, 2 * w // 3] = 1.0
    dynamic = {"image": {0: "batch", 2: "height", 3: "width"}, "regions": {0: "cells", 2: "height", 3: "width"},
               "contributions": {0: "cells", 2: "height", 3: "width"}}
    return GraphExport(module, {"image": torch.from_numpy(image), "regions": torch.from_numpy(regions)},
                       "contributions", dynamic, "guided_backprop.onnx")

"""Trace a checkpoint's network to ONNX and check it against PyTorch."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from cellpoint.training.methods.objectness import OUTPUT_NAMES, ExportHead
from cellpoint.training.train import build_network

INPUT_NAME = "image"
OPSET = 17


class ParityError(RuntimeError):
    """onnxruntime's output differs from PyTorch's beyond the tolerance."""


def export_network(checkpoint: dict, path: Path) -> torch.nn.Module:
    """Write the checkpoint's network (with its probability head) to `path` as ONNX with dynamic
    batch, height and width. Returns the wrapped torch module that was traced."""
    module = ExportHead(build_network(checkpoint)).eval()
    dummy = torch.zeros(1, checkpoint["model"]["in_channels"], 64, 64)
    dynamic = {INPUT_NAME: {0: "batch", 2: "height", 3: "width"}}
    dynamic.update({name: {0: "batch", 2: "height", 3: "width"} for name in OUTPUT_NAMES})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, dummy, str(path), input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES),
                          dynamic_axes=dynamic, opset_version=OPSET, dynamo=False)
    return module


def check_parity(module: torch.nn.Module, path: Path, sample: np.ndarray, atol: float = 1e-4) -> float:
    """Run `sample` (float32 (N,C,H,W)) through torch and onnxruntime; raise ParityError if any output
    differs by more than `atol` (outputs are probabilities in [0,1]). Returns the largest difference."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    onnx_out = session.run(list(OUTPUT_NAMES), {INPUT_NAME: sample.astype(np.float32)})
    with torch.no_grad():
        torch_out = [t.numpy() for t in module(torch.from_numpy(sample.astype(np.float32)))]
    worst = max(float(np.abs(a - b).max()) for a, b in zip(onnx_out, torch_out))
    if not worst <= atol:
        raise ParityError(f"{path}: onnxruntime and PyTorch disagree by {worst:.3g} (tolerance {atol:g})")
    return worst

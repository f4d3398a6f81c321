"""Trace a method's graphs to ONNX and check onnxruntime against PyTorch (any method: its spec's
`ExportPlan` says what to trace)."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from cellpoint.runtime.package import sha256_file
from cellpoint.training.methods import ExportPlan, GraphExport

INPUT_NAME = "image"
OPSET = 17


class ParityError(RuntimeError):
    """onnxruntime's output differs from PyTorch's beyond the tolerance."""


def export_main_graph(plan: ExportPlan, in_channels: int, path: Path) -> None:
    """Write the plan's main graph to `path` as ONNX with dynamic batch, height and width; grid outputs
    (stride > 1) get their own axis names per stride."""
    dummy = torch.zeros(1, in_channels, 64, 64)
    dynamic = {INPUT_NAME: {0: "batch", 2: "height", 3: "width"}}
    grid_strides = {o.get("stride", 1) for o in plan.outputs} - {1}
    for o in plan.outputs:  # grids of different strides (a detector's pyramid levels) get their own axis names
        s = o.get("stride", 1)
        suffix = "" if s == 1 else "_grid" if len(grid_strides) == 1 else f"_grid{s}"
        dynamic[o["name"]] = {0: "batch", 2: "height" + suffix, 3: "width" + suffix}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(plan.module, dummy, str(path), input_names=[INPUT_NAME],
                          output_names=[o["name"] for o in plan.outputs],
                          dynamic_axes=dynamic, opset_version=OPSET, dynamo=False)


def check_parity(module: torch.nn.Module, path: Path, sample: np.ndarray, atol: float = 1e-4) -> float:
    """Run `sample` (float32 (N,C,H,W)) through torch and onnxruntime; raise ParityError if any output
    differs by more than `atol`, relative to the value where it exceeds 1 (probabilities are compared
    absolutely, offsets in px relatively). Returns the largest such difference."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    onnx_out = session.run(names, {INPUT_NAME: sample.astype(np.float32)})
    with torch.no_grad():
        torch_out = [t.numpy() for t in module(torch.from_numpy(sample.astype(np.float32)))]
    worst = max(float((np.abs(a - b) / np.maximum(1.0, np.abs(b))).max()) for a, b in zip(onnx_out, torch_out))
    if not worst <= atol:
        raise ParityError(f"{path}: onnxruntime and PyTorch disagree by {worst:.3g} (tolerance {atol:g})")
    return worst


def export_graph(graph: GraphExport, folder: Path, atol: float = 1e-4) -> dict:
    """Trace a further graph into `folder`, check onnxruntime against torch on its example inputs (relative
    to the largest value) and return the card's graph entry {source, sha256, parity_max_rel_diff}."""
    path = folder / graph.file
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(graph.module, tuple(graph.inputs.values()), str(path), input_names=list(graph.inputs),
                          output_names=[graph.output], dynamic_axes=graph.dynamic_axes, opset_version=OPSET,
                          dynamo=False)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run([graph.output], {k: v.numpy() for k, v in graph.inputs.items()})[0]
    with torch.no_grad():
        want = graph.module(*graph.inputs.values()).numpy()
    worst = float(np.abs(got - want).max() / max(1e-12, np.abs(want).max()))
    if not worst <= atol:
        raise ParityError(f"{path}: onnxruntime and PyTorch disagree by {worst:.3g} of the largest value")
    return {"source": path.name, "sha256": sha256_file(path), "parity_max_rel_diff": worst}

"""Trace a checkpoint's network to ONNX and check it against PyTorch."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch


INPUT_NAME = "image"
OPSET = 17


class ParityError(RuntimeError):
    """onnxruntime's output differs from PyTorch's beyond the tolerance."""


def export_module(checkpoint: dict) -> tuple[torch.nn.Module, list[dict]]:
    """The torch module whose forward is the exported graph, and the card's output entries (name, axes,
    description, stride) for the checkpoint's method."""
    if checkpoint["method"] == "wsispdr":
        from cellpoint.training.train_wsispdr import LikelihoodOutput, build_wsispdr_network
        return LikelihoodOutput(build_wsispdr_network(checkpoint)).eval(), [
            {"name": "likelihood", "axes": "bcyx", "stride": 1,
             "description": "cell-position likelihood map (Gaussian peaks at cell centres, regressed)"}]
    if checkpoint["method"] == "lacss":
        from cellpoint.training.methods.lacss import ExportFeatures, LPN_STRIDE
        from cellpoint.training.train_lacss import build_lacss_network
        return ExportFeatures(build_lacss_network(checkpoint)).eval(), [
            {"name": "score", "axes": "bcyx", "stride": LPN_STRIDE,
             "description": "probability that a cell's location lies in each grid cell"},
            {"name": "offsets", "axes": "bcyx", "stride": LPN_STRIDE,
             "description": "(dy, dx) network px from each grid cell's centre to the location"},
            {"name": "features", "axes": "bcyx", "stride": 1,
             "description": "high-resolution features the instance graph reads around each location"}]
    if checkpoint["method"] == "point2mask":
        from cellpoint.training.methods.point2mask import detector_outputs
        from cellpoint.training.train_point2mask import export_modules
        return export_modules(checkpoint)[0], detector_outputs()
    if checkpoint["method"] == "canonical_shape":
        from cellpoint.training.methods.canonical_shape import OUTPUTS, ExportEncoder
        from cellpoint.training.train_shape import build_shape_network
        return ExportEncoder(build_shape_network(checkpoint)).eval(), OUTPUTS
    from cellpoint.training.methods.objectness import OUTPUTS, ExportHead
    from cellpoint.training.train import build_network
    return ExportHead(build_network(checkpoint)).eval(), OUTPUTS


def export_network(checkpoint: dict, path: Path) -> tuple[torch.nn.Module, list[dict]]:
    """Write the checkpoint's network (with its output head) to `path` as ONNX with dynamic batch,
    height and width. Returns the traced torch module and the card's output entries."""
    module, outputs = export_module(checkpoint)
    dummy = torch.zeros(1, checkpoint["model"]["in_channels"], 64, 64)
    dynamic = {INPUT_NAME: {0: "batch", 2: "height", 3: "width"}}
    grid_strides = {o.get("stride", 1) for o in outputs} - {1}
    for o in outputs:  # grids of different strides (a detector's pyramid levels) get their own axis names
        s = o.get("stride", 1)
        suffix = "" if s == 1 else "_grid" if len(grid_strides) == 1 else f"_grid{s}"
        dynamic[o["name"]] = {0: "batch", 2: "height" + suffix, 3: "width" + suffix}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, dummy, str(path), input_names=[INPUT_NAME],
                          output_names=[o["name"] for o in outputs],
                          dynamic_axes=dynamic, opset_version=OPSET, dynamo=False)
    return module, outputs


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


def export_extra_graphs(checkpoint: dict, folder: Path, probe: np.ndarray, atol: float = 1e-4) -> dict:
    """Write the further graphs a method's decoder runs beside model.onnx, each checked against torch.

    WSISPDR: guided_backprop.onnx, inputs image (B,C,H,W) and regions (K,1,H,W) (B = 1 or K), output
    contributions (K,C,H,W). LACSS: instances.onnx, inputs windows (N,F,P,P) and encoding (N,2,P,P),
    output masks (N,1,P,P). Point2Mask: masks.onnx, inputs features (1,F,h,w) (stride 4) and boxes (N,4)
    x0, y0, x1, y1 network px, output masks (N,1,M,M) over each box. Returns the card's "graphs" entry
    {role: {file, sha256, parity_max_rel_diff}}."""
    if checkpoint["method"] == "wsispdr":
        return {"contributions": _export_guided_backprop(checkpoint, folder, probe, atol)}
    if checkpoint["method"] == "point2mask":
        return {"masks": _export_box_masks(checkpoint, folder, probe, atol)}
    if checkpoint["method"] == "lacss":
        return {"instances": _export_instances(checkpoint, folder, atol)}
    return {}


def _export_graph(module: torch.nn.Module, inputs: dict[str, torch.Tensor], output: str, dynamic: dict,
                  path: Path, atol: float) -> dict:
    """Trace `module` with named `inputs` to `path`, check onnxruntime against torch on the same inputs
    (relative to the largest value) and return the card's graph entry."""
    from cellpoint.runtime.package import sha256_file
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, tuple(inputs.values()), str(path), input_names=list(inputs),
                          output_names=[output], dynamic_axes=dynamic, opset_version=OPSET, dynamo=False)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run([output], {k: v.numpy() for k, v in inputs.items()})[0]
    with torch.no_grad():
        want = module(*inputs.values()).numpy()
    worst = float(np.abs(got - want).max() / max(1e-12, np.abs(want).max()))
    if not worst <= atol:
        raise ParityError(f"{path}: onnxruntime and PyTorch disagree by {worst:.3g} of the largest value")
    return {"file": path.name, "sha256": sha256_file(path), "parity_max_rel_diff": worst}


def _export_guided_backprop(checkpoint: dict, folder: Path, probe: np.ndarray, atol: float) -> dict:
    from cellpoint.training.methods.wsispdr_net import GuidedBackprop
    from cellpoint.training.train_wsispdr import build_wsispdr_network
    net = build_wsispdr_network(checkpoint)
    module = GuidedBackprop(net).eval()
    step = 2 ** (len(net.widths) - 1)
    # parity on a crop of the probe with two seeds, one batch image
    h, w = (min(probe.shape[2], 128) // step) * step, (min(probe.shape[3], 128) // step) * step
    image = np.ascontiguousarray(probe[:1, :, :h, :w], np.float32)
    regions = np.zeros((2, 1, h, w), np.float32)
    regions[0, 0, h // 3, w // 3] = regions[1, 0, 2 * h // 3, 2 * w // 3] = 1.0
    dynamic = {"image": {0: "batch", 2: "height", 3: "width"}, "regions": {0: "cells", 2: "height", 3: "width"},
               "contributions": {0: "cells", 2: "height", 3: "width"}}
    return _export_graph(module, {"image": torch.from_numpy(image), "regions": torch.from_numpy(regions)},
                         "contributions", dynamic, folder / "guided_backprop.onnx", atol)


def _export_instances(checkpoint: dict, folder: Path, atol: float) -> dict:
    from cellpoint.runtime.location_masks import gather_windows
    from cellpoint.training.methods.lacss import ExportInstance
    from cellpoint.training.train_lacss import build_lacss_network
    net = build_lacss_network(checkpoint)
    module = ExportInstance(net).eval()
    size = int(checkpoint["decoder"]["window"])
    rng = np.random.default_rng(0)
    features = rng.normal(size=(int(checkpoint["model"]["features"]), 2 * size, 2 * size)).astype(np.float32)
    windows, encoding, _ = gather_windows(features, np.array([[size * 0.9, size * 1.1], [3.2, 2 * size - 4.7]]), size)
    dynamic = {"windows": {0: "cells"}, "encoding": {0: "cells"}, "masks": {0: "cells"}}
    return _export_graph(module, {"windows": torch.from_numpy(windows), "encoding": torch.from_numpy(encoding)},
                         "masks", dynamic, folder / "instances.onnx", atol)


def _export_box_masks(checkpoint: dict, folder: Path, probe: np.ndarray, atol: float) -> dict:
    """Point2Mask's mask graph: RoIAlign (grid_sample) + mask head, for a dynamic number of boxes. Parity
    on the probe's own stride-4 features and boxes of several sizes, one partly outside the image."""
    from cellpoint.training.methods.point2mask import MASK_INPUTS, MASK_OUTPUT, MULTIPLE
    from cellpoint.training.train_point2mask import export_modules
    detector, module = export_modules(checkpoint)
    h, w = (max(probe.shape[2] // MULTIPLE, 1) * MULTIPLE, max(probe.shape[3] // MULTIPLE, 1) * MULTIPLE)
    image = np.zeros((1, probe.shape[1], h, w), np.float32)
    part = probe[:1, :, :h, :w]
    image[:, :, :part.shape[2], :part.shape[3]] = part
    with torch.no_grad():
        features = detector(torch.from_numpy(image))[-1].contiguous()
    boxes = torch.tensor([[0.25 * w, 0.2 * h, 0.6 * w, 0.7 * h], [3.5, 5.0, 20.0, 14.5],
                          [w - 12.0, h - 9.0, w + 6.0, h + 3.5]], dtype=torch.float32)
    dynamic = {MASK_INPUTS[0]: {2: "height_grid4", 3: "width_grid4"}, MASK_INPUTS[1]: {0: "cells"},
               MASK_OUTPUT: {0: "cells"}}
    return _export_graph(module, dict(zip(MASK_INPUTS, (features, boxes))), MASK_OUTPUT, dynamic,
                         folder / "masks.onnx", atol)

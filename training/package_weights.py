"""A model package's trained weights back as a torch network, so that training can start from any package.

A package holds no PyTorch file: its ONNX graphs carry the weights, with each BatchNorm folded into the
convolution before it. `package_checkpoint` rebuilds the method's network from the card's architecture,
copies every convolution's folded weight and bias back (each folded BatchNorm becomes the identity, with
the folded bias as its shift), restores what lives outside the graphs (a method's JSON assets) and checks
that the rebuilt network gives the package's outputs (onnxruntime vs torch on a probe image). The result is
a checkpoint dict as `cellpoint.training.checkpoint` describes, so training treats a package and a
checkpoint file alike.

Fine-tuning from such a checkpoint must keep the BatchNorm statistics fixed (`freeze_batch_norm`): the
identity BatchNorms hold no statistics of the original training images. Nothing extra is stored in the
package for this (0 MB): the weights fine-tuning needs are the ones the runtime runs."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from cellpoint.runtime.errors import CellpointError
from cellpoint.runtime.package import CARD_FILE, load_package
from cellpoint.training.checkpoint import CHECKPOINT_FORMAT

_REPEAT = re.compile(r"^(.*)_(\d+)$")
PARITY_RTOL = 1e-3  # largest allowed max|Δ| / max|output| between the rebuilt network and the package


class PackageWeightsError(CellpointError, ValueError):
    """A package whose weights cannot be turned back into its method's network; the message names it."""


def package_checkpoint(model, check: bool = True) -> dict:
    """The checkpoint dict of a model package (a bundled name or a folder): method, label kind, network
    (state_dict with identity BatchNorms), diameter, normalisation, polarity, decoder and postprocess as
    the card has them, its training data (role "pretraining") and "start" {package, created}; with the
    package's scale graph as "scale_graph" {onnx: uint8 tensor of the file, card: the card's scale entry}.
    check: verify that the network reproduces the package's main graph. Raises PackageWeightsError."""
    from cellpoint.training.methods import get_method
    package = load_package(model)
    folder = package.path
    card = json.loads((folder / CARD_FILE).read_text())
    try:
        spec = get_method(card["method"])
    except KeyError as error:
        raise PackageWeightsError(f"{folder}: {error.args[0]}") from None
    arch = {k: v for k, v in card["architecture"].items() if k != "parameters"}
    skeleton = {"format": CHECKPOINT_FORMAT, "method": card["method"], "label_kind": card["label_kind"],
                "model": arch, "diameter": float(card["object_diameter_px"]),
                "normalization": card["inputs"][0]["preprocessing"],
                "polarity": card["inputs"][0].get("polarity", "any"), "decoder": card["decoder"],
                "postprocess": card.get("postprocess", {}), "config": card.get("training", {}).get("config", {}),
                "train_seconds": 0.0}
    in_ch = int(arch.get("in_channels", 1))
    probe = np.random.default_rng(0).random((1, in_ch, 96, 128), dtype=np.float32)
    net = spec.build_network(skeleton)
    plan = spec.export(dict(skeleton, state_dict=net.state_dict()), probe)
    root = _network_of(plan.module, folder)
    _load_graph(plan.module, folder / card["weights"]["source"], (torch.from_numpy(probe),), folder)
    for role, graph in plan.graphs.items():
        entry = card.get("graphs", {}).get(role)
        if entry is None:
            raise PackageWeightsError(f"{folder}: the card has no graph {role!r} that the method exports")
        if _shares_weights(graph.module, root):  # a graph of another copy (e.g. gradients) adds nothing
            _load_graph(graph.module, folder / entry["source"], tuple(graph.inputs.values()), folder)
    if spec.restore_assets is not None:
        assets = {role: json.loads((folder / a["source"]).read_text()) if "source" in a else a.get("content")
                  for role, a in card.get("assets", {}).items()}
        spec.restore_assets(root, assets)
    checkpoint = dict(skeleton, state_dict={k: v.detach().clone() for k, v in root.state_dict().items()},
                      training_data=[dict(e, role="pretraining") for e in card.get("training_data", [])
                                     if e.get("role") != "scale model"],
                      start={"package": package.name, "created": card.get("created", "")},
                      refine_diameter=bool(card.get("refine_diameter", False)))
    if card.get("scale") and card["scale"].get("graph") in card.get("graphs", {}):
        source = folder / card["graphs"][card["scale"]["graph"]]["source"]
        checkpoint["scale_graph"] = {
            "onnx": torch.frombuffer(bytearray(source.read_bytes()), dtype=torch.uint8),
            "card": card["scale"],
            "training_data": [e for e in card.get("training_data", []) if e.get("role") == "scale model"]}
    if check:
        rebuilt = spec.export(checkpoint, probe)
        _check_parity(rebuilt.module, folder / card["weights"]["source"], (probe,), folder)
        for role, graph in rebuilt.graphs.items():
            inputs = tuple(np.asarray(v, np.float32) for v in graph.inputs.values())
            _check_parity(graph.module, folder / card["graphs"][role]["source"], inputs, folder)
    return checkpoint


def freeze_batch_norm(net: torch.nn.Module) -> int:
    """Keep every BatchNorm of `net` in eval mode (its running statistics, not the batch's) through later
    `net.train()` calls; its scale and shift still train. Returns the number of BatchNorm layers."""
    count = 0
    for module in net.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.train = _stay_in_eval.__get__(module)
            module.eval()
            count += 1
    return count


def _stay_in_eval(self, mode: bool = True):
    return torch.nn.Module.train(self, False)


def _network_of(module: torch.nn.Module, folder: Path) -> torch.nn.Module:
    """The method's network inside an export wrapper (its attribute `net`)."""
    net = getattr(module, "net", None)
    if not isinstance(net, torch.nn.Module):
        raise PackageWeightsError(f"{folder}: the method's export graph keeps its network elsewhere than .net")
    return net


def _shares_weights(module: torch.nn.Module, net: torch.nn.Module) -> bool:
    """Whether every parameter of `module` is one of `net`'s (a graph of part of the network)."""
    mine = {id(p) for p in net.parameters()}
    params = list(module.parameters())
    return bool(params) and all(id(p) in mine for p in params)


def _module_path(node_name: str) -> str:
    """An ONNX node name as torch.onnx writes it ("/net/down.1/down.1.0/Conv") → the module's dotted path
    in the exported module ("net.down.1.0"; a repeated call keeps its "_k" suffix, see `_resolve`)."""
    parts: list[str] = []
    for scope in node_name.strip("/").split("/")[:-1]:
        if parts and scope.startswith(parts[-1] + "."):
            parts[-1] = scope  # a container's child is named with its full path inside the container
        else:
            parts.append(scope)
    return ".".join(parts)


def _resolve(modules: dict, path: str) -> tuple[torch.nn.Module | None, int]:
    """The module at `path`, allowing torch.onnx's "_k" suffix on a repeatedly called module (k = call)."""
    if path in modules:
        return modules[path], 0
    pieces, call = path.split("."), 0
    for i, piece in enumerate(pieces):
        match = _REPEAT.match(piece)
        if match:
            pieces[i] = match.group(1)
            call = max(call, int(match.group(2)))
    candidate = ".".join(pieces)
    if candidate not in modules:  # a submodule called directly is scoped from itself, not from the root
        ends = [name for name in modules if name.endswith("." + candidate)]
        candidate = ends[0] if len(ends) == 1 else candidate
    return modules.get(candidate), call


def _load_graph(module: torch.nn.Module, onnx_path: Path, inputs: tuple, folder: Path) -> None:
    """Copy the weights of one ONNX graph into the torch `module` that was exported to it (see the module);
    inputs: example input tensors of `module` (to find which BatchNorm follows which convolution)."""
    graph = onnx.load(str(onnx_path)).graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    modules = dict(module.named_modules())
    following = _batch_norm_after(module, inputs)
    for node in graph.node:
        weights = [inits[name] for name in node.input[1:] if name in inits]
        if not weights or node.op_type not in ("Conv", "ConvTranspose", "Mul", "Add"):
            continue
        target, call = _resolve(modules, _module_path(node.name))
        if target is None:
            raise PackageWeightsError(f"{folder}: {onnx_path.name} node {node.name} has no module in the network")
        if node.op_type in ("Conv", "ConvTranspose"):
            _set(target.weight, weights[0], node, folder)
            if len(weights) > 1:
                if target.bias is not None:
                    _set(target.bias, weights[1], node, folder)
                elif target in following:
                    _set(following[target].bias, weights[1], node, folder)
                else:
                    raise PackageWeightsError(f"{folder}: {node.name} has a bias but its module has none")
        elif isinstance(target, torch.nn.GroupNorm):
            _set(target.weight if node.op_type == "Mul" else target.bias, weights[0], node, folder)
        else:  # a learned per-call scale, e.g. one factor per pyramid level of a shared head
            params = list(target.parameters(recurse=False))
            if len(params) != 1 or weights[0].size != 1:
                raise PackageWeightsError(f"{folder}: cannot place {node.name}'s constant in the network")
            with torch.no_grad():
                params[0].view(-1)[call] = float(weights[0].reshape(()))
    for bn in following.values():  # folded into its convolution: the identity, keeping the folded shift
        with torch.no_grad():
            bn.weight.fill_(1.0)
            bn.running_mean.zero_()
            bn.running_var.fill_(1.0 - bn.eps)


def _batch_norm_after(module: torch.nn.Module, inputs: tuple) -> dict:
    """{convolution: the BatchNorm run right after it} in `module`'s forward order (found by running it on
    the example `inputs`)."""
    order: list[torch.nn.Module] = []
    kinds = (torch.nn.Conv2d, torch.nn.ConvTranspose2d, torch.nn.modules.batchnorm._BatchNorm)
    hooks = [m.register_forward_hook(lambda m, i, o: order.append(m)) for m in module.modules()
             if isinstance(m, kinds)]
    try:
        with torch.no_grad():
            module.eval()(*inputs)
    finally:
        for hook in hooks:
            hook.remove()
    pairs = {}
    for before, after in zip(order, order[1:]):
        if isinstance(after, torch.nn.modules.batchnorm._BatchNorm) and not isinstance(
                before, torch.nn.modules.batchnorm._BatchNorm) and before.out_channels == after.num_features:
            pairs[before] = after
    return pairs


def _set(param: torch.Tensor, value: np.ndarray, node, folder: Path) -> None:
    if param.numel() != value.size:
        raise PackageWeightsError(f"{folder}: {node.name} holds {value.shape}, its module {tuple(param.shape)}")
    with torch.no_grad():
        param.copy_(torch.from_numpy(np.array(value, np.float32)).reshape(param.shape))


def _check_parity(module: torch.nn.Module, onnx_path: Path, inputs: tuple, folder: Path) -> None:
    """PackageWeightsError unless the torch module gives the ONNX graph's outputs on `inputs` (float32
    arrays in the graph's input order)."""
    import onnxruntime as ort
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    expected = session.run(None, {i.name: x for i, x in zip(session.get_inputs(), inputs)})
    with torch.no_grad():
        got = module.eval()(*(torch.from_numpy(x) for x in inputs))
    got = [got] if isinstance(got, torch.Tensor) else list(got)
    for want, have in zip(expected, got):
        have = have.numpy()
        scale = max(float(np.abs(want).max()), 1e-6)
        if have.shape != want.shape or float(np.abs(have - want).max()) / scale > PARITY_RTOL:
            raise PackageWeightsError(f"{folder}: the network rebuilt from {onnx_path.name} does not reproduce "
                                      "it; this package cannot seed training")

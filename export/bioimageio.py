"""bioimage.io model description of a cellpoint package's network (format 0.5, via `bioimageio.spec`).

What a bioimage.io consumer gets is the package's main graph: one normalised image tile in, the network's
maps out (the card's `outputs`, e.g. foreground and centre maps, or a detector's score and box grids). The
instance decoding (seeds, graph-cut, watershed, candidate merging, the further graphs some decoders run)
stays in cellpoint's runtime; the description says so and carries the card as an attachment.

Written to a folder (or a .zip with the same content):

    bioimageio.yaml          the model description (validated with bioimageio.spec before it is written)
    model.onnx               the package's main graph (fp32), unchanged
    test_input.npy           a tile of the package's sample image, rescaled so its cells have the network's
                             diameter, as the consumer feeds it (before preprocessing): float32 (1,C,H,W)
    test_<output>.npy        onnxruntime's outputs for it after the described preprocessing
    sample_*.tif             the same tensors as TIFF (C,H,W), for viewers
    cover.png                the tile beside the network's first map
    README.md                documentation: inputs, preprocessing, outputs, what stays in cellpoint, data
    card.json                the cellpoint card (decoder and its parameters, metrics, training data)

Needs `bioimageio.spec` (the `bioimageio` extra), not torch.
"""
from __future__ import annotations

import datetime as _dt
import shutil
import tempfile
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import tifffile

from cellpoint.runtime.colour import to_model_channels
from cellpoint.runtime.image_io import read_image, write_png
from cellpoint.runtime.labels import instance_table, median_diameter
from cellpoint.runtime.normalize import to_channels_first
from cellpoint.runtime.package import ModelPackage, load_package

DESCRIPTION_FILE = "bioimageio.yaml"
TEST_TILE = 256
"""Side (px) of the test tile, at most (the sample image may be smaller)."""
DEFAULT_AUTHORS = ("cellpoint contributors",)

METHOD_PAPERS = {
    "objectness": {"doi": "10.48550/arXiv.2103.05617"},  # ISBI 2021; arXiv 2103.05617
    "wsispdr": {"doi": "10.48550/arXiv.1911.13077"},  # MICCAI 2019; arXiv 1911.13077
    "point2mask": {"doi": "10.1007/978-3-031-12053-4_11"},  # MIUA 2022
    "lacss": {"doi": "10.1101/2022.07.03.498609"},  # bioRxiv preprint of the title the card names
    "canonical_shape": {"url": "https://openreview.net/forum?id=k7JurYNOhQA"},  # MIDL 2022
}
"""How to find each method's paper (the card's `method_reference` gives its title and authors)."""

DATASET_SOURCES = {
    "dsb2018_bbbc038": ("Caicedo et al., Broad Institute (2018 Data Science Bowl, BBBC038)",
                        {"text": "Caicedo et al., Nucleus segmentation across imaging experiments: the 2018 Data "
                                 "Science Bowl, Nature Methods 2019", "doi": "10.1038/s41592-019-0612-7"}),
    "coelho2009_u2os_nih3t3": ("Coelho, Shariff, Murphy", {
        "text": "Coelho, Shariff, Murphy, Nuclear segmentation in microscope cell images: a hand-segmented dataset and "
                "comparison of algorithms, ISBI 2009", "doi": "10.1109/ISBI.2009.5193098"}),
    "usiigaci_phase_contrast": ("Tsai, Gajda, Sloan, Rares, Shen (OIST)", {
        "text": "Tsai et al., Usiigaci: instance-aware cell tracking in stain-free phase contrast microscopy enabled "
                "by machine learning", "doi": "10.1101/524041"}),
    "livecell": ("Edlund et al., Sartorius (LIVECell)", {
        "text": "Edlund et al., LIVECell - a large-scale dataset for label-free live cell segmentation, Nature Methods "
                "2021", "doi": "10.1038/s41592-021-01249-6"}),
    "neurips22_cellseg_samples": ("NeurIPS 2022 Cell Segmentation challenge", {
        "text": "NeurIPS 2022 Cell Segmentation challenge data",
        "url": "https://neurips22-cellseg.grand-challenge.org/"}),
    "stardist_bundled_2d": ("Caicedo et al., Broad Institute (2018 Data Science Bowl, BBBC038)",
                            {"text": "Caicedo et al., Nucleus segmentation across imaging experiments: the 2018 Data "
                                     "Science Bowl, Nature Methods 2019", "doi": "10.1038/s41592-019-0612-7"}),
}
"""Who made each shared data set and how to cite it (from the data sets' SOURCE.md), by name without
"_extra" and ":kind"."""

NON_COMMERCIAL_MARKERS = ("non-commercial", "noncommercial", "by-nc")
LICENCE_IDS = (("CC0", "CC0-1.0"), ("MIT", "MIT"), ("CC BY-NC 4.0", "CC-BY-NC-4.0"), ("CC BY 4.0", "CC-BY-4.0"))
"""SPDX ids of the data licences the cards name, by how their text starts."""


class BioimageioExportError(ValueError):
    """The package cannot be described, or the description fails bioimage.io validation; the message says
    which and why."""


@dataclass(frozen=True)
class Written:
    """The result of `export_bioimageio`: where the description is, and bioimage.io's verdict on it."""
    path: Path
    status: str
    summary: str


# ------------------------------------------------------------------------------------------- tensors

def sample_tile(package: ModelPackage, side: int = TEST_TILE) -> np.ndarray:
    """The test input: the package's first sample image as the network takes it before normalisation —
    channels fitted as the runtime does (colour → luminance, inverted for the card's polarity), rescaled
    so its cells (measured on the sample's labels) have the card's `object_diameter_px`, the centre
    `side`×`side` crop (sides multiples of the card's tiling multiple, reflect-padded up to twice its
    overlap). Returns float32 (1, C, H, W)."""
    card = package.card
    if not card.samples:
        raise BioimageioExportError(f"{package.path}: the package has no sample image to make test tensors from")
    spec = card.inputs[0]
    image = read_image(package.path / card.samples[0].input)
    image, _ = to_model_channels(image, spec.channels, spec.polarity)
    x = to_channels_first(image, spec.channels)
    labels = read_image(package.path / card.samples[0].output)
    measured = median_diameter(instance_table(labels.astype(np.int64)))
    zoom = card.object_diameter_px / measured if measured else 1.0
    if abs(zoom - 1.0) > 0.01:
        h, w = x.shape[1:]
        size = (max(1, round(w * zoom)), max(1, round(h * zoom)))
        x = np.stack([cv2.resize(c, size, interpolation=cv2.INTER_AREA if zoom < 1 else cv2.INTER_LINEAR)
                      for c in x])
    multiple = card.tiling.multiple
    smallest = min_side(package)
    out = []
    for axis in (1, 2):
        n = x.shape[axis]
        want = max(smallest, min(side, n - n % multiple))
        start = max(0, (n - want) // 2)
        x = np.take(x, np.arange(start, min(n, start + want)), axis=axis)
        out.append(want)
    pad = [(0, 0)] + [(0, want - n) for want, n in zip(out, x.shape[1:])]
    x = np.pad(x, pad, mode="reflect") if any(p[1] for p in pad) else x
    return np.ascontiguousarray(x[None], dtype=np.float32)


def min_side(package: ModelPackage) -> int:
    """The smallest tile side (px) the description allows: twice the tiling overlap (what the runtime's
    tiles need), at least one tiling multiple."""
    tiling = package.card.tiling
    smallest = max(2 * tiling.overlap, tiling.multiple)
    return smallest + (-smallest) % tiling.multiple


def preprocessing_steps(package: ModelPackage) -> list[dict]:
    """The card's normalisation as bioimage.io preprocessing: per sample and channel, the card's low/high
    percentiles map to 0/1 (`scale_range` over y and x), then `clip` for "percentile_robust".

    cellpoint itself also sets isolated hot pixels to their 3×3 median and, for "percentile_robust", takes
    the percentiles on a median-filtered copy without saturated pixels (docs/model-package.md); on clean
    images the two agree closely, not bit for bit."""
    pre = package.card.inputs[0].preprocessing
    steps = [{"id": "scale_range", "kwargs": {"axes": ["y", "x"], "min_percentile": float(pre.low),
                                              "max_percentile": float(pre.high)}}]
    clip = getattr(pre, "clip", None)
    if clip is not None:
        steps.append({"id": "clip", "kwargs": {"min": float(clip[0]), "max": float(clip[1])}})
    return steps


def apply_preprocessing(x: np.ndarray, steps: list[dict]) -> np.ndarray:
    """`steps` (as `preprocessing_steps` makes them) applied to a (1,C,H,W) tensor as bioimage.io defines
    them: scale_range (x − p_low) / (p_high − p_low + eps), eps 1e-6, percentiles over y and x; clip.
    Returns float32 (1,C,H,W)."""
    x = np.asarray(x, np.float32)
    for step in steps:
        kwargs = step["kwargs"]
        if step["id"] == "scale_range":
            low = np.percentile(x, kwargs["min_percentile"], axis=(2, 3), keepdims=True)
            high = np.percentile(x, kwargs["max_percentile"], axis=(2, 3), keepdims=True)
            x = (x - low) / (high - low + kwargs.get("eps", 1e-6))
        elif step["id"] == "clip":
            x = np.clip(x, kwargs["min"], kwargs["max"])
        else:
            raise ValueError(f"unknown preprocessing step {step['id']!r}")
    return x.astype(np.float32)


def run_network(onnx_path: Path, x: np.ndarray) -> dict[str, np.ndarray]:
    """The ONNX graph on a normalised (1,C,H,W) tensor with onnxruntime on the CPU: {output name: array}."""
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, {session.get_inputs()[0].name: x})))


# -------------------------------------------------------------------------------------- description

def licence_id(package: ModelPackage, override: str | None = None) -> str:
    """The SPDX identifier of the weights' licence: `override`, else the card's `license` up to its first
    space (e.g. "MIT (weights); see training_data" → "MIT")."""
    text = override or package.card.license
    licence = text.split()[0].rstrip(";,") if text.strip() else ""
    if not licence:
        raise BioimageioExportError(f"{package.path}: the card states no licence; pass one (an SPDX id)")
    return licence


def non_commercial_data(package: ModelPackage) -> list[str]:
    """The training data sets whose licence forbids commercial use (e.g. LIVECell, CC BY-NC 4.0)."""
    return sorted({str(entry.get("dataset", "?")) for entry in package.card.training_data
                   if any(m in str(entry.get("licence", "")).lower() for m in NON_COMMERCIAL_MARKERS)})


def citation(package: ModelPackage) -> dict:
    """The method's paper as a bioimage.io cite entry: {"text", "doi" or "url"}."""
    card = package.card
    link = METHOD_PAPERS.get(card.method)
    if link is None:
        raise BioimageioExportError(f"{package.path}: no paper is known for method {card.method!r} "
                                    f"(known: {', '.join(sorted(METHOD_PAPERS))}); add it to METHOD_PAPERS")
    return {"text": card.method_reference or card.method, **link}


def input_tensor(package: ModelPackage) -> dict:
    """The description of the main graph's input (tensor id = the ONNX input's name)."""
    spec = package.card.inputs[0]
    names = ["gray"] if spec.channels == 1 else [f"channel{k}" for k in range(spec.channels)]
    size = {"min": min_side(package), "step": package.card.tiling.multiple}
    return {
        "id": spec.name,
        "description": (f"the image, {spec.channels} channel(s), float32 in the image's own units, rescaled so "
                        f"cells are about {package.card.object_diameter_px:g} px across"),
        "axes": [{"type": "batch"}, {"type": "channel", "channel_names": names},
                 {"type": "space", "id": "y", "size": size}, {"type": "space", "id": "x", "size": size}],
        "test_tensor": {"source": "test_input.npy"},
        "sample_tensor": {"source": "sample_input.tif"},
        "data": {"type": "float32"},
        "preprocessing": preprocessing_steps(package),
    }


def output_tensor(package: ModelPackage, index: int, channels: int) -> dict:
    """The description of the main graph's output `index` with `channels` channels: its axes at the card's
    stride, with a halo of half the tiling overlap (at the output's stride) to crop when tiling."""
    spec = package.card.outputs[index]
    stride = spec.stride
    halo = package.card.tiling.overlap // 2 // stride
    input_name = package.card.inputs[0].name
    names = [spec.name] if channels == 1 else [f"{spec.name}{k}" for k in range(channels)]

    def space(axis: str) -> dict:
        entry = {"type": "space", "id": axis, "size": {"tensor_id": input_name, "axis_id": axis}, "scale": stride}
        return {**entry, "halo": halo} if halo else entry
    return {
        "id": spec.name,
        "description": (spec.description or spec.name) + (f" (one value per {stride}×{stride} px)" if stride > 1
                                                          else ""),
        "axes": [{"type": "batch"}, {"type": "channel", "channel_names": names}, space("y"), space("x")],
        "test_tensor": {"source": f"test_{spec.name}.npy"},
        "sample_tensor": {"source": f"sample_{spec.name}.tif"},
        "data": {"type": "float32"},
    }


def _dataset_key(name: str) -> str:
    """A training data entry's data set name without ":kind" and "_extra"."""
    name = name.partition(":")[0]
    return name[: -len("_extra")] if name.endswith("_extra") else name


def training_data(package: ModelPackage) -> dict:
    """The card's training data as one inline bioimage.io dataset description: each data set once with its
    licence (the roles and label kinds are in the documentation), its makers as authors, their papers, and
    one SPDX licence when every data set has the same."""
    licences: dict[str, str] = {}
    for entry in package.card.training_data:
        what = str(entry.get("dataset") or entry.get("folder") or "unnamed data")
        licences.setdefault(_dataset_key(what), str(entry.get("licence", "unknown")))
    known = [DATASET_SOURCES[k] for k in licences if k in DATASET_SOURCES]
    text = ("Data sets: " + "; ".join(f"{name} ({licence})" for name, licence in licences.items())
            + ". Labels and roles: see the model's documentation.") if licences else "not recorded"
    description = {"type": "dataset", "name": f"{package.name} training data", "description": text[:512],
                   "documentation": {"source": "README.md"}, "tags": ["cellpoint", "microscopy", "training-data"]}
    spdx = {next((i for start, i in LICENCE_IDS if licence.startswith(start)), None) for licence in licences.values()}
    if len(spdx) == 1 and None not in spdx:
        description["license"] = spdx.pop()
    authors = list(dict.fromkeys(author for author, _ in known))
    cites = list({c["text"]: c for _, c in known}.values())
    if authors:
        description["authors"] = [{"name": a} for a in authors]
    if cites:
        description["cite"] = cites
    from bioimageio.spec.dataset.v0_3 import DatasetDescr
    description["format_version"] = DatasetDescr.implemented_format_version
    return description


def cover_image(tile: np.ndarray, outputs: dict[str, np.ndarray], first: str) -> np.ndarray:
    """RGB uint8 (H, 2W): the test tile (first channel, 1–99.8 percentile stretch) beside the first
    channel of output `first`, resized to the tile and coloured."""
    image = tile[0, 0]
    lo, hi = np.percentile(image, [1, 99.8])
    gray = np.clip((image - lo) / (hi - lo if hi > lo else 1.0) * 255, 0, 255).astype(np.uint8)
    left = np.repeat(gray[..., None], 3, axis=2)
    response = outputs[first][0, 0].astype(np.float32)
    response = cv2.resize(response, (gray.shape[1], gray.shape[0]), interpolation=cv2.INTER_NEAREST)
    lo, hi = float(response.min()), float(response.max())
    scaled = ((response - lo) / (hi - lo if hi > lo else 1.0) * 255).astype(np.uint8)
    right = cv2.cvtColor(cv2.applyColorMap(scaled, cv2.COLORMAP_VIRIDIS), cv2.COLOR_BGR2RGB)
    return np.concatenate([left, right], axis=1)


def documentation(package: ModelPackage, steps: list[dict], shapes: dict[str, tuple]) -> str:
    """README.md of the description: what the network takes and gives, and what stays in cellpoint."""
    card = package.card
    spec = card.inputs[0]
    pre = spec.preprocessing
    clip = getattr(pre, "clip", None)
    scale_role = card.scale.graph if card.scale is not None else None
    decoding = {role: g.source for role, g in card.graphs.items() if role != scale_role}
    runs = ", ".join(f"`{role}`: {source}" for role, source in sorted(decoding.items()))
    decoder_graphs = f" and the further graph(s) it runs ({runs})" if decoding else ""
    scale_note = (f" Nor does it hold the package's scale model ({card.graphs[scale_role].source}), which estimates an "
                  "image's cell diameter when none is given.") if scale_role in card.graphs else ""
    lines = [f"# {card.name}: the network of a cellpoint model package", "", card.description, "",
             f"Method: {card.method_reference or card.method} (`{card.method}`), trained from `{card.label_kind}` "
             "labels.", "",
             "## What this description holds, and what it does not", "",
             "This is the package's **network** only: a normalised image tile in, the network's output maps out. "
             "Turning the maps into cell instances (a label image) is the job of cellpoint's runtime, with the "
             f"decoder `{card.decoder.name}` and its parameters in `card.json`" + decoder_graphs + "; a bioimage.io "
             "consumer does not get instances from this description." + scale_note + " For instances run the "
             "package with cellpoint: `pip install cellpoint`, then `cellpoint segment IMAGES --model PACKAGE "
             "--out OUT` (or the napari plugin).", "",
             "## Input", "",
             f"`{spec.name}`: float32 (batch, {spec.channels} channel(s), y, x); y and x multiples of "
             f"{card.tiling.multiple} px, at least {min_side(package)} px. Rescale the image first so its cells "
             f"are about {card.object_diameter_px:g} px across (cellpoint does this from a given diameter or its "
             "scale model). " + ("A colour image is given as its luminance. " if spec.channels == 1 else "")
             + (f"The network was trained on objects {'brighter' if spec.polarity == 'bright' else 'darker'} "
                "than their background; cellpoint inverts an image whose background is the other way round. "
                if spec.polarity != "any" else ""), "",
             f"Preprocessing (described as {', '.join(s['id'] for s in steps)}): per image and channel the "
             f"{pre.low:g} and {pre.high:g} percentiles map to 0 and 1"
             + (f", then values are clipped to [{clip[0]:g}, {clip[1]:g}]" if clip is not None else "") + ". "
             "cellpoint's own normalisation also sets isolated hot pixels to their 3×3 median"
             + (" and takes the percentiles on a median-filtered copy without saturated pixels"
                if pre.kind == "percentile_robust" else "")
             + "; on clean images the two agree closely.", "",
             "## Outputs", ""]
    for out in card.outputs:
        shape = shapes.get(out.name)
        lines.append(f"- `{out.name}`: {out.description or out.name}; stride {out.stride} "
                     f"({'per pixel' if out.stride == 1 else f'one value per {out.stride}×{out.stride} px'})"
                     + (f", {shape[1]} channel(s)" if shape else "") + ".")
    lines += ["", f"When tiling, neighbouring tiles should overlap by {card.tiling.overlap} px (the halo of each "
              "output); cellpoint blends its tiles over that overlap.", "",
              "## Training data", ""]
    for entry in card.training_data:
        lines.append(f"- {entry.get('dataset') or entry.get('folder') or 'unnamed'}"
                     + (f" ({', '.join(entry['kinds'])})" if entry.get("kinds") else "")
                     + (f", {entry['labels']}" if entry.get("labels") else "")
                     + (f", for the {entry['role']}" if entry.get("role") else "")
                     + f"; licence: {entry.get('licence', 'unknown')}")
    restricted = non_commercial_data(package)
    if restricted:
        lines += ["", f"**Non-commercial data:** the network was trained on {', '.join(restricted)}, whose licence "
                  "forbids commercial use; check whether that restricts your use of these weights."]
    lines += ["", "## Validation", "",
              "The test tensors were made with onnxruntime from a tile of the package's sample image"
              + (f" ({card.samples[0].source}; {card.samples[0].licence})" if card.samples else "") + ". The whole "
              "pipeline (network and cellpoint's decoding) was measured on the val splits of the training data sets "
              "with cellpoint's runtime (F1 at IoU 0.5, COCO AP):", ""]
    for key, metrics in card.metrics.items():
        if "f1_50" in metrics:
            lines.append(f"- {key}: F1@0.5 {metrics['f1_50']:.3f}, AP {metrics.get('AP', float('nan')):.3f} "
                         f"({metrics.get('n_images', '?')} images)")
    if not card.metrics:
        lines.append("- no measurements recorded in the card")
    lines += ["", "## Licence and citation", "", f"Weights: {card.license or 'not stated'}.",
              f"Method: {card.method_reference or card.method}.", ""]
    return "\n".join(lines)


def build_description(package: ModelPackage, shapes: dict[str, tuple], authors: tuple[str, ...],
                      licence: str | None) -> dict:
    """The bioimage.io model description (a plain dict, format 0.5) of `package`, for files laid out as
    the module says. shapes: {output name: its test tensor's shape}."""
    card = package.card
    restricted = non_commercial_data(package)
    summary = (f"{card.description} The network of cellpoint package {card.name}: image tile in, "
               f"{', '.join(o.name for o in card.outputs)} maps out; cell instances come from cellpoint's runtime.")
    if restricted:
        summary += f" Trained on non-commercial data ({', '.join(restricted)})."
    tags = ["cellpoint", "instance-segmentation", "2d", "onnx", card.method.replace("_", "-"),
            card.label_kind, "weakly-supervised"]
    created = _dt.datetime.fromisoformat(card.created) if card.created else _dt.datetime.now()
    from bioimageio.spec.model.v0_5 import ModelDescr
    return {
        "type": "model",
        "format_version": ModelDescr.implemented_format_version,
        "name": f"cellpoint {card.name}",
        "description": summary[:512],
        "authors": [{"name": name} for name in authors],
        "cite": [citation(package)],
        "license": licence_id(package, licence),
        "documentation": {"source": "README.md"},
        "covers": [{"source": "cover.png"}],
        "attachments": [{"source": "card.json"}],
        "tags": list(dict.fromkeys(tags)),
        "timestamp": created.isoformat(),
        "inputs": [input_tensor(package)],
        "outputs": [output_tensor(package, k, shapes[o.name][1]) for k, o in enumerate(card.outputs)],
        "weights": {"onnx": {"source": "model.onnx", "sha256": card.weights.sha256,
                             "opset_version": card.weights.opset}},
        "training_data": training_data(package),
        "config": {"cellpoint": {"package": card.name, "card_format": card.format, "decoder": card.decoder.name,
                                 "object_diameter_px": card.object_diameter_px,
                                 "tiling": {"multiple": card.tiling.multiple, "overlap": card.tiling.overlap}}},
    }


# ------------------------------------------------------------------------------------------- export

def _require_spec():
    try:
        import bioimageio.spec as spec
    except ImportError:
        raise BioimageioExportError("the bioimage.io export needs bioimageio.spec: "
                                    "pip install 'cellpoint[bioimageio]'") from None
    return spec


def write_files(package: ModelPackage, folder: Path, authors: tuple[str, ...], licence: str | None) -> dict:
    """Write every file of the description into `folder` (see the module) and return the description dict
    (not yet validated, no bioimageio.yaml written)."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(package.onnx_path, folder / "model.onnx")
    shutil.copyfile(package.path / "card.json", folder / "card.json")
    steps = preprocessing_steps(package)
    raw = sample_tile(package)
    outputs = run_network(folder / "model.onnx", apply_preprocessing(raw, steps))
    np.save(folder / "test_input.npy", raw)
    tifffile.imwrite(folder / "sample_input.tif", raw[0], compression="zlib")
    for name, array in outputs.items():
        np.save(folder / f"test_{name}.npy", array.astype(np.float32))
        tifffile.imwrite(folder / f"sample_{name}.tif", array[0].astype(np.float32), compression="zlib")
    missing = [o.name for o in package.card.outputs if o.name not in outputs]
    if missing:
        raise BioimageioExportError(f"{package.path}: the card names output(s) {missing} the graph does not have")
    write_png(folder / "cover.png", cover_image(raw, outputs, package.card.outputs[0].name))
    shapes = {name: array.shape for name, array in outputs.items()}
    (folder / "README.md").write_text(documentation(package, steps, shapes))
    return build_description(package, shapes, authors, licence)


def validate(content: dict, root: Path):
    """bioimageio.spec's format validation of a description dict whose files lie in `root`, with file checks
    (sha256, test tensors readable) and no network look-ups. Returns the description object; its
    `validation_summary.status` is "valid-format" or "failed"."""
    spec = _require_spec()
    with warnings.catch_warnings():  # bioimageio.spec's notes on the union types it tries; not about the content
        warnings.filterwarnings("ignore", category=UserWarning, module="bioimageio")
        with spec.ValidationContext(root=root, perform_io_checks=True, known_files=_known_urls(content)):
            return spec.build_description(content)


def check(path: str | Path):
    """bioimage.io's verdict on a written description (folder, bioimageio.yaml or .zip): bioimageio.core's
    test when it is installed (format, files, and the test outputs reproduced by running the ONNX weights
    after the described preprocessing), else bioimageio.spec's format and file checks. Returns a
    ValidationSummary; its `status` is "passed", "valid-format" or "failed"."""
    spec = _require_spec()
    try:
        from bioimageio.core import test_description
    except ImportError:
        return spec.load_description(path, perform_io_checks=True).validation_summary
    return test_description(path)


def _known_urls(description: dict) -> dict:
    """URLs the description cites, marked as known so validation does not try to reach them."""
    cites = description.get("cite", []) + description.get("training_data", {}).get("cite", [])
    return {entry["url"]: None for entry in cites if "url" in entry}


def export_bioimageio(model: str | Path, out: str | Path, authors: tuple[str, ...] = DEFAULT_AUTHORS,
                      licence: str | None = None) -> Written:
    """Describe the network of a cellpoint package (bundled name or folder) for bioimage.io in `out`: a
    folder, or a .zip when `out` ends with .zip (replaced when it exists). authors: names; licence: an SPDX
    id overriding the card's. The description is validated (`validate`, then `check`) before it is moved
    into place. Raises BioimageioExportError when it fails (nothing is written then) or bioimageio.spec is
    missing; PackageError for an unusable package."""
    spec = _require_spec()
    package = load_package(model)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".bioimageio-", dir=out.parent) as tmp:
        work = Path(tmp) / "description"
        content = write_files(package, work, tuple(authors) or DEFAULT_AUTHORS, licence)
        described = validate(content, work)
        if described.validation_summary.status == "failed" or not hasattr(described, "inputs"):
            raise BioimageioExportError(f"{package.name}: the bioimage.io description fails validation:\n"
                                        + described.validation_summary.format())
        spec.save_bioimageio_yaml_only(described, work / DESCRIPTION_FILE)
        summary = check(work / DESCRIPTION_FILE)
        if summary.status == "failed":
            raise BioimageioExportError(f"{package.name}: the bioimage.io description fails its test:\n"
                                        + summary.format())
        if out.suffix.lower() == ".zip":
            out.unlink(missing_ok=True)
            with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
                for file in sorted(work.iterdir()):
                    archive.write(file, file.name)
            path = out
        else:
            if out.exists():
                shutil.rmtree(out)
            shutil.move(str(work), str(out))
            path = out / DESCRIPTION_FILE
    return Written(path, summary.status, summary.format())

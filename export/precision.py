"""Give an existing model package a lower-precision variant of its main graph: int8 (static quantisation with
onnxruntime's tooling: QDQ, per-channel int8 weights, uint8 activations calibrated on train images, for CPUs)
or fp16 (float16 weights and arithmetic with float32 inputs and outputs, for GPUs). The variant is measured
on val with the same code as the float32 graph and added only when it loses at most `max_loss` F1@0.5 on
every measured entry; otherwise the package is left unchanged.

    python -m cellpoint.export.precision PACKAGE --precision int8 [--calibrate DATASET[:KIND,..]|FOLDER ...] \
        --eval DATASET[:KIND,..] ... [--max-loss 0.005] [--tiles 32]
    python -m cellpoint.export.precision PACKAGE --precision fp16 --eval DATASET[:KIND,..] ...

--calibrate defaults to the data sets the package was trained on (its card's training_data, train split).
Calibration sees what the network sees: each image prepared and normalised by the runtime's Segmenter and
rescaled so its cells have the network's diameter (a data set image: its own median cell diameter from its
masks; a folder's image: the diameter the package would use with none given), then cut into tiles.
Exit status 0: variant added; 1: measured and refused (loses more than --max-loss); 2: bad arguments.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from cellpoint.export.rebuild import rebuild_package
from cellpoint.runtime.package import CARD_FILE, load_package, sha256_file

VARIANTS = ("int8", "fp16")
MAX_LOSS = 0.005          # the largest F1@0.5 a variant may lose on any val entry to ship
TILES = 32                # calibration tiles (a few dozen: MinMax ranges settle well before)
TILE = 256                # calibration tile side (network px)
HELD_OUT = 4              # further tiles, not calibrated on, on which the variant's outputs are compared to fp32


class VariantRejected(RuntimeError):
    """The variant loses more than the allowed F1@0.5 on val; `variant` holds its entry and figures."""

    def __init__(self, message: str, variant: dict):
        super().__init__(message)
        self.variant = variant


def variant_file(precision: str) -> str:
    """The variant's file name in the package, e.g. model.int8.onnx."""
    return f"model.{precision}.onnx"


# ------------------------------------------------------------------------------------------ calibration data

Loader = Callable[[], tuple[np.ndarray, "float | None"]]


def _dataset_loaders(spec: str) -> list[Loader]:
    """The train images of a shared data set spec, each with its own median cell diameter (from its masks)."""
    from cellpoint.training.datasets import list_samples, load_sample, parse_dataset_spec
    dataset, kinds = parse_dataset_spec(spec)

    def loader(sample):
        def load():
            image, labels = load_sample(sample)
            areas = np.bincount(labels.ravel())[1:]
            areas = areas[areas > 0]
            return image, (float(2 * np.sqrt(np.median(areas) / np.pi)) if areas.size else None)
        return load
    return [loader(s) for s in list_samples(dataset, "train", kinds)]


def _folder_loaders(folder: Path) -> list[Loader]:
    """The images of a folder, with no diameter (the package's own choice applies)."""
    from cellpoint.runtime.image_io import FOLDER_SUFFIXES, read_image
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in FOLDER_SUFFIXES and not p.name.startswith("."))
    if not paths:
        raise ValueError(f"{folder}: no images ({', '.join(sorted(FOLDER_SUFFIXES))}) to calibrate on")
    return [lambda p=p: (read_image(p), None) for p in paths]


def _loaders(source) -> list[Loader]:
    """One calibration source → its image loaders: a folder of images, a shared data set spec
    ("name[:kind,..]", train split), an image array, or an (image, diameter) pair."""
    if isinstance(source, np.ndarray):
        return [lambda: (source, None)]
    if isinstance(source, tuple):
        return [lambda: (source[0], source[1])]
    if Path(source).is_dir():
        return _folder_loaders(Path(source))
    return _dataset_loaders(str(source))


def default_calibration(card: dict) -> list[str]:
    """The data set specs a package was trained on (its card's training_data entries with no role)."""
    specs = []
    for entry in card.get("training_data", []):
        if entry.get("role") or not entry.get("dataset"):
            continue
        spec = entry["dataset"] + (":" + ",".join(entry["kinds"]) if entry.get("kinds") else "")
        if spec not in specs:
            specs.append(spec)
    return specs


def calibration_tiles(segmenter, sources: Sequence, count: int = TILES, tile: int = TILE,
                      seed: int = 0) -> list[np.ndarray]:
    """`count` float32 (1,C,h,w) tiles of at most `tile` px a side (multiples of the card's tiling multiple)
    from the images of `sources` (see `_loaders`), taken in turn from each source, images in a seeded random
    order (an image gives a second tile only when a source has fewer images than its share). Each image is
    prepared as `segmenter` prepares it for its network: channels, polarity, normalisation, rescaled so its
    cells have the network's diameter."""
    rng = np.random.default_rng(seed)
    groups = [_loaders(s) for s in sources]
    groups = [[g[i] for i in rng.permutation(len(g))] for g in groups if g]
    if not groups:
        raise ValueError("no calibration images")
    multiple = segmenter.package.card.tiling.multiple
    tile = max(multiple, tile // multiple * multiple)
    cache: dict[tuple[int, int], np.ndarray] = {}
    tiles = []
    for k in range(count):
        g = k % len(groups)
        i = (k // len(groups)) % len(groups[g])
        if (g, i) not in cache:
            image, diameter = groups[g][i]()
            image, _ = segmenter._model_channels(image, None)
            if diameter is None:
                diameter, _ = segmenter._first_diameter(image, None, None)
            cache[(g, i)] = segmenter._network_input(image, diameter)[0]
        x = cache[(g, i)]
        pad = [(0, 0)] + [(0, -n % multiple) for n in x.shape[1:]]  # as the runtime pads: to multiples
        x = np.pad(x, pad, mode="reflect" if all(p < n for (_, p), n in zip(pad[1:], x.shape[1:])) else "edge")
        h, w = (min(tile, n) for n in x.shape[1:])
        y0 = int(rng.integers(0, x.shape[1] - h + 1)) // multiple * multiple
        x0 = int(rng.integers(0, x.shape[2] - w + 1)) // multiple * multiple
        tiles.append(np.ascontiguousarray(x[None, :, y0:y0 + h, x0:x0 + w], dtype=np.float32))
    return tiles


class _TileReader:
    """onnxruntime's CalibrationDataReader protocol over a list of input tiles."""

    def __init__(self, input_name: str, tiles: list[np.ndarray]):
        self._feeds = iter([{input_name: t} for t in tiles])

    def get_next(self) -> dict | None:
        return next(self._feeds, None)


# -------------------------------------------------------------------------------------------- conversions

def quantise_int8(source: Path, target: Path, input_name: str, tiles: list[np.ndarray]) -> dict:
    """Static int8 quantisation of the graph `source` into `target` with onnxruntime's tooling: shape
    inference and graph optimisation first (quant_pre_process), then quantize_static in QDQ format, weights
    int8 per output channel, activations uint8 with MinMax ranges over `tiles`. Returns the card's
    `conversion` entry."""
    import onnxruntime as ort
    from onnxruntime.quantization import (CalibrationMethod, QuantFormat, QuantType, quant_pre_process,
                                          quantize_static)
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(source), str(prepared))
        quantize_static(str(prepared), str(target), _TileReader(input_name, tiles), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax)
    return {"tool": f"onnxruntime.quantization.quantize_static (onnxruntime {ort.__version__})",
            "format": "QDQ", "per_channel": True, "weights": "int8", "activations": "uint8",
            "calibration": "MinMax", "calibration_tiles": len(tiles),
            "tile_px": [int(max(t.shape[2] for t in tiles)), int(max(t.shape[3] for t in tiles))]}


def convert_fp16(source: Path, target: Path) -> dict:
    """The graph `source` in float16 (inputs and outputs kept float32) into `target`, with
    onnxconverter-common's converter (onnxruntime's copy of it when that package is absent). Returns the
    card's `conversion` entry."""
    import onnx
    try:
        import onnxconverter_common
        from onnxconverter_common import float16
        tool = f"onnxconverter_common.float16 (onnxconverter-common {onnxconverter_common.__version__})"
    except ImportError:
        import onnxruntime as ort
        from onnxruntime.transformers import float16
        tool = f"onnxruntime.transformers.float16 (onnxruntime {ort.__version__})"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "the float32 number ... will be truncated" for tiny weights
        model = float16.convert_float_to_float16(onnx.load(str(source)), keep_io_types=True)
    onnx.save(model, str(target))
    return {"tool": tool, "keep_io_types": True}


def output_difference(reference: Path, variant: Path, input_name: str, tiles: list[np.ndarray]) -> float:
    """Largest |variant − reference| / max(1, |reference|) over every output on `tiles` (onnxruntime, CPU);
    ValueError when the variant gives a value that is not finite."""
    import onnxruntime as ort
    sessions = [ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]) for p in (reference, variant)]
    worst = 0.0
    for t in tiles:
        want, got = (s.run(None, {input_name: t}) for s in sessions)
        for a, b in zip(got, want):
            if not np.isfinite(a).all():
                raise ValueError(f"{variant}: gives values that are not finite (over- or underflow)")
            worst = max(worst, float((np.abs(a - b) / np.maximum(1.0, np.abs(b))).max()))
    return worst


# ------------------------------------------------------------------------------------------------ the gate

def f1_loss(reference: dict, variant: dict) -> float:
    """The largest reference − variant F1@0.5 over the entries both measured."""
    return max(reference[k]["f1_50"] - variant[k]["f1_50"] for k in reference if k in variant)


def add_variant(folder, precision: str, calibrate: Sequence = (), eval_specs: Sequence[str] = (),
                max_loss: float = MAX_LOSS, tiles: int = TILES, tile: int = TILE, unmeasured: bool = False,
                seed: int = 0, log=print) -> dict:
    """Make the `precision` variant ("int8" or "fp16") of the main graph of the package in `folder` and add it
    to the package when it loses at most `max_loss` F1@0.5 on each val entry of `eval_specs` (each data set
    at its diameter, fixed and refined: `training.validate.diameter_metrics`, run on the fp32 graph and on
    the variant). The card's fp32 metrics of those entries are refreshed from the same run; the variant
    entry records how it was made, its output difference from fp32 on held-out tiles, its metrics and its
    loss. unmeasured: add it with no val measurement (its loss null). Raises VariantRejected (the package
    unchanged) when it loses more. calibrate: sources of calibration images (see `calibration_tiles`;
    default: the card's training data sets); fp16 needs none but uses them to compare outputs.
    Samples are made again (the runtime's "auto" then picks the variant on its device). Returns the entry."""
    if precision not in VARIANTS:
        raise ValueError(f"precision must be one of {', '.join(VARIANTS)}, not {precision!r}")
    if not eval_specs and not unmeasured:
        raise ValueError(f"a {precision} variant ships only when measured on val: give --eval DATASET "
                         "(or --unmeasured to add it unmeasured)")
    from cellpoint.runtime.segmenter import Segmenter
    folder = Path(folder)
    package = load_package(folder)
    card0 = json.loads((folder / CARD_FILE).read_text())
    sources = list(calibrate) or default_calibration(card0)
    if precision == "fp16" and not calibrate:
        from cellpoint.training.datasets import shared_data_present
        sources = sources if shared_data_present() else []   # fp16 needs images only to compare outputs
    if not sources and precision == "int8":
        raise ValueError(f"{folder}: the card names no training data set to calibrate on: give --calibrate")
    input_name = package.card.inputs[0].name
    name = variant_file(precision)
    entry: dict = {}

    def edit(card: dict, work: Path) -> dict:
        reference = Segmenter(work, device="cpu", precision="fp32")
        if sources:
            log(f"{folder}: preparing {tiles} + {HELD_OUT} tiles from {', '.join(map(_describe, sources))} ...")
            made = calibration_tiles(reference, sources, tiles + HELD_OUT, tile, seed)
        else:  # fp16 with no images named: compare outputs on normalised noise
            rng = np.random.default_rng(seed)
            made = [rng.random((1, package.card.inputs[0].channels, tile, tile), dtype=np.float32)
                    for _ in range(HELD_OUT)]
        calibration, held_out = made[:-HELD_OUT], made[-HELD_OUT:]
        log(f"{folder}: making the {precision} variant ...")
        if precision == "int8":
            conversion = quantise_int8(package.onnx_path, work / name, input_name, calibration)
            conversion["calibration_data"] = [_describe(s) for s in sources]
        else:
            conversion = convert_fp16(package.onnx_path, work / name)
        entry.update(source=name, sha256=sha256_file(work / name), conversion=conversion,
                     parity_max_rel_diff=output_difference(package.onnx_path, work / name, input_name, held_out))
        log(f"{folder}: {precision} outputs differ from fp32 by at most {entry['parity_max_rel_diff']:.3g} "
            f"(relative to max(1, |fp32|)) on {len(held_out)} held-out tiles")
        card.setdefault("variants", {})[precision] = entry
        (work / CARD_FILE).write_text(json.dumps(card, indent=1, ensure_ascii=False))
        if eval_specs:
            import onnxruntime as ort

            from cellpoint.training.validate import diameter_metrics
            log(f"{folder}: measuring fp32 on val ...")
            fp32 = diameter_metrics(reference, eval_specs, log)
            log(f"{folder}: measuring {precision} on val ...")
            variant = diameter_metrics(Segmenter(work, device="cpu", precision=precision), eval_specs, log)
            entry.update(metrics=variant, f1_50_loss=f1_loss(fp32, variant))
            entry["conversion"]["measured_with"] = f"onnxruntime {ort.__version__}, CPUExecutionProvider"
            for key in fp32:
                log(f"  {key}: F1@0.5 fp32 {fp32[key]['f1_50']:.4f} {precision} {variant[key]['f1_50']:.4f}; "
                    f"mask AP fp32 {fp32[key]['AP']:.4f} {precision} {variant[key]['AP']:.4f}")
            if entry["f1_50_loss"] > max_loss:
                raise VariantRejected(f"{folder}: the {precision} variant loses {entry['f1_50_loss']:.4f} F1@0.5 on "
                                      f"val (more than {max_loss:g}); the package is unchanged", dict(entry))
            card["metrics"] = {**card.get("metrics", {}), **fp32}
        return card

    rebuild_package(folder, edit, keep_metrics=True)
    return entry


def _describe(source) -> str:
    if isinstance(source, (np.ndarray, tuple)):
        return "an image array"
    return f"{source} (train)" if not Path(source).is_dir() else str(source)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("package")
    parser.add_argument("--precision", required=True, choices=VARIANTS)
    parser.add_argument("--calibrate", action="append", default=[], metavar="DATASET[:KIND,..]|FOLDER",
                        help="train images to calibrate on (repeatable; default: the card's training data sets)")
    parser.add_argument("--eval", action="append", default=[], metavar="DATASET[:KIND,..]",
                        help="data set whose val split fp32 and the variant are measured on (repeatable)")
    parser.add_argument("--max-loss", type=float, default=MAX_LOSS,
                        help="largest F1@0.5 the variant may lose on any val entry [%(default)s]")
    parser.add_argument("--tiles", type=int, default=TILES, help="calibration tiles [%(default)s]")
    parser.add_argument("--tile", type=int, default=TILE, help="calibration tile side, network px [%(default)s]")
    parser.add_argument("--unmeasured", action="store_true", help="add the variant without measuring it on val")
    args = parser.parse_args(argv)
    try:
        entry = add_variant(args.package, args.precision, args.calibrate, args.eval, args.max_loss, args.tiles,
                            args.tile, args.unmeasured)
    except VariantRejected as rejected:
        print(rejected, file=sys.stderr)
        return 1
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    loss = entry.get("f1_50_loss")
    print(f"{args.package}: {args.precision} variant added ({entry['source']}; "
          + (f"loses {loss:.4f} F1@0.5 on val)" if loss is not None else "not measured on val)"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

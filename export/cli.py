"""`cellpoint export`: checkpoint → model package folder (model.onnx, card.json, README.md, samples), for any
registered method (its spec's `export` says what to trace); with --bioimageio, also (or, for an existing
package given with --package, only) a bioimage.io model description of the package's network
(`cellpoint.export.bioimageio`)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import click
import numpy as np

TILING = {"multiple": 16, "overlap": 64}
POSTPROCESS_PARAMS = ("outline_contrast",)  # optional steps after any decoder (the card's "postprocess")


def _parse_value(text: str):
    """A --decoder-param value: JSON if it parses (numbers, true/false, null, lists), else the string."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def apply_decoder_params(checkpoint: dict, items) -> None:
    """Apply KEY=VALUE overrides to the checkpoint's decoder parameters (or postprocess), in place, checked
    against the decoder's declaration; click.BadParameter naming the problem otherwise."""
    from cellpoint.runtime.card import CardError, validate_params
    from cellpoint.runtime.decoders import get_decoder
    decoder = get_decoder(checkpoint["decoder"]["name"])
    known = sorted(decoder.params.__struct_fields__) + list(POSTPROCESS_PARAMS)
    params = dict(checkpoint["decoder"]["params"])
    postprocess = dict(checkpoint.get("postprocess", {}))
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in known:
            raise click.BadParameter(f"{item!r}: expected KEY=VALUE with KEY one of {known}",
                                     param_hint="--decoder-param")
        (postprocess if key in POSTPROCESS_PARAMS else params)[key] = _parse_value(value)
    try:
        validate_params(params, decoder.params)
    except CardError as error:
        raise click.BadParameter(str(error), param_hint="--decoder-param") from None
    checkpoint["decoder"] = {"name": decoder.name, "params": params}
    checkpoint["postprocess"] = postprocess


def scale_export(path):
    """The scale graph of a scale model file (traced on two random tiles), the card's "scale" entry and the
    scale model's training data entries (role "scale model")."""
    import msgspec
    import torch
    from cellpoint.runtime.scale import ScaleParams
    from cellpoint.training.methods import GraphExport
    from cellpoint.training.scale_model import STRIDE, build_scale_network, load_scale_checkpoint
    checkpoint = load_scale_checkpoint(path)
    net = build_scale_network(checkpoint)
    tiles = torch.from_numpy(np.random.default_rng(0).random((2, 1, 128, 128), dtype=np.float32))
    graph = GraphExport(net, {"image": tiles}, "scale",
                        {"image": {0: "tiles", 2: "height", 3: "width"}, "scale": {0: "tiles", 2: "grid_h", 3: "grid_w"}},
                        "scale.onnx")
    params = ScaleParams(canonical_px=float(checkpoint["canonical_px"]), stride=STRIDE)
    from cellpoint.export.card import DATASET_LICENCES
    data = [dict(entry, role="scale model", licence=DATASET_LICENCES.get(entry.get("dataset"),
                                                                      "see the data set's SOURCE.md"))
            for entry in checkpoint.get("training_data", [])]
    return graph, msgspec.to_builtins(params), data


def _write_carried_graph(folder: Path, role: str, onnx_bytes) -> dict:
    """Write a graph a checkpoint carries as bytes (a uint8 tensor) to <role>.onnx; its card entry."""
    from cellpoint.runtime.package import sha256_file
    path = folder / f"{role}.onnx"
    path.write_bytes(bytes(onnx_bytes.numpy().tobytes()))
    return {"source": path.name, "sha256": sha256_file(path)}


def _write_json_asset(folder: Path, role: str, content) -> dict:
    from cellpoint.runtime.package import sha256_file
    path = folder / f"{role}.json"
    path.write_text(json.dumps(content))
    return {"source": path.name, "sha256": sha256_file(path)}


def write_bioimageio(package, out, authors, licence) -> None:
    """--bioimageio: describe `package` (a bundled name or folder) for bioimage.io in `out`; a ClickException
    naming the reason when it cannot be described or fails validation."""
    from cellpoint.export.bioimageio import DEFAULT_AUTHORS, BioimageioExportError, export_bioimageio
    from cellpoint.runtime.errors import PackageError
    try:
        written = export_bioimageio(package, out, tuple(authors) or DEFAULT_AUTHORS, licence)
    except (BioimageioExportError, PackageError) as error:
        raise click.ClickException(str(error))
    click.echo(f"wrote the bioimage.io description {written.path} (bioimage.io validation: {written.status})")


@click.command("export")
@click.argument("checkpoint", required=False, type=click.Path(exists=True, dir_okay=False))
@click.option("--out", "out_dir", type=click.Path(file_okay=False),
              help="Package folder to write, e.g. model_cards/objectness-nuclei (required with CHECKPOINT).")
@click.option("--name", default=None, help="Package name [default: the folder's name].")
@click.option("--description", default="", help="One-line summary shown by `cellpoint models`.")
@click.option("--sample", "samples", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="Sample input image(s) to bundle with their expected output. Repeatable.")
@click.option("--sample-source", default="", help="Where the sample images come from.")
@click.option("--sample-licence", default="", help="The sample images' licence.")
@click.option("--eval", "eval_sets", multiple=True, metavar="DATASET[:KIND,..]",
              help="Shared data set whose val split is measured with the exported package; repeatable.")
@click.option("--notes", type=click.Path(exists=True, dir_okay=False), help="Markdown appended to README.md.")
@click.option("--decoder-param", "decoder_params", multiple=True, metavar="KEY=VALUE",
              help="Override a decoder parameter of the checkpoint, e.g. foreground_threshold=0.225, or set "
              "outline_contrast=C (outlines re-drawn at C between each cell's brightness and its "
              "surroundings'; fluorescence). Repeatable.")
@click.option("--refine-diameter", is_flag=True,
              help="Make the package re-run each image at its measured cell size by default (the runtime's "
              "refine_diameter); the sample output is made that way.")
@click.option("--scale-model", type=click.Path(exists=True, dir_okay=False),
              help="A scale model (`cellpoint train-scale`): the package then estimates each image's cell diameter "
              "when none is given.")
@click.option("--atol", default=1e-4, show_default=True, help="Largest allowed torch-vs-onnxruntime difference.")
@click.option("--precision", "precisions", multiple=True, type=click.Choice(["int8", "fp16"]),
              help="Also make this lower-precision variant of the main graph (int8: static quantisation for CPUs; "
              "fp16: for GPUs), measured on the --eval val sets beside fp32 and shipped only if it loses at most "
              "--max-loss F1@0.5 on each. Repeatable.")
@click.option("--calibrate", "calibrate", multiple=True, metavar="DATASET[:KIND,..]|FOLDER",
              help="Train images int8 is calibrated on; repeatable [default: the checkpoint's training data sets].")
@click.option("--max-loss", default=0.005, show_default=True,
              help="Largest F1@0.5 a --precision variant may lose on a val set to ship.")
@click.option("--bioimageio", "bioimageio_out", type=click.Path(), default=None, metavar="OUT",
              help="Also write a bioimage.io model description of the package's network to the folder OUT (or "
              "OUT.zip): ONNX weights, test tensors, cover, documentation, validated with bioimageio.spec. Needs "
              "pip install 'cellpoint[bioimageio]'; not torch.")
@click.option("--package", "package", default=None, metavar="NAME|DIR",
              help="With --bioimageio and no CHECKPOINT: the existing package to describe (a bundled name or a "
              "folder).")
@click.option("--author", "authors", multiple=True,
              help="An author of the bioimage.io description; repeatable [default: cellpoint contributors].")
@click.option("--licence", default=None, metavar="SPDX",
              help="The weights' licence in the bioimage.io description [default: the card's].")
def export(checkpoint, out_dir, name, description, samples, sample_source, sample_licence, eval_sets, notes,
           decoder_params, refine_diameter, scale_model, atol, precisions, calibrate, max_loss, bioimageio_out,
           package, authors, licence):
    """Export CHECKPOINT to a self-describing ONNX model package; fails if onnxruntime disagrees with torch.

    Without CHECKPOINT, `--bioimageio OUT --package NAME|DIR` only describes an existing package for
    bioimage.io (e.g. cellpoint export --bioimageio out/objectness --package objectness-nuclei)."""
    if checkpoint is None:
        if bioimageio_out is None or package is None:
            raise click.UsageError("give CHECKPOINT and --out to export a checkpoint, or --bioimageio OUT --package "
                                   "NAME|DIR to describe an existing package for bioimage.io")
        write_bioimageio(package, bioimageio_out, authors, licence)
        return
    if package is not None:
        raise click.UsageError("--package names an existing package to describe; with CHECKPOINT, --bioimageio "
                               "describes the package exported to --out")
    if out_dir is None:
        raise click.UsageError("Missing option '--out' (the package folder to write)")
    if precisions and not eval_sets:
        raise click.UsageError("--precision needs --eval: a variant ships only when measured on val")
    try:
        import torch  # noqa: F401
    except ImportError:
        raise click.ClickException("this command needs PyTorch: pip install torch==2.13.0 'cellpoint[train]'")

    from cellpoint.export.card import build_card, render_readme
    from cellpoint.export.onnx_export import OPSET, ParityError, check_parity, export_graph, export_main_graph
    from cellpoint.runtime.errors import CellpointError
    from cellpoint.runtime.image_io import read_image, write_labels_tif, write_png
    from cellpoint.runtime.normalize import normalize_percentile, to_channels_first
    from cellpoint.runtime.package import CARD_FILE, sha256_file
    from cellpoint.runtime.segmenter import Segmenter
    from cellpoint.training.checkpoint import load_checkpoint
    from cellpoint.training.datasets import shared_data_present
    from cellpoint.training.validate import training_domain
    from cellpoint.training.methods import get_method

    try:
        ckpt = load_checkpoint(checkpoint)
        spec = get_method(ckpt["method"])
    except (CellpointError, KeyError) as error:
        raise click.ClickException(str(error).strip("'\""))
    apply_decoder_params(ckpt, decoder_params)
    out = Path(out_dir)
    name = name or out.name
    work = out.with_name(out.name + ".partial")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        in_ch = ckpt["model"]["in_channels"]
        images = [read_image(p) for p in samples]
        probe = (normalize_percentile(to_channels_first(images[0], in_ch))[None] if images
                 else np.random.default_rng(0).random((1, in_ch, 96, 128), dtype=np.float32))
        # as the runtime feeds the network: reflect-padded to multiples of the tiling's multiple
        m = TILING["multiple"]
        pad = (-probe.shape[2] % m, -probe.shape[3] % m)
        if any(pad) and min(probe.shape[2:]) > max(pad):
            probe = np.pad(probe, ((0, 0), (0, 0), (0, pad[0]), (0, pad[1])), mode="reflect")
        plan = spec.export(ckpt, probe)
        export_main_graph(plan, in_ch, work / "model.onnx")
        try:
            parity = check_parity(plan.module, work / "model.onnx", probe, atol)
            graphs = {role: export_graph(graph, work, atol) for role, graph in plan.graphs.items()}
            scale, scale_data = None, []
            if scale_model:
                scale_graph, scale, scale_data = scale_export(scale_model)
                graphs[scale["graph"]] = export_graph(scale_graph, work, atol)
            elif "scale_graph" in ckpt:  # fine-tuned from a package: its scale model comes along
                scale, scale_data = ckpt["scale_graph"]["card"], ckpt["scale_graph"].get("training_data", [])
                graphs[scale["graph"]] = _write_carried_graph(work, scale["graph"], ckpt["scale_graph"]["onnx"])
        except ParityError as error:
            raise click.ClickException(str(error))
        weights = {"source": "model.onnx", "sha256": sha256_file(work / "model.onnx"), "opset": OPSET,
                   "parity_max_rel_diff": parity}
        assets = {role: _write_json_asset(work, role, content) for role, content in plan.assets.items()}
        figures = []
        for file, caption, rgb in plan.figures:
            write_png(work / file, rgb)
            figures.append({"file": file, "caption": caption})

        refine = refine_diameter or bool(ckpt.get("refine_diameter", False))

        def card(sample_entries, metrics):
            made = build_card(dict(ckpt, training_data=ckpt.get("training_data", []) + scale_data), name, description,
                              weights, graphs, assets, plan.outputs, TILING, sample_entries, metrics, figures,
                              spec.reference, refine)
            if scale:
                made["scale"] = scale
            return made

        (work / CARD_FILE).write_text(json.dumps(card([], {}), indent=1))
        segmenter = Segmenter(work, device="cpu")
        sample_entries = []
        for k, (path, image) in enumerate(zip(samples, images), start=1):
            stem = f"sample{k}"
            shutil.copyfile(path, work / f"{stem}_input{Path(path).suffix.lower()}")
            labels, _ = segmenter.segment(image)
            write_labels_tif(work / f"{stem}_labels.tif", labels)
            sample_entries.append({"input": f"{stem}_input{Path(path).suffix.lower()}",
                                   "output": f"{stem}_labels.tif", "source": sample_source or Path(path).name,
                                   "licence": sample_licence or "unknown", "instances": int(labels.max())})
        metrics = {}
        if eval_sets:
            from cellpoint.training.validate import diameter_metrics, no_diameter_metrics
            metrics.update(diameter_metrics(segmenter, eval_sets, click.echo))
            if scale:
                click.echo("measuring the val splits with no diameter (the scale model's estimate) ...")
                metrics.update(no_diameter_metrics(segmenter, eval_sets))
        final = card(sample_entries, metrics)
        if shared_data_present():
            domain = training_domain([e for e in final["training_data"] if e.get("role") != "scale model"])
            if domain:
                final["domain"] = domain
        (work / CARD_FILE).write_text(json.dumps(final, indent=1))
        (work / "README.md").write_text(render_readme(final, Path(notes).read_text() if notes else ""))
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    if out.exists():
        shutil.rmtree(out)
    work.rename(out)
    click.echo(f"wrote {out} (parity max |Δ| {parity:.2g})")
    for spec_text, m in metrics.items():
        click.echo(f"  {spec_text}: F1@0.5 {m.get('f1_50', float('nan')):.3f}  AP {m.get('AP', float('nan')):.3f}")
    if precisions:
        from cellpoint.export.precision import VariantRejected, add_variant
        for precision in precisions:
            try:
                entry = add_variant(out, precision, calibrate, eval_sets, max_loss, log=click.echo)
                click.echo(f"added the {precision} variant {entry['source']} (loses {entry['f1_50_loss']:.4f} F1@0.5)")
            except VariantRejected as rejected:
                click.echo(str(rejected))
            except (ValueError, FileNotFoundError) as error:
                raise click.ClickException(str(error))
    if bioimageio_out is not None:
        write_bioimageio(out, bioimageio_out, authors, licence)

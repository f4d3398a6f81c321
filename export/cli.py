"""`cellpoint export`: checkpoint → model package folder (model.onnx, card.json, README.md, samples)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import click
import numpy as np

TILING = {"multiple": 16, "overlap": 64}


def write_canonical_shape_figure(weights: dict, folder: Path) -> dict:
    """Draw the learned canonical shape p(s | x, y) over [−2, 2]² (white = 1) with the unit circle in
    red for scale; write canonical_shape.png in `folder`. Returns the card's figure entry."""
    import cv2
    from cellpoint.runtime.canonical_shape import canonical_image
    from cellpoint.runtime.image_io import write_png
    size = 257
    gray = (np.clip(canonical_image(weights, size, 2.0), 0, 1) * 255).astype(np.uint8)
    rgb = np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))
    cv2.circle(rgb, (size // 2, size // 2), size // 4, (255, 0, 0), 1, lineType=cv2.LINE_AA)
    write_png(folder / "canonical_shape.png", rgb)
    return {"file": "canonical_shape.png",
            "caption": "Learned canonical shape p(s | x, y) on [-2, 2]^2 canonical units (white = 1); "
                       "red: the unit circle, radius = `unit` network px before each cell's own transform."}


# optional post-processing any image-scale decoder accepts (see cellpoint.runtime.segmenter)
SHARED_DECODER_PARAMS = {"outline_contrast": float}


@click.command("export")
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Package folder to write, e.g. model_cards/objectness-nuclei.")
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
@click.option("--atol", default=1e-4, show_default=True, help="Largest allowed torch-vs-onnxruntime difference.")
def export(checkpoint, out_dir, name, description, samples, sample_source, sample_licence, eval_sets, notes,
           decoder_params, refine_diameter, atol):
    """Export CHECKPOINT to a self-describing ONNX model package; fails if onnxruntime disagrees with torch."""
    try:
        import torch
    except ImportError:
        raise click.ClickException("this command needs PyTorch: pip install torch==2.13.0 'cellpoint[train]'")

    from cellpoint.export.card import build_card, render_readme
    from cellpoint.export.onnx_export import ParityError, check_parity, export_extra_graphs, export_network
    from cellpoint.runtime.image_io import read_image, write_labels_tif
    from cellpoint.runtime.normalize import normalize_percentile, to_channels_first
    from cellpoint.runtime.package import CARD_FILE, sha256_file
    from cellpoint.runtime.segmenter import Segmenter

    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=False)
    known = {**SHARED_DECODER_PARAMS, **{k: type(v) for k, v in ckpt["decoder"].items() if k != "name"}}
    for item in decoder_params:
        key, sep, value = item.partition("=")
        if not sep or key not in known:
            raise click.BadParameter(f"{item!r}: expected KEY=VALUE with KEY one of {sorted(known)}",
                                     param_hint="--decoder-param")
        ckpt["decoder"][key] = known[key](value)
    out = Path(out_dir)
    name = name or out.name
    work = out.with_name(out.name + ".partial")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        module, outputs = export_network(ckpt, work / "model.onnx")
        sha = sha256_file(work / "model.onnx")
        in_ch = ckpt["model"]["in_channels"]
        images = [read_image(p) for p in samples]
        probe = (normalize_percentile(to_channels_first(images[0], in_ch))[None] if images
                 else np.random.default_rng(0).random((1, in_ch, 96, 128), dtype=np.float32))
        # as the runtime feeds the network: reflect-padded to multiples of the tiling's multiple
        m = TILING["multiple"]
        pad = (-probe.shape[2] % m, -probe.shape[3] % m)
        if any(pad) and min(probe.shape[2:]) > max(pad):
            probe = np.pad(probe, ((0, 0), (0, 0), (0, pad[0]), (0, pad[1])), mode="reflect")
        try:
            parity = check_parity(module, work / "model.onnx", probe, atol)
            graphs = export_extra_graphs(ckpt, work, probe, atol)
        except ParityError as error:
            raise click.ClickException(str(error))
        card = build_card(ckpt, name, description, sha, [], {}, parity, TILING, outputs, refine_diameter)
        if graphs:
            card["graphs"] = graphs
        (work / CARD_FILE).write_text(json.dumps(card, indent=1))
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
            from cellpoint.training.datasets import parse_dataset_spec
            from cellpoint.training.validate import dataset_diameter, evaluate_segmenter
            for spec in eval_sets:
                dataset, kinds = parse_dataset_spec(spec)
                diameter = round(dataset_diameter(dataset, kinds), 1)
                click.echo(f"measuring {spec} val (diameter {diameter} px) ...")
                for refine, key in ((False, spec), (True, f"{spec} (refined diameter)")):
                    full = evaluate_segmenter(segmenter, dataset, kinds, "val", diameter, refine)
                    metrics[key] = {k: v for k, v in full.items() if not isinstance(v, dict)}
        card = build_card(ckpt, name, description, sha, sample_entries, metrics, parity, TILING, outputs,
                          refine_diameter)
        if graphs:
            card["graphs"] = graphs
        if ckpt["decoder"]["name"] == "canonical_shape":
            card["figures"] = [write_canonical_shape_figure(ckpt["decoder"]["shape_mlp"], work)]
        (work / CARD_FILE).write_text(json.dumps(card, indent=1))
        (work / "README.md").write_text(render_readme(card, Path(notes).read_text() if notes else ""))
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    if out.exists():
        shutil.rmtree(out)
    work.rename(out)
    click.echo(f"wrote {out} (parity max |Δ| {parity:.2g})")
    for spec, m in metrics.items():
        click.echo(f"  {spec}: F1@0.5 {m.get('f1_50', float('nan')):.3f}  AP {m.get('AP', float('nan')):.3f}")

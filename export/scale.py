"""Give an existing model package a scale model, so it estimates each image's cell diameter when none is
given (its network and decoder are unchanged; its sample outputs are made again, as the package now
segments them by default).

    python -m cellpoint.export.scale PACKAGE_FOLDER SCALE_MODEL [--atol 1e-4] [--eval DATASET[:KIND,..] ...]
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from cellpoint.export.card import render_readme
from cellpoint.export.onnx_export import export_graph
from cellpoint.runtime.image_io import read_image, write_labels_tif
from cellpoint.runtime.package import CARD_FILE, load_package


def attach_scale_model(folder, scale_model, atol: float = 1e-4, eval_specs=()) -> dict:
    """Add the scale graph and the card's "scale" entry to the package in `folder` (a copy is made and
    checked, then swapped in); returns the new card. The samples' expected labels are made again; the
    card's `domain` is set from its training data when the shared data are at hand; each data set spec of
    `eval_specs` is measured on val with no diameter (metrics "<spec> (no diameter)")."""
    from cellpoint.training.datasets import shared_data_present
    from cellpoint.training.validate import no_diameter_metrics, training_domain
    from cellpoint.export.cli import scale_export
    from cellpoint.runtime.segmenter import Segmenter
    folder = Path(folder)
    load_package(folder)                                   # refuse a broken package before touching it
    work = folder.with_name(folder.name + ".partial")
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(folder, work)
    try:
        graph, scale, data = scale_export(scale_model)
        card = json.loads((work / CARD_FILE).read_text())
        card["graphs"] = {**card.get("graphs", {}), scale["graph"]: export_graph(graph, work, atol)}
        card["scale"] = scale
        card["training_data"] = [e for e in card.get("training_data", []) if e.get("role") != "scale model"] + data
        (work / CARD_FILE).write_text(json.dumps(card, indent=1, ensure_ascii=False))
        segmenter = Segmenter(work, device="cpu")
        for sample in card.get("samples", []):
            labels = segmenter.segment(read_image(work / sample["input"])).labels
            write_labels_tif(work / sample["output"], labels)
            sample["instances"] = int(labels.max())
        if shared_data_present():
            card["domain"] = training_domain(card.get("training_data", [])) or card.get("domain")
        card["metrics"] = {k: v for k, v in card.get("metrics", {}).items() if not k.endswith("(no diameter)")}
        card["metrics"].update(no_diameter_metrics(segmenter, eval_specs))
        if card.get("domain") is None:
            card.pop("domain", None)
        (work / CARD_FILE).write_text(json.dumps(card, indent=1, ensure_ascii=False))
        readme = (work / "README.md").read_text() if (work / "README.md").exists() else ""
        notes = readme.split("\n## Notes\n", 1)[1].strip() if "\n## Notes\n" in readme else ""
        (work / "README.md").write_text(render_readme(card, notes))
        load_package(work)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    old = folder.with_name(folder.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    folder.rename(old)
    work.rename(folder)
    shutil.rmtree(old)
    return card


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("package")
    parser.add_argument("scale_model")
    parser.add_argument("--atol", type=float, default=1e-4)
    parser.add_argument("--eval", action="append", default=[], metavar="DATASET[:KIND,..]",
                        help="measure this data set's val split with no diameter (repeatable)")
    args = parser.parse_args(argv)
    card = attach_scale_model(args.package, args.scale_model, args.atol, args.eval)
    print(f"{args.package}: scale graph added ({card['graphs'][card['scale']['graph']]['source']})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Give an existing model package a scale model, so it estimates each image's cell diameter when none is
given (its network and decoder are unchanged; its sample outputs are made again, as the package now
segments them by default).

    python -m cellpoint.export.scale PACKAGE_FOLDER SCALE_MODEL [--atol 1e-4] [--eval DATASET[:KIND,..] ...]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cellpoint.export.onnx_export import export_graph
from cellpoint.export.rebuild import rebuild_package


def attach_scale_model(folder, scale_model, atol: float = 1e-4, eval_specs=()) -> dict:
    """Add the scale graph and the card's "scale" entry to the package in `folder` (see `rebuild_package`:
    samples, domain and "(no diameter)" metrics of `eval_specs` made again); returns the new card."""
    from cellpoint.export.cli import scale_export

    def edit(card: dict, work: Path) -> dict:
        graph, scale, data = scale_export(scale_model)
        card["graphs"] = {**card.get("graphs", {}), scale["graph"]: export_graph(graph, work, atol)}
        card["scale"] = scale
        card["training_data"] = [e for e in card.get("training_data", []) if e.get("role") != "scale model"] + data
        return card
    return rebuild_package(folder, edit, eval_specs)


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

"""Switch an existing model package's input normalisation (e.g. to percentiles that hot pixels and saturated
areas cannot pull), re-measuring its samples and val metrics, since the network now sees other inputs.

    python -m cellpoint.export.normalisation PACKAGE_FOLDER --kind percentile_robust [--eval DATASET[:KIND,..] ...]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cellpoint.export.rebuild import rebuild_package

KINDS = ("percentile", "percentile_robust")
ROBUST_CLIP = [-0.5, 1.5]


def set_normalisation(folder, kind: str, eval_specs=()) -> dict:
    """Give the package in `folder` the normalisation `kind` (same percentiles; percentile_robust clips the
    scaled values to ROBUST_CLIP); samples, domain and every metric of `eval_specs` made again (earlier
    metrics are dropped). Returns the new card."""
    if kind not in KINDS:
        raise ValueError(f"normalisation must be one of {KINDS}, not {kind!r}")

    def edit(card: dict, work: Path) -> dict:
        pre = card["inputs"][0]["preprocessing"]
        card["inputs"][0]["preprocessing"] = {"kind": kind, "low": pre["low"], "high": pre["high"],
                                              **({"clip": ROBUST_CLIP} if kind == "percentile_robust" else {})}
        return card
    return rebuild_package(folder, edit, eval_specs, remeasure_all=True)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("package")
    parser.add_argument("--kind", required=True, choices=KINDS)
    parser.add_argument("--eval", action="append", default=[], metavar="DATASET[:KIND,..]",
                        help="measure this data set's val split (repeatable)")
    args = parser.parse_args(argv)
    card = set_normalisation(args.package, args.kind, args.eval)
    print(f"{args.package}: normalisation {card['inputs'][0]['preprocessing']['kind']}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Choose a package's decoder threshold on the TRAIN split (val stays for reporting).

    python benchmarks/tune_decoder.py --package /tmp/pkg --threshold 0.175 0.2 0.225 0.25
    python benchmarks/tune_decoder.py --package /tmp/shape --name shape-nuclei --param presence_threshold \
        --threshold 0.3 0.4 0.5 0.6

Segments the train images of each data set with the runtime at each value of the decoder parameter
`--param` (default foreground_threshold), with the package's own diameter refinement default (or
the one `--refine-diameter on|off` sets, to choose that default on train too), and reports F1@0.5 and
mask AP; the value with the best mean
F1@0.5 is printed, to pass to `cellpoint export --decoder-param PARAM=VALUE`. Writes
benchmarks/results/tune_decoder_<name>.md."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from cellpoint.runtime import Segmenter
from cellpoint.training.datasets import parse_dataset_spec
from cellpoint.training.validate import dataset_diameter, evaluate_segmenter


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--package", required=True)
    parser.add_argument("--name", default="objectness-nuclei")
    parser.add_argument("--param", default="foreground_threshold", help="the decoder parameter to tune")
    parser.add_argument("--threshold", type=float, nargs="+", required=True, help="values to try")
    parser.add_argument("--dataset", action="append",
                        default=None, help="NAME[:KIND] (default: the two fluorescence nuclei sets)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="hold another decoder parameter at VALUE while tuning (e.g. one chosen before)")
    parser.add_argument("--refine-diameter", choices=["card", "on", "off"], default="card",
                        help="segment with the diameter refined per image (on), fixed (off), or as the card says")
    args = parser.parse_args()
    refine = {"card": None, "on": True, "off": False}[args.refine_diameter]
    sets = args.dataset or ["dsb2018_bbbc038:gray_dark", "coelho2009_u2os_nih3t3"]
    seg = Segmenter(args.package, device="cpu")
    for item in args.set:
        key, _, value = item.partition("=")
        seg = seg.with_decoder_params(**{key: json.loads(value)})
    lines = [f"# Decoder parameter `{args.param}` of {args.name}, chosen on the train split", "",
             f"Command: `python benchmarks/tune_decoder.py --package <exported package> --name {args.name} "
             f"--param {args.param} --threshold {' '.join(map(str, args.threshold))}"
             + "".join(f" --set {item}" for item in args.set)
             + ("" if refine is None else f" --refine-diameter {args.refine_diameter}") + "`", "",
             f"| {args.param} | " + " | ".join(f"{s} F1@0.5 | {s} AP" for s in sets) + " | mean F1@0.5 |",
             "|---|" + "---|---|" * len(sets) + "---|"]
    best = None
    base = seg
    for t in args.threshold:
        seg = base.with_decoder_params(**{args.param: t})
        cells, f1s = [], []
        for spec in sets:
            name, kinds = parse_dataset_spec(spec)
            m = evaluate_segmenter(seg, name, kinds, "train", round(dataset_diameter(name, kinds), 1),
                                   refine_diameter=refine)   # None: as the package segments by default
            cells += [f"{m['f1_50']:.3f}", f"{m['AP']:.3f}"]
            f1s.append(m["f1_50"])
        lines.append(f"| {t} | " + " | ".join(cells) + f" | {np.mean(f1s):.3f} |")
        print(lines[-1], flush=True)
        if best is None or np.mean(f1s) > best[1]:
            best = (t, float(np.mean(f1s)))
    lines += ["", f"Best mean F1@0.5 on train: {args.param} = {best[0]}."]
    out = Path("benchmarks/results") / f"tune_decoder_{args.name}.md"
    out.write_text("\n".join(lines) + "\n")
    print(f"best threshold {best[0]}; wrote {out}")


if __name__ == "__main__":
    main()

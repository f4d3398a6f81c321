"""One table of every package's generalisation results: no diameter vs the data set's and each image's true
diameter, per val split (the summary in benchmarks/README.md).

    python benchmarks/generalise_summary.py benchmarks/results/generalise_objectness-nuclei.json ...

Reads the .json files that `benchmarks/generalise.py` writes and prints a Markdown table."""
from __future__ import annotations

import json
import sys
from pathlib import Path

NO_DIAMETER = "as a user runs it (no diameter)"
ORACLE = "each image's true diameter (oracle)"


def rows(results: dict) -> list[str]:
    """Markdown rows (package | data set | images | no diameter F1@0.5 / AP | data set diameter F1@0.5 |
    true diameter F1@0.5 | no diameter − true | diameter error) of one generalise result."""
    out = []
    for spec, sections in results["datasets"].items():
        runs = sections.get("diameter")
        if not runs:
            continue
        plain, oracle = runs[NO_DIAMETER], runs[ORACLE]
        given = next(m for k, m in runs.items() if k.startswith("data set diameter"))
        out.append(f"| {results['package']} | {spec} | {plain['n_images']} | **{plain['f1_50']:.3f}** / "
                   f"{plain['AP']:.3f} | {given['f1_50']:.3f} | {oracle['f1_50']:.3f} | "
                   f"{plain['f1_50'] - oracle['f1_50']:+.3f} | {plain['diameter_error_pct']:.0f}% |")
    return out


def main(paths: list[str]) -> str:
    lines = ["| package | data set (val) | images | no diameter: F1@0.5 / mask AP | data set's diameter | "
             "each image's true diameter | no diameter − true | diameter error (no diameter) |",
             "|---|---|---|---|---|---|---|---|"]
    for path in paths:
        lines += rows(json.loads(Path(path).read_text()))
    return "\n".join(lines)


if __name__ == "__main__":
    print(main(sys.argv[1:]))

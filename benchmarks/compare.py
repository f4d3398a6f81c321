"""Shared by the per-method accuracy benchmarks (lacss.py, point2mask.py): segment each shared val split
with each package and write one table with a column per metric and each row's mAP relative to a
reference package (the same network trained on full masks)."""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

from cellpoint.runtime import Segmenter
from cellpoint.training.validate import dataset_diameter, evaluate_segmenter
from cellpoint.training.datasets import parse_dataset_spec


def fmt(v) -> str:
    """A metric to 3 decimals; '–' for None or NaN."""
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"


def measure(packages: list[str], datasets: list[str], extra=None, refine_diameter: bool = False) -> dict:
    """{dataset spec: {label: metrics}} for "LABEL=DIR" packages on "NAME[:KIND,..]" val splits.

    Each image is segmented at the data set's typical cell diameter (median over its train images), and
    with refine_diameter then again at the size of the cells found in it (the runtime's refinement);
    metrics are evaluate_segmenter's plus seconds_per_image (wall, end to end) and, when given,
    extra(segmenter, dataset name, kinds) → dict merged in."""
    results = {}
    for spec in datasets:
        name, kinds = parse_dataset_spec(spec)
        diameter = round(dataset_diameter(name, kinds), 1)
        for entry in packages:
            label, _, folder = entry.partition("=")
            seg = Segmenter(folder, device="cpu")
            start = time.perf_counter()
            m = evaluate_segmenter(seg, name, kinds, "val", diameter, refine_diameter)
            m = {k: v for k, v in m.items() if not isinstance(v, dict)}
            m["seconds_per_image"] = (time.perf_counter() - start) / max(1, m["n_images"])
            if extra is not None:
                m.update(extra(seg, name, kinds))
            results.setdefault(spec, {})[label] = m
            print(spec, label, {k: fmt(v) if isinstance(v, float) else v for k, v in m.items()}, flush=True)
    return results


def write_table(out_dir, name: str, title: str, preamble: str, command: str, columns: list[tuple[str, str]],
                results: dict, reference: str | None) -> Path:
    """Write <out_dir>/<name>.md (a markdown table: data set, training labels, diameter, `columns` as
    (metric key, header), mAP vs reference) and <name>.json (the raw metrics). Returns the .md path."""
    lines = [f"# {title}", "", preamble, "", "```", command, "```", "",
             "| data set (val) | training labels | diameter px | " + " | ".join(c[1] for c in columns)
             + " | mAP vs reference |", "|---|---|---|" + "---|" * (len(columns) + 1)]
    for spec, by_label in results.items():
        ref = by_label.get(reference, {}).get("AP") if reference else None
        for label, m in by_label.items():
            ratio = m["AP"] / ref if ref else float("nan")
            cells = [m[k] if isinstance(m.get(k), str) else fmt(m.get(k)) for k, _ in columns]
            lines.append(f"| {spec} | {label} | {m['diameter_px']} | " + " | ".join(cells) + f" | {fmt(ratio)} |")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.md").write_text("\n".join(lines) + "\n")
    (out / f"{name}.json").write_text(json.dumps(results, indent=1))
    print(f"wrote {out / f'{name}.md'}")
    return out / f"{name}.md"

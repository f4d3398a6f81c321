"""Your own model in minutes: annotation seconds vs accuracy for fine-tuning from a package, with a simulated
annotator (issue "Your own model in minutes").

For each run (a base package trained without data set X), on k images of X's train split (k nested: the
first k of a seeded shuffle), the simulated user labels in one of four ways, a model is trained with a fixed
time budget, exported and run as a user runs it (no diameter) on X's val split:

- corrections + fine-tune: the base package segments each image; the user sees one point per predicted cell
  (`runtime.labels.interior_points`, as the napari "Correct cells" widget shows them), deletes each point
  that is not on a cell of its own (0.5 s), clicks the centre of each cell no point is on (1 s), accepts the
  rest (0 s); then `cellpoint train --init-from BASE` on those clicks;
- clicks + fine-tune: a click at the centre of every cell (1 s each), `--init-from BASE`;
- clicks from scratch: the same clicks, the base's training recipe, no start;
- masks from scratch: every cell's full mask (46 s each, Point2Mask table 1), `--labels full`.

Cell centres are `weak_labels.points_from_labels(..., "centroid")`, as the shared data sets' clicks are made.
Training is set by steps, not time, so that a busy machine changes the time, not the result: fine-tuning
takes `cellpoint train --init-from`'s defaults (400 steps), a run from scratch SCRATCH_STEPS (1,500, about 9
CPU-minutes on this machine's 2 cores); each run's CPU time is measured and reported.
Scratch runs get the base's scale model (so every package is run the same way). Training uses the
`cellpoint train` command in a subprocess; CPU seconds are that process's user + system time.

    python benchmarks/finetune.py [--run coelho --run dsb --run livecell] [--k 1 2 4 8] [--condition ...]

Writes results/finetune.json (kept between invocations: a finished cell of the grid is not run again),
results/finetune.md and results/finetune_<run>.png."""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
REPO = HERE.parent

CLICK_S, DELETE_S, MASK_S = 1.0, 0.5, 46.0
CONDITIONS = ("corrections", "clicks", "scratch-clicks", "scratch-masks")
LABELS = {"corrections": "corrections + fine-tune", "clicks": "clicks on every cell + fine-tune",
          "scratch-clicks": "clicks, from scratch", "scratch-masks": "full masks, from scratch"}
# base package (trained without the data set), data set, image kinds, the base's training recipe (for scratch)
RUNS = {
    "coelho": {"base": "runs/objectness-lodo-no_coelho", "dataset": "coelho2009_u2os_nih3t3", "kinds": None,
               "recipe": ["--scale-range", "0.5", "2", "--intensity", "wide", "--polarity", "bright",
                          "--normalization", "percentile_robust"]},
    "dsb": {"base": "runs/objectness-lodo-no_dsb", "dataset": "dsb2018_bbbc038", "kinds": ["gray_dark"],
            "recipe": ["--scale-range", "0.5", "2", "--intensity", "wide", "--polarity", "bright",
                       "--normalization", "percentile_robust"]},
    # whole cells in phase contrast: the bundled Point2Mask package, trained on Usiigaci only; box + clicks
    "livecell": {"base": "model_cards/point2mask-cells-phase", "dataset": "livecell", "kinds": None,
                 "method": "point2mask", "boxes": True, "recipe": []},
}
SCRATCH_STEPS = 1500  # from-scratch runs (about 9 CPU-min); fine-tuning takes `cellpoint train --init-from`'s
BOX_S, BOX_CLICK_S, BOX_CLICKS = 7.0, 0.9, 6   # Point2Mask table 1: a box, each labelled click; clicks per box


def simulate_corrections(predicted: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, int, int]:
    """The simulated user's corrections of one image's predicted cells. predicted, truth: (H,W) label images.
    A predicted cell's point (its interior point) is kept when it lies on a true cell that no earlier kept
    point is on (cells in id order); every other point is deleted; every true cell left without a point
    gets a click at its centroid. Returns the clicks float64 (K,2) x/y, the number of clicks added and of
    points deleted."""
    from cellpoint.runtime.labels import interior_points
    from cellpoint.training.weak_labels import points_from_labels
    _, points_rc = interior_points(predicted)
    under = truth[points_rc[:, 0], points_rc[:, 1]] if len(points_rc) else np.zeros(0, truth.dtype)
    claimed, kept = set(), []
    for k, cell in enumerate(under):
        if cell > 0 and cell not in claimed:
            claimed.add(int(cell))
            kept.append(k)
    missed = np.setdiff1d(np.unique(truth[truth > 0]), np.array(sorted(claimed), truth.dtype))
    centres = points_from_labels(np.where(np.isin(truth, missed), truth, 0), "centroid", 0.0,
                                 np.random.default_rng(0)) if missed.size else np.zeros((0, 2))
    xy = np.concatenate([points_rc[kept][:, ::-1].astype(np.float64), np.asarray(centres, np.float64).reshape(-1, 2)])
    return xy, int(missed.size), int(len(points_rc) - len(kept))


def simulate_box_corrections(predicted: np.ndarray, truth: np.ndarray, rng: np.random.Generator
                             ) -> tuple[list[dict], int, int]:
    """Box + clicks corrections of one image (Point2Mask packages; the napari widget's boxes): each predicted
    cell whose interior point lies on a true cell no earlier one is on is accepted as it is predicted: its
    box, with BOX_CLICKS clicks labelled by the predicted mask (no cost); the others are deleted; each true
    cell left gets a drawn box with BOX_CLICKS clicks labelled cell/background by the truth. Clicks are
    `weak_labels.box_points_from_labels`'s. Returns the `<stem>_boxpoints.json` cells, the boxes drawn and
    the boxes deleted."""
    from cellpoint.runtime.labels import interior_points
    from cellpoint.training.weak_labels import box_points_from_labels
    ids, points_rc = interior_points(predicted)
    claimed, accepted = set(), []
    for cell_id, (r, c) in zip(ids, points_rc):
        under = int(truth[r, c])
        if under > 0 and under not in claimed:
            claimed.add(under)
            accepted.append(cell_id)
    missed = np.setdiff1d(np.unique(truth[truth > 0]), np.array(sorted(claimed), truth.dtype))
    cells = []
    for labels, keep in ((predicted, accepted), (truth, missed)):
        if len(keep):
            cells += box_points_from_labels(np.where(np.isin(labels, keep), labels, 0), BOX_CLICKS, rng)
    out = [{"id": k, "box": c["box"], "points": np.asarray(c["points"]).tolist(),
            "point_labels": np.asarray(c["point_labels"]).tolist()} for k, c in enumerate(cells, start=1)]
    return out, int(missed.size), int(len(ids) - len(accepted))


def chosen_samples(dataset: str, kinds, k: int):
    """The first k train samples of a seeded shuffle (nested over k)."""
    from cellpoint.training.datasets import list_samples
    samples = list_samples(dataset, "train", kinds)
    order = np.random.default_rng(0).permutation(len(samples))
    return [samples[i] for i in order[:k]]


def write_labels(condition: str, samples, base, folder: Path, boxes: bool = False) -> tuple[float, int]:
    """Write the k images and the condition's labels (points/<stem>_points.csv, with `boxes`
    points/<stem>_boxpoints.json, or masks/<stem>.tif) into `folder`; returns (simulated annotation seconds,
    number of true cells)."""
    rng = np.random.default_rng(0)
    import tifffile
    from cellpoint.runtime.image_io import read_image
    from cellpoint.training.annotations import write_json, write_points_csv
    from cellpoint.training.weak_labels import box_points_from_labels
    from cellpoint.training.datasets import load_sample
    from cellpoint.training.weak_labels import points_from_labels
    for sub in ("images", "points", "masks"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    seconds, cells = 0.0, 0
    for s in samples:
        stem = f"img{s.image_id}"
        image = read_image(s.path)  # as the user's file holds it
        tifffile.imwrite(folder / "images" / f"{stem}.tif", image)
        _, truth = load_sample(s)
        n = int(len(np.unique(truth[truth > 0])))
        cells += n
        h, w = truth.shape
        if boxes and condition != "scratch-masks":
            if condition == "corrections":
                cells_json, drawn, deleted = simulate_box_corrections(base.segment(image).labels, truth, rng)
                seconds += (BOX_S + BOX_CLICK_S * BOX_CLICKS) * drawn + DELETE_S * deleted
            else:
                cells_json = [{"id": d["id"], "box": d["box"], "points": np.asarray(d["points"]).tolist(),
                               "point_labels": np.asarray(d["point_labels"]).tolist()}
                              for d in box_points_from_labels(truth, BOX_CLICKS, rng)]
                seconds += (BOX_S + BOX_CLICK_S * BOX_CLICKS) * n
            write_json(folder / "points" / f"{stem}_boxpoints.json",
                       {"height": h, "width": w, "n_points": BOX_CLICKS, "cells": cells_json}, indent=None)
        elif condition == "corrections":
            predicted = base.segment(image).labels
            xy, added, deleted = simulate_corrections(predicted, truth)
            write_points_csv(folder / "points" / f"{stem}_points.csv", xy)
            seconds += CLICK_S * added + DELETE_S * deleted
        elif condition in ("clicks", "scratch-clicks"):
            write_points_csv(folder / "points" / f"{stem}_points.csv",
                             points_from_labels(truth, "centroid", 0.0, np.random.default_rng(0)))
            seconds += CLICK_S * n
        else:
            tifffile.imwrite(folder / "masks" / f"{stem}.tif", truth.astype(np.int32))
            seconds += MASK_S * n
    return seconds, cells


def train_command(condition: str, run: dict, folder: Path, minutes: float, out: Path,
                  finetune_args: tuple[str, ...] = ()) -> list[str]:
    """The `cellpoint train` command line of a condition (finetune_args: added to fine-tuning runs)."""
    method = run.get("method", "objectness")
    cmd = ["cellpoint", "train", "--method", method, "--images", str(folder / "images"), "--workers", "1",
           "--out", str(out), "--minutes", str(minutes)]
    if condition in ("corrections", "clicks"):
        return cmd + ["--init-from", str(REPO / run["base"]), "--points", str(folder / "points"), *finetune_args]
    # from scratch: SCRATCH_STEPS (about 10 CPU-minutes here), the base's recipe
    cmd += ["--steps", str(SCRATCH_STEPS), *run["recipe"]]
    if condition == "scratch-clicks":
        return cmd + ["--points", str(folder / "points")]
    return cmd + ["--masks", str(folder / "masks"), "--supervision", "full"]


def with_base_scale_model(checkpoint_path: Path, base: str) -> None:
    """Give a from-scratch checkpoint the base package's scale model and outline refinement."""
    from cellpoint.training.checkpoint import load_checkpoint, save_checkpoint
    from cellpoint.training.start import start_point
    start = start_point(base)
    checkpoint = load_checkpoint(checkpoint_path)
    checkpoint.update({k: start[k] for k in ("scale_graph", "refine_diameter", "postprocess") if k in start})
    save_checkpoint(checkpoint, checkpoint_path)


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def evaluate_package(package: Path, dataset: str, kinds) -> dict:
    """F1@0.5 and mask AP of a package on the val split, run as a user runs it (no diameter, images as read)."""
    from cellpoint.runtime.segmenter import Segmenter
    from cellpoint.training.validate import evaluate_segmenter
    m = evaluate_segmenter(Segmenter(package, device="cpu"), dataset, kinds, "val", None, None, as_read=True)
    return {"f1_50": float(m["f1_50"]), "AP": float(m["AP"]), "n_images": m["n_images"]}


def run_one(name: str, condition: str, k: int, minutes: float, log, finetune_args: tuple[str, ...] = ()) -> dict:
    """Label, train, export and score one cell of the grid."""
    from cellpoint.runtime.segmenter import Segmenter
    run = RUNS[name]
    samples = chosen_samples(run["dataset"], run["kinds"], k)
    with tempfile.TemporaryDirectory(prefix=f"finetune-{name}-{condition}-{k}-") as tmp:
        folder = Path(tmp)
        base = Segmenter(REPO / run["base"], device="cpu") if condition == "corrections" else None
        seconds, cells = write_labels(condition, samples, base, folder, run.get("boxes", False))
        checkpoint, package = folder / "run.pt", folder / "package"
        cpu0, t0 = children_cpu_seconds(), time.perf_counter()
        proc = subprocess.run(train_command(condition, run, folder, minutes, checkpoint, finetune_args), capture_output=True,
                              text=True)
        wall, cpu = time.perf_counter() - t0, children_cpu_seconds() - cpu0
        if proc.returncode:
            raise RuntimeError(f"{name}/{condition}/k={k}: training failed\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
        if condition.startswith("scratch"):
            with_base_scale_model(checkpoint, str(REPO / run["base"]))
        proc = subprocess.run(["cellpoint", "export", str(checkpoint), "--out", str(package)], capture_output=True,
                              text=True)
        if proc.returncode:
            raise RuntimeError(f"{name}/{condition}/k={k}: export failed\n{proc.stderr[-2000:]}")
        metrics = evaluate_package(package, run["dataset"], run["kinds"])
    row = {"run": name, "condition": condition, "k": k, "steps": planned_steps(condition), "images": [s.image_id for s in samples], "cells": cells,
           "annotation_s": round(seconds, 1), "train_wall_s": round(wall, 1), "train_cpu_s": round(cpu, 1),
           **metrics}
    log(f"{name:9s} {condition:15s} k={k}: {cells} cells, {seconds:7.0f} s annotation, train {wall:.0f} s "
        f"({cpu / 60:.1f} CPU-min) → F1@0.5 {metrics['f1_50']:.3f}  AP {metrics['AP']:.3f}")
    return row


def planned_steps(condition: str) -> int:
    """The training steps of a condition's runs."""
    from cellpoint.training.start import FINETUNE_STEPS
    return SCRATCH_STEPS if condition.startswith("scratch") else FINETUNE_STEPS


def _row_steps(row: dict) -> int:
    """A stored row's steps (rows written before steps were recorded: 800 from scratch, 400 fine-tuning)."""
    return row.get("steps", 800 if row["condition"].startswith("scratch") else 400)


def base_row(name: str) -> dict:
    run = RUNS[name]
    return {"run": name, "condition": "base", "k": 0, "cells": 0, "annotation_s": 0.0,
            **evaluate_package(REPO / run["base"], run["dataset"], run["kinds"])}


def target_rows(rows: list[dict], run: str) -> dict:
    """The issue's target for one run: the best corrections + fine-tune F1@0.5 within 600 s of annotation
    (and a training run within 10 CPU-minutes) vs the best full-masks-from-scratch F1@0.5."""
    mine = [r for r in rows if r["run"] == run]
    ref = max((r["f1_50"] for r in mine if r["condition"] == "scratch-masks"), default=None)
    ok = [r for r in mine if r["condition"] == "corrections" and r["annotation_s"] <= 600
          and r["train_cpu_s"] <= 600]
    best = max(ok, key=lambda r: r["f1_50"], default=None)
    return {"reference": ref, "best": best,
            "ratio": (best["f1_50"] / ref) if best and ref else None}


def write_report(rows: list[dict], minutes: float, results: Path = RESULTS) -> None:
    results.mkdir(parents=True, exist_ok=True)
    lines = ["# Fine-tuning from a package with a simulated annotator", "", "```", "bash benchmarks/finetune.sh",
             "```", "", "(each cell of the grid: `python benchmarks/finetune.py --run RUN --k K --condition LABELS`; "
             "a rerun adds only the cells not yet in `finetune.json`).", "",
             "Written by `benchmarks/finetune.py` (see its docstring for the simulated user). Annotation: 1 s a "
             "click, 0.5 s a deletion, 46 s a full mask, 7 s a box + 0.9 s a click in it (Point2Mask). "
             f"Training: `cellpoint train`, fine-tuning at its defaults, from scratch {SCRATCH_STEPS} steps; "
             "CPU = the training process's user + system time on this machine's 2 cores (a busy machine "
             "raises it). Scored as a user runs the exported package (no diameter) on the data set's val "
             "split.", ""]
    for run in dict.fromkeys(r["run"] for r in rows):
        spec = RUNS[run]
        lines += [f"## {run}: base `{spec['base']}` → {spec['dataset']}"
                  + (f" ({', '.join(spec['kinds'])})" if spec["kinds"] else ""), "",
                  "| labels | k images | cells | annotation s | train s (CPU-min) | F1@0.5 | mask AP |",
                  "|---|---|---|---|---|---|---|"]
        for r in sorted((r for r in rows if r["run"] == run),
                        key=lambda r: (("base",) + CONDITIONS).index(r["condition"]) * 100 + r["k"]):
            train = f"{r['train_wall_s']:.0f} ({r['train_cpu_s'] / 60:.1f})" if "train_wall_s" in r else ""
            lines.append(f"| {LABELS.get(r['condition'], 'base package, no training')} | {r['k']} | {r['cells']} | "
                         f"{r['annotation_s']:.0f} | {train} | {r['f1_50']:.3f} | {r['AP']:.3f} |")
        t = target_rows(rows, run)
        fits = [r for r in rows if r["run"] == run and r["condition"] == "corrections"]
        base = next((r for r in rows if r["run"] == run and r["condition"] == "base"), None)
        if t["reference"] is not None and t["best"] is None and fits:
            first = min(fits, key=lambda r: r["annotation_s"])
            lines += ["", f"Target (≥ 95 % of the best full-mask-from-scratch F1@0.5, {t['reference']:.3f}, within "
                      "600 s of annotation): **not met by a correction** — no corrections run fits in 600 s (the "
                      f"smallest, k = {first['k']}, took {first['annotation_s']:.0f} s). The base package alone "
                      f"(0 s) scores {base['f1_50']:.3f}, {100 * base['f1_50'] / t['reference']:.1f} % of it."
                      if base else ""]
        elif t["reference"] is not None and t["best"] is not None:
            lines += ["", f"Target (≥ 95 % of the best full-mask-from-scratch F1@0.5, {t['reference']:.3f}, within "
                      f"600 s of annotation and 10 CPU-min of training): corrections + fine-tune reach "
                      f"{t['best']['f1_50']:.3f} with k = {t['best']['k']} ({t['best']['annotation_s']:.0f} s), "
                      f"{100 * t['ratio']:.1f} % — **{'met' if t['ratio'] >= 0.95 else 'not met'}**."]
        else:
            lines += ["", "Target: not measured yet (needs corrections and full-mask rows)."]
        lines += ["", f"![{run}](finetune_{run}.png)", ""]
        plot(rows, run, results)
    (results / "finetune.md").write_text("\n".join(lines) + "\n")


def plot(rows: list[dict], run: str, results: Path = RESULTS) -> None:
    """results/finetune_<run>.png: F1@0.5 and mask AP against annotation seconds (log axis), one line per
    labelling, the base package as a dashed line."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    mine = [r for r in rows if r["run"] == run]
    for ax, key, title in zip(axes, ("f1_50", "AP"), ("F1@0.5", "mask AP")):
        for condition in CONDITIONS:
            pts = sorted((max(r["annotation_s"], 1.0), r[key]) for r in mine if r["condition"] == condition)
            if pts:
                ax.plot(*zip(*pts), marker="o", label=LABELS[condition])
        for r in mine:
            if r["condition"] == "base":
                ax.axhline(r[key], color="grey", linestyle="--", label="base package")
        ax.axvline(600, color="k", linewidth=0.5)
        ax.set_xscale("log")
        ax.set_xlabel("simulated annotation time, s")
        ax.set_title(f"{run}: {title} on val")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(results / f"finetune_{run}.png", dpi=90)
    plt.close(fig)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", action="append", choices=sorted(RUNS), help="[all]")
    parser.add_argument("--k", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--condition", action="append", choices=CONDITIONS, help="[all]")
    parser.add_argument("--minutes", type=float, default=10.0,
                        help="cap on a training run's wall minutes [10]; runs are set by steps, see the module")
    parser.add_argument("--finetune-arg", action="append", default=[], metavar="ARG",
                        help="extra `cellpoint train` argument for the fine-tuning runs (e.g. --finetune-arg=--lr=1e-4)")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where the JSON, report and plots go")
    parser.add_argument("--report-only", action="store_true", help="rewrite the report from the JSON")
    args = parser.parse_args(argv)
    from cellpoint.training.datasets import shared_data_present
    if not shared_data_present():
        sys.exit("../shared/data is not here: this benchmark needs the shared data sets")
    results = args.results
    store = results / "finetune.json"
    rows = json.loads(store.read_text())["rows"] if store.exists() else []
    # a row made with other steps than planned now is made again (and replaced)
    rows = [r for r in rows if r["condition"] == "base" or _row_steps(r) == planned_steps(r["condition"])]
    done = {(r["run"], r["condition"], r["k"]) for r in rows}
    runs = args.run or list(RUNS)
    missing = [r for r in runs if not (REPO / RUNS[r]["base"] / "card.json").exists()]
    if missing:
        sys.exit(f"base packages missing for {missing}: see benchmarks/finetune.sh for how they are made")
    if not args.report_only:
        for name in runs:
            if (name, "base", 0) not in done:
                rows.append(base_row(name))
                print(f"{name:9s} base package: F1@0.5 {rows[-1]['f1_50']:.3f}  AP {rows[-1]['AP']:.3f}", flush=True)
            for k in args.k:
                for condition in args.condition or CONDITIONS:
                    if (name, condition, k) in done:
                        continue
                    rows.append(run_one(name, condition, k, args.minutes, lambda m: print(m, flush=True),
                                        tuple(args.finetune_arg)))
                    _save(store, rows, args.minutes)
                    write_report(rows, args.minutes, results)
    _save(store, rows, args.minutes)
    write_report(rows, args.minutes, results)


def _save(store: Path, rows: list[dict], minutes: float) -> None:
    from cellpoint.runtime.image_io import atomic_write
    store.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(store) as tmp:
        tmp.write_text(json.dumps({"minutes": minutes, "rows": rows}, indent=1))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()

"""How the fine-tuning defaults were chosen, on train images only: a base package fine-tuned on the simulated
corrections of 2 train images (`finetune.py`'s first two), then scored on 8 other train images of the same
data set (never its val split).

    python benchmarks/finetune_choices.py --run coelho [--init-from PACKAGE|CHECKPOINT] [--lr 1e-4]
                                          [--keep-start 5] [--minutes 1.5] [--base]

Prints one line: the setting and F1@0.5, mask AP on those 8 images (--base: the base package's own)."""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import finetune  # noqa: E402


def held_out_train_samples(run: dict, n: int = 8):
    """n train samples of the data set that `finetune.chosen_samples` never picks for k ≤ 8."""
    from cellpoint.training.datasets import list_samples
    picked = {s.image_id for s in finetune.chosen_samples(run["dataset"], run["kinds"], 8)}
    return [s for s in list_samples(run["dataset"], "train", run["kinds"]) if s.image_id not in picked][:n]


def score(package, run: dict) -> tuple[float, float]:
    """F1@0.5 and mask AP of a package on the held-out train images, as a user runs it."""
    from cellpoint.runtime.image_io import read_image
    from cellpoint.runtime.segmenter import Segmenter
    from cellpoint.training.datasets import load_coco
    from cellpoint.training.evaluation import evaluate
    samples = held_out_train_samples(run)
    segmenter = Segmenter(package, device="cpu")
    preds = {s.image_id: segmenter.segment(read_image(s.path)).labels for s in samples}
    m = evaluate(load_coco(run["dataset"]), preds, image_ids=[s.image_id for s in samples])
    return float(m["f1_50"]), float(m["AP"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", choices=sorted(finetune.RUNS), required=True)
    parser.add_argument("--init-from", default=None, help="[the run's base package]")
    parser.add_argument("--lr", default=None)
    parser.add_argument("--keep-start", default=None)
    parser.add_argument("--minutes", type=float, default=1.5,
                        help="training time budget (the choices were measured with 1.5; the steps may end it first)")
    parser.add_argument("--base", action="store_true", help="score the base package itself")
    args = parser.parse_args()
    run = dict(finetune.RUNS[args.run])
    base = finetune.REPO / run["base"]
    if args.base:
        print(f"{args.run} base: F1@0.5 %.3f  AP %.3f" % score(base, run))
        return
    from cellpoint.runtime.segmenter import Segmenter
    extra = [f"--lr={args.lr}"] * bool(args.lr) + [f"--keep-start={args.keep_start}"] * bool(args.keep_start)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        finetune.write_labels("corrections", finetune.chosen_samples(run["dataset"], run["kinds"], 2),
                              Segmenter(base, device="cpu"), folder, run.get("boxes", False))
        run["base"] = args.init_from or run["base"]
        cmd = finetune.train_command("corrections", run, folder, args.minutes, folder / "run.pt", tuple(extra))
        subprocess.run(cmd, check=True, capture_output=True)
        if str(run["base"]).endswith(".pt"):   # a checkpoint start: the package's scale model, decoder as the package
            finetune.with_base_scale_model(folder / "run.pt", str(base))
        subprocess.run(["cellpoint", "export", str(folder / "run.pt"), "--out", str(folder / "pkg")], check=True,
                       capture_output=True)
        print(f"{args.run} from {run['base']} {' '.join(extra) or '(defaults)'}: F1@0.5 %.3f  AP %.3f"
              % score(folder / "pkg", run))


if __name__ == "__main__":
    main()

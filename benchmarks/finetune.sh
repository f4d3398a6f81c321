#!/usr/bin/env bash
# Fine-tuning against annotation time (issue "Your own model in minutes"), in the order the figures matter:
# first every run's corrections curve and its full-mask reference, then the other labellings. Each call adds
# the cells of the grid it has not run yet to benchmarks/results/finetune.json (re-running resumes).
#
# Base packages: runs/objectness-lodo-no_coelho and -no_dsb come from benchmarks/images_users_bring.sh
# (objectness, the nuclei recipe, 6,000 steps, without Coelho / without DSB); the phase-contrast run starts
# from the bundled point2mask-cells-phase (trained on Usiigaci only, never on LIVECell).
set -euo pipefail
cd "$(dirname "$0")/.."
M=${MINUTES:-10}    # a cap on each training run's wall minutes; runs are set by steps (see finetune.py)
for run in coelho dsb livecell; do
  python benchmarks/finetune.py --run $run --k 1 2 4 8 --condition corrections --minutes $M
  python benchmarks/finetune.py --run $run --k 8 --condition scratch-masks --minutes $M
done
for run in coelho dsb livecell; do
  python benchmarks/finetune.py --run $run --k 1 2 4 8 --condition clicks --minutes $M
  python benchmarks/finetune.py --run $run --k 8 --condition scratch-clicks --minutes $M
done
for run in coelho dsb livecell; do
  python benchmarks/finetune.py --run $run --k 1 2 4 --condition scratch-masks --condition scratch-clicks --minutes $M
done

#!/usr/bin/env bash
# Reproduce the bundled shape-nuclei package and the canonical-shape tables (about 1 hour on 2 cores).
# Run from the repository root with the train extra installed and ../shared/data present.
set -euo pipefail
SETS=(--dataset dsb2018_bbbc038:gray_dark --dataset coelho2009_u2os_nih3t3)
EVAL=(--eval dsb2018_bbbc038:gray_dark --eval coelho2009_u2os_nih3t3)
DSB=../shared/data/dsb2018_bbbc038/stage1_train
S1=$DSB/2cfa61bef6542dd359717e9131ce6f076c415a3bd7f48cb093b0d7f3b2ca785d/images/2cfa61bef6542dd359717e9131ce6f076c415a3bd7f48cb093b0d7f3b2ca785d.png
mkdir -p runs
# from each image's foreground mask and per-crop cell counts only; then the paper's ablation without L_cnt
cellpoint train --method canonical_shape "${SETS[@]}" --steps 3000 --out runs/shape_count.pt
cellpoint train --method canonical_shape "${SETS[@]}" --steps 3000 --count-weight 0 --out runs/shape_nocount.pt
# the decoder thresholds, checked on the train split (val stays for reporting): they hardly matter, 0.5 is kept
cellpoint export runs/shape_count.pt --out runs/shape-nuclei-untuned
python benchmarks/tune_decoder.py --package runs/shape-nuclei-untuned --name shape-nuclei \
  --param presence_threshold --threshold 0.3 0.4 0.5 0.6 0.7
python benchmarks/tune_decoder.py --package runs/shape-nuclei-untuned --name shape-nuclei-mask \
  --param mask_threshold --threshold 0.3 0.4 0.5 0.6
cellpoint export runs/shape_count.pt --out model_cards/shape-nuclei --refine-diameter \
  --description "Fluorescence nuclei, trained from foreground masks and cell counts (canonical shape)." \
  --sample "$S1" --sample-source "DSB 2018 / BBBC038 stage1_train (val split image 28)" \
  --sample-licence "CC0 1.0" --notes benchmarks/notes/shape-nuclei.md "${EVAL[@]}"
cellpoint export runs/shape_nocount.pt --out runs/shape-nuclei-nocount
python benchmarks/canonical_shape.py --package "Ours=runs/shape-nuclei-nocount" \
  --package "Ours + L_cnt=model_cards/shape-nuclei" "${SETS[@]}"
python benchmarks/speed.py --package model_cards/shape-nuclei --checkpoint runs/shape_count.pt

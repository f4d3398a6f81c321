#!/usr/bin/env bash
# Reproduce the first objectness-nuclei package (DSB fluorescence + Coelho, 5,000 steps; bundled until the
# recipe of benchmarks/images_users_bring.sh replaced it) and its paper-comparison tables (about 2 hours on
# 2 cores).
# Run from the repository root with the train extra installed and ../shared/data present.
set -euo pipefail
SETS=(--dataset dsb2018_bbbc038:gray_dark --dataset coelho2009_u2os_nih3t3)
DSB=../shared/data/dsb2018_bbbc038/stage1_train
S1=$DSB/2cfa61bef6542dd359717e9131ce6f076c415a3bd7f48cb093b0d7f3b2ca785d/images/2cfa61bef6542dd359717e9131ce6f076c415a3bd7f48cb093b0d7f3b2ca785d.png
S2=$DSB/573e1480b500c395f8d3f1800e1998bf553af0d3d43039333d33cf37d08f64e5/images/573e1480b500c395f8d3f1800e1998bf553af0d3d43039333d33cf37d08f64e5.png
mkdir -p runs
python benchmarks/tune_objectness.py   # how the per-data-set objectness w in training/methods/objectness/config.py were chosen
cellpoint train "${SETS[@]}" --labels points --steps 5000 --out runs/nuclei_points.pt
cellpoint train "${SETS[@]}" --labels full --steps 5000 --out runs/nuclei_full.pt
# the foreground threshold is chosen on the train split (val stays for reporting)
cellpoint export runs/nuclei_points.pt --out runs/objectness-nuclei-untuned
python benchmarks/tune_decoder.py --package runs/objectness-nuclei-untuned --threshold 0.175 0.2 0.225 0.25
# then, with the diameter refined per image: the centre-peak threshold (kept at 0.3) and the outline contrast
cellpoint export runs/nuclei_points.pt --out runs/objectness-nuclei-plain --decoder-param foreground_threshold=0.225 \
  --refine-diameter
python benchmarks/tune_decoder.py --package runs/objectness-nuclei-plain --name objectness-nuclei-center \
  --param center_threshold --threshold 0.15 0.3 0.45
python benchmarks/tune_decoder.py --package runs/objectness-nuclei-plain --name objectness-nuclei-outline \
  --param outline_contrast --threshold 0.2 0.3 0.4 0.5 0.6
cellpoint export runs/nuclei_points.pt --out runs/objectness-nuclei-v1 --decoder-param foreground_threshold=0.225 \
  --decoder-param outline_contrast=0.4 \
  --refine-diameter \
  --description "Fluorescence nuclei, trained from one click per nucleus (objectness regularisation)." \
  --sample "$S1" --sample "$S2" --sample-source "DSB 2018 / BBBC038 stage1_train (val split images 28 and 53)" \
  --sample-licence "CC0 1.0" \
  --eval dsb2018_bbbc038:gray_dark --eval coelho2009_u2os_nih3t3
cellpoint export runs/nuclei_full.pt --out runs/objectness-nuclei-full \
  --description "Upper bound: the same network trained on full masks." --sample "$S1"
cellpoint export runs/nuclei_full.pt --out runs/objectness-nuclei-full-outline --decoder-param outline_contrast=0.4 \
  --description "Upper bound: the same network trained on full masks." --sample "$S1"
python benchmarks/accuracy.py --name objectness-nuclei \
  --package "points=runs/objectness-nuclei-v1" --package "points, no outline refinement=runs/objectness-nuclei-plain" \
  --package "full masks=runs/objectness-nuclei-full-outline" \
  --package "full masks, no outline refinement=runs/objectness-nuclei-full" \
  --reference "full masks" "${SETS[@]}"
python benchmarks/speed.py --package runs/objectness-nuclei-v1 --checkpoint runs/nuclei_points.pt
python benchmarks/objectness_ceiling.py

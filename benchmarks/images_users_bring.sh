#!/usr/bin/env bash
# Reproduce the "images users bring" tables (benchmarks/README.md) and the bundled packages' scale models and
# objectness-nuclei network (about 3 hours on 2 cores). Run from the repository root with the train extra
# installed and ../shared/data present.
set -euo pipefail
DSB=../shared/data/dsb2018_bbbc038/stage1_train
S1=$DSB/2cfa61bef6542dd359717e9131ce6f076c415a3bd7f48cb093b0d7f3b2ca785d/images/2cfa61bef6542dd359717e9131ce6f076c415a3bd7f48cb093b0d7f3b2ca785d.png
S2=$DSB/573e1480b500c395f8d3f1800e1998bf553af0d3d43039333d33cf37d08f64e5/images/573e1480b500c395f8d3f1800e1998bf553af0d3d43039333d33cf37d08f64e5.png
NUCLEI=(--dataset dsb2018_bbbc038 --dataset dsb2018_bbbc038_extra --dataset coelho2009_u2os_nih3t3)
RECIPE=(--scale-range 0.5 2 --intensity wide --balance sqrt --polarity bright --normalization percentile_robust
        --val-every 1000)
mkdir -p runs

# The scale model of every bundled package. The bundled one (runs/scale_v1.pt) was trained by this command
# at commit 1d82ce6, which drew each data set equally often; since then each data set family and image
# kind is drawn equally often, so a model trained now differs from the bundled one.
cellpoint train-scale "${NUCLEI[@]}" --dataset usiigaci_phase_contrast --dataset usiigaci_phase_contrast_extra \
  --steps 3000 --out runs/scale_v1.pt
python benchmarks/scale_estimate.py --scale-model runs/scale_v1.pt --dataset dsb2018_bbbc038:gray_dark \
  --dataset dsb2018_bbbc038:color --dataset coelho2009_u2os_nih3t3 --dataset usiigaci_phase_contrast --dataset livecell
for p in shape-nuclei lacss-nuclei; do
  python -m cellpoint.export.scale model_cards/$p runs/scale_v1.pt --eval dsb2018_bbbc038:gray_dark \
    --eval dsb2018_bbbc038 --eval coelho2009_u2os_nih3t3
done
for p in point2mask-cells-phase wsispdr-cells-phase; do
  python -m cellpoint.export.scale model_cards/$p runs/scale_v1.pt --eval usiigaci_phase_contrast
done

# robust clipped percentiles where the train split prefers them (LACSS, Point2Mask; not shape-nuclei, WSISPDR)
python benchmarks/normalisation_check.py --package model_cards/lacss-nuclei --dataset dsb2018_bbbc038:gray_dark \
  --dataset coelho2009_u2os_nih3t3 --images 20
python benchmarks/normalisation_check.py --package model_cards/point2mask-cells-phase \
  --dataset usiigaci_phase_contrast --images 16
python -m cellpoint.export.normalisation model_cards/lacss-nuclei --kind percentile_robust \
  --eval dsb2018_bbbc038:gray_dark --eval dsb2018_bbbc038 --eval coelho2009_u2os_nih3t3
python -m cellpoint.export.normalisation model_cards/point2mask-cells-phase --kind percentile_robust \
  --eval usiigaci_phase_contrast

# objectness-nuclei: the recipe on every nuclei train split
cellpoint train --method objectness "${NUCLEI[@]}" --steps 10000 "${RECIPE[@]}" --out runs/objectness_g2.pt
cellpoint export runs/objectness_g2.pt --out model_cards/objectness-nuclei \
  --decoder-param foreground_threshold=0.225 --decoder-param outline_contrast=0.4 --refine-diameter \
  --scale-model runs/scale_v1.pt \
  --description "Nuclei (fluorescence; also brightfield and stained tissue), trained from one click per nucleus (objectness regularisation)." \
  --sample "$S1" --sample "$S2" --sample-source "DSB 2018 / BBBC038 stage1_train (val split images 28 and 53)" \
  --sample-licence "CC0 1.0" --notes benchmarks/notes/objectness-nuclei.md \
  --eval dsb2018_bbbc038:gray_dark --eval dsb2018_bbbc038 --eval coelho2009_u2os_nih3t3

# every package as a user runs it vs told the cells' size; scale sweep, sub-kinds, robustness
python benchmarks/generalise.py --package model_cards/objectness-nuclei --dataset dsb2018_bbbc038:gray_dark \
  --dataset dsb2018_bbbc038 --dataset coelho2009_u2os_nih3t3
python benchmarks/generalise.py --package model_cards/shape-nuclei --dataset dsb2018_bbbc038:gray_dark \
  --dataset dsb2018_bbbc038 --dataset coelho2009_u2os_nih3t3
python benchmarks/generalise.py --package model_cards/lacss-nuclei --dataset dsb2018_bbbc038:gray_dark \
  --dataset dsb2018_bbbc038 --dataset coelho2009_u2os_nih3t3 --sections diameter,robustness --name lacss-nuclei-robust
python benchmarks/generalise.py --package model_cards/point2mask-cells-phase --dataset usiigaci_phase_contrast \
  --dataset livecell --name point2mask-cells-phase-robust
python benchmarks/generalise.py --package model_cards/wsispdr-cells-phase --dataset usiigaci_phase_contrast \
  --dataset livecell
python benchmarks/generalise_summary.py benchmarks/results/generalise_{objectness-nuclei,shape-nuclei,lacss-nuclei,point2mask-cells-phase,wsispdr-cells-phase}.json

# leave one data set out: the nuclei recipe (6,000 steps) without Coelho, scored on Coelho val, and without DSB,
# scored on DSB val (checkpoints chosen on the training sets' own val splits). The scale model is the bundled
# one, which saw both data sets' train splits; the oracle rows do not depend on it.
cellpoint train --method objectness --dataset dsb2018_bbbc038 --dataset dsb2018_bbbc038_extra --steps 6000 \
  "${RECIPE[@]}" --out runs/objectness_lodo_no_coelho.pt
cellpoint train --method objectness --dataset coelho2009_u2os_nih3t3 --steps 6000 "${RECIPE[@]}" \
  --out runs/objectness_lodo_no_dsb.pt
for run in no_coelho no_dsb; do
  cellpoint export runs/objectness_lodo_$run.pt --out runs/objectness-lodo-$run --decoder-param foreground_threshold=0.225 \
    --decoder-param outline_contrast=0.4 --refine-diameter --scale-model runs/scale_v1.pt
done
python benchmarks/generalise.py --package runs/objectness-lodo-no_coelho --dataset coelho2009_u2os_nih3t3 --sections diameter
python benchmarks/generalise.py --package runs/objectness-lodo-no_dsb --dataset dsb2018_bbbc038:gray_dark \
  --dataset dsb2018_bbbc038 --sections diameter

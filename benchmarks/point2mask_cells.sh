#!/usr/bin/env bash
# Reproduce the bundled point2mask-cells-phase package and the Point2Mask tables: usiigaci (full masks and
# box + N = 1, 2, 4, 6, 8, 10 clicks), then LIVECell and DSB (full masks vs 6 clicks). About 1.5 hours on 2
# cores, trainings two at a time. Run from the repository root with the train extra installed and
# ../shared/data present.
set -euo pipefail
source benchmarks/tuned_threshold.sh
mkdir -p runs
U=../shared/data/usiigaci_phase_contrast
T="--method point2mask --dataset usiigaci_phase_contrast --steps 3000"
export OMP_NUM_THREADS=1
cellpoint train $T --supervision full --out runs/p2m_usiigaci_full.pt &
cellpoint train $T --points-per-cell 6 --out runs/p2m_usiigaci_p6.pt &
wait
for pair in "1 2" "4 8" "10"; do
  for n in $pair; do cellpoint train $T --points-per-cell "$n" --out "runs/p2m_usiigaci_p$n.pt" & done
  wait
done
unset OMP_NUM_THREADS
# each package's score threshold is chosen on the train split
for run in full p1 p2 p4 p8 p10; do
  t=$(tuned_threshold "runs/p2m_usiigaci_$run.pt" "p2m-usiigaci-$run" score_threshold "0.2 0.3 0.5 0.7" --dataset usiigaci_phase_contrast)
  cellpoint export "runs/p2m_usiigaci_$run.pt" --out "runs/p2m-usiigaci-$run" --decoder-param score_threshold="$t"
done
python -c "import tifffile; from cellpoint.runtime.image_io import read_image; \
tifffile.imwrite('runs/usiigaci_val3_crop.tif', read_image('$U/train/set6/raw.tif')[256:768, 256:768])"
t=$(tuned_threshold runs/p2m_usiigaci_p6.pt point2mask-cells-phase score_threshold "0.2 0.3 0.5 0.7" --dataset usiigaci_phase_contrast)
cellpoint export runs/p2m_usiigaci_p6.pt --out model_cards/point2mask-cells-phase --decoder-param score_threshold="$t" \
  --description "Phase-contrast whole cells, trained from a box and six labelled clicks per cell (Point2Mask)." \
  --sample runs/usiigaci_val3_crop.tif \
  --sample-source "Usiigaci (OIST), shared val split image 3 (train/set6/raw.tif), crop rows and columns 256:768" \
  --sample-licence "MIT (Usiigaci)" --notes benchmarks/notes/point2mask-cells-phase.md --eval usiigaci_phase_contrast
python benchmarks/point2mask.py --name usiigaci --reference "full masks" \
  --package "full masks=runs/p2m-usiigaci-full" --package "box + 1 point=runs/p2m-usiigaci-p1" \
  --package "box + 2 points=runs/p2m-usiigaci-p2" --package "box + 4 points=runs/p2m-usiigaci-p4" \
  --package "box + 6 points=model_cards/point2mask-cells-phase" --package "box + 8 points=runs/p2m-usiigaci-p8" \
  --package "box + 10 points=runs/p2m-usiigaci-p10" --dataset usiigaci_phase_contrast
python benchmarks/speed.py --package model_cards/point2mask-cells-phase --repeats 3
# LIVECell: full masks vs box + 6 clicks only (its own 12 train images)
export OMP_NUM_THREADS=1
L="--method point2mask --dataset livecell --steps 3000"
cellpoint train $L --supervision full --out runs/p2m_livecell_full.pt &
cellpoint train $L --points-per-cell 6 --out runs/p2m_livecell_p6.pt &
wait
for run in full p6; do
  t=$(tuned_threshold "runs/p2m_livecell_$run.pt" "p2m-livecell-$run" score_threshold "0.2 0.3 0.5 0.7" --dataset livecell)
  cellpoint export "runs/p2m_livecell_$run.pt" --out "runs/p2m-livecell-$run" --decoder-param score_threshold="$t"
done
python benchmarks/point2mask.py --name livecell --reference "full masks" \
  --package "full masks=runs/p2m-livecell-full" --package "box + 6 points=runs/p2m-livecell-p6" --dataset livecell
# DSB nuclei: full masks vs box + 6 clicks
D="--method point2mask --dataset dsb2018_bbbc038:gray_dark --steps 3000"
cellpoint train $D --supervision full --out runs/p2m_dsb_full.pt &
cellpoint train $D --points-per-cell 6 --out runs/p2m_dsb_p6.pt &
wait
for run in full p6; do
  t=$(tuned_threshold "runs/p2m_dsb_$run.pt" "p2m-dsb-$run" score_threshold "0.2 0.3 0.5 0.7" --dataset dsb2018_bbbc038:gray_dark)
  cellpoint export "runs/p2m_dsb_$run.pt" --out "runs/p2m-dsb-$run" --decoder-param score_threshold="$t"
done
python benchmarks/point2mask.py --name dsb --reference "full masks" \
  --package "full masks=runs/p2m-dsb-full" --package "box + 6 points=runs/p2m-dsb-p6" --dataset dsb2018_bbbc038:gray_dark
# usiigaci, twice as long (6000 steps): full masks vs box + 6 clicks
U6="--method point2mask --dataset usiigaci_phase_contrast --steps 6000"
cellpoint train $U6 --supervision full --out runs/p2m_usiigaci_full_6k.pt &
cellpoint train $U6 --points-per-cell 6 --out runs/p2m_usiigaci_p6_6k.pt &
wait
for run in full_6k p6_6k; do
  t=$(tuned_threshold "runs/p2m_usiigaci_$run.pt" "p2m-usiigaci-$run" score_threshold "0.2 0.3 0.5 0.7" --dataset usiigaci_phase_contrast)
  cellpoint export "runs/p2m_usiigaci_$run.pt" --out "runs/p2m-usiigaci-$run" --decoder-param score_threshold="$t"
done
python benchmarks/point2mask.py --name usiigaci-6000-steps --reference "full masks, 6000 steps" \
  --package "full masks, 6000 steps=runs/p2m-usiigaci-full_6k" --package "box + 6 points, 6000 steps=runs/p2m-usiigaci-p6_6k" \
  --dataset usiigaci_phase_contrast
# usiigaci, another seed (clicks and initialisation): full masks vs box + 6 clicks
S1="--method point2mask --dataset usiigaci_phase_contrast --steps 3000 --seed 1"
cellpoint train $S1 --supervision full --out runs/p2m_usiigaci_full_s1.pt &
cellpoint train $S1 --points-per-cell 6 --out runs/p2m_usiigaci_p6_s1.pt &
wait
for run in full_s1 p6_s1; do
  t=$(tuned_threshold "runs/p2m_usiigaci_$run.pt" "p2m-usiigaci-$run" score_threshold "0.2 0.3 0.5 0.7" --dataset usiigaci_phase_contrast)
  cellpoint export "runs/p2m_usiigaci_$run.pt" --out "runs/p2m-usiigaci-$run" --decoder-param score_threshold="$t"
done
python benchmarks/point2mask.py --name usiigaci-seed1 --reference "full masks" \
  --package "full masks=runs/p2m-usiigaci-full_s1" --package "box + 6 points=runs/p2m-usiigaci-p6_s1" \
  --dataset usiigaci_phase_contrast

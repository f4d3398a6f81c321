#!/usr/bin/env bash
# Reproduce the bundled point2mask-cells-phase package and the Point2Mask tables. About 6 hours on 2 cores,
# trainings two at a time. Run from the repository root with the train extra installed and ../shared/data.
# Part 1, the default network (mask head of 4 convs): usiigaci full masks and box + N = 1, 2, 4, 6, 8, 10
# clicks (Table 2); box + 6 clicks with --point-grad 0.3 over five seeds, seed 0 the bundled model;
# LIVECell and DSB: full masks, box + N = 1..10 clicks, and box + 6 clicks with --point-grad 0.3;
# usiigaci from half its train images, two seeds.
# Part 2, the earlier network (--mask-convs 2): the same usiigaci tables, the full click sweeps on LIVECell
# and DSB, and the checks (6,000 steps, the two stages apart, pretraining) the README quotes.
set -euo pipefail
source benchmarks/tuned_threshold.sh
mkdir -p runs
U=../shared/data/usiigaci_phase_contrast
T="--method point2mask --dataset usiigaci_phase_contrast --steps 3000"
export OMP_NUM_THREADS=1
# ---------------------------------------------------------------- part 1: the default network
for pair in "full p6_g03" "p6_g03_s1 full_s1" "p6_g03_s2 full_s2" "p6_g03_s3 full_s3" "p6_g03_s4 full_s4" \
    "p6 p1" "p2 p4" "p8 p10"; do
  for run in $pair; do
    case $run in
      full) labels="--supervision full";;
      full_s*) labels="--supervision full --seed ${run#full_s}";;
      p6_g03) labels="--points-per-cell 6 --point-grad 0.3";;
      p6_g03_s*) labels="--points-per-cell 6 --point-grad 0.3 --seed ${run#p6_g03_s}";;
      *) labels="--points-per-cell ${run#p}";;
    esac
    # shellcheck disable=SC2086  # labels is several words
    cellpoint train $T $labels --out "runs/p2m4_usiigaci_$run.pt" &
  done
  wait
done
for set in livecell dsb; do
  spec=$([ "$set" = dsb ] && echo dsb2018_bbbc038:gray_dark || echo livecell)
  P="--method point2mask --dataset $spec --steps 3000"
  cellpoint train $P --supervision full --out "runs/p2m4_${set}_full.pt" &
  cellpoint train $P --points-per-cell 6 --out "runs/p2m4_${set}_p6.pt" &
  wait
  cellpoint train $P --points-per-cell 6 --point-grad 0.3 --out "runs/p2m4_${set}_p6_g03.pt"
done
# LIVECell and DSB: the whole click sweep
for set in livecell dsb; do
  spec=$([ "$set" = dsb ] && echo dsb2018_bbbc038:gray_dark || echo livecell)
  for pair in "1 2" "4 8" "10"; do
    for n in $pair; do
      cellpoint train --method point2mask --dataset "$spec" --steps 3000 --points-per-cell "$n" --out "runs/p2m4_${set}_p$n.pt" &
    done
    wait
  done
done
unset OMP_NUM_THREADS
# each package's score threshold is chosen on the train split
for run in full p1 p2 p4 p6 p8 p10 p6_g03 full_s1 p6_g03_s1 full_s2 p6_g03_s2 full_s3 p6_g03_s3 full_s4 p6_g03_s4; do
  t=$(tuned_threshold "runs/p2m4_usiigaci_$run.pt" "p2m4-usiigaci-$run" score_threshold "0.2 0.3 0.5 0.7" --dataset usiigaci_phase_contrast)
  cellpoint export "runs/p2m4_usiigaci_$run.pt" --out "runs/p2m4-usiigaci-$run" --decoder-param score_threshold="$t"
done
python -c "import tifffile; from cellpoint.runtime.image_io import read_image; \
tifffile.imwrite('runs/usiigaci_val3_crop.tif', read_image('$U/train/set6/raw.tif')[256:768, 256:768])"
# usiigaci, the diameter refined per image (the runtime's second pass at the cells' measured size): each
# package's score threshold chosen on train with refinement on; full masks vs box + 6 clicks at
# --point-grad 0.3, five seeds (the untuned exports are the loop's above; seed 0's click network is bundled)
for run in full p6_g03 full_s1 p6_g03_s1 full_s2 p6_g03_s2 full_s3 p6_g03_s3 full_s4 p6_g03_s4; do
  t=$(python benchmarks/tune_decoder.py --package "runs/p2m4-usiigaci-$run-untuned" --name "p2m4-usiigaci-$run-refined" \
    --param score_threshold --threshold 0.2 0.3 0.5 0.7 --dataset usiigaci_phase_contrast --refine-diameter on \
    | sed -n 's/^best threshold \([0-9.]*\);.*/\1/p')
  cellpoint export "runs/p2m4_usiigaci_$run.pt" --out "runs/p2m4-usiigaci-$run-refined" --refine-diameter \
    --decoder-param score_threshold="$t"
done
python benchmarks/point2mask.py --name usiigaci-refined --reference "full masks, seed 0" --refine-diameter \
  --package "full masks, seed 0=runs/p2m4-usiigaci-full-refined" \
  --package "box + 6 points, point gradient 0.3, seed 0=runs/p2m4-usiigaci-p6_g03-refined" \
  --package "full masks, seed 1=runs/p2m4-usiigaci-full_s1-refined" \
  --package "box + 6 points, point gradient 0.3, seed 1=runs/p2m4-usiigaci-p6_g03_s1-refined" \
  --package "full masks, seed 2=runs/p2m4-usiigaci-full_s2-refined" \
  --package "box + 6 points, point gradient 0.3, seed 2=runs/p2m4-usiigaci-p6_g03_s2-refined" \
  --package "full masks, seed 3=runs/p2m4-usiigaci-full_s3-refined" \
  --package "box + 6 points, point gradient 0.3, seed 3=runs/p2m4-usiigaci-p6_g03_s3-refined" \
  --package "full masks, seed 4=runs/p2m4-usiigaci-full_s4-refined" \
  --package "box + 6 points, point gradient 0.3, seed 4=runs/p2m4-usiigaci-p6_g03_s4-refined" \
  --dataset usiigaci_phase_contrast
# the bundled package: seed 0's click network, refining the diameter, at the threshold chosen above
t=$(sed -n 's/^Best mean F1@0.5 on train: score_threshold = \([0-9.]*\)\.$/\1/p' \
  benchmarks/results/tune_decoder_p2m4-usiigaci-p6_g03-refined.md)
cellpoint export runs/p2m4_usiigaci_p6_g03.pt --out model_cards/point2mask-cells-phase --refine-diameter \
  --decoder-param score_threshold="$t" \
  --description "Phase-contrast whole cells, trained from a box and six labelled clicks per cell (Point2Mask)." \
  --sample runs/usiigaci_val3_crop.tif \
  --sample-source "Usiigaci (OIST), shared val split image 3 (train/set6/raw.tif), crop rows and columns 256:768" \
  --sample-licence "MIT (Usiigaci)" --notes benchmarks/notes/point2mask-cells-phase.md --eval usiigaci_phase_contrast
python benchmarks/point2mask.py --name usiigaci --reference "full masks" \
  --package "full masks=runs/p2m4-usiigaci-full" --package "box + 1 point=runs/p2m4-usiigaci-p1" \
  --package "box + 2 points=runs/p2m4-usiigaci-p2" --package "box + 4 points=runs/p2m4-usiigaci-p4" \
  --package "box + 6 points=runs/p2m4-usiigaci-p6" --package "box + 8 points=runs/p2m4-usiigaci-p8" \
  --package "box + 10 points=runs/p2m4-usiigaci-p10" --dataset usiigaci_phase_contrast
python benchmarks/point2mask.py --name usiigaci-point-grad --reference "full masks" \
  --package "full masks=runs/p2m4-usiigaci-full" --package "box + 6 points=runs/p2m4-usiigaci-p6" \
  --package "box + 6 points, point gradient 0.3=runs/p2m4-usiigaci-p6_g03" --dataset usiigaci_phase_contrast
for s in 1 2 3 4; do
  python benchmarks/point2mask.py --name "usiigaci-seed$s" --reference "full masks" \
    --package "full masks=runs/p2m4-usiigaci-full_s$s" \
    --package "box + 6 points, point gradient 0.3=runs/p2m4-usiigaci-p6_g03_s$s" --dataset usiigaci_phase_contrast
done
python benchmarks/speed.py --package model_cards/point2mask-cells-phase --repeats 3
for set in livecell dsb; do
  spec=$([ "$set" = dsb ] && echo dsb2018_bbbc038:gray_dark || echo livecell)
  for run in full p1 p2 p4 p6 p8 p10 p6_g03; do
    t=$(tuned_threshold "runs/p2m4_${set}_$run.pt" "p2m4-$set-$run" score_threshold "0.2 0.3 0.5 0.7" --dataset "$spec")
    cellpoint export "runs/p2m4_${set}_$run.pt" --out "runs/p2m4-$set-$run" --decoder-param score_threshold="$t"
  done
done
for set in livecell dsb; do
  spec=$([ "$set" = dsb ] && echo dsb2018_bbbc038:gray_dark || echo livecell)
  python benchmarks/point2mask.py --name "$set" --reference "full masks" \
    --package "full masks=runs/p2m4-$set-full" --package "box + 1 point=runs/p2m4-$set-p1" \
    --package "box + 2 points=runs/p2m4-$set-p2" --package "box + 4 points=runs/p2m4-$set-p4" \
    --package "box + 6 points=runs/p2m4-$set-p6" --package "box + 8 points=runs/p2m4-$set-p8" \
    --package "box + 10 points=runs/p2m4-$set-p10" --package "box + 6 points, point gradient 0.3=runs/p2m4-$set-p6_g03" \
    --dataset "$spec"
done
# the detector and the mask head measured apart (training checkpoints, PyTorch)
python benchmarks/point2mask_stages.py --name usiigaci --dataset usiigaci_phase_contrast \
  --checkpoint "full masks=runs/p2m4_usiigaci_full.pt" --checkpoint "box + 6 points=runs/p2m4_usiigaci_p6.pt" \
  --checkpoint "box + 6 points, point gradient 0.3=runs/p2m4_usiigaci_p6_g03.pt" \
  --checkpoint "full masks, seed 1=runs/p2m4_usiigaci_full_s1.pt" \
  --checkpoint "box + 6 points, point gradient 0.3, seed 1=runs/p2m4_usiigaci_p6_g03_s1.pt" \
  --checkpoint "full masks, seed 2=runs/p2m4_usiigaci_full_s2.pt" \
  --checkpoint "box + 6 points, point gradient 0.3, seed 2=runs/p2m4_usiigaci_p6_g03_s2.pt"
# usiigaci, half the train split (every other train image: 8 images, 521 cells) — does the ratio depend on
# how many labelled cells the network trains from? Full masks vs box + 6 clicks at --point-grad 0.3, two seeds
python - <<'PY'
from pathlib import Path
import tifffile
from cellpoint.training.datasets import list_samples, load_sample
from cellpoint.training.sources import unique_stems
out = Path("runs/usiigaci_half")
(out / "images").mkdir(parents=True, exist_ok=True)
(out / "masks").mkdir(exist_ok=True)
samples = list_samples("usiigaci_phase_contrast", "train")
for s, stem in list(zip(samples, unique_stems([s.file_name for s in samples])))[::2]:
    image, labels = load_sample(s)
    tifffile.imwrite(out / "images" / f"{stem}.tif", image)
    tifffile.imwrite(out / "masks" / f"{stem}.tif", labels.astype("uint16"))
PY
export OMP_NUM_THREADS=1
H="--method point2mask --images runs/usiigaci_half/images --steps 3000"
for s in 0 1; do
  cellpoint labels --label-dir runs/usiigaci_half/masks --kind box-points --n-points 6 --seed $s \
    --out runs/usiigaci_half/points_s$s > /dev/null
  cellpoint train $H --masks runs/usiigaci_half/masks --supervision full --seed $s --out "runs/p2m4_usiigaci_half_full_s$s.pt" &
  cellpoint train $H --points runs/usiigaci_half/points_s$s --points-per-cell 6 --point-grad 0.3 --seed $s \
    --out "runs/p2m4_usiigaci_half_p6_g03_s$s.pt" &
  wait
done
unset OMP_NUM_THREADS
for run in half_full_s0 half_p6_g03_s0 half_full_s1 half_p6_g03_s1; do
  t=$(tuned_threshold "runs/p2m4_usiigaci_$run.pt" "p2m4-usiigaci-$run" score_threshold "0.2 0.3 0.5 0.7" --dataset usiigaci_phase_contrast)
  cellpoint export "runs/p2m4_usiigaci_$run.pt" --out "runs/p2m4-usiigaci-$run" --decoder-param score_threshold="$t"
done
python benchmarks/point2mask.py --name usiigaci-half-train --reference "full masks, half the train images, seed 0" \
  --package "full masks, half the train images, seed 0=runs/p2m4-usiigaci-half_full_s0" \
  --package "box + 6 points, point gradient 0.3, half the train images, seed 0=runs/p2m4-usiigaci-half_p6_g03_s0" \
  --package "full masks, half the train images, seed 1=runs/p2m4-usiigaci-half_full_s1" \
  --package "box + 6 points, point gradient 0.3, half the train images, seed 1=runs/p2m4-usiigaci-half_p6_g03_s1" \
  --dataset usiigaci_phase_contrast
# ---------------------------------------------------------------- part 2: the earlier network (--mask-convs 2)
T="--mask-convs 2 $T"
export OMP_NUM_THREADS=1
cellpoint train $T --supervision full --out runs/p2m_usiigaci_full.pt &
cellpoint train $T --points-per-cell 6 --out runs/p2m_usiigaci_p6.pt &
wait
cellpoint train $T --points-per-cell 6 --point-grad 0.3 --out runs/p2m_usiigaci_p6_g03.pt &
cellpoint train $T --points-per-cell 6 --point-grad 0.3 --seed 1 --out runs/p2m_usiigaci_p6_s1_g03.pt &
wait
for pair in "1 2" "4 8" "10"; do
  for n in $pair; do cellpoint train $T --points-per-cell "$n" --out "runs/p2m_usiigaci_p$n.pt" & done
  wait
done
unset OMP_NUM_THREADS
for run in full p1 p2 p4 p6 p8 p10 p6_g03 p6_s1_g03; do
  t=$(tuned_threshold "runs/p2m_usiigaci_$run.pt" "p2m-usiigaci-$run" score_threshold "0.2 0.3 0.5 0.7" --dataset usiigaci_phase_contrast)
  cellpoint export "runs/p2m_usiigaci_$run.pt" --out "runs/p2m-usiigaci-$run" --decoder-param score_threshold="$t"
done
python benchmarks/point2mask.py --name usiigaci-2conv --reference "full masks" \
  --package "full masks=runs/p2m-usiigaci-full" --package "box + 1 point=runs/p2m-usiigaci-p1" \
  --package "box + 2 points=runs/p2m-usiigaci-p2" --package "box + 4 points=runs/p2m-usiigaci-p4" \
  --package "box + 6 points=runs/p2m-usiigaci-p6" --package "box + 8 points=runs/p2m-usiigaci-p8" \
  --package "box + 10 points=runs/p2m-usiigaci-p10" --dataset usiigaci_phase_contrast
python benchmarks/point2mask.py --name usiigaci-point-grad-2conv --reference "full masks" \
  --package "full masks=runs/p2m-usiigaci-full" --package "box + 6 points=runs/p2m-usiigaci-p6" \
  --package "box + 6 points, point gradient 0.3=runs/p2m-usiigaci-p6_g03" --dataset usiigaci_phase_contrast
# LIVECell (its own 12 train images) and DSB nuclei (gray_dark): full masks and box + N clicks
export OMP_NUM_THREADS=1
for set in livecell dsb; do
  spec=$([ "$set" = dsb ] && echo dsb2018_bbbc038:gray_dark || echo livecell)
  for pair in "full 1" "2 4" "6 8" "10"; do
    for n in $pair; do
      if [ "$n" = full ]; then labels="--supervision full"; run=full; else labels="--points-per-cell $n"; run=p$n; fi
      # shellcheck disable=SC2086  # labels is two words
      cellpoint train --mask-convs 2 --method point2mask --dataset "$spec" --steps 3000 $labels --out "runs/p2m_${set}_$run.pt" &
    done
    wait
  done
done
unset OMP_NUM_THREADS
for set in livecell dsb; do
  spec=$([ "$set" = dsb ] && echo dsb2018_bbbc038:gray_dark || echo livecell)
  for run in full p1 p2 p4 p6 p8 p10; do
    t=$(tuned_threshold "runs/p2m_${set}_$run.pt" "p2m-$set-$run" score_threshold "0.2 0.3 0.5 0.7" --dataset "$spec")
    cellpoint export "runs/p2m_${set}_$run.pt" --out "runs/p2m-$set-$run" --decoder-param score_threshold="$t"
  done
  python benchmarks/point2mask.py --name "$set-2conv" --reference "full masks" \
    --package "full masks=runs/p2m-$set-full" --package "box + 1 point=runs/p2m-$set-p1" \
    --package "box + 2 points=runs/p2m-$set-p2" --package "box + 4 points=runs/p2m-$set-p4" \
    --package "box + 6 points=runs/p2m-$set-p6" --package "box + 8 points=runs/p2m-$set-p8" \
    --package "box + 10 points=runs/p2m-$set-p10" --dataset "$spec"
done
# usiigaci, twice as long (6000 steps): full masks vs box + 6 clicks
U6="--mask-convs 2 --method point2mask --dataset usiigaci_phase_contrast --steps 6000"
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
S1="--mask-convs 2 --method point2mask --dataset usiigaci_phase_contrast --steps 3000 --seed 1"
cellpoint train $S1 --supervision full --out runs/p2m_usiigaci_full_s1.pt &
cellpoint train $S1 --points-per-cell 6 --out runs/p2m_usiigaci_p6_s1.pt &
wait
for run in full_s1 p6_s1; do
  t=$(tuned_threshold "runs/p2m_usiigaci_$run.pt" "p2m-usiigaci-$run" score_threshold "0.2 0.3 0.5 0.7" --dataset usiigaci_phase_contrast)
  cellpoint export "runs/p2m_usiigaci_$run.pt" --out "runs/p2m-usiigaci-$run" --decoder-param score_threshold="$t"
done
python benchmarks/point2mask.py --name usiigaci-seed1-2conv --reference "full masks" \
  --package "full masks=runs/p2m-usiigaci-full_s1" --package "box + 6 points=runs/p2m-usiigaci-p6_s1" \
  --package "box + 6 points, point gradient 0.3=runs/p2m-usiigaci-p6_s1_g03" --dataset usiigaci_phase_contrast
# usiigaci, a third seed: full masks vs box + 6 clicks with --point-grad 0.3
S2="--mask-convs 2 --method point2mask --dataset usiigaci_phase_contrast --steps 3000 --seed 2"
export OMP_NUM_THREADS=1
cellpoint train $S2 --supervision full --out runs/p2m_usiigaci_full_s2.pt &
cellpoint train $S2 --points-per-cell 6 --point-grad 0.3 --out runs/p2m_usiigaci_p6_s2_g03.pt &
wait
unset OMP_NUM_THREADS
for run in full_s2 p6_s2_g03; do
  t=$(tuned_threshold "runs/p2m_usiigaci_$run.pt" "p2m-usiigaci-$run" score_threshold "0.2 0.3 0.5 0.7" --dataset usiigaci_phase_contrast)
  cellpoint export "runs/p2m_usiigaci_$run.pt" --out "runs/p2m-usiigaci-$run" --decoder-param score_threshold="$t"
done
python benchmarks/point2mask.py --name usiigaci-seed2-2conv --reference "full masks" --package "full masks=runs/p2m-usiigaci-full_s2" \
  --package "box + 6 points, point gradient 0.3=runs/p2m-usiigaci-p6_s2_g03" --dataset usiigaci_phase_contrast
# LIVECell with the bundled model's recipe (--point-grad 0.3), box + 6 clicks; then
OMP_NUM_THREADS=2 cellpoint train --mask-convs 2 --method point2mask --dataset livecell --steps 3000 --points-per-cell 6 --point-grad 0.3 \
  --out runs/p2m_livecell_p6_g03.pt
t=$(tuned_threshold runs/p2m_livecell_p6_g03.pt p2m-livecell-p6_g03 score_threshold "0.2 0.3 0.5 0.7" --dataset livecell)
cellpoint export runs/p2m_livecell_p6_g03.pt --out runs/p2m-livecell-p6_g03 --decoder-param score_threshold="$t"
python benchmarks/point2mask.py --name livecell-point-grad-2conv --reference "full masks" --package "full masks=runs/p2m-livecell-full" \
  --package "box + 6 points=runs/p2m-livecell-p6" --package "box + 6 points, point gradient 0.3=runs/p2m-livecell-p6_g03" \
  --dataset livecell
# DSB nuclei with the same recipe
OMP_NUM_THREADS=2 cellpoint train --mask-convs 2 --method point2mask --dataset dsb2018_bbbc038:gray_dark --steps 3000 --points-per-cell 6 \
  --point-grad 0.3 --out runs/p2m_dsb_p6_g03.pt
t=$(tuned_threshold runs/p2m_dsb_p6_g03.pt p2m-dsb-p6_g03 score_threshold "0.2 0.3 0.5 0.7" --dataset dsb2018_bbbc038:gray_dark)
cellpoint export runs/p2m_dsb_p6_g03.pt --out runs/p2m-dsb-p6_g03 --decoder-param score_threshold="$t"
python benchmarks/point2mask.py --name dsb-point-grad-2conv --reference "full masks" --package "full masks=runs/p2m-dsb-full" \
  --package "box + 6 points=runs/p2m-dsb-p6" --package "box + 6 points, point gradient 0.3=runs/p2m-dsb-p6_g03" \
  --dataset dsb2018_bbbc038:gray_dark
# the detector and the mask head measured apart (training checkpoints, PyTorch); with the point loss kept
# out of the backbone altogether (--point-grad 0) for comparison
OMP_NUM_THREADS=2 cellpoint train $T --points-per-cell 6 --point-grad 0 --out runs/p2m_usiigaci_p6_g0.pt
python benchmarks/point2mask_stages.py --name usiigaci-2conv --dataset usiigaci_phase_contrast \
  --checkpoint "full masks=runs/p2m_usiigaci_full.pt" --checkpoint "box + 6 points=runs/p2m_usiigaci_p6.pt" \
  --checkpoint "full masks, seed 1=runs/p2m_usiigaci_full_s1.pt" --checkpoint "box + 6 points, seed 1=runs/p2m_usiigaci_p6_s1.pt" \
  --checkpoint "full masks, 6000 steps=runs/p2m_usiigaci_full_6k.pt" \
  --checkpoint "box + 6 points, 6000 steps=runs/p2m_usiigaci_p6_6k.pt" \
  --checkpoint "box + 6 points, point gradient 0.3=runs/p2m_usiigaci_p6_g03.pt" \
  --checkpoint "box + 6 points, point gradient 0.3, seed 1=runs/p2m_usiigaci_p6_s1_g03.pt" \
  --checkpoint "box + 6 points, point gradient 0=runs/p2m_usiigaci_p6_g0.pt"
python benchmarks/point2mask_stages.py --name livecell --dataset livecell \
  --checkpoint "full masks=runs/p2m_livecell_full.pt" --checkpoint "box + 6 points=runs/p2m_livecell_p6.pt"
python benchmarks/point2mask_stages.py --name dsb --dataset dsb2018_bbbc038:gray_dark \
  --checkpoint "full masks=runs/p2m_dsb_full.pt" --checkpoint "box + 6 points=runs/p2m_dsb_p6.pt"
# usiigaci starting from a network pretrained on all DSB train images from box + 6 clicks (no mask anywhere)
export OMP_NUM_THREADS=1
cellpoint train --mask-convs 2 --method point2mask --dataset dsb2018_bbbc038 --steps 3000 --points-per-cell 6 --out runs/p2m_dsball_p6.pt
I="--mask-convs 2 --method point2mask --dataset usiigaci_phase_contrast --steps 3000 --init-from runs/p2m_dsball_p6.pt"
cellpoint train $I --supervision full --out runs/p2m_usiigaci_full_ip6.pt &
cellpoint train $I --points-per-cell 6 --out runs/p2m_usiigaci_p6_ip6.pt &
wait
unset OMP_NUM_THREADS
for run in full_ip6 p6_ip6; do
  t=$(tuned_threshold "runs/p2m_usiigaci_$run.pt" "p2m-usiigaci-$run" score_threshold "0.2 0.3 0.5 0.7" --dataset usiigaci_phase_contrast)
  cellpoint export "runs/p2m_usiigaci_$run.pt" --out "runs/p2m-usiigaci-$run" --decoder-param score_threshold="$t"
done
python benchmarks/point2mask.py --name usiigaci-pretrained --reference "full masks, pretrained" \
  --package "full masks, pretrained=runs/p2m-usiigaci-full_ip6" --package "box + 6 points, pretrained=runs/p2m-usiigaci-p6_ip6" \
  --dataset usiigaci_phase_contrast
python benchmarks/point2mask_stages.py --name usiigaci-pretrained --dataset usiigaci_phase_contrast \
  --checkpoint "full masks, pretrained=runs/p2m_usiigaci_full_ip6.pt" --checkpoint "box + 6 points, pretrained=runs/p2m_usiigaci_p6_ip6.pt"

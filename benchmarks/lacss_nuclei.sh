#!/usr/bin/env bash
# Reproduce the bundled lacss-nuclei package and the LACSS tables (about 2 hours on 2 cores: the seven
# trainings run two at a time, one thread each). Run from the repository root with the train extra
# installed and ../shared/data present.
set -euo pipefail
source benchmarks/tuned_threshold.sh
mkdir -p runs
N="--dataset dsb2018_bbbc038:gray_dark --dataset coelho2009_u2os_nih3t3 --steps 1500"
EVAL=(--eval dsb2018_bbbc038:gray_dark --eval coelho2009_u2os_nih3t3)
DSB=../shared/data/dsb2018_bbbc038/stage1_train
S1=$DSB/2cfa61bef6542dd359717e9131ce6f076c415a3bd7f48cb093b0d7f3b2ca785d/images/2cfa61bef6542dd359717e9131ce6f076c415a3bd7f48cb093b0d7f3b2ca785d.png
export OMP_NUM_THREADS=1
# full masks (the upper bound) and no human label at all (DoG locations + machine-made foreground)
cellpoint train --method lacss $N --supervision full --out runs/lacss_full.pt &
cellpoint train --method lacss $N --placement nuclei-dog --foreground-source machine --weak-loss union \
  --out runs/lacss_free.pt &
wait
# no human label with the window form of the consistency (a row of the table; the bundle uses union)
cellpoint train --method lacss $N --placement nuclei-dog --foreground-source machine --weak-loss window \
  --out runs/lacss_free_window.pt
# weak: foreground and one location per nucleus derived from the masks, with and without the aux net,
# with the window form of the foreground consistency (the better one for nuclei)
cellpoint train --method lacss $N --weak-loss window --out runs/lacss_weak.pt &
cellpoint train --method lacss $N --weak-loss window --no-aux --out runs/lacss_weak_noaux.pt &
wait
# the same with the default (union) form of the foreground consistency
cellpoint train --method lacss $N --weak-loss union --out runs/lacss_weak_union.pt &
cellpoint train --method lacss $N --weak-loss union --no-aux --out runs/lacss_weak_union_noaux.pt &
wait
unset OMP_NUM_THREADS
# each package's location score threshold, then its mask threshold, chosen on the train split
choose() {  # choose CHECKPOINT NAME -> "score_threshold=S mask_threshold=M"
  local s m
  s=$(tuned_threshold "$1" "$2" score_threshold "0.1 0.2 0.3 0.5")
  m=$(tuned_threshold "$1" "$2-mask" mask_threshold "0.5 0.6 0.7 0.8" --set score_threshold="$s")
  echo "score_threshold=$s mask_threshold=$m"
}
for m in full weak weak_noaux weak_union weak_union_noaux; do
  read -r s k <<< "$(choose runs/lacss_$m.pt lacss-$m)"
  cellpoint export runs/lacss_$m.pt --out runs/lacss-$m --decoder-param "$s" --decoder-param "$k"
done
read -r s k <<< "$(choose runs/lacss_free_window.pt lacss-nuclei-window)"
cellpoint export runs/lacss_free_window.pt --out runs/lacss-nuclei-window --decoder-param "$s" --decoder-param "$k"
read -r s k <<< "$(choose runs/lacss_free.pt lacss-nuclei)"
cellpoint export runs/lacss_free.pt --out model_cards/lacss-nuclei --decoder-param "$s" --decoder-param "$k" \
  --description "Fluorescence nuclei, trained with no human label: machine-made locations and foreground (LACSS)." \
  --sample "$S1" --sample-source "DSB 2018 / BBBC038 stage1_train (val split image 28)" \
  --sample-licence "CC0 1.0" --notes benchmarks/notes/lacss-nuclei.md "${EVAL[@]}"
python benchmarks/lacss.py --name lacss-nuclei --reference "full masks" \
  --package "full masks=runs/lacss-full" --package "weak: foreground + locations, aux=runs/lacss-weak" \
  --package "weak, no aux=runs/lacss-weak_noaux" \
  --package "weak (union consistency), aux=runs/lacss-weak_union" \
  --package "weak (union consistency), no aux=runs/lacss-weak_union_noaux" \
  --package "no annotation: DoG locations + machine foreground, aux (union consistency; bundled)=model_cards/lacss-nuclei" \
  --package "no annotation: DoG locations + machine foreground, aux=runs/lacss-nuclei-window" \
  --dataset dsb2018_bbbc038:gray_dark --dataset coelho2009_u2os_nih3t3
python benchmarks/speed.py --package model_cards/lacss-nuclei

#!/usr/bin/env bash
# Reproduce the LACSS whole-cell table (usiigaci phase contrast, LIVECell; full masks vs weak: image
# foreground + one location per cell, with the auxiliary network, in the default "union" form of the
# weak loss and in the "window" form). About 1.5 hours on 2 cores. Run from the repository root with the
# train extra installed and ../shared/data present.
set -euo pipefail
source benchmarks/tuned_threshold.sh
mkdir -p runs
export OMP_NUM_THREADS=1
SETS="usiigaci:usiigaci_phase_contrast livecell:livecell"   # short name:data set
for pair in $SETS; do
  n=${pair%%:*} d=${pair#*:}
  cellpoint train --method lacss --dataset $d --steps 1500 --supervision full --out runs/lacss_${n}_full.pt &
  cellpoint train --method lacss --dataset $d --steps 1500 --out runs/lacss_${n}_weak.pt &
  wait
  cellpoint train --method lacss --dataset $d --steps 1500 --weak-loss window --out runs/lacss_${n}_weak_window.pt
done
# score threshold, then mask threshold, chosen on each data set's train split
for pair in $SETS; do
  n=${pair%%:*} d=${pair#*:}
  for m in full weak weak_window; do
    s=$(tuned_threshold runs/lacss_${n}_$m.pt lacss-${n}_$m score_threshold "0.1 0.2 0.3 0.5" --dataset $d)
    k=$(tuned_threshold runs/lacss_${n}_$m.pt lacss-${n}_$m-mask mask_threshold "0.5 0.6 0.7 0.8" \
        --set score_threshold="$s" --dataset $d)
    cellpoint export runs/lacss_${n}_$m.pt --out runs/lacss-${n}_$m --decoder-param score_threshold="$s" \
      --decoder-param mask_threshold="$k"
  done
done
for n in usiigaci livecell; do
  d=$([ $n = usiigaci ] && echo usiigaci_phase_contrast || echo livecell)
  python benchmarks/lacss.py --name lacss-$n --reference "full masks" \
    --package "full masks=runs/lacss-${n}_full" --package "weak: foreground + locations, aux=runs/lacss-${n}_weak" \
    --package "weak (window consistency), aux=runs/lacss-${n}_weak_window" --dataset $d
done

#!/usr/bin/env bash
# Reproduce the bundled wsispdr-cells-phase package and the WSISPDR tables (about 1.5 hours on 2 cores).
# Run from the repository root with the train extra installed and ../shared/data present.
set -euo pipefail
mkdir -p runs
U=../shared/data/usiigaci_phase_contrast
# phase contrast: clicks derived from the usiigaci train masks (centroids); the graph-cut reads the
# inverted image (the paper's data term for phase contrast)
cellpoint train --method wsispdr --dataset usiigaci_phase_contrast --data-term inverted --steps 1500 \
  --out runs/wsispdr_usiigaci.pt
cellpoint export runs/wsispdr_usiigaci.pt --out runs/wsispdr-usiigaci-untuned
# decoder parameters chosen on 5 train images (val stays for reporting)
python benchmarks/tune_wsispdr.py --package runs/wsispdr-usiigaci-untuned --dataset usiigaci_phase_contrast \
  --name usiigaci --grid '{"data_term": ["texture", "inverted"], "seed_fraction": [0.5, 0.2, 0.1], "detection_threshold": [0.3, 0.5, 0.6]}'
python -c "import tifffile; from cellpoint.runtime.image_io import read_image; \
tifffile.imwrite('runs/usiigaci_val3_crop.tif', read_image('$U/train/set6/raw.tif')[256:768, 256:768])"
cellpoint export runs/wsispdr_usiigaci.pt --out model_cards/wsispdr-cells-phase \
  --description "Phase-contrast whole cells, trained from one click per cell (WSISPDR)." \
  --decoder-param detection_threshold=0.5 --decoder-param data_term=inverted --decoder-param seed_fraction=0.1 \
  --sample runs/usiigaci_val3_crop.tif \
  --sample-source "Usiigaci (OIST), shared val split image 3 (train/set6/raw.tif), crop rows and columns 256:768" \
  --sample-licence "MIT (Usiigaci)" --notes benchmarks/notes/wsispdr-cells-phase.md --eval usiigaci_phase_contrast
# nuclei: from clicks, and with no human label at all (DoG locations in the nuclear stain)
cellpoint train --method wsispdr --dataset dsb2018_bbbc038:gray_dark --data-term intensity --diameter 24 \
  --steps 1500 --out runs/wsispdr_dsb_clicks.pt
cellpoint train --method wsispdr --dataset dsb2018_bbbc038:gray_dark --data-term intensity --diameter 24 \
  --steps 1500 --placement nuclei-dog --out runs/wsispdr_dsb_dog.pt
cellpoint export runs/wsispdr_dsb_clicks.pt --out runs/wsispdr-dsb-clicks
python benchmarks/tune_wsispdr.py --package runs/wsispdr-dsb-clicks --dataset dsb2018_bbbc038:gray_dark \
  --name dsb --grid '{"seed_fraction": [0.5, 0.1], "detection_threshold": [0.3, 0.5]}'
# the best on train (seed_fraction 0.1, detection_threshold 0.5) is used for both nuclei models; the
# annotation-free model gets no tuning of its own (that would use human labels)
for m in clicks dog; do
  cellpoint export runs/wsispdr_dsb_$m.pt --out runs/wsispdr-dsb-$m \
    --decoder-param seed_fraction=0.1 --decoder-param detection_threshold=0.5
done
python benchmarks/wsispdr.py --name wsispdr-cells-phase --package "clicks (usiigaci train)=model_cards/wsispdr-cells-phase" \
  --dataset usiigaci_phase_contrast --dataset livecell
python benchmarks/wsispdr.py --name wsispdr-nuclei --package "clicks (DSB train)=runs/wsispdr-dsb-clicks" \
  --package "no annotation: DoG locations (DSB train)=runs/wsispdr-dsb-dog" --dataset dsb2018_bbbc038:gray_dark
python benchmarks/speed.py --package model_cards/wsispdr-cells-phase --repeats 3

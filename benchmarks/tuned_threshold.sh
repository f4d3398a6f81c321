# Sourced by the reproduction scripts: tuned_threshold CHECKPOINT NAME PARAM "VALUES" [--dataset SPEC ..]
# exports CHECKPOINT to runs/NAME-untuned, chooses PARAM among VALUES on the train split
# (tune_decoder.py; val stays for reporting) and prints the best value.
tuned_threshold() {
  local checkpoint=$1 name=$2 param=$3 values=$4
  shift 4
  cellpoint export "$checkpoint" --out "runs/$name-untuned" > /dev/null
  # shellcheck disable=SC2086  # VALUES is a list
  python benchmarks/tune_decoder.py --package "runs/$name-untuned" --name "$name" --param "$param" \
    --threshold $values "$@" | sed -n 's/^best threshold \([0-9.]*\);.*/\1/p'
}

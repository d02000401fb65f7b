#!/usr/bin/env bash
# Records the four calibration fixtures of this folder (README.md here says why they look like this).
# Run from the repository root on a quiet host (nothing else using the CPUs): about 12 minutes on 2 cores.
#   bash tests/calibration/real_runs/record.sh
set -euo pipefail
here=$(dirname "$0")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Every failure restarts machine 0's agent once (a software failure restarts every rank; machine 0's rank
# loses its peer when machine 1 dies): ten failures need more than torchrun's 8 restarts.
common=(--machines 2 --chunk-mib 16 --steps 50 --persist-every 25 --device cpu --max-restarts 12)
# Five software failures (rank 0) and five hardware failures (machine 1), alternating, four steps apart.
fit=()
for step in 4 12 20 28 36; do fit+=(--fail "sw@step=$step:rank=0" --fail "hw@step=$((step + 4)):machine=1"); done
held=()
for step in 6 14 22 30 38; do held+=(--fail "hw@step=$step:machine=1" --fail "sw@step=$((step + 4)):rank=0"); done
record() {
    local name=$1; shift
    gemini-ft realrun "${common[@]}" "$@" --out "$work/$name" > "$work/$name.log"
    mkdir -p "$here/$name"
    cp "$work/$name/measurements.parquet" "$here/$name/measurements.parquet"
    echo "$name: $(grep '^run ' "$work/$name.log")"
}
record fit-5m --model-size 5m "${fit[@]}"
record fit-20m --model-size 20m "${fit[@]}"
record held-5m --model-size 5m "${held[@]}"
record held-20m --model-size 20m "${held[@]}"

#!/usr/bin/env bash
# Pretrain the shipped encoder (geobert_s, ~5 M parameters) with SimMIM on the shared data, then
# evaluate it on held-out scenes. Usage: bash scripts/pretrain_geobert_s.sh [SHARED_DATA] [MINUTES]
#
# Split (fixed): training = every OSCD city (both dates) except norcia and valencia, plus
# sentinel2_scene/ and landcover_brandenburg/; held out for evaluation = OSCD norcia and valencia
# (both dates). Seed 0. The run stops after MINUTES (default 45) or 1500 steps, whichever is first.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/data}
MINUTES=${2:-45}
OUT=runs/pretrain_geobert_s
mkdir -p "$OUT"
HOLDOUT=(norcia valencia)
TRAIN=()
for city in "$DATA"/oscd/images/*/; do
    name=$(basename "$city")
    [[ " ${HOLDOUT[*]} " == *" $name "* ]] || TRAIN+=("$city")
done
.venv/bin/geobert pretrain --data "${TRAIN[@]}" "$DATA/sentinel2_scene" "$DATA/landcover_brandenburg" \
    --out "$OUT/geobert_s_mim.safetensors" --steps 1500 --batch-size 16 --accum 2 --window 128 \
    --lr 8e-4 --warmup 50 --seed 0 --time-budget "$MINUTES" --resume
.venv/bin/geobert evaluate-mim "$OUT/geobert_s_mim.safetensors" \
    --holdout "$DATA/oscd/images/norcia" "$DATA/oscd/images/valencia" -o "$OUT"

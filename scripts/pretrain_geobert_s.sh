#!/usr/bin/env bash
# Pretrain the shipped encoder (geobert_s, ~5 M parameters) with SimMIM on the shared data, then
# evaluate it on held-out scenes.
#
#   bash scripts/pretrain_geobert_s.sh [SHARED_DATA] [MINUTES] [STEPS] [OUT] [PRECISION]
#
# Split (fixed): training = every OSCD city (both dates) except norcia and valencia, plus
# sentinel2_scene/ and landcover_brandenburg/; held out for evaluation = OSCD norcia and valencia
# (both dates). Seed 0. The run stops after MINUTES (default 45) or STEPS (default 1500, the
# shipped encoder's schedule), whichever is first; rerun the same command to continue (--resume:
# the schedule is the one of STEPS, so a long run spans sessions). PRECISION: fp32 (default, as
# the shipped encoder), bf16 (bf16 autocast steps: worth it only with bf16 units, see
# bench/results_pretrain.md) or auto (bf16 where the CPU — or the CUDA GPU the run uses — has
# them). OUT defaults to runs/pretrain_geobert_s.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/data}
MINUTES=${2:-45}
STEPS=${3:-1500}
OUT=${4:-runs/pretrain_geobert_s}
PRECISION=${5:-fp32}
case "$PRECISION" in
    fp32|bf16|auto) ;;
    *) echo "PRECISION must be fp32, bf16 or auto, not '$PRECISION'" >&2; exit 2 ;;
esac
mkdir -p "$OUT"
HOLDOUT=(norcia valencia)
TRAIN=()
for city in "$DATA"/oscd/images/*/; do
    name=$(basename "$city")
    [[ " ${HOLDOUT[*]} " == *" $name "* ]] || TRAIN+=("$city")
done
.venv/bin/geobert pretrain --data "${TRAIN[@]}" "$DATA/sentinel2_scene" "$DATA/landcover_brandenburg" \
    --out "$OUT/geobert_s_mim.safetensors" --steps "$STEPS" --batch-size 16 --accum 2 --window 128 \
    --lr 8e-4 --warmup 50 --seed 0 --time-budget "$MINUTES" --resume --train-precision "$PRECISION"
.venv/bin/geobert evaluate-mim "$OUT/geobert_s_mim.safetensors" \
    --holdout "$DATA/oscd/images/norcia" "$DATA/oscd/images/valencia" -o "$OUT"

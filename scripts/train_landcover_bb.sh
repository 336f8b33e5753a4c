#!/usr/bin/env bash
# Train the land-cover model on the Brandenburg scene + OpenStreetMap polygons, from the shipped
# MIM encoder and (same recipe) from scratch, then score both and a random forest on the same
# spatially blocked hold-out (the comparison of results/landcover_bb/RESULTS.md; the shipped model
# is trained by scripts/landcover_strips.py --final, the recipe the strips chose).
# Usage: bash scripts/train_landcover_bb.sh [DATA_DIR] [STEPS] [SEED] [VALIDATION_FRACTION] [EMA]
#
# Split: 128 px (1.28 km) blocks of the labelled area, 25 % of the labelled blocks held out,
# seed 0 by default (rebuilt identically by evaluate-landcover). Nothing is chosen on the hold-out
# blocks. Another SEED draws another blocked split (and initialisation) into runs/landcover_seedN:
# how much the comparison moves with the split. VALIDATION_FRACTION > 0 sets that share of the
# training blocks aside and keeps each network's step with the best macro-F1 on them (scored every
# 100 steps) into runs/landcover_seedN_valF. EMA is the decay of the moving average of the weights
# that is kept (default 0.99, the recipe of the shipped model); another value, e.g. 0 for the last
# step's weights as in the first tables of results/landcover_bb/RESULTS.md, goes into
# runs/landcover_seedN_emaD.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/data/landcover_brandenburg}
STEPS=${2:-800}
SEED=${3:-0}
VAL=${4:-0}
EMA=${5:-0.99}
EXTRA=()
SUFFIX=""
if [ "$VAL" != 0 ]; then
    SUFFIX+=_val$VAL
    EXTRA+=(--validation-fraction "$VAL" --validate-every 100)
fi
EXTRA+=(--ema-decay "$EMA")
if [ "$EMA" != 0.99 ]; then SUFFIX+=_ema$EMA; fi
OUT=runs/landcover
if [ "$SEED" != 0 ] || [ -n "$SUFFIX" ]; then OUT=runs/landcover_seed$SEED$SUFFIX; fi
mkdir -p "$OUT"
for init in mim scratch; do
    [ -f "$OUT/landcover_$init.safetensors" ] && continue
    .venv/bin/geobert train-landcover --image "$DATA" --labels "$DATA/landuse_west.gpkg" \
        --class-field fclass -o "$OUT/landcover_$init.safetensors" --init "$init" \
        --steps "$STEPS" --block-size 128 --holdout-fraction 0.25 --seed "$SEED" --pixel-path 0 \
        "${EXTRA[@]}"  # --pixel-path 0: the recipe of those tables (the default is now 32)
done
.venv/bin/geobert evaluate-landcover --image "$DATA" --labels "$DATA/landuse_west.gpkg" \
    --class-field fclass --models "$OUT/landcover_mim.safetensors" \
    "$OUT/landcover_scratch.safetensors" --names "geobert (MIM init)" "geobert (scratch)" \
    -o "$OUT/eval"

#!/usr/bin/env bash
# Fine-tune the change network on OSCD from the shipped MIM encoder and, with the same recipe,
# from scratch; then evaluate both and CVA + Otsu on the test cities.
# Usage: bash scripts/train_change_oscd.sh [OSCD_ROOT] [STEPS]
#
# Split (fixed, leave-cities-out over the 10 labelled cities): validation (threshold only) =
# bordeaux, cupertino; test (never seen in training or tuning) = beirut, rennes, saclay_e;
# training = abudhabi, aguasclaras, beihai, bercy, paris. Seed 0.
set -euo pipefail
cd "$(dirname "$0")/.."
OSCD=${1:-../shared/data/oscd}
STEPS=${2:-1000}
OUT=runs/change
mkdir -p "$OUT"
VAL=(bordeaux cupertino)
TEST=(beirut rennes saclay_e)
for init in mim scratch; do
    .venv/bin/geobert train-change --data "$OSCD" --out "$OUT/changenet_$init.safetensors" \
        --init "$init" --val-cities "${VAL[@]}" --test-cities "${TEST[@]}" --steps "$STEPS" --seed 0
done
.venv/bin/geobert evaluate-change --data "$OSCD" \
    --models "$OUT/changenet_mim.safetensors" "$OUT/changenet_scratch.safetensors" \
    --names "geobert (MIM init)" "geobert (scratch)" --cities "${TEST[@]}" -o "$OUT"

#!/usr/bin/env bash
# Seed 0 of a land-cover recipe on the five strips, then its protocol's gate, then seed 1 only
# past it (shared by landcover_scene_mim.sh 3k and scene_lever_strips.sh; resumes per strip):
#
#   bash scripts/gated_strips.sh DATA RESULTS ENCODER --gate G RECIPE_SEED0 RECIPE_SEED1
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$#" -eq 7 ] && [ "$4" = --gate ] || { echo "usage: gated_strips.sh DATA RESULTS ENCODER --gate G R0 R1" >&2; exit 2; }
DATA=$1 RES=$2 CKPT=$3 GATE=$5 R0=$6 R1=$7
PY=.venv/bin/python
strips() {
    $PY scripts/landcover_strips.py --data "$DATA/landcover_brandenburg" --out "$RES" \
        --encoder "$CKPT" --recipes "$@"
}
strips "$R0"
set +e
MEAN=$($PY scripts/strips_mean.py "$RES" "$R0" --gate "$GATE")
RC=$?
set -e
[ "$RC" -eq 0 ] || [ "$RC" -eq 3 ] || exit "$RC"
echo "seed 0: mean macro-F1 $MEAN over the five strips"
if [ "$RC" -eq 3 ]; then
    echo "below the gate ($GATE): not adopted, seed 1 not run"
    exit 0
fi
strips "$R0" "$R1"

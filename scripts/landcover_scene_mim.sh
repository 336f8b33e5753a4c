#!/usr/bin/env bash
# SimMIM on the scene being classified before fine-tuning, on the land-cover strips; rerun the
# same command to continue, across sessions:
#
#   bash scripts/landcover_scene_mim.sh [SHARED_DATA] [1k|3k]
#
# 1k (default): results/landcover_bb/scene_mim/PROTOCOL.md — the shipped recipe's encoder.
# 3k: results/landcover_bb/scene_mim_3k/PROTOCOL.md — the same adaptation, 3 000 steps.
#
# 1. Adapts the shipped encoder to the Brandenburg scene (1 000 or 3 000 SimMIM steps, no labels;
#    bf16 steps where the device has bf16 units), once: runs/landcover_scene_mim[_3k]/.
#    Its SHA-256 goes to encoder.sha256 beside the protocol; later runs check it.
# 2. The shipped land-cover recipe from it, seeds 0 and 1, on the five strips (resumes per
#    strip); 3k: seed 1 only if seed 0 passes the protocol's gate.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/data}
VARIANT=${2:-1k}
case "$VARIANT" in
    1k) RUN=SCENE; OUT=runs/landcover_scene_mim; RES=results/landcover_bb/scene_mim
        R0="geobert (MIM + scene, pixel path, band dropout)" ;;
    3k) RUN=SCENE_3K; OUT=runs/landcover_scene_mim_3k; RES=results/landcover_bb/scene_mim_3k
        R0="geobert (MIM + scene 3k, pixel path, band dropout)" ;;
    *) echo "the second argument is 1k or 3k (the protocol's adaptation), not '$VARIANT'" >&2
       exit 2 ;;
esac
R1="${R0%)}, seed 1)"
PY=.venv/bin/python
CKPT="$OUT/geobert_s_mim_bb.safetensors"
STEPS=$(cd scripts && ../$PY -c "import protocol_encoder as p; print(p.$RUN.steps)")
mkdir -p "$OUT"
DONE=$($PY scripts/steps_done.py "$CKPT")
if [ "$DONE" -lt "$STEPS" ]; then
    RESUME=()
    [ -f "$CKPT.train.pt" ] && RESUME=(--resume)
    .venv/bin/geobert pretrain --init geobert/weights/geobert_s_mim.safetensors \
        --data "$DATA/landcover_brandenburg" --out "$CKPT" --steps "$STEPS" --batch-size 16 \
        --accum 2 --window 128 --lr 4e-4 --warmup 50 --seed 0 \
        --train-precision auto ${RESUME[@]+"${RESUME[@]}"}
fi
# every strip must come from the same encoder: its hash is recorded with the results at the
# first run, and a rebuilt one (runs/ lost; bf16 rounds differently on another CPU) must match
SUM=$RES/encoder.sha256
if [ -f "$SUM" ]; then
    if ! sha256sum --quiet -c "$SUM" >/dev/null 2>&1; then
        echo "$CKPT is not the encoder the strips so far came from ($SUM); restore it or" \
            "start the protocol again with the new one" >&2
        exit 1
    fi
else
    sha256sum "$CKPT" > "$SUM"
fi
if [ "$VARIANT" = 1k ]; then
    $PY scripts/landcover_strips.py --data "$DATA/landcover_brandenburg" --out "$RES" \
        --encoder "$CKPT" --recipes "$R0" "$R1"
    exit 0
fi
# the gate after seed 0 (results/landcover_bb/scene_mim_3k/PROTOCOL.md)
bash scripts/gated_strips.sh "$DATA" "$RES" "$CKPT" --gate 0.336 "$R0" "$R1"

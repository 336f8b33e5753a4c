#!/usr/bin/env bash
# SimMIM on the scene being classified before fine-tuning, on the land-cover strips
# (results/landcover_bb/scene_mim/PROTOCOL.md); rerun the same command to continue, across
# sessions:
#
#   bash scripts/landcover_scene_mim.sh [SHARED_DATA]
#
# 1. Adapts the shipped encoder to the Brandenburg scene (1 000 SimMIM steps, no labels; bf16
#    steps where the device has bf16 units), once: runs/landcover_scene_mim/.
#    Its SHA-256 goes to results/landcover_bb/scene_mim/encoder.sha256; later runs check it.
# 2. The shipped land-cover recipe from it, seeds 0 and 1, on the five strips (resumes per strip).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/data}
OUT=runs/landcover_scene_mim
CKPT="$OUT/geobert_s_mim_bb.safetensors"
STEPS=$(cd scripts && ../.venv/bin/python -c "from protocol_encoder import SCENE; print(SCENE.steps)")
mkdir -p "$OUT"
DONE=$(.venv/bin/python scripts/steps_done.py "$CKPT")
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
SUM=results/landcover_bb/scene_mim/encoder.sha256
if [ -f "$SUM" ]; then
    if ! sha256sum --quiet -c "$SUM" >/dev/null 2>&1; then
        echo "$CKPT is not the encoder the strips so far came from ($SUM); restore it or" \
            "start the protocol again with the new one" >&2
        exit 1
    fi
else
    sha256sum "$CKPT" > "$SUM"
fi
.venv/bin/python scripts/landcover_strips.py --data "$DATA/landcover_brandenburg" \
    --out results/landcover_bb/scene_mim --encoder "$CKPT" \
    --recipes "geobert (MIM + scene, pixel path, band dropout)" \
    "geobert (MIM + scene, pixel path, band dropout, seed 1)"

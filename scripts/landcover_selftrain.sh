#!/usr/bin/env bash
# The shipped land-cover recipe followed by 400 self-training steps on its surest pseudo-labels
# over the whole scene, on the five strips (results/landcover_bb/scene_selftrain/PROTOCOL.md);
# rerun the same command to continue, across sessions:
#
#   bash scripts/landcover_selftrain.sh [SHARED_DATA]
#
# Needs the scene-adapted encoder of the shipped recipe (scripts/landcover_scene_mim.sh builds
# it). Paired (the protocol's amendment): every strip scores its own first stage — the shipped
# recipe from the same encoder, seed and read — and records the encoder's SHA-256, so the encoder
# the CPU at hand rebuilds serves (bf16 rounds otherwise on another CPU kind); only a finished
# one. Seed 1 only past the gate all one-lever protocols fixed (0.336; scripts/gated_strips.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/data}
R0="geobert (MIM + scene, pixel path, band dropout, self-training 400)"
R1="${R0%)}, seed 1)"
CKPT=runs/landcover_scene_mim/geobert_s_mim_bb.safetensors
PY=.venv/bin/python
if [ ! -f "$CKPT" ] || [ "$($PY scripts/steps_done.py "$CKPT")" -lt \
    "$(cd scripts && ../$PY -c 'import protocol_encoder as p; print(p.SCENE.steps)')" ]; then
    echo "$CKPT is missing or unfinished; build it first:" \
        "bash scripts/landcover_scene_mim.sh $DATA" >&2
    exit 1
fi
bash scripts/gated_strips.sh "$DATA" results/landcover_bb/scene_selftrain "$CKPT" --gate 0.336 \
    "$R0" "$R1"

#!/usr/bin/env bash
# The shipped land-cover recipe with the change model's radiometric jitter on half its training
# windows, on the five strips (results/landcover_bb/scene_radiometric/PROTOCOL.md); rerun the
# same command to continue, across sessions:
#
#   bash scripts/landcover_radiometric.sh [SHARED_DATA]
#
# Needs the scene-adapted encoder of the shipped recipe: scripts/landcover_scene_mim.sh builds
# it (or rebuilds it where runs/ was lost) — its SHA-256 is checked here. Seed 0 on all strips
# first; seed 1 only if seed 0 passes the protocol's gate.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/data}
CKPT=runs/landcover_scene_mim/geobert_s_mim_bb.safetensors
RES=results/landcover_bb/scene_radiometric
R0="geobert (MIM + scene, pixel path, band dropout, radiometric jitter)"
R1="geobert (MIM + scene, pixel path, band dropout, radiometric jitter, seed 1)"
if ! sha256sum --quiet -c results/landcover_bb/scene_mim/encoder.sha256 >/dev/null 2>&1; then
    echo "$CKPT is missing or not the shipped recipe's adapted encoder; build it first:" \
        "bash scripts/landcover_scene_mim.sh $DATA" >&2
    exit 1
fi
bash scripts/gated_strips.sh "$DATA" "$RES" "$CKPT" --gate 0.336 "$R0" "$R1"

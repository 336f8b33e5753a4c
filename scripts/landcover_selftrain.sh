#!/usr/bin/env bash
# The shipped land-cover recipe followed by 400 self-training steps on its surest pseudo-labels
# over the whole scene, on the five strips (results/landcover_bb/scene_selftrain/PROTOCOL.md);
# rerun the same command to continue, across sessions:
#
#   bash scripts/landcover_selftrain.sh [SHARED_DATA]
#
# Needs the scene-adapted encoder of the shipped recipe (scripts/landcover_scene_mim.sh builds
# it). Paired (the protocol's amendment): every strip scores its own first stage — the shipped
# recipe from the same encoder, seed and read — and records the encoder's SHA-256, so any
# finished rebuild serves (bf16 rounds otherwise on another CPU kind); seed 1 only past the gate
# (scripts/scene_lever_strips.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
R0="geobert (MIM + scene, pixel path, band dropout, self-training 400)"
bash scripts/scene_lever_strips.sh "${1:-../shared/data}" results/landcover_bb/scene_selftrain \
    "$R0" --any-build

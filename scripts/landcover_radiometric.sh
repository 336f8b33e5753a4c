#!/usr/bin/env bash
# The shipped land-cover recipe with the change model's radiometric jitter on half its training
# windows, on the five strips (results/landcover_bb/scene_radiometric/PROTOCOL.md); rerun the
# same command to continue, across sessions:
#
#   bash scripts/landcover_radiometric.sh [SHARED_DATA]
#
# Needs the scene-adapted encoder of the shipped recipe (scripts/landcover_scene_mim.sh builds
# it); seed 1 only if seed 0 passes the protocol's gate (scripts/scene_lever_strips.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
R0="geobert (MIM + scene, pixel path, band dropout, radiometric jitter)"
bash scripts/scene_lever_strips.sh "${1:-../shared/data}" results/landcover_bb/scene_radiometric \
    "$R0"

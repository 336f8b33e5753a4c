#!/usr/bin/env bash
# The shipped land-cover recipe followed by 400 self-training steps on its surest pseudo-labels
# over the whole scene, on the five strips (results/landcover_bb/scene_selftrain/PROTOCOL.md);
# rerun the same command to continue, across sessions:
#
#   bash scripts/landcover_selftrain.sh [SHARED_DATA]
#
# Needs the scene-adapted encoder of the shipped recipe (scripts/landcover_scene_mim.sh builds
# it); seed 1 only if seed 0 passes the protocol's gate (scripts/scene_lever_strips.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
R0="geobert (MIM + scene, pixel path, band dropout, self-training 400)"
bash scripts/scene_lever_strips.sh "${1:-../shared/data}" results/landcover_bb/scene_selftrain "$R0"

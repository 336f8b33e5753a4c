#!/usr/bin/env bash
# The shipped land-cover recipe trained with generalized cross-entropy, on the five strips
# (results/landcover_bb/scene_gce/PROTOCOL.md); rerun the same command to continue, across
# sessions:
#
#   bash scripts/landcover_gce.sh [SHARED_DATA]
#
# Needs the scene-adapted encoder of the shipped recipe (scripts/landcover_scene_mim.sh builds
# it); seed 1 only if seed 0 passes the protocol's gate (scripts/scene_lever_strips.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
R0="geobert (MIM + scene, pixel path, band dropout, GCE)"
bash scripts/scene_lever_strips.sh "${1:-../shared/data}" results/landcover_bb/scene_gce "$R0"

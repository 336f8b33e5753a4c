#!/usr/bin/env bash
# A one-lever protocol on the shipped land-cover recipe: that recipe with one change, seed 0 on
# the five strips, then seed 1 only past the gate all such protocols fixed (0.336: the shipped
# recipe's seed 0, 0.364, less 2.8 points); both from the shipped recipe's scene-adapted encoder,
# its SHA-256 checked first. Resumes per strip. Run by landcover_gce.sh and
# landcover_radiometric.sh (landcover_selftrain.sh, paired, takes any finished rebuild and calls
# gated_strips.sh itself):
#
#   bash scripts/scene_lever_strips.sh DATA RESULTS RECIPE_SEED0
#
# RECIPE_SEED0 is a recipe of scripts/landcover_strips.py; its seed 1 is named the same with
# ", seed 1" before the closing parenthesis.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$#" -eq 3 ] || { echo "usage: scene_lever_strips.sh DATA RESULTS RECIPE_SEED0" >&2; exit 2; }
DATA=$1 RES=$2 R0=$3
R1="${R0%)}, seed 1)"
CKPT=runs/landcover_scene_mim/geobert_s_mim_bb.safetensors
if ! sha256sum --quiet -c results/landcover_bb/scene_mim/encoder.sha256 >/dev/null 2>&1; then
    echo "$CKPT is missing or not the shipped recipe's adapted encoder; build it first:" \
        "bash scripts/landcover_scene_mim.sh $DATA" >&2
    exit 1
fi
bash scripts/gated_strips.sh "$DATA" "$RES" "$CKPT" --gate 0.336 "$R0" "$R1"

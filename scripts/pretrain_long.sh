#!/usr/bin/env bash
# The long-pretraining protocol end to end (results/pretrain_long/PROTOCOL.md); rerun the same
# command to continue it, across sessions:
#
#   bash scripts/pretrain_long.sh [SHARED_DATA] [MINUTES]
#
# 1. Continues the 12 000-step SimMIM run in runs/pretrain_long/ for at most MINUTES (default
#    600), bf16 steps where the device has bf16 units (fp32 otherwise), then scores the held-out
#    reconstruction (evaluate-mim, written beside the checkpoint).
# 2. Once all 12 000 steps are done: the change folds and the land-cover strips (two seeds) of
#    the shipped recipes from that encoder (both resume per fold / strip; results under results/).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/data}
MINUTES=${2:-600}
STEPS=$(cd scripts && ../.venv/bin/python -c "from protocol_encoder import LONG_STEPS; print(LONG_STEPS)")
OUT=runs/pretrain_long
CKPT="$OUT/geobert_s_mim.safetensors"
# bf16 steps where the device (this CPU, or a CUDA GPU) has bf16 units, fp32 elsewhere
bash scripts/pretrain_geobert_s.sh "$DATA" "$MINUTES" "$STEPS" "$OUT" auto
DONE=$(.venv/bin/python scripts/steps_done.py "$CKPT")
if [ "$DONE" -lt "$STEPS" ]; then
    echo "pretraining at step $DONE of $STEPS: rerun this command to continue" >&2
    exit 0
fi
# change first (issue 15 comes first; the bi-temporal run needs only the encoder), then land cover
.venv/bin/python scripts/change_loco.py --data "$DATA/oscd" \
    --methods "geobert (MIM 12k, band dropout)" --encoder "$CKPT"
.venv/bin/python scripts/landcover_strips.py --data "$DATA/landcover_brandenburg" \
    --recipes "geobert (MIM 12k, pixel path, band dropout)" \
    "geobert (MIM 12k, pixel path, band dropout, seed 1)" --encoder "$CKPT"

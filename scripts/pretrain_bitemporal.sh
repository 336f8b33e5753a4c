#!/usr/bin/env bash
# The bi-temporal pretraining protocol end to end (results/pretrain_bitemporal/PROTOCOL.md);
# rerun the same command to continue it, across sessions:
#
#   bash scripts/pretrain_bitemporal.sh [SHARED_DATA] [MINUTES] [HEAD]
#
# HEAD: direct (default; amendment 1, run and measured), relative (amendment 2, run and
# measured: the decoder writes a gain and offset applied to the other date; its change folds run
# only if its held-out reconstruction beats the other date matched by a per-band linear fit) or
# residual (amendment 3: the gain and offset apply to that fit; its change folds run only if its
# held-out reconstruction is at least 3 % below the fit's). Their runs go to
# runs/pretrain_bitemporal_<HEAD>/ (direct: runs/pretrain_bitemporal/).
#
# 1. Starts from the shipped SimMIM encoder (geobert/weights/geobert_s_mim.safetensors; the
#    protocol's amendment 1) and continues the 1 500-step bi-temporal run in
#    runs/pretrain_bitemporal/ for at most MINUTES (default 600) on the 8 OSCD pairs without
#    labels, bf16 steps where the device (this CPU, or a CUDA GPU) has bf16 units.
# 2. Once all its steps are done: the held-out pairs' reconstruction (evaluate-mim, beside the
#    checkpoint), then the change folds of the shipped recipe from that encoder (resumes per
#    fold; results under results/change_oscd/loco/).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/data}
MINUTES=${2:-600}
HEAD=${3:-direct}
case "$HEAD" in
    direct) OUT=runs/pretrain_bitemporal; METHOD="geobert (bi-temporal MIM, band dropout)" ;;
    relative)
        OUT=runs/pretrain_bitemporal_relative
        METHOD="geobert (bi-temporal MIM relative, band dropout)"
        ;;
    residual)
        OUT=runs/pretrain_bitemporal_residual
        METHOD="geobert (bi-temporal MIM residual, band dropout)"
        ;;
    *) echo "HEAD must be direct, relative or residual, not '$HEAD'" >&2; exit 2 ;;
esac
steps_of() {
    (cd scripts && ../.venv/bin/python -c "import protocol_encoder as p; print(p.$1)")
}
STEPS=$(steps_of BITEMPORAL_STEPS)
INIT=$(.venv/bin/python -c "from geobert.weights import pretrained_encoder_path as p; print(p())")
done_steps() {
    .venv/bin/python scripts/steps_done.py "$1"
}
CKPT="$OUT/geobert_s_bt.safetensors"
mkdir -p "$OUT"
PAIRS=()
for city in brasilia chongqing dubai lasvegas milano montpellier rio saclay_w; do
    PAIRS+=("$DATA/oscd/images/$city")
done
.venv/bin/geobert pretrain --objective bitemporal --head "$HEAD" --init "$INIT" \
    --data "${PAIRS[@]}" \
    --out "$CKPT" --steps "$STEPS" --batch-size 16 --accum 2 --window 128 --lr 4e-4 \
    --warmup 100 --seed 0 --time-budget "$MINUTES" --resume --train-precision auto
DONE=$(done_steps "$CKPT")
if [ "$DONE" -lt "$STEPS" ]; then
    echo "bi-temporal pretraining at step $DONE of $STEPS: rerun to continue" >&2
    exit 0
fi
# scored only at the end (the protocol reads nothing before step $STEPS)
.venv/bin/geobert evaluate-mim "$CKPT" \
    --holdout "$DATA/oscd/images/norcia" "$DATA/oscd/images/valencia" -o "$OUT"
# the gates of amendments 2 and 3: folds only once the head has learnt more than the fit
# (status 10: the gate is not reached; any other failure is an error and stops the script)
if [ "$HEAD" != direct ]; then
    GATE=0
    .venv/bin/python -c "import json, sys; l = json.load(open(sys.argv[1]))['masked_l1']
fit, got = l['other_date_linear_fit'], l['geobert']
sys.exit(0 if (got < fit if sys.argv[2] == 'relative' else got <= 0.97 * fit) else 10)" \
        "$OUT/mim_eval.json" "$HEAD" || GATE=$?
    if [ "$GATE" -eq 10 ]; then
        echo "the $HEAD head does not reach its gate against the fitted other date on" \
            "held-out pairs ($OUT/mim_eval.json): no change folds (results/pretrain_bitemporal/" \
            "PROTOCOL.md, amendments 2 and 3)" >&2
        exit 0
    elif [ "$GATE" -ne 0 ]; then
        exit "$GATE"
    fi
fi
.venv/bin/python scripts/change_loco.py --data "$DATA/oscd" --methods "$METHOD" --encoder "$CKPT"

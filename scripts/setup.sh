#!/usr/bin/env bash
# Create .venv (Python 3.11) and install geobert with its test tools. Safe to rerun.
# GEOBERT_EXTRAS picks the optional dependency sets (default: dev,baselines,clouds — the test tools,
# TorchGeo for the FC-Siam-diff baseline, s2cloudless for the L1C cloud mask; GEOBERT_EXTRAS=dev,clouds
# is lighter).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$(command -v python3.11 || command -v python3)}
if ! "$PY" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
    echo "geobert needs Python 3.11 (torch 2.14.1 wheels); set PYTHON=/path/to/python3.11" >&2
    exit 1
fi
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -c constraints.txt -e ".[${GEOBERT_EXTRAS:-dev,baselines,clouds}]"

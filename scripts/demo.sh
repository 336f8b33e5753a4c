#!/usr/bin/env bash
# Set up (scripts/setup.sh), then run geobert's main job on the shipped example pair (Abu Dhabi,
# Sentinel-2, 2016-01-20 and 2018-03-28): change detection with the shipped model, written to out/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/geobert change examples/abudhabi/imgs_1 examples/abudhabi/imgs_2 -o out --overwrite
ls -l out

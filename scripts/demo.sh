#!/usr/bin/env bash
# Set up (scripts/setup.sh), then run geobert on the shipped example pair (Abu Dhabi, Sentinel-2,
# 2016 and 2018): the NDVI change between the dates, written to out/ndvi_change.tif.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
mkdir -p out
.venv/bin/geobert ndvi examples/abudhabi/imgs_1 examples/abudhabi/imgs_2 \
    -o out/ndvi_change.tif --overwrite
.venv/bin/geobert info out/ndvi_change.tif
